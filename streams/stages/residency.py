"""The start-up residency check of a worker with the lineage role: the ClickHouse store
must be in an allowed region, or the worker does not start, and the refusal is audited
(see :mod:`driftline.lineage.audit.residency`)."""

from __future__ import annotations

import logging

from driftline.core.settings import Settings
from driftline.lineage.audit.residency import region_refusal, residency_refusal
from driftline.lineage.exceptions import RegionNotAllowed
from driftline.lineage.store.clickhouse import redact_dsn
from driftline.streams.exceptions import BrokerUnavailable
from driftline.streams.kafka.audit_records import AuditKafka
from driftline.streams.kafka.codecs import codec_for
from driftline.streams.stages.checkpointing import writer_private_key

log = logging.getLogger(__name__)


def refuse_store_outside_regions(settings: Settings, bootstrap: str) -> None:
    """Raise RegionNotAllowed, after sending the refusal to the registry for the audit
    log, when the ClickHouse store is outside DRIFTLINE_DATA_ALLOWED_REGIONS."""
    store = f"ClickHouse store {redact_dsn(settings.clickhouse_dsn)}"
    region = settings.clickhouse.region
    reason = region_refusal(
        store, region, settings.data.allowed_region_set, "DRIFTLINE_CLICKHOUSE_REGION"
    )
    if reason is not None:
        _refuse(settings, bootstrap, "clickhouse", region, reason)


def refuse_feature_store_outside_regions(
    settings: Settings, bootstrap: str, *, audited: bool
) -> None:
    """The same for the feature store a worker enriches or checks skew from
    (DRIFTLINE_FEATURES_REGION). ``audited``: this worker holds the lineage writer's key
    and sends the refusal to the registry; a worker without it only refuses, and says so."""
    repo = settings.features.repo
    if repo is None:
        return
    region = settings.features.region
    reason = region_refusal(
        f"feature store {repo}", region, settings.data.allowed_region_set,
        "DRIFTLINE_FEATURES_REGION",
    )  # fmt: skip
    if reason is None:
        return
    if not audited:
        raise RegionNotAllowed(
            f"{reason}; not audited by this worker (no lineage role): the lineage worker "
            "refuses the same store on record"
        )
    _refuse(settings, bootstrap, "feature_store", region, reason)


def _refuse(settings: Settings, bootstrap: str, kind: str, region, reason: str) -> None:
    command = residency_refusal(
        kind, region, reason, settings.audit.writer_key, writer_private_key(settings)
    )
    try:
        # The commands topic keeps it: the registry records it when one runs.
        AuditKafka(settings, bootstrap, codec_for(settings)).publish_command(command, 30.0)
        recorded = f"the refusal is audited (command {command.command_id})"
    except BrokerUnavailable as exc:
        log.error("the residency refusal could not be sent to the registry: %s", exc)
        recorded = f"the refusal could not be sent to the registry for the audit log: {exc}"
    raise RegionNotAllowed(f"{reason}; {recorded}")
