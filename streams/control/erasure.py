"""`driftline data erase`: sign an erase request, carry it out where the store is, and wait
for the registry to record it in the audit log.

The entity id goes only to where the store is: over HTTP to the worker that owns it (the
running stack's, or the one ``--worker`` names), or, with no worker owning the store,
into this process, which opens the store itself. It never goes into a Kafka record: the
request and its record carry a keyed hash of the id (see
:mod:`driftline.lineage.audit.erasure`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from driftline.core.settings import Settings
from driftline.features.configured import open_feature_store
from driftline.features.store import FeatureStore
from driftline.lineage.audit.erasure import command_to_json, erase_request
from driftline.lineage.events import LifecycleEvent
from driftline.lineage.exceptions import StoreError
from driftline.lineage.trust.keys import load_private_key
from driftline.lineage.trust.roles import Roles
from driftline.streams.embedded.stack import http_json
from driftline.streams.embedded.stackfile import resolve_bootstrap, running_stack
from driftline.streams.exceptions import CommandRejected, StreamsError
from driftline.streams.kafka.audit_records import AuditKafka
from driftline.streams.kafka.codecs import codec_for
from driftline.streams.kafka.lifecycle_topic import LifecycleWatcher
from driftline.streams.kafka.topics import Topics
from driftline.streams.stages.erasure import (
    build_eraser,
    erasure_client,
    erasure_key,
    publish_record,
)


@dataclass(frozen=True)
class Erasure:
    """What an erasure deleted, and the audit event that records it."""

    outcome: dict[str, Any]
    event: LifecycleEvent
    where: str

    @property
    def entity_hash(self) -> str:
        return str(self.event.evidence["entity_hash"])


def erase(
    settings: Settings,
    entity_id: str,
    actor: str,
    *,
    worker_url: str | None = None,
    feature_store: FeatureStore | None = None,
) -> Erasure:
    """Erase ``entity_id`` as ``actor``; raises CommandRejected (after it is audited) when
    the actor may not, StreamsError when it could not be done. ``feature_store`` (by
    default the one ``DRIFTLINE_FEATURES_REPO`` names) is erased from when the store is
    opened here; a worker erases from its own."""
    key = erasure_key(settings)  # refuse before anything is signed or sent
    request = erase_request(entity_id, actor, key).signed(_private_key(settings, actor))
    bootstrap = resolve_bootstrap(settings)
    codec = codec_for(settings)
    watcher = LifecycleWatcher(settings, bootstrap, Topics(settings.kafka.topic_prefix).lifecycle)
    url = worker_url or _store_owner(settings)
    if url is not None:
        outcome = http_json(
            f"{url.rstrip('/')}/driftline/data/erase/",
            {"request": command_to_json(request), "entity_id": entity_id},
            timeout=600,
        )
        if "command_id" not in outcome:  # the worker could not carry it out
            raise StreamsError(f"erasure failed in the worker at {url}: {outcome.get('error')}")
        where = f"the worker at {url}"
    else:
        outcome = _erase_here(settings, bootstrap, codec, request, entity_id, feature_store)
        where = "this process (the store opened directly)"
    event = watcher.wait_for(codec, request.command_id, settings.registry.command_timeout_s)
    if event.type == "command_rejected":
        evidence = event.evidence
        raise CommandRejected(
            f"erase refused ({evidence.get('check')}): {evidence.get('reason')}; the refusal "
            "is in the audit log"
        )
    if outcome.get("error"):
        raise StreamsError(
            f"erasure incomplete ({outcome['error']}); what was deleted is in the audit log. "
            "Run it again: erasing twice deletes what is left"
        )
    return Erasure(outcome, event, where)


def _store_owner(settings: Settings) -> str | None:
    """The worker that owns an embedded store, when the stack runs."""
    info = running_stack(settings)
    return info.worker_url if settings.embedded_clickhouse and info is not None else None


def _erase_here(settings, bootstrap, codec, request, entity_id, feature_store) -> dict:
    roles = Roles.load(settings.roles_file) if settings.roles_file.exists() else None
    try:
        client = erasure_client(settings, None)
    except StoreError as exc:
        raise StreamsError(
            f"{exc}; if a worker owns the store, name it with --worker http://HOST:PORT"
        ) from exc
    if feature_store is None:
        feature_store = open_feature_store(settings.features.repo)
    try:
        eraser = build_eraser(settings, client, roles, feature_store)
        outcome = eraser.erase(request, entity_id)
    finally:
        client.close()
    publish_record(AuditKafka(settings, bootstrap, codec), outcome)
    return outcome.as_dict()


def _private_key(settings: Settings, actor: str) -> Ed25519PrivateKey:
    key_path = settings.key_dir / f"{actor}.key"
    if not key_path.exists():
        raise StreamsError(
            f"no private key for actor {actor!r} at {key_path}: create one with "
            f"`driftline keys new --actor {actor} --roles data-protection`"
        )
    return load_private_key(key_path)
