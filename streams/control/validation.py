"""`driftline model validate`: run the quality gates and publish `validated` or `rejected`.

The gates themselves are :mod:`driftline.lineage.promotion.validation`; this module finds
what they need from the settings (the policy file, the holdout, the registry as the
lifecycle topic says, the artifact store, the roles file) and sends the outcome as a
lifecycle command signed by the actor running it.
"""

from __future__ import annotations

import json
from pathlib import Path

from driftline.core.settings import Settings
from driftline.lineage.promotion.policy import PromotionPolicy
from driftline.lineage.promotion.validation import (
    Validation,
    gate_evidence,
    load_holdout,
    validate,
)
from driftline.lineage.trust.rbac import EVIDENCE_ARGUMENT
from driftline.streams.artifact_store import artifact_store
from driftline.streams.control.model_commands import ModelCommands
from driftline.streams.exceptions import StreamsError
from driftline.streams.stages.roles_source import RolesSource


def run_gates(
    settings: Settings,
    name: str,
    version: int,
    *,
    holdout: Path | None = None,
    label_column: str | None = None,
    policy_file: Path | None = None,
) -> Validation:
    policy = PromotionPolicy.load(policy_file or settings.policy_file)
    holdout = holdout or policy.holdout
    if holdout is None:
        raise StreamsError(
            "validate runs the quality gates on labelled rows: give --holdout FILE (CSV or "
            f"Parquet with a label column) or set holdout under [gates] in {settings.policy_file}"
        )
    rows = load_holdout(Path(holdout), label_column or policy.label_column)
    registry = ModelCommands.from_settings(settings).registry()
    roles = RolesSource(settings.roles_file).current()
    return validate(registry, artifact_store(settings), roles, policy, name, version, rows)


def publish(settings: Settings, validation: Validation, actor: str):
    """Send `validate` or `reject` with the gate evidence; returns the lifecycle event."""
    action = "validate" if validation.report.passed else "reject"
    evidence = gate_evidence(validation)
    arguments = {EVIDENCE_ARGUMENT: json.dumps(evidence, sort_keys=True, allow_nan=False)}
    commands = ModelCommands.from_settings(settings)
    version = validation.version
    return commands.send(action, version.name, version.version, actor, arguments)
