"""The audit log against Kafka on the embedded broker: checkpoints anchored on their own
topic, a shutdown checkpoint, `driftline audit verify` cross-checking ClickHouse with
the anchor and lifecycle topics, and the audit_alarm the lineage role raises.

ClickHouse is tampered with from another process while the worker is stopped (the
embedded chDB has one owner at a time), as someone with direct write access would.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from confluent_kafka import Producer

from driftline.lineage.audit.checkpoints import Checkpoint
from driftline.lineage.events import registered
from driftline.schemas import default_codec
from driftline.streams.embedded.processes import free_port
from driftline.streams.kafka.lifecycle_topic import load_registry
from driftline.streams.kafka.topics import Topics
from tests.integration.helpers import forged_promotion, read_topic, tamper_store, wait_until

pytestmark = pytest.mark.integration

LINEAGE_ONLY = {"DRIFTLINE_WORKER_ROLES": "lineage"}


def publish(stack_env, model: str, versions: range) -> None:
    codec = default_codec()
    producer = Producer({"bootstrap.servers": stack_env.bootstrap})
    for n in versions:
        event = registered(model, n, "anchor-test", {"digest": f"{n:064x}", "artifact": "x"})
        producer.produce(
            Topics(stack_env.prefix).lifecycle,
            codec.encode("LifecycleEvent", event.to_avro()),
            key=model.encode(),
        )
    assert producer.flush(30) == 0


def cli(stack_env, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "driftline.streams.cli", *args],
        env=os.environ | stack_env.env | env,
        capture_output=True,
        text=True,
        timeout=180,
    )


def tamper(stack_env, code: str) -> None:
    tamper_store(stack_env.settings(), code)


# A forged promotion appended to fraud; churn's last row deleted with its checkpoint.
FORGE = (
    forged_promotion("fraud", 5)
    + """
    # churn's last row deleted together with its checkpoint.
    client.command(f"ALTER TABLE {db}.audit_log DELETE WHERE model = 'churn' AND seq = 3",
                   settings=SYNC)
    client.command(f"ALTER TABLE {db}.audit_checkpoints DELETE WHERE model = 'churn'",
                   settings=SYNC)
"""
)


def anchors(stack_env) -> list[Checkpoint]:
    topic = Topics(stack_env.prefix).audit_checkpoints
    return [Checkpoint.from_json(m.value()) for m in read_topic(stack_env.bootstrap, topic, 2)]


def test_anchor_topic_catches_what_clickhouse_alone_cannot(stack_env, start_worker):
    db = stack_env.settings().clickhouse.database
    # A checkpoint interval longer than the test: only the shutdown checkpoint can cover.
    worker = start_worker(DRIFTLINE_WORKER_CHECKPOINT_INTERVAL_S="3600", **LINEAGE_ONLY)
    publish(stack_env, "fraud", range(1, 6))
    publish(stack_env, "churn", range(1, 4))
    wait_until(
        lambda: worker.sql(f"SELECT count() FROM {db}.audit_log")[0][0] == 8, what="rows stored"
    )
    assert worker.sql(f"SELECT count() FROM {db}.audit_checkpoints")[0][0] == 0
    assert worker.stop() == 0
    shutdown = sorted((c.model, c.seq, c.reason) for c in anchors(stack_env))
    assert shutdown == [("churn", 3, "shutdown"), ("fraud", 5, "shutdown")]

    intact = cli(stack_env, "audit", "verify")
    assert intact.returncode == 0, intact.stdout + intact.stderr
    assert "audit log intact" in intact.stdout and "8 row(s) matched" in intact.stdout

    # No broker reachable: said so, and not "intact".
    dead = f"127.0.0.1:{free_port()}"
    unverified = cli(stack_env, "audit", "verify", DRIFTLINE_KAFKA_BOOTSTRAP=dead)
    assert unverified.returncode == 3, unverified.stdout + unverified.stderr
    assert "audit log UNVERIFIED" in unverified.stdout
    assert dead in unverified.stdout

    tamper(stack_env, FORGE)
    caught = cli(stack_env, "audit", "verify")
    assert caught.returncode == 1, caught.stdout + caught.stderr
    assert "model 'fraud' seq 6: forged: no record at" in caught.stdout
    assert "model 'churn' seq 3: checkpoint_missing" in caught.stdout
    assert "model 'churn' seq 3: row_missing" in caught.stdout
    assert "model 'churn' seq 3: truncated" in caught.stdout

    # The lineage role finds the same on its first round after a restart and sends the
    # registry a signed alarm per model, which it publishes; its projection is a freeze.
    # (The registry runs on its own: with the lineage role beside it, the worker would be
    # another consumer group, and would store the lifecycle topic again from its start.)
    start_worker(DRIFTLINE_WORKER_ROLES="registry")
    worker = start_worker(**LINEAGE_ONLY)
    settings = stack_env.settings()
    codec = default_codec()

    def frozen() -> set[str]:
        registry = load_registry(
            settings, stack_env.bootstrap, codec, Topics(stack_env.prefix).lifecycle
        )
        return {m for m in ("fraud", "churn") if registry.alarm(m) is not None}

    wait_until(lambda: frozen() == {"fraud", "churn"}, timeout_s=60, what="audit alarms")
    wait_until(
        lambda: (
            worker.sql(f"SELECT count() FROM {db}.audit_log WHERE event_type = 'audit_alarm'")[0][0]
            == 2
        ),
        what="the alarms in the audit log",
    )
    report = worker.get("/driftline/audit/verify/?model=fraud")
    assert report["ok"] is False and report["verdict"] == "NOT intact"
    assert "model 'fraud' seq 6: forged" in report["summary"]
