"""Reading watermark offsets waits out leadership changes, and only those.

The client is a scripted stand-in: the broker's transient answers cannot be summoned
on demand (the integration suite meets them on real brokers: test_kafka_local)."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError, KafkaException

from driftline.streams.kafka.offsets import is_settling, watermarks


class ScriptedConsumer:
    """Answers get_watermark_offsets from a script: an error code raises, a pair returns."""

    def __init__(self, answers: list) -> None:
        self.answers = list(answers)
        self.asked = 0

    def get_watermark_offsets(self, partition, timeout=None):
        self.asked += 1
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, int):
            raise KafkaException(KafkaError(answer))
        return answer


@pytest.mark.parametrize(
    "code",
    [
        KafkaError.NOT_LEADER_FOR_PARTITION,
        KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError.UNKNOWN_TOPIC_OR_PART,
        KafkaError._TIMED_OUT,
    ],
)
def test_settling_answers_are_asked_again(code) -> None:
    consumer = ScriptedConsumer([code, code, (3, 42)])
    assert watermarks(consumer, "t", 0, timeout_s=5) == (3, 42)
    assert consumer.asked == 3


@pytest.mark.parametrize(
    "code", [KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError.SASL_AUTHENTICATION_FAILED]
)
def test_a_refusal_is_raised_at_once(code) -> None:
    consumer = ScriptedConsumer([code, (0, 1)])
    with pytest.raises(KafkaException) as raised:
        watermarks(consumer, "t", 0, timeout_s=5)
    assert raised.value.args[0].code() == code and consumer.asked == 1
    assert not is_settling(KafkaError(code))


def test_a_leader_that_never_settles_raises_the_last_answer_after_the_timeout() -> None:
    consumer = ScriptedConsumer([KafkaError.NOT_LEADER_FOR_PARTITION])
    with pytest.raises(KafkaException) as raised:
        watermarks(consumer, "t", 0, timeout_s=0.5)
    assert raised.value.args[0].code() == KafkaError.NOT_LEADER_FOR_PARTITION
    assert 2 <= consumer.asked <= 10  # backs off, does not spin
