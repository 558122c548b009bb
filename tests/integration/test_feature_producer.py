"""FeatureProducer against a real broker: what it sent is there after close(), and nothing after."""

from __future__ import annotations

import numpy as np
import pytest

from driftline.streams.demo.loadgen import synthetic_records
from driftline.streams.exceptions import StreamsError
from driftline.streams.kafka.producer import FeatureProducer
from driftline.streams.kafka.topics import Topics
from tests.integration.helpers import read_topic


def test_close_delivers_everything_sent_and_refuses_more(stack_env) -> None:
    producer = FeatureProducer(stack_env.settings(), stack_env.bootstrap)
    records = list(synthetic_records(model="demo", count=200, entities=20, seed=1, n_features=4))
    for record in records:
        producer.send(record)  # queued, not flushed: close() must deliver them
    producer.close()
    producer.close()  # a second stop is harmless

    stored = read_topic(stack_env.bootstrap, Topics(stack_env.prefix).features, 2)
    assert len(stored) == len(records)
    with pytest.raises(RuntimeError, match="closed"):
        producer.send(records[0])


def test_a_frame_over_the_message_limit_is_refused_at_produce_time(stack_env) -> None:
    """Too big for the producer's limit: a clear error naming the size and the setting, at
    send time; raising DRIFTLINE_KAFKA_MESSAGE_MAX_BYTES lets the same frame through."""
    n = 40_000
    args = (
        "big", "demo", [f"e{i}" for i in range(n)], [1_700_000_000_000] * n,
        [f"f{j:02d}" for j in range(16)], np.zeros((n, 16), dtype=np.float32),
    )  # fmt: skip
    producer = FeatureProducer(stack_env.settings(), stack_env.bootstrap)
    with pytest.raises(StreamsError, match="DRIFTLINE_KAFKA_MESSAGE_MAX_BYTES") as refused:
        producer.send_frame(*args)
    assert "bytes to" in str(refused.value) and "Message size too large" in str(refused.value)
    producer.close()
    bigger = FeatureProducer(
        stack_env.settings(DRIFTLINE_KAFKA_MESSAGE_MAX_BYTES=str(8 * 1024**2)), stack_env.bootstrap
    )
    bigger.send_frame(*args)
    bigger.close()
    stored = read_topic(stack_env.bootstrap, Topics(stack_env.prefix).features, 2)
    assert len(stored) == 1 and len(stored[0].value()) > 1_000_000
