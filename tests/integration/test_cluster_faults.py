"""Faults on a 3-node Apache Kafka cluster (RF 3, min ISR 2, no unclean election).

Each fault is checked with the ledger: every record sent is one stored prediction
(``count() == uniqExact(prediction_id)``), the audit chain verifies and the worker
group's lag returns to 0. The pauses are printed (``pytest -s``), not asserted.
"""

from __future__ import annotations

import threading
import time

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

from driftline.schemas import default_codec
from driftline.streams.control.identity import create_actor
from driftline.streams.control.model_commands import ModelCommands
from driftline.streams.demo.loadgen import synthetic_frames, synthetic_records
from driftline.streams.kafka.offsets import watermarks
from driftline.streams.kafka.producer import FeatureProducer
from driftline.streams.kafka.provision import prepare_topics
from driftline.streams.kafka.topics import Topics
from tests.integration.helpers import read_topic, serve_model, wait_until, write_model

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session")
def broker(kafka_cluster):
    """These tests' stack runs on the 3-node cluster (topics get RF 3)."""
    return kafka_cluster


def _lag(stack_env, topic: str, group: str | None = None) -> int:
    """How far a worker group's committed offsets are behind the topic's end."""
    group = group or Topics(stack_env.prefix).app_id
    consumer = Consumer({"bootstrap.servers": stack_env.bootstrap, "group.id": group})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        asked = [TopicPartition(topic, p) for p in partitions]
        committed = {tp.partition: tp.offset for tp in consumer.committed(asked, timeout=10)}
        ends = {p: watermarks(consumer, topic, p)[1] for p in partitions}
    finally:
        consumer.close()
    return sum(end - max(committed.get(p, 0), 0) for p, end in ends.items())


class ArrivalClock:
    """Reads the predictions topic as it fills and keeps when each batch arrived, so the
    longest silence around a fault (the pause a consumer sees) can be measured."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"clock-{time.monotonic_ns()}",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
            }
        )
        self._consumer.subscribe([topic])
        self.arrivals: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            messages = self._consumer.consume(1000, timeout=0.1)
            if any(m.error() is None for m in messages):
                self.arrivals.append(time.monotonic())

    def longest_gap_after(self, since: float) -> float:
        times = [since] + [t for t in self.arrivals if t >= since]
        return max((b - a for a, b in zip(times, times[1:], strict=False)), default=0.0)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self._consumer.close()


def _predictions(worker, db: str) -> tuple[int, int]:
    return tuple(worker.sql(f"SELECT count(), uniqExact(prediction_id) FROM {db}.predictions")[0])


def test_sigkill_of_a_features_leader_loses_and_doubles_nothing(
    stack_env, start_worker, kafka_cluster, tmp_path
):
    settings = stack_env.settings()
    topics = Topics(stack_env.prefix)
    db = settings.clickhouse.database
    worker = start_worker()
    serve_model(settings, worker, tmp_path)
    clock = ArrivalClock(stack_env.bootstrap, topics.predictions)
    producer = FeatureProducer(settings, stack_env.bootstrap)
    records = list(synthetic_records(model="demo", count=3000, entities=200, seed=7, n_features=16))
    frames = list(
        synthetic_frames(
            model="demo", count=6000, entities=200, seed=8, n_features=16, frame_size=500
        )
    )
    expected = len(records) + sum(len(f["entity_ids"]) for f in frames)

    def send(part_records, part_frames) -> None:
        for record in part_records:
            producer.send(record | {"event_time": int(time.time() * 1000)})
        for frame in part_frames:
            now = int(time.time() * 1000)
            producer.send_frame(
                frame["frame_id"],
                frame["model"],
                frame["entity_ids"],
                [now] * len(frame["entity_ids"]),
                frame["feature_names"],
                frame["matrix"],
            )
        producer.flush()

    try:
        send(records[:1500], frames[:6])
        wait_until(lambda: _predictions(worker, db)[0] > 0, what="first predictions stored")
        leader = kafka_cluster.leader(topics.features, 0)
        killed_at = time.monotonic()
        kafka_cluster.kill(leader)  # SIGKILL mid-stream: no controlled shutdown
        send(records[1500:], frames[6:])  # acks=all still holds with 2 of 3 in sync
        wait_until(
            lambda: _predictions(worker, db)[0] >= expected,
            timeout_s=120,
            what=lambda: f"{expected} predictions, have {_predictions(worker, db)}",
        )
        done_s = time.monotonic() - killed_at
        kafka_cluster.start_node(leader)
        pause_s = clock.longest_gap_after(killed_at)
    finally:
        clock.close()
        producer.close()
    print(
        f"\nleader {leader} of {topics.features}[0] SIGKILLed: longest gap in predictions "
        f"{pause_s:.2f}s, all {expected} stored {done_s:.1f}s after the kill"
    )
    assert _predictions(worker, db) == (expected, expected)  # nothing lost, nothing doubled
    wait_until(lambda: _lag(stack_env, topics.features) == 0, timeout_s=60, what="lag back to 0")
    assert worker.get("/driftline/audit/verify/")["ok"] is True
    assert worker.proc.poll() is None


def _assignments(stack_env) -> dict[str, set[int]]:
    """Features partitions by member of the scoring workers' group."""
    admin = AdminClient({"bootstrap.servers": stack_env.bootstrap})
    group = Topics(stack_env.prefix).group({"inference"})
    (future,) = admin.describe_consumer_groups([group]).values()
    described = future.result(timeout=10)
    features = Topics(stack_env.prefix).features
    held = {
        member.member_id: {
            tp.partition for tp in member.assignment.topic_partitions if tp.topic == features
        }
        for member in described.members
    }
    return {member: partitions for member, partitions in held.items() if partitions}


def _ends(stack_env, topic: str) -> int:
    consumer = Consumer({"bootstrap.servers": stack_env.bootstrap, "group.id": "ends"})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        return sum(watermarks(consumer, topic, p)[1] for p in partitions)
    finally:
        consumer.close()


def _published_record_ids(stack_env) -> set[str]:
    codec = default_codec()
    messages = read_topic(stack_env.bootstrap, Topics(stack_env.prefix).predictions, 12)
    return {codec.decode_as("Prediction", m.value())["record_id"] for m in messages}


def _whereabouts(stack_env, store, store_group: str) -> str:
    """Where records are when fewer than expected were stored: for a failure message.
    Tells a scoring loss (never published) from a store loss (published, not stored)."""
    topics = Topics(stack_env.prefix)
    scoring_lag = _lag(stack_env, topics.features, topics.group({"inference"}))
    db = stack_env.settings().clickhouse.database
    stored = {row[0] for row in store.sql(f"SELECT DISTINCT record_id FROM {db}.predictions")}
    published = _published_record_ids(stack_env)
    return (
        f"{len(published)} distinct records published, {len(stored)} stored, "
        f"{len(published - stored)} published but not stored (e.g. "
        f"{sorted(published - stored)[:3]}); "
        f"features lag of the scoring group {scoring_lag}, "
        f"{_ends(stack_env, topics.predictions)} predictions published, store lag on them "
        f"{_lag(stack_env, topics.predictions, store_group)}, "
        f"{_ends(stack_env, topics.deadletter)} dead letters; "
        f"scoring members {_assignments(stack_env)}"
    )


def _shares(stack_env) -> list[int]:
    """How many features partitions each scoring member holds, when all 12 are held."""
    held = _assignments(stack_env)
    covered = set().union(*held.values()) if held else set()
    return sorted(len(p) for p in held.values()) if covered == set(range(12)) else []


def test_three_workers_on_twelve_partitions_survive_a_killed_worker_and_its_return(
    stack_env, start_worker, tmp_path
):
    # A stack of its own with 12 partitions (the fixture's topics have 2).
    stack_env.env["DRIFTLINE_KAFKA_TOPIC_PREFIX"] = f"w12{time.monotonic_ns() % 10**8}."
    stack_env.env["DRIFTLINE_KAFKA_PARTITIONS"] = "12"
    settings = stack_env.settings()
    prepare_topics(settings, stack_env.bootstrap)
    topics = Topics(stack_env.prefix)
    db = settings.clickhouse.database
    create_actor(settings, "carol", ["data-scientist"])

    store = start_worker(DRIFTLINE_WORKER_ROLES="lineage,registry,policy")
    # The scoring workers run the features consumer (streams/kafka/feature_consumer.py).
    scoring = {"DRIFTLINE_WORKER_ROLES": "inference", "DRIFTLINE_WORKER_FEATURES_CONSUMER": "kafka"}
    workers = [start_worker(**scoring) for _ in range(3)]
    commands = ModelCommands.from_settings(settings)
    version = serve_model(settings, workers[0], tmp_path)
    for worker in workers[1:]:
        wait_until(
            lambda w=worker: w.get("/driftline/models/").get("demo", {}).get("version") == 1,
            what="model served by every worker",
        )

    wait_until(
        lambda: _shares(stack_env) == [4, 4, 4],
        timeout_s=60,
        what=lambda: f"4 partitions each, have {_assignments(stack_env)}",
    )

    producer = FeatureProducer(settings, stack_env.bootstrap)
    records = list(synthetic_records(model="demo", count=6000, entities=500, seed=9, n_features=16))
    # Lifecycle events keep flowing while workers come and go: their per-model order must hold.
    lifecycle_done = threading.Event()

    def register_more() -> None:
        for seed in (20, 21, 22):
            commands.register(write_model(tmp_path, seed=seed), "order-check", actor="carol")
        lifecycle_done.set()

    try:
        for record in records[:2000]:
            producer.send(record)
        producer.flush()
        wait_until(
            lambda: store.sql(f"SELECT count() FROM {db}.predictions")[0][0] > 500,
            timeout_s=60,
            what="scoring under way",
        )
        victim = workers[0]
        victim.proc.kill()  # SIGKILL mid-stream
        victim.proc.wait(10)
        registering = threading.Thread(target=register_more)
        registering.start()
        for record in records[2000:4000]:
            producer.send(record)
        producer.flush()
        # The victim's partitions move to the other two...
        wait_until(lambda: _shares(stack_env) == [6, 6], timeout_s=60, what="6 partitions each")
        workers[0] = start_worker(**scoring)  # ...and back
        for record in records[4000:]:
            producer.send(record)
        producer.flush()
        wait_until(lambda: _shares(stack_env) == [4, 4, 4], timeout_s=60, what="4 each again")
        registering.join(60)
        assert lifecycle_done.is_set()
    finally:
        producer.close()

    expected = len(records)
    wait_until(
        lambda: (
            store.sql(f"SELECT uniqExact(prediction_id) FROM {db}.predictions")[0][0] >= expected
        ),
        timeout_s=120,
        what=lambda: (
            f"{expected} records scored, have "
            f"{store.sql(f'SELECT uniqExact(prediction_id) FROM {db}.predictions')[0][0]}; "
            + _whereabouts(stack_env, store, topics.group({"lineage", "registry", "policy"}))
        ),
    )
    total, unique = store.sql(
        f"SELECT count(), uniqExact(prediction_id) FROM {db}.predictions FINAL"
    )[0]
    raw = store.sql(f"SELECT count() FROM {db}.predictions")[0][0]
    print(f"\n12 partitions, 3 workers, one SIGKILLed and restarted: {raw - expected} re-delivered")
    assert (total, unique) == (expected, expected)  # none lost; re-deliveries collapse
    assert _shares(stack_env) == [4, 4, 4]
    scoring_group = topics.group({"inference"})
    wait_until(
        lambda: _lag(stack_env, topics.features, scoring_group) == 0,
        timeout_s=60,
        what="lag back to 0",
    )

    # Per-model order: the audit chain holds the lifecycle events in the topic's order.
    rows = store.sql(
        f"SELECT seq, event_type, version FROM {db}.audit_log "
        "WHERE model = 'order-check' ORDER BY seq"
    )
    assert [r[0] for r in rows] == list(range(1, len(rows) + 1))
    assert [(r[1], r[2]) for r in rows] == [("registered", v) for v in (1, 2, 3)]
    assert [(v.version, v.state) for v in commands.registry().versions("order-check")] == [
        (1, "registered"),
        (2, "registered"),
        (3, "registered"),
    ]
    assert store.get("/driftline/audit/verify/")["ok"] is True
    for worker in workers:  # every worker ends on the same champion
        assert worker.get("/driftline/models/")["demo"]["version"] == version


def test_a_whole_cluster_restart_brings_back_the_registry_and_who_served_when(
    stack_env, start_worker, kafka_cluster, tmp_path
):
    settings = stack_env.settings()
    worker = start_worker()
    commands = ModelCommands.from_settings(settings)
    v1, _ = commands.register(write_model(tmp_path, seed=1), "demo", actor="alice")
    first = commands.promote("demo", v1.version, actor="bob")
    v2, _ = commands.register(write_model(tmp_path, seed=2), "demo", actor="alice")
    second = commands.promote("demo", v2.version, actor="bob")
    before = commands.registry()
    assert before.aliases_at("demo", first.occurred_at) == {"champion": 1}
    assert before.aliases_at("demo", second.occurred_at) == {"champion": 2}
    worker.stop()

    kafka_cluster.stop()  # every node: controlled shutdown, a straggler without quorum killed
    kafka_cluster.start()  # from the same data dirs
    after = ModelCommands.from_settings(settings).registry()
    assert after.snapshot() == before.snapshot()
    assert after.history("demo") == before.history("demo")
    assert after.aliases_at("demo", first.occurred_at) == {"champion": 1}
    assert after.aliases_at("demo", second.occurred_at) == {"champion": 2}

    # A worker started on the restarted cluster serves what the registry says.
    restarted = start_worker()
    wait_until(
        lambda: restarted.get("/driftline/models/").get("demo", {}).get("version") == 2,
        timeout_s=60,
        what="v2 served after the cluster restart",
    )
    assert restarted.get("/driftline/audit/verify/")["ok"] is True
