"""FeatureProducer against a real broker: what it sent is there after close(), and nothing after."""

from __future__ import annotations

import pytest

from streams.loadgen import synthetic_records
from streams.producer import FeatureProducer
from streams.topics import Topics
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
