"""Faults: a lineage consumer killed with SIGKILL mid-stream loses and duplicates nothing."""

from __future__ import annotations

import signal

import pytest
from confluent_kafka import Producer

from lineage.events import registered
from schemas import default_codec
from streams.topics import Topics
from tests.integration.conftest import wait_until

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
