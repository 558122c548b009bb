"""Drift-triggered rollback latency on the embedded stack.

    python -m bench.bench_policy [TRIALS]

Each trial registers and promotes a new champion, publishes a DriftEvent on its
error stream, and times how long until the `rolled_back` lifecycle event signed
by the policy actor appears (target: under 2 s). Printed beside it, as the
baseline measured in the same run, is a manual `driftline model rollback` sent
by an approver: the same path through the registry agent without the policy.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from confluent_kafka import Producer

from bench.arguments import Count, read_counts
from driftline.core.settings import load_settings
from driftline.inference import train_logistic
from driftline.streams.control.identity import create_actor
from driftline.streams.control.model_commands import ModelCommands
from driftline.streams.embedded.processes import free_port, stop_child
from driftline.streams.embedded.tansu import TansuBroker
from driftline.streams.kafka.codecs import codec_for
from driftline.streams.kafka.lifecycle_topic import LifecycleWatcher
from driftline.streams.kafka.provision import prepare_topics
from driftline.streams.kafka.topics import Topics


def _drift_record(model: str, version: int) -> dict:
    return {
        "event_id": uuid.uuid4().hex,
        "model": model,
        "version": version,
        "arm": "champion",
        "detector": "adwin",
        "feature": "",
        "statistic": 0.2,
        "threshold": 0.05,
        "p_value": None,
        "window_size": 1000,
        "evidence": json.dumps({"stream": "error"}),
        "detected_at": time.time_ns() // 1_000_000,
    }


# Who the benchmarks act as: a trainer registers, an approver promotes (four eyes).
ACTORS = (("trainer", "data-scientist"), ("approver", "approver"), ("policy", "policy"))


def create_actors(settings) -> None:
    """Keys and roles for :data:`ACTORS` in the settings' roles file."""
    for actor, role in ACTORS:
        create_actor(settings, actor, [role])


def new_champion(commands: ModelCommands, workdir: Path, seed: int, name: str = "bench") -> int:
    """Train a 16-feature logistic model, register it as the trainer and promote it as the
    approver, through the registry agent (signed commands); returns its version."""
    path = workdir / f"m{seed}.onnx"
    path.write_bytes(train_logistic(16, 2_000, seed=seed).onnx_bytes)
    event, _ = commands.register(path, name, actor="trainer")
    commands.promote(name, event.version, actor="approver")
    return event.version


def main(argv: list[str] | None = None) -> None:
    trials = read_counts("bench.bench_policy", __doc__, argv,
                         Count("trials", 10, "rollbacks to time")).trials  # fmt: skip
    workdir = Path(tempfile.mkdtemp(prefix="driftline-bench-policy-"))
    with TansuBroker(log_file=workdir / "tansu.log") as broker:
        env = {
            "DRIFTLINE_KAFKA_BOOTSTRAP": broker.bootstrap,
            "DRIFTLINE_KAFKA_TOPIC_PREFIX": f"b{uuid.uuid4().hex[:8]}.",
            "DRIFTLINE_DATA_DIR": str(workdir / "data"),
            "DRIFTLINE_TELEMETRY_LOG_LEVEL": "WARNING",
            "DRIFTLINE_WORKER_WEB_PORT": str(free_port()),
        }
        os.environ.update(env)
        settings = load_settings()
        prepare_topics(settings, broker.bootstrap)
        create_actors(settings)
        with open(workdir / "worker.log", "ab") as log:
            worker = subprocess.Popen(
                [sys.executable, "-m", "driftline.streams.cli", "worker"], stdout=log, stderr=log
            )
        try:
            commands = ModelCommands.from_settings(settings)
            codec = codec_for(settings)
            topics = Topics(settings.kafka.topic_prefix)
            producer = Producer(settings.kafka.librdkafka_config(broker.bootstrap))
            policy, manual = [], []

            new_champion(commands, workdir, 1000)  # the first champion: nothing to roll back to
            for trial in range(trials):
                version = new_champion(commands, workdir, trial)
                watcher = LifecycleWatcher(settings, broker.bootstrap, topics.lifecycle)
                record = _drift_record("bench", version)
                started = time.perf_counter()
                producer.produce(topics.name("drift"), codec.encode("DriftEvent", record))
                producer.flush(10)
                event = watcher.wait_until(codec, lambda e: e.type == "rolled_back", 30)
                if event is None or event.actor != "policy":
                    raise RuntimeError(f"trial {trial}: no policy rollback; see {workdir}")
                policy.append(time.perf_counter() - started)
                version = new_champion(commands, workdir, trial + 500)
                started = time.perf_counter()
                commands.send("rollback", "bench", None, "approver")
                manual.append(time.perf_counter() - started)
        finally:
            stop_child(worker, name="worker")

    def row(label: str, values: list[float]) -> str:
        ms = sorted(v * 1000 for v in values)
        median = statistics.median(ms)
        return f"{label:<44} median {median:7.0f} ms   max {ms[-1]:7.0f} ms"

    print(f"\ndrift-triggered rollback, {trials} trials (embedded Tansu, one worker)")
    print(row("drift event -> policy's rolled_back event", policy))
    print(row("baseline: manual rollback command -> event", manual))
    ratio = statistics.median(policy) / statistics.median(manual)
    print(f"policy / manual median: {ratio:.2f}x; target: under 2,000 ms")


if __name__ == "__main__":
    main()
