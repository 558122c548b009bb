"""The scoring workers' own features consumer (streams/kafka/feature_consumer.py), on a real broker.

Cooperative rebalances hand partitions over cleanly: the batches consumed from a
partition are delivered and committed before its next owner reads it, so workers
joining and leaving mid-stream neither lose nor double a record. Counted on the
predictions topic itself, where a re-scored record would show up twice.
"""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest

from driftline.schemas import default_codec
from driftline.streams.demo.loadgen import synthetic_records
from driftline.streams.kafka.producer import FeatureProducer
from driftline.streams.kafka.provision import prepare_topics
from driftline.streams.kafka.topics import Topics
from tests.integration.helpers import read_topic, serve_model, wait_until

pytestmark = pytest.mark.integration

PARTITIONS = 6


def predictions_per_record(stack_env) -> Counter:
    codec = default_codec()
    topic = Topics(stack_env.prefix).predictions
    messages = read_topic(stack_env.bootstrap, topic, PARTITIONS)
    return Counter(codec.decode_as("Prediction", m.value())["record_id"] for m in messages)


def where_in_features(stack_env, records) -> dict[int, list[int]]:
    codec = default_codec()
    messages = read_topic(stack_env.bootstrap, Topics(stack_env.prefix).features, PARTITIONS)
    found: dict[int, list[int]] = {}
    for m in messages:
        if codec.decode(m.value())[1]["record_id"] in records:
            found.setdefault(m.partition(), []).append(m.offset())
    return found


@pytest.mark.parametrize("drift", ["false", "true"])
def test_workers_joining_and_leaving_mid_stream_neither_lose_nor_double_a_record(
    stack_env, start_worker, tmp_path, drift
):
    stack_env.env["DRIFTLINE_KAFKA_TOPIC_PREFIX"] = f"fc{time.monotonic_ns() % 10**8}."
    stack_env.env["DRIFTLINE_KAFKA_PARTITIONS"] = str(PARTITIONS)
    settings = stack_env.settings()
    prepare_topics(settings, stack_env.bootstrap)

    start_worker(DRIFTLINE_WORKER_ROLES="lineage,registry,policy")
    # drift off: a scoring worker whose Faust app reads no topic at all.
    scoring = {
        "DRIFTLINE_WORKER_ROLES": "inference",
        "DRIFTLINE_DRIFT_ENABLED": drift,
        "DRIFTLINE_WORKER_FEATURES_CONSUMER": "kafka",
    }
    first = start_worker(**scoring)
    serve_model(settings, first, tmp_path)

    records = list(synthetic_records(model="demo", count=9000, entities=300, seed=3, n_features=16))
    producer = FeatureProducer(settings, stack_env.bootstrap)
    sent = threading.Event()

    def produce_steadily() -> None:
        for n, record in enumerate(records, 1):
            producer.send(record)
            if n % 50 == 0:
                producer.flush()
                time.sleep(0.2)  # about 250 records/s for 36 s: workers join a live stream
        producer.flush()
        sent.set()

    feeding = threading.Thread(target=produce_steadily)
    feeding.start()
    try:
        second = start_worker(**scoring)  # joins: some of first's partitions move over
        wait_until(lambda: second.get("/driftline/stats/")["records_in"] > 0, timeout_s=60)
        third = start_worker(**scoring)
        wait_until(lambda: third.get("/driftline/stats/")["records_in"] > 0, timeout_s=60)
        assert second.stop() == 0  # leaves cleanly: its partitions are handed over
    finally:
        feeding.join(120)
        producer.close()
    assert sent.is_set()

    expected = {r["record_id"] for r in records}
    wait_until(
        lambda: set(predictions_per_record(stack_env)) >= expected,
        timeout_s=90,
        what=lambda: f"{len(expected - set(predictions_per_record(stack_env)))} records unscored",
    )
    counts = predictions_per_record(stack_env)
    doubled = {record: n for record, n in counts.items() if n > 1}
    assert not doubled, (
        f"{len(doubled)} records scored more than once, at (partition, offset) "
        f"{where_in_features(stack_env, doubled)}"
    )
    assert set(counts) == expected
    handed_over = [w for w in (first, second, third) if "handed over" in w.log_file.read_text()]
    assert second in handed_over
