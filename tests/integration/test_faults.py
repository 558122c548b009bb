"""Faults: a lineage consumer killed with SIGKILL mid-stream loses and duplicates nothing."""

from __future__ import annotations

import signal

import pytest
from confluent_kafka import Consumer, Producer

from driftline.lineage.events import registered
from driftline.schemas import default_codec
from driftline.streams.kafka.offsets import watermarks
from driftline.streams.kafka.topics import Topics
from tests.integration.helpers import read_topic, wait_until

pytestmark = pytest.mark.integration

EVENTS = 6000


def test_lineage_consumer_killed_mid_stream_stores_every_event_once(stack_env, start_worker):
    codec = default_codec()
    topic = Topics(stack_env.prefix).lifecycle
    producer = Producer({"bootstrap.servers": stack_env.bootstrap, "linger.ms": 20})
    for i in range(EVENTS):
        model = f"model-{i % 25}"
        event = registered(
            model, i // 25 + 1, "fault-test", {"digest": f"{i:064x}", "artifact": "x"}
        )
        producer.produce(topic, codec.encode("LifecycleEvent", event.to_avro()), key=model.encode())
    assert producer.flush(30) == 0

    small_batches = {"DRIFTLINE_WORKER_ROLES": "lineage", "DRIFTLINE_CLICKHOUSE_FLUSH_ROWS": "300"}
    worker = start_worker(**small_batches)
    db = stack_env.settings().clickhouse.database

    def stored(w) -> int:
        return w.sql(f"SELECT count() FROM {db}.audit_log")[0][0]

    wait_until(lambda: stored(worker) >= 600, timeout_s=60, what="some events stored")
    worker.proc.send_signal(signal.SIGKILL)  # mid-stream: batches in flight, offsets uncommitted
    worker.proc.wait(10)

    restarted = start_worker(**small_batches)
    wait_until(
        lambda: stored(restarted) >= EVENTS,
        timeout_s=120,
        what="every event stored after the restart",
    )
    total, unique, models = restarted.sql(
        f"SELECT count(), uniqExact(event_id), uniqExact(model) FROM {db}.audit_log"
    )[0]
    assert (total, unique, models) == (EVENTS, EVENTS, 25)  # exactly once, nothing missing
    gaps = restarted.sql(
        f"SELECT model FROM {db}.audit_log GROUP BY model HAVING max(seq) != count()"
    )
    assert gaps == []
    report = restarted.get("/driftline/audit/verify/")
    assert report["ok"] is True, report["summary"]


def test_registry_agent_killed_mid_stream_answers_every_command_once(stack_env, start_worker):
    from driftline.lineage.trust.commands import new_command
    from driftline.lineage.trust.keys import load_private_key

    settings = stack_env.settings()
    db = settings.clickhouse.database
    topics = Topics(stack_env.prefix)
    store_owner = start_worker(DRIFTLINE_WORKER_ROLES="lineage")
    agent_env = {"DRIFTLINE_WORKER_ROLES": "registry"}
    agent = start_worker(**agent_env)

    # alice may not promote: every command is answered by an audited command_rejected.
    alice = load_private_key(settings.key_dir / "alice.key")
    codec = default_codec()
    producer = Producer({"bootstrap.servers": stack_env.bootstrap, "linger.ms": 5})

    def send(first: int, count: int) -> None:
        for i in range(first, first + count):
            command = new_command("promote", f"model-{i % 10}", 1, "alice").signed(alice)
            producer.produce(
                topics.name("commands"),
                codec.encode("LifecycleCommand", command.to_avro()),
                key=command.model.encode(),
            )
        assert producer.flush(30) == 0

    first_wave, second_wave = 4000, 500
    commands = first_wave + second_wave
    send(0, first_wave)

    # The agent's answers land on the lifecycle topic before the store sees them: watch
    # the topic so the kill falls while the agent is still working through the wave.
    watcher = Consumer({"bootstrap.servers": stack_env.bootstrap, "group.id": "fault-watch"})

    def published() -> int:
        partitions = watcher.list_topics(topics.lifecycle, timeout=5).topics[topics.lifecycle]
        return sum(
            watermarks(watcher, topics.lifecycle, p, timeout_s=5)[1] for p in partitions.partitions
        )

    try:
        wait_until(lambda: published() >= 20, timeout_s=60, what="some commands answered")
    finally:
        watcher.close()
    agent.proc.send_signal(signal.SIGKILL)
    agent.proc.wait(10)
    # A second wave while the agent is down: the restarted agent must resume, not skip.
    send(first_wave, second_wave)

    def answered() -> int:
        try:
            return store_owner.sql(
                f"SELECT count() FROM {db}.audit_log WHERE event_type = 'command_rejected'"
            )[0][0]
        except OSError:  # the store is busy writing the flood: ask again
            return -1

    print(f"answered when killed (stored so far): {answered()} of {first_wave}")
    start_worker(**agent_env)
    wait_until(lambda: answered() >= commands, timeout_s=120, what="every command answered")
    total, unique = store_owner.sql(
        f"SELECT count(), uniqExact(JSONExtractString(canonical, 'evidence', 'command_id')) "
        f"FROM {db}.audit_log WHERE event_type = 'command_rejected'"
    )[0]
    assert (total, unique) == (commands, commands)  # each answered once, none lost
    assert store_owner.get("/driftline/audit/verify/")["ok"] is True


def test_a_backlog_of_frames_is_stored_in_byte_bounded_batches(stack_env, start_worker):
    """A lineage worker that starts behind a backlog of frames stores every row once, in
    batches of about DRIFTLINE_CLICKHOUSE_FLUSH_BYTES: a message count alone would take
    the whole backlog (FLUSH_ROWS is 5000 messages, the backlog 60) in one batch."""
    import time

    from driftline.streams.demo.loadgen import synthetic_frames
    from driftline.streams.kafka.producer import FeatureProducer
    from tests.integration.helpers import scrape_metrics

    producer = FeatureProducer(stack_env.settings(), stack_env.bootstrap)
    frames = list(synthetic_frames(model="backlog", count=60 * 2_000, entities=5_000, seed=3,
                                   n_features=16, frame_size=2_000))  # fmt: skip
    now_ms = int(time.time() * 1000)
    for frame in frames:
        n = len(frame["entity_ids"])
        producer.send_frame(frame["frame_id"], frame["model"], frame["entity_ids"], [now_ms] * n,
                            frame["feature_names"], frame["matrix"])  # fmt: skip
    producer.close()
    backlog_bytes = sum(m.value().__len__() for m in read_topic(
        stack_env.bootstrap, Topics(stack_env.prefix).features, 2))  # fmt: skip

    worker = start_worker(
        DRIFTLINE_WORKER_ROLES="lineage",
        DRIFTLINE_CLICKHOUSE_FLUSH_BYTES=str(1024**2),
        DRIFTLINE_CLICKHOUSE_FLUSH_INTERVAL_S="2",
    )
    db = stack_env.settings().clickhouse.database
    wait_until(
        lambda: worker.sql(f"SELECT count() FROM {db}.features")[0][0] >= 120_000,
        timeout_s=90,
        what="every feature row stored",
    )
    total, unique = worker.sql(f"SELECT count(), uniqExact(record_id) FROM {db}.features")[0]
    assert (total, unique) == (120_000, 120_000)
    inserts = scrape_metrics(worker.url)[("driftline_clickhouse_insert_seconds_count", frozenset())]
    assert backlog_bytes > 10 * 1024**2
    assert inserts >= backlog_bytes // 1024**2 // 2  # most batches near 1 MiB, none of it all
