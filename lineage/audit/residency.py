"""Residency of the stores: a store outside the allowed regions is refused, on record.

``DRIFTLINE_DATA_ALLOWED_REGIONS`` guards every place driftline keeps data: the artifact
store (``DRIFTLINE_DATA_REGION``, refused at registration, see
:mod:`driftline.lineage.artifacts.store`), the ClickHouse store
(``DRIFTLINE_CLICKHOUSE_REGION``, refused when a worker with the lineage role starts) and
the feature store. A store refused at start-up cannot record the refusal itself, so the
worker sends the registry a ``residency`` command signed with the lineage writer's key,
and the registry publishes a ``command_rejected`` event (check ``region``) in the
``_residency`` audit chain, which no model can be named.
"""

from __future__ import annotations

from collections.abc import Iterable

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from driftline.lineage.audit.checkpoints import WriterKey
from driftline.lineage.events import LifecycleEvent
from driftline.lineage.trust.commands import LifecycleCommand, new_command
from driftline.lineage.trust.rbac import rejected

RESIDENCY = "residency"
RESIDENCY_CHAIN = "_residency"


def region_refusal(
    store: str, region: str | None, allowed: Iterable[str] | None, setting: str
) -> str | None:
    """Why ``store`` in ``region`` may not be used under the ``allowed`` regions, or None.
    An unset region is refused too when an allow-list is set: nobody said where it is."""
    if allowed is None:
        return None
    allowed = sorted(allowed)
    if region in allowed:
        return None
    where = f"in region {region!r}" if region else f"of unknown region ({setting} is unset)"
    return (
        f"the {store} is {where}, which is not in the allowed regions {allowed} "
        f"(DRIFTLINE_DATA_ALLOWED_REGIONS); move it or set {setting} to where it is"
    )


def residency_refusal(
    store: str,
    region: str | None,
    reason: str,
    writer: str,
    private_key: Ed25519PrivateKey,
) -> LifecycleCommand:
    """The command, signed by the lineage writer, that asks the registry to record a
    refused store."""
    return new_command(
        RESIDENCY,
        RESIDENCY_CHAIN,
        None,
        writer,
        {"store": store, "region": region or "", "refused": reason},
    ).signed(private_key)


def decide_residency(command: LifecycleCommand, writer: WriterKey | None) -> LifecycleEvent:
    """The ``command_rejected`` event (check ``region``) recording a refused store; a
    ``residency`` command not signed by the lineage writer is refused as such."""
    if (
        writer is None
        or command.key_id != writer.key_id
        or command.actor != writer.name
        or not command.verify(writer.public_key)
    ):
        return rejected(
            command,
            "signature",
            "a store's residency refusal is recorded by the lineage writer that refused it; "
            "this command is not signed by its key",
        )
    reason = command.arguments.get("refused", "")
    return rejected(command, "region", reason, signature_verified=True)
