"""Signed commands through the registry agent: accepted, refused, audited, replayable."""

from __future__ import annotations

import re

import pytest

from driftline.lineage.events import LifecycleEvent
from driftline.lineage.registry.model_registry import ModelRegistry
from driftline.lineage.trust.keys import generate_key, save_keypair
from driftline.streams.control.identity import create_actor
from driftline.streams.control.model_commands import ModelCommands
from driftline.streams.exceptions import CommandRejected
from tests.integration.helpers import wait_until, write_model

pytestmark = pytest.mark.integration


def _rejections(worker, db) -> list[list]:
    return worker.sql(
        f"SELECT actor, JSONExtractString(canonical, 'evidence', 'check') FROM {db}.audit_log "
        "WHERE event_type = 'command_rejected' ORDER BY seq"
    )


def test_refused_commands_are_audited_and_the_registry_replays_from_the_audit_log(
    stack_env, start_worker, tmp_path
):
    settings = stack_env.settings()
    db = settings.clickhouse.database
    worker = start_worker()
    commands = ModelCommands.from_settings(settings)
    v1, _ = commands.register(write_model(tmp_path, seed=1), "fraud", actor="alice")

    with pytest.raises(CommandRejected, match="rbac"):
        commands.promote("fraud", v1.version, actor="alice")  # a data scientist cannot approve

    create_actor(settings, "carol", ["data-scientist", "approver"])
    v2, _ = commands.register(write_model(tmp_path, seed=2), "fraud", actor="carol")
    with pytest.raises(CommandRejected, match="four_eyes"):
        commands.promote("fraud", v2.version, actor="carol")  # registered it herself

    # mallory signs with her own key but claims to be bob
    save_keypair(settings.key_dir, generate_key("mallory"))
    (settings.key_dir / "mallory.key").replace(settings.key_dir / "bob.key")
    with pytest.raises(CommandRejected, match="signature"):
        commands.promote("fraud", v1.version, actor="bob")

    wait_until(lambda: len(_rejections(worker, db)) == 3, what="three audited refusals")
    assert _rejections(worker, db) == [
        ["alice", "rbac"],
        ["carol", "four_eyes"],
        ["bob", "signature"],
    ]
    assert worker.get("/driftline/audit/verify/")["ok"] is True

    # The registry rebuilt from the audit log alone equals the topic's projection.
    from_topic = commands.registry()
    rows = worker.sql(f"SELECT canonical FROM {db}.audit_log WHERE model = 'fraud' ORDER BY seq")
    from_audit = ModelRegistry.from_events(LifecycleEvent.from_canonical(r[0]) for r in rows)
    assert from_audit.snapshot() == from_topic.snapshot()
    assert from_audit.history("fraud") == from_topic.history("fraud")
    assert [v.state for v in from_topic.versions("fraud")] == ["registered", "registered"]


def test_promote_then_rollback_and_answer_who_served_when(stack_env, start_worker, tmp_path):
    settings = stack_env.settings()
    worker = start_worker()
    commands = ModelCommands.from_settings(settings)
    v1, _ = commands.register(write_model(tmp_path, seed=1), "demo", actor="alice")
    first = commands.promote("demo", v1.version, actor="bob")
    v2, _ = commands.register(write_model(tmp_path, seed=2), "demo", actor="alice")
    second = commands.promote("demo", v2.version, actor="bob")
    rolled = commands.send("rollback", "demo", None, "bob", {"reason": "drift on v2"})
    assert rolled.type == "rolled_back"
    wait_until(
        lambda: worker.get("/driftline/models/").get("demo", {}).get("version") == 1,
        what="v1 served again after the rollback",
    )

    # The lineage worker signs chain heads; verification checks chains and signatures.
    db = settings.clickhouse.database
    wait_until(
        lambda: (
            worker.sql(f"SELECT max(seq) FROM {db}.audit_checkpoints WHERE model = 'demo'")[0][0]
            == 5
        ),
        what="a signed checkpoint",
    )
    report = worker.get("/driftline/audit/verify/")
    assert report["ok"] is True, report["summary"]
    assert report["summary"].startswith("audit log intact")
    signed = re.search(r"(\d+) signed checkpoint\(s\)", report["summary"])
    assert signed and int(signed.group(1)) >= 1, report["summary"]

    registry = commands.registry()
    assert registry.aliases_at("demo", first.occurred_at) == {"champion": 1}
    assert registry.aliases_at("demo", second.occurred_at) == {"champion": 2}
    assert registry.aliases_at("demo", rolled.occurred_at) == {"champion": 1}
    assert registry.aliases_at("demo", v1.occurred_at - 1) == {}
    assert [h.event_type for h in registry.history("demo")] == [
        "registered",
        "promoted",
        "registered",
        "promoted",
        "rolled_back",
    ]


def test_lineage_export_writes_openlineage_run_events(stack_env, start_worker, tmp_path):
    import json
    import os
    import subprocess
    import sys

    settings = stack_env.settings()
    start_worker()
    commands = ModelCommands.from_settings(settings)
    v1, _ = commands.register(write_model(tmp_path, seed=1), "demo", actor="alice")
    commands.promote("demo", v1.version, actor="bob")

    output = tmp_path / "lineage.jsonl"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "driftline.streams.cli",
            "lineage",
            "export",
            "--output",
            str(output),
        ],
        env=os.environ | stack_env.env,
        check=True,
    )
    runs = [json.loads(line) for line in output.read_text().splitlines()]
    assert [run["job"]["name"] for run in runs] == [
        "driftline.register.demo",
        "driftline.score.demo",
    ]
    assert all(run["eventType"] == "COMPLETE" for run in runs)
    scoring = runs[1]
    namespaces = {d["namespace"] for d in scoring["inputs"] + scoring["outputs"]}
    assert f"kafka://{stack_env.bootstrap}" in namespaces
    names = {d["name"] for d in scoring["inputs"] + scoring["outputs"]}
    assert f"{stack_env.prefix}features" in names and "driftline.predictions" in names


def test_register_keeps_metadata_and_reference_profile_pinned_in_the_chain(
    stack_env, start_worker, tmp_path
):
    import numpy as np

    from driftline.inference import SyntheticFeatures
    from driftline.lineage.artifacts.store import ArtifactStore

    settings = stack_env.settings()
    start_worker()
    training = tmp_path / "train.npy"
    np.save(training, SyntheticFeatures(16, seed=1).rows(2000))
    commands = ModelCommands.from_settings(settings)
    event, _ = commands.register(
        write_model(tmp_path, seed=1), "demo", actor="alice", training_data=training
    )
    metadata = ArtifactStore(settings.data.artifacts).metadata(
        event.attributes["digest"], expected_sha256=event.attributes["metadata_sha256"]
    )
    profile = metadata.profile()
    assert profile.n == 2000 and profile.n_features == 16
    assert metadata.offline_metrics["roc_auc"] > 0.5
    assert metadata.input_schema.shape == (None, 16)


def test_artifacts_encrypted_at_rest_are_served(stack_env, start_worker, tmp_path):
    from driftline.lineage.artifacts.crypto import generate_encryption_key

    key_file = tmp_path / "artifact.key"
    key_file.write_text(generate_encryption_key())  # base64 of 32 random bytes
    env = {"DRIFTLINE_DATA_ARTIFACT_KEY_FILE": str(key_file)}
    settings = stack_env.settings(**env)
    worker = start_worker(**env)
    commands = ModelCommands.from_settings(settings)
    model_path = write_model(tmp_path, seed=1)
    event, _ = commands.register(model_path, "demo", actor="alice")
    stored = (settings.data.artifacts / event.attributes["artifact"]).read_bytes()
    assert model_path.read_bytes() not in stored  # ciphertext on disk
    commands.promote("demo", event.version, actor="bob")
    wait_until(
        lambda: worker.get("/driftline/models/").get("demo", {}).get("version") == 1,
        what="the encrypted model decrypted, verified and served",
    )


def test_register_outside_allowed_regions_is_refused_and_audited(stack_env, start_worker, tmp_path):
    env = {"DRIFTLINE_DATA_REGION": "us-east-1", "DRIFTLINE_DATA_ALLOWED_REGIONS": "eu-west-1"}
    settings = stack_env.settings(**env)
    worker = start_worker()
    with pytest.raises(CommandRejected, match="region"):
        ModelCommands.from_settings(settings).register(
            write_model(tmp_path, seed=1), "demo", actor="alice"
        )
    assert not settings.data.artifacts.exists() or not any(settings.data.artifacts.rglob("*.onnx"))
    db = settings.clickhouse.database
    wait_until(
        lambda: _rejections(worker, db) == [["alice", "region"]],
        what="the refusal in the audit log",
    )
