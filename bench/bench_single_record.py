"""Single-record path throughput, three ways over the same pre-filled topic and broker.

1. raw aiokafka consumer (the ceiling),
2. a Faust agent doing no work (the framework's own cost),
3. the driftline worker scoring a 16-feature logistic regression (inference role).

Prints records/s for each and the ratios. Usage: python bench/bench_single_record.py [N]
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition

from bench.arguments import Count, read_counts
from driftline.core.settings import TelemetrySettings, load_settings
from driftline.core.telemetry import configure_telemetry
from driftline.inference import describe_onnx, train_logistic
from driftline.lineage.artifacts.store import ArtifactStore
from driftline.lineage.registry.model_registry import ModelRegistry
from driftline.schemas import default_codec
from driftline.streams.demo.loadgen import produce_at_rate, synthetic_records
from driftline.streams.embedded.processes import free_port, stop_child
from driftline.streams.embedded.stack import http_json
from driftline.streams.embedded.tansu import TansuBroker
from driftline.streams.kafka.lifecycle_topic import publish_lifecycle
from driftline.streams.kafka.producer import FeatureProducer
from driftline.streams.kafka.provision import prepare_topics
from driftline.streams.kafka.topics import Topics

PARTITIONS = 2


def register_and_promote(settings, bootstrap: str, path: Path, name: str) -> None:
    data = path.read_bytes()
    artifact = ArtifactStore(settings.data.artifacts).put_bytes(data)
    registry, topic, codec = (
        ModelRegistry(),
        Topics(settings.kafka.topic_prefix).lifecycle,
        default_codec(),
    )
    event = registry.plan_register(
        name, describe_onnx(data).to_attributes(), artifact.digest, artifact.relpath, "bench"
    )
    registry.apply(event)
    publish_lifecycle(settings, bootstrap, codec, topic, event)
    publish_lifecycle(
        settings, bootstrap, codec, topic, registry.plan_promote(name, event.version, "bench")
    )


def fill(settings, bootstrap: str, n: int) -> float:
    producer = FeatureProducer(settings, bootstrap)
    started = time.perf_counter()
    try:
        produce_at_rate(
            producer,
            synthetic_records(model="bench", count=n, entities=10_000, seed=1, n_features=16),
            rate=0,
        )
        return n / (time.perf_counter() - started)
    finally:
        producer.close()  # else it outlives its broker and retries the address


async def raw_consumer(bootstrap: str, topic: str, n: int, partitions: int = PARTITIONS) -> float:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        group_id=None,
        max_partition_fetch_bytes=8 << 20,
    )
    await consumer.start()
    try:
        assigned = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(assigned)
        await consumer.seek_to_beginning(*assigned)
        seen, started = 0, time.perf_counter()
        while seen < n:
            batches = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            seen += sum(len(records) for records in batches.values())
        return seen / (time.perf_counter() - started)
    finally:
        await consumer.stop()


def rate_between_batches(first: float, last: float, records: int, first_size: int) -> float:
    # Measured from the end of the first batch: start-up and group join are excluded.
    return (records - first_size) / max(last - first, 1e-9)


def noop_faust(bootstrap: str, topic: str, n: int, workdir: Path) -> float:
    result = workdir / "noop.json"
    env = os.environ | {
        "APP_ID": f"noop{uuid.uuid4().hex[:8]}",
        "BOOTSTRAP": bootstrap,
        "SOURCE": topic,
        "EXPECTED": str(n),
        "RESULT_FILE": str(result),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.apps.noop_agent", "worker", "-l", "warn"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 300
        while not result.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(0.2)
        data = json.loads(result.read_text())
    finally:
        stop_child(proc, name="noop agent")
    return rate_between_batches(data["first"], data["last"], data["records"], data["first_size"])


def spawn_worker(
    env: dict, workdir: Path, label: str = "worker", **extra_env: str
) -> tuple[subprocess.Popen, str]:
    """A `driftline worker`: inference role only, drift off. Returns it and its stats URL."""
    port = free_port()
    with open(workdir / f"{label}.log", "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "driftline.streams.cli", "worker"],
            env=os.environ
            | env
            | {
                "DRIFTLINE_WORKER_WEB_PORT": str(port),
                "DRIFTLINE_WORKER_ROLES": "inference",
                "DRIFTLINE_TELEMETRY_LOG_LEVEL": "WARNING",
                # The bench records its model straight onto the topic, unsigned.
                "DRIFTLINE_WORKER_REQUIRE_SIGNED_ARTIFACTS": "false",
                # The serving path alone; bench_drift_stage turns drift on to measure its cost.
                "DRIFTLINE_DRIFT_ENABLED": "false",
            }
            | extra_env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    return proc, f"http://127.0.0.1:{port}/driftline/stats/"


def scoring_worker(env: dict, n: int, workdir: Path) -> tuple[float, dict]:
    proc, url = spawn_worker(env, workdir)
    try:
        deadline = time.monotonic() + 300
        stats: dict = {}
        while time.monotonic() < deadline:
            try:
                stats = http_json(url, timeout=2)
                if stats["records_in"] >= n:
                    break
            except OSError:
                pass
            time.sleep(0.2)
    finally:
        stop_child(proc, name="worker")
    rate = rate_between_batches(
        stats["first_batch_at"],
        stats["last_batch_at"],
        stats["records_in"],
        stats["first_batch_size"],
    )
    return rate, stats


def three_paths(bootstrap: str, n: int, workdir: Path) -> dict:
    """Fill fresh topics on the broker at ``bootstrap`` with ``n`` records and read them the
    three ways. Returns the rates (records/s: ``produced``, ``ceiling``, ``noop``,
    ``scoring``) and the scoring worker's ``stats``."""
    prefix = f"bench{uuid.uuid4().hex[:6]}."
    env = {
        "DRIFTLINE_KAFKA_BOOTSTRAP": bootstrap,
        "DRIFTLINE_KAFKA_TOPIC_PREFIX": prefix,
        "DRIFTLINE_KAFKA_PARTITIONS": str(PARTITIONS),
        "DRIFTLINE_DATA_DIR": str(workdir / "data"),
    }
    os.environ.update(env)
    settings = load_settings()
    prepare_topics(settings, bootstrap)
    topic = Topics(prefix).features

    model_path = workdir / f"{prefix}onnx"
    model_path.write_bytes(train_logistic(n_features=16, n_samples=5_000, seed=1).onnx_bytes)
    # The benchmark runs no registry agent: it records the model the way an
    # operator replaying history would, straight onto the lifecycle topic.
    register_and_promote(settings, bootstrap, model_path, "bench")

    print(f"filling {topic} with {n:,} single records (16 features, traceparent headers)...")
    produced = fill(settings, bootstrap, n)
    print(f"  produced at {produced:,.0f} rec/s")

    ceiling = asyncio.run(raw_consumer(bootstrap, topic, n))
    noop = noop_faust(bootstrap, topic, n, workdir)
    scoring, stats = scoring_worker(env, n, workdir)
    return {
        "produced": produced,
        "ceiling": ceiling,
        "noop": noop,
        "scoring": scoring,
        "stats": stats,
    }


def main(argv: list[str] | None = None) -> None:
    n = read_counts("bench.bench_single_record", __doc__, argv,
                    Count("records", 100_000, "records to score")).records  # fmt: skip
    configure_telemetry(TelemetrySettings(log_level="WARNING"))
    workdir = Path(tempfile.mkdtemp(prefix="driftline-bench-"))
    with TansuBroker(log_file=workdir / "tansu.log") as broker:
        result = three_paths(broker.bootstrap, n, workdir)
    ceiling, noop, scoring = (result[path] for path in ("ceiling", "noop", "scoring"))
    stats = result["stats"]

    print()
    print(f"{'path':<44}{'records/s':>12}{'vs ceiling':>12}{'vs no-work':>12}")
    for label, rate in [
        ("raw aiokafka consumer (ceiling)", ceiling),
        ("Faust agent, no work", noop),
        ("driftline worker scoring (logistic, 16 f)", scoring),
    ]:
        print(f"{label:<44}{rate:>12,.0f}{rate / ceiling:>12.1%}{rate / noop:>12.1%}")
    print()
    print(
        f"scoring worker: {stats['predictions_out']:,} predictions, {stats['batches']} batches, "
        f"dead letters {stats['dead_letters'] or 'none'}"
    )
    print(f"scoring worker seconds by stage: {stats['timing_s']}")
    print(
        f"targets: scoring >= 70% of no-work ({'met' if scoring >= 0.7 * noop else 'MISSED'}), "
        f">= 10,000 rec/s ({'met' if scoring >= 10_000 else 'MISSED'})"
    )


if __name__ == "__main__":
    main()
