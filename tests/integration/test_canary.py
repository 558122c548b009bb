"""The policy moves a canary through its steps on live traffic, or rolls it back."""

from __future__ import annotations

import time

import numpy as np

from driftline.inference import train_logistic
from driftline.streams.control.model_commands import ModelCommands
from driftline.streams.demo.loadgen import produce_frames_at_rate, synthetic_frames
from driftline.streams.kafka.producer import FeatureProducer
from tests.integration.helpers import wait_until, write_model

POLICY = """
[canary]
steps = [20, 50, 100]
bake_s = 1
min_samples = 100
min_outcomes = 100
max_latency_p99_ms = 60000
max_error_rate_increase = 0.1
# Arms are routed whole frames of 250 rows, so after a few frames an arm's mean score
# is noisy (0.18 apart seen for arms of one population): the shift guardrail has its own
# tests in test_policy.py and tests/unit; here it must not decide.
max_score_shift = 0.5

# Only the champion rule: here the canary's fate is decided by its guardrails, not by
# the drift reflex (which would pause a canary whose errors drift: test_policy.py).
[[drift_rules]]
name = "champion-errors"
action = "rollback"
arms = ["champion"]
streams = ["error"]
"""


def deploy_candidate(stack_env, start_worker, tmp_path, policy: str, action: str, percent: str):
    """A worker with ``policy``; v1 champion; v2 (same population) as canary or challenger."""
    settings = stack_env.settings()
    (stack_env.data_dir / "policy.toml").write_text(policy)
    worker = start_worker(DRIFTLINE_POLICY_INTERVAL_S="0.5")
    commands = ModelCommands.from_settings(settings)
    v1, _ = commands.register(write_model(tmp_path, seed=1), "demo", actor="alice")
    commands.promote("demo", v1.version, actor="bob")
    # Same population, another sample: scores like the champion (no score shift).
    path = tmp_path / "v2.onnx"
    path.write_bytes(train_logistic(n_features=16, n_samples=3_000, seed=1).onnx_bytes)
    v2, _ = commands.register(path, "demo", actor="alice")
    commands.send("validate", "demo", v2.version, "alice")
    commands.send(action, "demo", v2.version, "alice", {"percent": percent})
    return settings, worker, commands, v2.version


def start(stack_env, start_worker, tmp_path):
    return deploy_candidate(stack_env, start_worker, tmp_path, POLICY, "canary", "20")


def serve_with_outcomes(
    settings, stack_env, worker, until, canary_wrong=0.1, seconds=120, arm_wrong=None
):
    """Frames in, outcomes back until ``until()``: wrong at 10%, the canary's and the
    challenger's at ``canary_wrong``, other arms as ``arm_wrong`` says."""
    producer = FeatureProducer(settings, stack_env.bootstrap)
    db = settings.clickhouse.database
    rng = np.random.default_rng(0)
    labelled: set[str] = set()
    deadline = time.monotonic() + seconds
    seed = 0
    while time.monotonic() < deadline and not until():
        seed += 1
        frames = synthetic_frames(
            model="demo", count=500, entities=5_000, seed=seed, n_features=16, frame_size=250
        )
        produce_frames_at_rate(producer, frames, rate=0)
        time.sleep(0.5)
        rows = worker.sql(f"SELECT prediction_id, arm, score FROM {db}.predictions FINAL")
        for prediction_id, arm, score in rows:
            if prediction_id in labelled:
                continue
            labelled.add(prediction_id)
            rates = {"canary": canary_wrong, "challenger": canary_wrong} | (arm_wrong or {})
            wrong = rates.get(arm, 0.1)
            producer.send_outcome(prediction_id, float((score >= 0.5) != (rng.random() < wrong)))
        producer.flush()
    return until()


def policy_events(commands, version):
    return [h for h in commands.registry().history("demo") if h.actor == "policy"
            and h.version == version]  # fmt: skip


def test_canary_advances_step_by_step_and_is_promoted(stack_env, start_worker, tmp_path):
    settings, worker, commands, v2 = start(stack_env, start_worker, tmp_path)

    def promoted() -> bool:
        return commands.registry().get("demo", v2).state == "champion"

    assert serve_with_outcomes(settings, stack_env, worker, promoted), (
        f"not promoted; policy: {worker.get('/driftline/policy/')}"
    )
    events = policy_events(commands, v2)
    assert [h.event_type for h in events] == ["traffic_changed", "promoted"]
    step, promotion = events
    assert step.evidence["action"] == "advance" and step.evidence["next_percent"] == 50
    guardrails = {g["name"]: g for g in promotion.evidence["guardrails"]}
    assert guardrails["error_rate"]["status"] == "pass"
    assert promotion.evidence["canary"]["n_outcomes"] >= 100
    assert promotion.evidence["test"]["n_treatment"] >= 100
    wait_until(lambda: worker.get("/driftline/models/")["demo"]["version"] == v2, what="v2 served")


def test_a_worse_canary_is_rolled_back(stack_env, start_worker, tmp_path):
    settings, worker, commands, v2 = start(stack_env, start_worker, tmp_path)

    def archived() -> bool:
        return commands.registry().get("demo", v2).state == "archived"

    assert serve_with_outcomes(settings, stack_env, worker, archived, canary_wrong=0.5), (
        f"not rolled back; policy: {worker.get('/driftline/policy/')}"
    )
    [event] = policy_events(commands, v2)
    assert event.event_type == "archived"
    assert event.evidence["action"] == "rollback"
    breached = {g["name"] for g in event.evidence["guardrails"] if g["status"] == "breach"}
    assert breached & {"error_rate", "sequential_error_test"}, breached
    assert "score_shift" not in breached
