"""`driftline model validate` on a real stack: gates decide, the registry records why."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import time

from driftline.inference import SyntheticFeatures, train_logistic
from driftline.lineage.events import LifecycleEvent
from driftline.streams.control.identity import create_actor
from driftline.streams.control.model_commands import ModelCommands
from driftline.streams.kafka.codecs import codec_for
from driftline.streams.kafka.topics import Topics
from tests.integration.helpers import read_topic, write_model


def write_holdout(path, seed: int, rows: int = 2_000) -> None:
    generator = SyntheticFeatures(16, seed=seed)
    generator.sample(2_000)  # the rows write_model(seed) trained on
    x, y = generator.sample(rows)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([*generator.feature_names, "label"])
        writer.writerows([*map(float, row), int(label)] for row, label in zip(x, y, strict=True))


def validate(stack_env, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "driftline.streams.cli", "model", "validate", *args],
        env=os.environ | stack_env.env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_gates_reject_a_worse_candidate_and_validate_a_good_one(stack_env, start_worker, tmp_path):
    settings = stack_env.settings()
    create_actor(settings, "carol", ["ci"])
    start_worker()
    commands = ModelCommands.from_settings(settings)
    champion, _ = commands.register(write_model(tmp_path, seed=1), "demo", actor="alice")
    commands.promote("demo", champion.version, actor="bob")
    holdout = tmp_path / "holdout.csv"
    write_holdout(holdout, seed=1)

    # Trained on another population: worse than the champion on these rows.
    worse, _ = commands.register(write_model(tmp_path, seed=2), "demo", actor="alice")
    result = validate(stack_env, "demo", "--version", str(worse.version), "--holdout", str(holdout),
                      "--actor", "carol")  # fmt: skip
    assert result.returncode == 3, result.stdout + result.stderr
    assert "regression.auc" in result.stdout and "rejected" in result.stdout

    good_path = tmp_path / "good.onnx"
    good_path.write_bytes(train_logistic(n_features=16, n_samples=3_000, seed=1).onnx_bytes)
    good, _ = commands.register(good_path, "demo", actor="alice")
    result = validate(stack_env, "demo", "--version", str(good.version), "--holdout", str(holdout),
                      "--actor", "carol")  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "validated" in result.stdout

    registry = commands.registry()
    assert registry.get("demo", worse.version).state == "rejected"
    assert registry.get("demo", good.version).state == "validated"
    lifecycle = Topics(settings.kafka.topic_prefix).lifecycle
    codec = codec_for(settings)
    events = [
        LifecycleEvent.from_avro(codec.decode_as("LifecycleEvent", m.value()))
        for m in read_topic(stack_env.bootstrap, lifecycle, settings.kafka.partitions)
    ]
    [rejection] = [e for e in events if e.type == "rejected"]
    gates = rejection.evidence["gates"]
    assert "regression.auc" in gates["failed"]
    assert gates["comparison"]["auc"]["champion"] > gates["comparison"]["auc"]["candidate"]
    assert gates["holdout"]["rows"] == 2_000
    assert gates["latency"]["p99_ms"] > 0
    assert gates["integrity"]["signature_ok"] is True
    assert rejection.actor == "carol"


def test_validate_without_a_holdout_says_how_to_give_one(stack_env, tmp_path):
    result = validate(stack_env, "demo", "--version", "1")
    assert result.returncode != 0
    assert "--holdout FILE" in result.stdout + result.stderr


def test_the_policy_gates_each_registered_version_itself(stack_env, start_worker, tmp_path):
    settings = stack_env.settings()
    write_holdout(tmp_path / "holdout.csv", seed=1)
    (stack_env.data_dir / "policy.toml").write_text(
        f'[gates]\nholdout = "{tmp_path / "holdout.csv"}"\nlatency_budget_ms = 1000\n'
    )
    start_worker(DRIFTLINE_POLICY_INTERVAL_S="0.5")
    commands = ModelCommands.from_settings(settings)
    champion, _ = commands.register(write_model(tmp_path, seed=1), "demo", actor="alice")
    commands.promote("demo", champion.version, actor="bob")
    worse, _ = commands.register(write_model(tmp_path, seed=2), "demo", actor="alice")

    def state() -> str:
        return commands.registry().get("demo", worse.version).state

    deadline = time.monotonic() + 60
    while state() == "registered" and time.monotonic() < deadline:
        time.sleep(0.5)
    assert state() == "rejected"
    [entry] = [h for h in commands.registry().history("demo") if h.event_type == "rejected"]
    assert entry.actor == "policy"
    assert "regression.auc" in entry.evidence["gates"]["failed"]
