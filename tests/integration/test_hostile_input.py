"""Messages no driftline client would write: each ends scored or dead-lettered, none lost.

Every case sends good records around one hostile message on one partition and
checks the whole ledger: every good record scored, the hostile one
dead-lettered with the reason that names its cause, the worker alive, and the
consumer group's committed offset at the end of the partition (so nothing was
skipped and nothing waits).
"""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
from confluent_kafka import Consumer, TopicPartition

from driftline.inference.frames import pack_frame
from driftline.schemas import default_codec
from driftline.streams.demo.loadgen import synthetic_records
from driftline.streams.kafka.topics import Topics
from tests.integration.helpers import dead_letters, read_topic, send_in_order, wait_until

pytestmark = pytest.mark.integration

CODEC = default_codec()
INT64_MAX = 2**63 - 1


def _good(i: int) -> dict:
    record = next(synthetic_records(model="demo", count=1, entities=1, seed=500 + i, n_features=16))
    return dict(record, record_id=f"good-{i}")


def _send(stack_env, values: list[tuple[bytes | None, bytes | None]]) -> None:
    send_in_order(stack_env.bootstrap, Topics(stack_env.prefix).features, values)


def _dead_letters(stack_env) -> list[dict]:
    return dead_letters(stack_env.bootstrap, Topics(stack_env.prefix).deadletter)


def committed_offsets(stack_env, topic: str, partitions: int = 2) -> dict[int, int]:
    """The worker group's committed offset of each partition of ``topic`` (absent: none)."""
    group = Topics(stack_env.prefix).app_id
    consumer = Consumer({"bootstrap.servers": stack_env.bootstrap, "group.id": group})
    try:
        asked = [TopicPartition(topic, p) for p in range(partitions)]
        return {tp.partition: tp.offset for tp in consumer.committed(asked, timeout=10)}
    finally:
        consumer.close()


def committed(stack_env, partition: int = 0) -> int:
    return committed_offsets(stack_env, Topics(stack_env.prefix).features)[partition]


def _around(hostile: list[tuple[bytes | None, bytes | None]]) -> list:
    before = [(b"k", CODEC.encode("FeatureRecord", _good(i))) for i in range(10)]
    after = [(b"k", CODEC.encode("FeatureRecord", _good(i))) for i in range(10, 20)]
    return before + hostile + after


def _check_ledger(
    stack_env, worker, reasons: list[str], *, hostile: int | None = None, extra_predictions: int = 0
) -> list:
    """20 good records scored, one dead letter per reason, all ``hostile`` offsets committed."""
    db = stack_env.settings().clickhouse.database
    sent = 20 + (len(reasons) if hostile is None else hostile)
    wait_until(
        lambda: (
            len(_dead_letters(stack_env)) >= len(reasons)
            and worker.sql(f"SELECT uniqExact(record_id) FROM {db}.predictions")[0][0]
            >= 20 + extra_predictions
        ),
        timeout_s=60,
        what=lambda: f"scores and dead letters {[d['detail'] for d in _dead_letters(stack_env)]}",
    )
    letters = _dead_letters(stack_env)
    assert sorted(letter["reason"] for letter in letters) == sorted(reasons), letters
    good = worker.sql(
        f"SELECT uniqExact(record_id) FROM {db}.predictions WHERE record_id LIKE 'good-%'"
    )[0][0]
    assert good == 20
    wait_until(
        lambda: committed(stack_env) == sent,
        timeout_s=30,
        what=lambda: f"committed offset {committed(stack_env)} to reach {sent}",
    )
    assert worker.proc.poll() is None
    assert worker.get("/driftline/health/")["ready"]
    return letters


def test_null_value_is_dead_lettered(stack_env, serving_worker):
    _send(stack_env, _around([(b"tombstone", None)]))
    (letter,) = _check_ledger(stack_env, serving_worker, ["null_value"])
    assert letter["raw"] == b"" and letter["key"] == b"tombstone"
    assert "null value" in letter["detail"]


def test_impossible_event_time_is_dead_lettered(stack_env, serving_worker):
    late = CODEC.encode("FeatureRecord", dict(_good(99), event_time=INT64_MAX))
    early = CODEC.encode("FeatureRecord", dict(_good(98), event_time=-1))
    _send(stack_env, _around([(b"k", late), (b"k", early)]))
    letters = _check_ledger(stack_env, serving_worker, ["invalid_event_time"] * 2)
    details = sorted(letter["detail"] for letter in letters)
    assert "event_time -1 is before 1970" in details[0]
    assert f"event_time {INT64_MAX} is more than" in details[1]


def test_five_megabytes_of_garbage_is_too_large(stack_env, serving_worker):
    garbage = os.urandom(5 * 1024**2)
    _send(stack_env, _around([(b"big", garbage)]))
    (letter,) = _check_ledger(stack_env, serving_worker, ["too_large"])
    assert f"{len(garbage):,}" in letter["detail"] and "1,000,000" in letter["detail"]
    assert 0 < len(letter["raw"]) < 1_000_000 and garbage.startswith(letter["raw"])


def test_five_megabyte_valid_record_is_too_large(stack_env, serving_worker):
    # Valid Avro and 16 features, but an entity id no Prediction can carry.
    huge = dict(_good(97), entity_id="e" * (5 * 1024**2))
    _send(stack_env, _around([(b"big", CODEC.encode("FeatureRecord", huge))]))
    (letter,) = _check_ledger(stack_env, serving_worker, ["too_large"])
    assert "Prediction" in letter["detail"]


def test_a_frame_larger_than_one_output_message_is_scored_whole(stack_env, serving_worker):
    n = 32_768
    rng = np.random.default_rng(3)
    now = int(time.time() * 1000)
    entity_ids = [f"entity-{i:08d}" for i in range(n)]
    record = pack_frame(
        "big-frame",
        "demo",
        entity_ids,
        [now] * n,
        [f"f{j:02d}" for j in range(16)],
        rng.normal(size=(n, 16)).astype(np.float32),
    )
    value = CODEC.encode("FeatureFrame", record)
    assert len(value) > 2_500_000
    _send(stack_env, _around([(b"big-frame", value)]))
    _check_ledger(stack_env, serving_worker, [], hostile=1, extra_predictions=n)
    db = stack_env.settings().clickhouse.database
    rows = serving_worker.sql(
        f"SELECT uniqExact(record_id), count() FROM {db}.predictions FINAL "
        "WHERE record_id LIKE 'big-frame:%'"
    )
    assert rows == [[n, n]]
    # The scores went out in several PredictionFrames, each under the producer's limit.
    frames = [
        m
        for m in read_topic(stack_env.bootstrap, Topics(stack_env.prefix).predictions, 2)
        if m.key() == b"big-frame"
    ]
    assert len(frames) > 1 and all(len(m.value()) < 1_000_000 for m in frames)
