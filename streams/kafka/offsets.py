"""A partition's watermark offsets, read through the broker's transient answers.

Right after a topic is created, or while a leader moves (a broker restarting, a
rolling upgrade), the broker answers "not leader" or "unknown partition" for a
moment. Those answers are routine; reading offsets must wait them out, not fail.
"""

from __future__ import annotations

import time

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

# Answers that mean "ask again shortly": leadership or metadata still settling.
_SETTLING = frozenset(
    {
        KafkaError.NOT_LEADER_FOR_PARTITION,
        KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError.UNKNOWN_TOPIC_OR_PART,
        KafkaError.REPLICA_NOT_AVAILABLE,
        KafkaError.OFFSET_NOT_AVAILABLE,
        KafkaError._TIMED_OUT,
        KafkaError._TRANSPORT,
        KafkaError._ALL_BROKERS_DOWN,
    }
)


def is_settling(error: KafkaError) -> bool:
    """Whether a broker error is a moment of leadership or metadata change."""
    return error.code() in _SETTLING or error.retriable()


def watermarks(
    consumer: Consumer, topic: str, partition: int, *, timeout_s: float = 10.0
) -> tuple[int, int]:
    """``(low, high)`` of one partition, asking again while leadership settles.

    Raises the broker's last error once ``timeout_s`` has passed, or at once for an
    error that is not transient (an authorisation refusal, say).
    """
    deadline = time.monotonic() + timeout_s
    pause_s = 0.05
    while True:
        left = deadline - time.monotonic()
        try:
            return consumer.get_watermark_offsets(
                TopicPartition(topic, partition), timeout=max(left, 0.1)
            )
        except KafkaException as exc:
            if not is_settling(exc.args[0]) or time.monotonic() + pause_s > deadline:
                raise
        time.sleep(pause_s)
        pause_s = min(pause_s * 2, 1.0)
