"""Small helpers for integration tests: a trained model on disk, reading a topic."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition

from driftline.inference import train_logistic
from driftline.schemas import default_codec
from driftline.streams.control.model_commands import ModelCommands
from driftline.streams.kafka.offsets import watermarks
from driftline.streams.kafka.topics import Topics


def write_model(directory: Path, *, seed: int, n_features: int = 16) -> Path:
    trained = train_logistic(n_features=n_features, n_samples=2_000, seed=seed)
    path = directory / f"model-seed{seed}.onnx"
    path.write_bytes(trained.onnx_bytes)
    return path


def wait_until(
    predicate: Callable[[], bool], timeout_s: float = 30.0, what: str | Callable[[], str] = ""
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(
        f"timed out after {timeout_s}s waiting for {what() if callable(what) else what}"
    )


def serve_model(settings, worker, tmp_path: Path, *, seed: int = 1, name: str = "demo") -> int:
    """Register a trained model as alice, promote it as bob, wait until ``worker`` serves
    it; returns the version."""
    commands = ModelCommands.from_settings(settings)
    event, _ = commands.register(write_model(tmp_path, seed=seed), name, actor="alice")
    commands.promote(name, event.version, actor="bob")
    wait_until(
        lambda: worker.get("/driftline/models/").get(name, {}).get("version") == event.version,
        what=f"{name} v{event.version} served",
    )
    return event.version


def read_topic(bootstrap: str, topic: str, partitions: int, timeout_s: float = 10.0) -> list:
    """Every message currently in the topic (all partitions, from the beginning)."""
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "test-reader", "enable.auto.commit": False}
    )
    messages = []
    try:
        ends = {}
        for p in range(partitions):
            low, high = watermarks(consumer, topic, p, timeout_s=timeout_s)
            if high > low:
                ends[p] = (low, high)
        consumer.assign([TopicPartition(topic, p, low) for p, (low, _) in ends.items()])
        remaining = {p: high for p, (_, high) in ends.items()}
        # Past the end offsets, then an empty poll (Tansu under-reports end offsets).
        while True:
            batch = consumer.consume(500, timeout=1.0)
            if not batch and not remaining:
                break
            for message in batch:
                if message.error():
                    continue
                messages.append(message)
                if message.offset() + 1 >= remaining.get(message.partition(), 0):
                    remaining.pop(message.partition(), None)
    finally:
        consumer.close()
    return messages


def send_in_order(
    bootstrap: str, topic: str, values: list[tuple[bytes | None, bytes | None]]
) -> None:
    """Produce ``(key, value)`` pairs to partition 0, so good and bad keep a known order."""
    producer = Producer({"bootstrap.servers": bootstrap, "message.max.bytes": 16 * 1024**2})
    for key, value in values:
        producer.produce(topic, value, key=key, partition=0)
    assert producer.flush(30) == 0


def dead_letters(bootstrap: str, topic: str, partitions: int = 2) -> list[dict]:
    """Every DeadLetter on ``topic``, decoded."""
    codec = default_codec()
    return [
        codec.decode_as("DeadLetter", m.value()) for m in read_topic(bootstrap, topic, partitions)
    ]


def tamper_store(settings, code: str) -> None:
    """Run ``code`` (with ``client``, ``db``, ``lifecycle``, ``SYNC``) against a worker's
    chDB store from another process, as someone with direct write access would."""
    prelude = textwrap.dedent(
        f"""
        import clickhouse_connect
        client = clickhouse_connect.get_client(dsn={settings.clickhouse_dsn!r})
        db = {settings.clickhouse.database!r}
        lifecycle = {Topics(settings.kafka.topic_prefix).lifecycle!r}
        SYNC = {{"mutations_sync": 2}}
        """
    )
    subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code)], check=True, timeout=120)


def forged_promotion(model: str, version: int) -> str:
    """Code for :func:`tamper_store`: a promotion of ``model`` v``version`` by "mallory"
    appended to its audit chain, correctly linked onto the head, citing a lifecycle
    record (offset 999) that does not exist."""
    return f"""
    from driftline.lineage import events as ev
    from driftline.lineage.audit.chain import chain_hash

    (seq, head), = client.query(
        f"SELECT seq, hash FROM {{db}}.audit_log WHERE model = {model!r} ORDER BY seq DESC LIMIT 1",
        column_formats={{"hash": "string"}},
    ).result_rows
    e = ev.promoted({model!r}, {version}, "mallory", "registered", None)
    body = e.canonical_json()
    client.insert(
        f"{{db}}.audit_log",
        [[{model!r}, seq + 1, e.event_id, e.type, e.version, e.actor, e.occurred_at,
          body.decode(), head, chain_hash(head, body), lifecycle, 0, 999, e.occurred_at]],
        column_names=["model", "seq", "event_id", "event_type", "version", "actor",
                      "occurred_at", "canonical", "prev_hash", "hash", "source_topic",
                      "source_partition", "source_offset", "recorded_at"],
    )
"""


def scrape_metrics(worker_url: str) -> dict[tuple[str, frozenset], float]:
    """A worker's /metrics as (sample name, labels) -> value, parsed by prometheus_client."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(worker_url + "/metrics", timeout=10) as response:
        assert response.headers["Content-Type"].startswith("text/plain")
        text = response.read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def champions_in_turn(settings, worker, tmp_path: Path, seeds=(1, 2)) -> list[int]:
    """Register model "demo" once per seed (alice) and promote each in turn (bob); returns
    the versions once the worker serves the last."""
    from driftline.streams.control.model_commands import ModelCommands

    commands = ModelCommands.from_settings(settings)
    versions = []
    for seed in seeds:
        version, _ = commands.register(write_model(tmp_path, seed=seed), "demo", actor="alice")
        commands.promote("demo", version.version, actor="bob")
        versions.append(version.version)
    wait_until(
        lambda: worker.get("/driftline/models/").get("demo", {}).get("version") == versions[-1],
        what=f"v{versions[-1]} served",
    )
    return versions
