"""Validating a version: its verified artifact through the quality gates, beside the champion.

The candidate and the champion are read from the artifact store and verified (digest,
and the registering actor's signature when the roles file has the key), scored on a
labelled holdout, timed, and compared. :func:`gate_evidence` is what the ``validate`` or
``reject`` command carries, so the decision lands in the audit log with every number.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from driftline.inference.model import LoadedModel
from driftline.lineage.artifacts.store import ArtifactStore
from driftline.lineage.exceptions import DigestMismatch, LineageError
from driftline.lineage.promotion.gates import GateReport, Integrity, evaluate_gates
from driftline.lineage.promotion.holdout import Holdout
from driftline.lineage.promotion.policy import PromotionPolicy
from driftline.lineage.registry.versions import ModelVersion
from driftline.lineage.trust.roles import Roles


class VersionLookup(Protocol):
    """The registry queries validation needs."""

    def get(self, name: str, version: int) -> ModelVersion: ...
    def champion(self, name: str) -> ModelVersion | None: ...


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


def verified_model(
    store: ArtifactStore, version: ModelVersion, roles: Roles | None
) -> tuple[LoadedModel, Integrity]:
    """The version's model, loaded from bytes that match its digest, and what was checked."""
    signer = version.signed_by
    key = roles.keyring[signer].public_key if roles and signer in roles.keyring else None
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
        raise DigestMismatch(
            f"{version.name} v{version.version}: artifact failed its digest check: {exc}"
        ) from exc
    model = LoadedModel.load(
        data, name=version.name, version=version.version, expected_digest=version.digest
    )
    return model, Integrity(True, signature_ok, "; ".join(detail))


def validate(
    registry: VersionLookup,
    store: ArtifactStore,
    roles: Roles | None,
    policy: PromotionPolicy,
    name: str,
    version: int,
    holdout: Holdout,
) -> Validation:
    """Run ``policy``'s gates on ``name`` v``version`` against the current champion."""
    candidate_version = registry.get(name, version)
    champion_version = registry.champion(name)
    if champion_version is not None and champion_version.version == version:
        champion_version = None
    candidate, integrity = verified_model(store, candidate_version, roles)
    champion = verified_model(store, champion_version, roles)[0] if champion_version else None
    report = evaluate_gates(
        candidate, holdout, policy.gates, champion=champion, integrity=integrity
    )
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
