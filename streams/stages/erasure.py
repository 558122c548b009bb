"""Erasure where the store is: the worker with the lineage role, or a CLI that opened it.

Either way an :class:`~driftline.lineage.audit.erasure.Eraser` checks and carries out the
request, and its record, signed with the lineage writer's key, goes to the commands topic
for the registry to turn into the audited ``erased`` (or ``command_rejected``) event. In
the worker the erasure runs on the store's thread, so it never races the sinks for the
chDB engine, and rows of the entity already stored are deleted before the sinks write
more.
"""

from __future__ import annotations

import asyncio
from typing import Any

from driftline.core.settings import Settings
from driftline.features.configured import open_feature_store
from driftline.features.store import FeatureStore
from driftline.lineage.audit.erasure import Eraser, ErasureOutcome
from driftline.lineage.store.clickhouse import ClickHouseClient, open_client
from driftline.lineage.trust.commands import LifecycleCommand
from driftline.lineage.trust.keys import load_private_key
from driftline.lineage.trust.roles import Roles
from driftline.streams.exceptions import StreamsError
from driftline.streams.kafka.audit_records import AuditKafka


def erasure_key(settings: Settings) -> bytes:
    """The secret of the keyed hash; erasure refuses to run without it."""
    if settings.data.erasure_key is None:
        raise StreamsError(
            "DRIFTLINE_DATA_ERASURE_KEY is not set: erasure records the entity in the audit "
            "log as a keyed hash (HMAC-SHA256) and never as its id, and will not run without "
            "the key. Set it (32+ characters, e.g. `openssl rand -base64 32`) here and where "
            "the store is, and keep it: the same id must give the same hash"
        )
    return settings.data.erasure_key.get_secret_value().encode("utf-8")


def build_eraser(
    settings: Settings,
    client: ClickHouseClient,
    roles: Roles | None,
    feature_store: FeatureStore | None = None,
) -> Eraser:
    """An eraser over ``client`` that signs its records with the lineage writer's key."""
    name = settings.audit.writer_key
    key_path = settings.key_dir / f"{name}.key"
    if not key_path.exists():
        raise StreamsError(
            f"the lineage writer's key {key_path} is missing: an erasure is recorded under "
            "the key that signs the audit checkpoints, so it runs where that key is (the "
            "worker with the lineage role; name it with --worker)"
        )
    return Eraser(
        client,
        settings.clickhouse.database,
        key=erasure_key(settings),
        roles=roles,
        writer=name,
        writer_key=load_private_key(key_path),
        feature_store=feature_store,
    )


def erasure_client(settings: Settings, store_client: ClickHouseClient | None) -> ClickHouseClient:
    """The client erasures delete with: the account of DRIFTLINE_CLICKHOUSE_ERASURE_DSN on a
    server (the writer may not delete), else ``store_client`` (or a new one on the dsn)."""
    if settings.clickhouse.erasure_dsn is not None:
        return open_client(settings.clickhouse.erasure_dsn.get_secret_value())
    return store_client if store_client is not None else open_client(settings.clickhouse_dsn)


def publish_record(kafka: AuditKafka, outcome: ErasureOutcome, timeout_s: float = 30.0) -> None:
    """Send the signed record to the registry and wait for the broker's ack."""
    kafka.publish_command(outcome.record, timeout_s=timeout_s)


class ErasureService:
    """``POST /driftline/data/erase/``: erase requests in the worker that owns the store.

    The feature store configured by ``DRIFTLINE_FEATURES_REPO``, if any, is erased from
    too: opened at the first request, so a worker that never erases never opens it.
    """

    def __init__(self, runtime: Any) -> None:
        self._runtime = runtime
        self._feature_store: FeatureStore | None = None
        self._client: ClickHouseClient | None = None
        self._kafka: AuditKafka | None = None
        self._lock = asyncio.Lock()

    async def erase(self, request: LifecycleCommand, entity_id: str) -> dict[str, Any]:
        runtime = self._runtime
        if runtime.store is None or runtime.store_client is None:
            raise StreamsError(
                "erasure runs in the worker with the lineage role, which owns the store"
            )
        if self._kafka is None:
            self._kafka = AuditKafka(runtime.settings, runtime.bootstrap, runtime.codec)
        if self._feature_store is None:
            self._feature_store = open_feature_store(runtime.settings.features.repo)
        if self._client is None:
            self._client = erasure_client(runtime.settings, runtime.store_client)
        roles = runtime.roles_source.current()
        eraser = build_eraser(runtime.settings, self._client, roles, self._feature_store)
        async with self._lock:  # one at a time: each waits for its deletions to finish
            outcome = await runtime.store.call(lambda: eraser.erase(request, entity_id))
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(None, publish_record, self._kafka, outcome)
        return outcome.as_dict()
