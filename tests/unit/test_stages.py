"""Each worker stage, one batch at a time, without a broker (driftline.streams.testing).

Whatever the stage, every consumed message ends as an output or as a dead letter with a
reason, and the batch is delivered before anything would be acknowledged.
"""

from __future__ import annotations

import hashlib
import time

import numpy as np
import pytest

from driftline.drift.config import DriftConfig
from driftline.inference import LoadedModel, Router, train_logistic
from driftline.lineage.events import LifecycleEvent
from driftline.lineage.promotion.policy import PromotionPolicy
from driftline.lineage.registry.model_registry import ModelRegistry
from driftline.lineage.trust import keys
from driftline.lineage.trust.commands import new_command
from driftline.lineage.trust.roles import write_example_roles
from driftline.schemas.testing import sample
from driftline.streams.stages.outcome_join import OutcomeJoiner
from driftline.streams.stages.policy_reflex import DriftPolicyAgent, PolicySigner
from driftline.streams.stages.registry_agent import RegistryAgent
from driftline.streams.stages.roles_source import RolesSource
from driftline.streams.stages.scoring import ScoringPipeline
from driftline.streams.stages.stage import Stage
from driftline.streams.testing import StageRig

KEYS = {name: keys.generate_key(name) for name in ("alice", "approver", "policy")}
GARBAGE = b"\x00\x00\x00\x00\x09not avro"


def _accounted(rig: StageRig, batch, outputs: int, dead: int, consumed: int) -> None:
    assert outputs + dead == consumed
    assert batch.remaining == 0 and not batch.failed  # delivered: safe to acknowledge


# -- scoring ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained():
    return train_logistic(n_features=4, n_samples=400, seed=1)


def _scoring(rig: StageRig, router: Router) -> ScoringPipeline:
    return rig.scoring(router)


def _features(rig: StageRig, i: int, values: list[float], model: str = "fraud"):
    record = sample(
        "FeatureRecord",
        record_id=f"r-{i}",
        entity_id=f"e-{i}",
        model=model,
        features=values,
        feature_names=None,
    )
    return rig.message("features", "FeatureRecord", record, key=f"e-{i}".encode())


def test_scoring_predicts_what_it_can_and_dead_letters_the_rest(trained):
    rig = StageRig()
    router = Router()
    router.set_champion(
        LoadedModel.load(
            trained.onnx_bytes, name="fraud", version=1, expected_digest=trained.digest
        )
    )
    stage: Stage = _scoring(rig, router)
    messages = [_features(rig, i, [0.1 * i, 1.0, -0.5, 2.0]) for i in range(5)]
    messages += [
        rig.raw("features", GARBAGE),  # not the wire format
        _features(rig, 5, [1.0, 2.0]),  # two features for a four-feature model
        _features(rig, 6, [float("nan"), 1.0, 1.0, 1.0]),  # not finite
        _features(rig, 7, [0.0, 0.0, 0.0, 0.0], model="churn"),  # nothing serves churn
    ]
    batch = rig.run(stage, messages)
    predictions = rig.produced("predictions", "Prediction")
    dead = rig.dead()
    _accounted(rig, batch, len(predictions), len(dead), len(messages))
    assert sorted(p["record_id"] for p in predictions) == [f"r-{i}" for i in range(5)]
    assert all(
        (p["model"], p["version"], p["arm"]) == ("fraud", 1, "champion") for p in predictions
    )
    expected = trained_scores(trained, [[0.1 * i, 1.0, -0.5, 2.0] for i in range(5)])
    got = [p["score"] for p in sorted(predictions, key=lambda p: p["record_id"])]
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    reasons = sorted(d["reason"] for d in dead)
    assert len(reasons) == 4 and all(reasons)
    assert {d["offset"] for d in dead} == {5, 6, 7, 8}


def trained_scores(trained, rows: list[list[float]]) -> list[float]:
    model = LoadedModel.load(
        trained.onnx_bytes, name="m", version=1, expected_digest=trained.digest
    )
    return model.predict(np.asarray(rows, dtype=np.float32)).score.tolist()


# -- registry -----------------------------------------------------------------------------


@pytest.fixture
def registry_stage(tmp_path):
    rig = StageRig()
    roles = write_example_roles(
        tmp_path / "roles.toml", {n: k.private_key.public_key() for n, k in KEYS.items()}
    )
    registry = ModelRegistry()
    digest = hashlib.sha256(b"fraud-1").hexdigest()
    description = {"input_name": "x", "input_shape": "[null, 4]", "feature_names": "null"}
    event = registry.plan_register("fraud", description, digest, f"{digest}.onnx", "alice")
    assert isinstance(event, LifecycleEvent) and registry.apply(event)
    agent = RegistryAgent(
        codec=rig.codec,
        registry=registry,
        roles=RolesSource(roles),
        delivery=rig.delivery,
        dead_letters=rig.dead_letters,
        lifecycle_topic="lifecycle",
        audit_writer=lambda: None,
    )
    return rig, agent, registry


def _command(rig: StageRig, action: str, actor: str, version: int = 1, signer: str | None = None):
    command = new_command(action, "fraud", version, actor, {}).signed(
        KEYS[signer or actor].private_key
    )
    return command, rig.message("commands", "LifecycleCommand", command.to_avro())


def test_the_registry_answers_each_command_once_and_dead_letters_garbage(registry_stage):
    rig, agent, registry = registry_stage
    promote, promote_message = _command(rig, "promote", "approver")
    _, forged = _command(rig, "promote", "approver", signer="alice")  # a name, another key
    messages = [promote_message, forged, rig.raw("commands", GARBAGE)]
    batch = rig.run(agent, messages)
    events = rig.produced("lifecycle", "LifecycleEvent")
    dead = rig.dead()
    _accounted(rig, batch, len(events), len(dead), len(messages))
    assert [e["type"] for e in events] == ["promoted", "command_rejected"]
    assert registry.champion("fraud").version == 1
    assert [d["offset"] for d in dead] == [2]

    # The same command redelivered (a crash before the commit) is answered by its event.
    again = rig.run(agent, [rig.message("commands", "LifecycleCommand", promote.to_avro())])
    assert rig.produced("lifecycle", "LifecycleEvent") == [] and rig.dead() == []
    assert again.remaining == 0


# -- policy (the drift reflex) ------------------------------------------------------------


def test_the_drift_reflex_signs_a_rollback_and_dead_letters_garbage(tmp_path):
    rig = StageRig()
    policy_file = tmp_path / "policy.toml"
    policy_file.write_text(
        '[[drift_rules]]\nname = "champion-drift"\naction = "rollback"\narms = ["champion"]\n'
    )
    key_dir = tmp_path / "keys"
    keys.save_keypair(key_dir, KEYS["policy"])
    promotion = PromotionPolicy.load(policy_file)
    signer = PolicySigner(
        actor="policy",
        key_path=key_dir / "policy.key",
        codec=rig.codec,
        delivery=rig.delivery,
        commands_topic="commands",
        stats=rig.stats,
        source=promotion.source,
    )
    agent = DriftPolicyAgent(
        policy=promotion,
        signer=signer,
        codec=rig.codec,
        delivery=rig.delivery,
        dead_letters=rig.dead_letters,
    )
    # Detected now: a rule counts the events within its window (600 s by default).
    drift = sample("DriftEvent", arm="champion", version=3, detected_at=time.time_ns() // 10**6)
    messages = [rig.message("drift", "DriftEvent", drift), rig.raw("drift", GARBAGE)]
    batch = rig.run(agent, messages)
    commands = rig.produced("commands", "LifecycleCommand")
    dead = rig.dead()
    _accounted(rig, batch, len(commands), len(dead), len(messages))
    (command,) = commands
    # A champion is rolled back as the model's champion, with the drift as its evidence.
    assert (command["action"], command["model"], command["version"]) == ("rollback", "fraud", None)
    assert "drift-1" in command["arguments"]["evidence"]
    assert command["actor"] == "policy" and command["signature"]
    assert dead[0]["offset"] == 1


# -- the outcomes join --------------------------------------------------------------------


def test_outcomes_are_routed_to_the_join_and_garbage_is_dead_lettered():
    rig = StageRig()
    joiner = OutcomeJoiner(
        config=DriftConfig(),
        wait_ms=60_000,
        max_pending=1000,
        partitions=2,
        codec=rig.codec,
        delivery=rig.delivery,
        dead_letters=rig.dead_letters,
        join_topic="join",
        summaries_topic="summaries",
        state_topic="state",
        state_producer=rig.producer,
        stats=rig.stats,
    )
    outcome = sample("Outcome")
    messages = [rig.message("outcomes", "Outcome", outcome), rig.raw("outcomes", GARBAGE)]
    batch = rig.run(joiner.route, messages)
    routed = rig.producer.take("join")
    dead = rig.dead()
    _accounted(rig, batch, len(routed), len(dead), len(messages))
    assert [d["offset"] for d in dead] == [1]
