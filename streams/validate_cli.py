"""`driftline model validate`: run the quality gates and publish `validated` or `rejected`.

The candidate and the champion are read from the artifact store and verified
(digest, and the registering actor's signature when the roles file has the key),
scored on a labelled holdout, timed, and compared. The outcome is a lifecycle
command signed by the actor running it, carrying every number as evidence, so
the decision lands in the audit log like any other.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from driftline.core.settings import Settings
from driftline.inference import LoadedModel
from driftline.lineage.exceptions import LineageError
from driftline.lineage.promotion.gates import GateReport, Integrity, evaluate_gates
from driftline.lineage.promotion.holdout import Holdout
from driftline.lineage.promotion.policy import PromotionPolicy
from driftline.lineage.registry.versions import ModelVersion
from driftline.lineage.trust.rbac import EVIDENCE_ARGUMENT
from driftline.streams.artifact_store import artifact_store
from driftline.streams.exceptions import StreamsError
from driftline.streams.models import ModelCommands
from driftline.streams.policy_source import PolicySource


@dataclass(frozen=True)
class Validation:
    version: ModelVersion
    champion: ModelVersion | None
    report: GateReport
    policy: PromotionPolicy


def load_holdout(path: Path, label_column: str) -> Holdout:
    if path.suffix.lower() in {".parquet", ".pq"}:
        return Holdout.from_parquet(path, label_column=label_column)
    return Holdout.from_csv(path, label_column=label_column)


def _load_checked(settings: Settings, version: ModelVersion) -> tuple[LoadedModel, Integrity]:
    store = artifact_store(settings)
    policy = PolicySource(settings.roles_file).current()
    signer = version.signed_by
    key = policy.keyring[signer].public_key if policy and signer in policy.keyring else None
    signature_ok: bool | None = None
    detail = []
    if key is not None:
        try:
            store.verify_signature(version.digest, key)
            signature_ok = True
            detail.append(f"signed by {signer}")
        except LineageError as exc:
            signature_ok = False
            detail.append(str(exc))
    else:
        detail.append("no signer key in the roles file: signature not checked")
    try:
        data = store.read_verified(version.artifact, version.digest)
    except LineageError as exc:
        raise StreamsError(
            f"{version.name} v{version.version}: artifact failed its digest check: {exc}"
        ) from exc
    model = LoadedModel.load(
        data, name=version.name, version=version.version, expected_digest=version.digest
    )
    return model, Integrity(True, signature_ok, "; ".join(detail))


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
    candidate_version = registry.get(name, version)
    champion_version = registry.champion(name)
    if champion_version is not None and champion_version.version == version:
        champion_version = None
    candidate, integrity = _load_checked(settings, candidate_version)
    champion = _load_checked(settings, champion_version)[0] if champion_version else None
    report = evaluate_gates(candidate, rows, policy.gates, champion=champion, integrity=integrity)
    return Validation(candidate_version, champion_version, report, policy)


def gate_evidence(validation: Validation) -> dict:
    report = validation.report
    failed = ", ".join(c.name for c in report.failures())
    return {
        "reason": "quality gates passed" if report.passed else f"quality gates failed: {failed}",
        "gates": report.evidence(),
        "champion_version": validation.champion.version if validation.champion else None,
        "policy_source": validation.policy.source,
    }


def publish(settings: Settings, validation: Validation, actor: str):
    """Send `validate` or `reject` with the gate evidence; returns the lifecycle event."""
    action = "validate" if validation.report.passed else "reject"
    evidence = gate_evidence(validation)
    arguments = {EVIDENCE_ARGUMENT: json.dumps(evidence, sort_keys=True, allow_nan=False)}
    commands = ModelCommands.from_settings(settings)
    version = validation.version
    return commands.send(action, version.name, version.version, actor, arguments)
