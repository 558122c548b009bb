"""Erasure of one entity's data: the signed request, its checks, the deletion, its record.

An actor asks with a signed ``erase`` command (:func:`erase_request`) that names the
entity by a keyed hash, ``HMAC-SHA256(DRIFTLINE_DATA_ERASURE_KEY, entity id)``, never by
the id: commands are kept for ever. The id itself travels beside the command, only to
where the store is. There :class:`Eraser` checks that the hash is the id's, then the
actor's signature and role (:class:`~driftline.lineage.trust.rbac.CommandAuthority`),
deletes the entity's rows from every personal-data table
(:mod:`driftline.lineage.store.erasure`) and from the feature store's online store, and
writes the outcome into an ``erase`` record signed with the lineage writer's key (the key
that signs audit checkpoints), carrying the actor's request inside.

The registry, the only writer of lifecycle, turns a record into an ``erased`` event, or
a ``command_rejected`` one for a refusal (:func:`decide_erasure`): both land in the
audit log's ``_erasure`` chain, which no model can be named (model names start with a
letter or digit). Neither holds the entity id, only its keyed hash, so the log can show
that an erasure happened, by whom and of how many rows, without keeping what was erased;
whoever holds the key can still tell whether a given id was erased.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from driftline.features.store import FeatureStore
from driftline.lineage.audit.checkpoints import WriterKey
from driftline.lineage.events import EventType, LifecycleEvent, new_event
from driftline.lineage.exceptions import ErasureError, InvalidRecord, LineageError
from driftline.lineage.store.clickhouse import ClickHouseClient
from driftline.lineage.store.erasure import erase_entity
from driftline.lineage.trust.commands import LifecycleCommand, new_command
from driftline.lineage.trust.rbac import CommandAuthority, approval_evidence, rejected
from driftline.lineage.trust.roles import Roles

ERASE = "erase"
# The audit chain erasures are recorded in: not a model, and no model can be named so.
ERASURE_CHAIN = "_erasure"
HASH_ALGORITHM = "hmac-sha256"
# A request is carried out at once; an older one (replayed) is refused.
MAX_REQUEST_AGE_MS = 15 * 60 * 1000


def entity_hash(key: bytes, entity_id: str) -> str:
    """The keyed hash that names ``entity_id`` in commands and the audit log."""
    if not key:
        raise ErasureError("an erasure needs DRIFTLINE_DATA_ERASURE_KEY")
    return hmac.new(key, entity_id.encode("utf-8"), hashlib.sha256).hexdigest()


def hash_key_id(key: bytes) -> str:
    """Names the key a hash was made with (so a rotated key shows), without revealing it."""
    return hmac.new(key, b"driftline:erasure-key-id", hashlib.sha256).hexdigest()[:16]


def erase_request(entity_id: str, actor: str, key: bytes) -> LifecycleCommand:
    """The (unsigned) ``erase`` command for ``entity_id``: its keyed hash, not the id."""
    if not isinstance(entity_id, str) or not entity_id:
        raise ErasureError("the entity id to erase must be a non-empty string")
    return new_command(
        ERASE,
        ERASURE_CHAIN,
        None,
        actor,
        {
            "entity_hash": entity_hash(key, entity_id),
            "hash": HASH_ALGORITHM,
            "hash_key_id": hash_key_id(key),
        },
    )


def command_to_json(command: LifecycleCommand) -> str:
    """A signed command as JSON (signature in hex), to carry inside a record or over HTTP."""
    body = command.to_avro()
    body["signature"] = command.signature.hex() if command.signature is not None else None
    return json.dumps(body, sort_keys=True)


def command_from_json(text: str | Mapping[str, Any]) -> LifecycleCommand:
    try:
        body = dict(json.loads(text) if isinstance(text, str) else text)
        if body.get("signature") is not None:
            body["signature"] = bytes.fromhex(body["signature"])
    except (ValueError, TypeError) as exc:
        raise InvalidRecord(f"not a signed command in JSON: {exc}") from exc
    return LifecycleCommand.from_avro(body)


@dataclass(frozen=True)
class ErasureOutcome:
    """What happened to one request, and the signed record that tells the registry."""

    command_id: str
    erased: bool
    record: LifecycleCommand
    tables: dict[str, int] = field(default_factory=dict)
    online_store: int | None = None
    check: str | None = None
    reason: str | None = None
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "command_id": self.command_id,
            "erased": self.erased,
            "tables": self.tables,
            "rows_deleted": sum(self.tables.values()),
            "online_store": self.online_store,
            "check": self.check,
            "reason": self.reason,
            "error": self.error,
        }


class _NoRegistry:
    """The authority asks a registry only about promotions (four-eyes); erasure has none."""

    def plan(self, *args: Any, **kwargs: Any) -> LifecycleEvent:
        raise LineageError("erasure is not planned by the registry")

    def get(self, name: str, version: int) -> Any:
        raise LineageError("erasure names no model version")


class Eraser:
    """Carries out erase requests where the store is (see the module docstring).

    ``roles`` is the roles file as it is now (None: there is none, and every request is
    refused); ``feature_store`` is the online store to erase from too, when there is one.
    """

    def __init__(
        self,
        client: ClickHouseClient,
        database: str,
        *,
        key: bytes,
        roles: Roles | None,
        writer: str,
        writer_key: Ed25519PrivateKey,
        feature_store: FeatureStore | None = None,
        clock: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
    ) -> None:
        if not key:
            raise ErasureError(
                "DRIFTLINE_DATA_ERASURE_KEY is not set where the store is: erasure names the "
                "entity in the audit log by a keyed hash, and will not run without the key"
            )
        self._client = client
        self._database = database
        self._key = key
        self._roles = roles
        self._writer = writer
        self._writer_key = writer_key
        self._feature_store = feature_store
        self._clock = clock

    def erase(self, request: LifecycleCommand, entity_id: str) -> ErasureOutcome:
        """Check ``request``, then delete ``entity_id``'s data; never raises for a refusal
        (the outcome says so, and its record gets it audited)."""
        refusal = self._refusal(request, entity_id)
        if refusal is not None:
            check, reason, verified = refusal
            result = {
                "outcome": "refused",
                "check": check,
                "reason": reason,
                "signature_verified": verified,
            }
            return ErasureOutcome(
                request.command_id,
                False,
                self._record(request, result),
                check=check,
                reason=reason,
            )
        tables: dict[str, int] = {}
        online: int | None = None
        errors = []
        # Each part is tried even when the other fails; a failure makes the erasure
        # incomplete, recorded as such, and erasing again deletes what is left.
        try:
            tables = erase_entity(self._client, self._database, entity_id)
        except Exception as exc:
            errors.append(f"store: {_message(exc, entity_id)}")
        if self._feature_store is not None:
            try:
                online = int(self._feature_store.erase_online([entity_id]))
            except Exception as exc:
                errors.append(f"online store: {_message(exc, entity_id)}")
        error = "; ".join(errors) or None
        result = {
            "outcome": "erased",
            "tables": tables,
            "online_store": online,
            "complete": error is None,
        }
        if error is not None:
            result["error"] = error
        return ErasureOutcome(
            request.command_id,
            True,
            self._record(request, result),
            tables=tables,
            online_store=online,
            error=error,
        )

    def _refusal(self, request: LifecycleCommand, entity_id: str) -> tuple[str, str, bool] | None:
        if request.action != ERASE or request.model != ERASURE_CHAIN:
            return (
                "invalid_command",
                f"an erase request has action {ERASE!r} and model {ERASURE_CHAIN!r}, not "
                f"{request.action!r} and {request.model!r}",
                False,
            )
        if not isinstance(entity_id, str) or not entity_id:
            return "invalid_command", "the entity id to erase is empty", False
        given = request.arguments.get("entity_hash", "")
        if not hmac.compare_digest(given, entity_hash(self._key, entity_id)):
            return (
                "entity_hash",
                "the request's entity_hash is not the keyed hash of the entity sent with it "
                "(another entity, or another DRIFTLINE_DATA_ERASURE_KEY than the store's)",
                False,
            )
        if self._roles is None:
            return "policy", "there is no roles file where the store is", False
        authority = CommandAuthority(self._roles, max_age_ms=MAX_REQUEST_AGE_MS, clock=self._clock)
        event = authority.authorize(request, _NoRegistry())
        if event is None:
            return None
        evidence = event.evidence
        return evidence["check"], evidence["reason"], bool(evidence["signature_verified"])

    def _record(self, request: LifecycleCommand, result: dict[str, Any]) -> LifecycleCommand:
        return LifecycleCommand(
            command_id=request.command_id,  # the registry's answer carries the request's id
            action=ERASE,
            model=ERASURE_CHAIN,
            version=None,
            actor=self._writer,
            arguments={
                "request": command_to_json(request),
                "result": json.dumps(result, sort_keys=True),
            },
            issued_at=self._clock(),
        ).signed(self._writer_key)


def decide_erasure(
    record: LifecycleCommand, writer: WriterKey | None, roles: Roles | None
) -> LifecycleEvent:
    """The lifecycle event for an ``erase`` command reaching the registry: ``erased`` or
    ``command_rejected`` as its record says, when the lineage writer signed the record;
    otherwise a ``command_rejected`` of the command itself (an erase sent straight to the
    commands topic never reached the store). ``roles`` re-checks the actor's signature on
    the request inside a record, which the event reports."""
    if writer is None or record.key_id != writer.key_id:
        return rejected(
            record,
            "erase_path",
            "an erasure is carried out where the store is and recorded by the lineage writer "
            "that did it: send it with `driftline data erase`",
        )
    if record.actor != writer.name or not record.verify(writer.public_key):
        return rejected(
            record,
            "signature",
            f"erase record {record.command_id} claims the lineage writer's key "
            f"{writer.key_id} but is not signed by it as {writer.name!r}",
        )
    try:
        request = command_from_json(record.arguments["request"])
        result = json.loads(record.arguments["result"])
        if not isinstance(result, dict) or result.get("outcome") not in ("erased", "refused"):
            raise ValueError(f"unknown outcome in {result!r}")
        if request.command_id != record.command_id:
            raise ValueError(
                f"it records request {request.command_id}, but has id {record.command_id}"
            )
    except (KeyError, ValueError, InvalidRecord) as exc:
        return rejected(
            record, "invalid_command", f"erase record is malformed: {exc}", signature_verified=True
        )
    recorded_by = {"recorded_by": writer.key_id}
    if result["outcome"] == "refused":
        refusal = rejected(
            request,
            str(result.get("check", "refused")),
            str(result.get("reason", "")),
            signature_verified=bool(result.get("signature_verified")),
        )
        return _with_evidence(refusal, recorded_by)
    tables = {str(k): int(v) for k, v in dict(result.get("tables", {})).items()}
    evidence = approval_evidence(request) | {
        "tables": tables,
        "rows_deleted": sum(tables.values()),
        "online_store": result.get("online_store"),
        "complete": bool(result.get("complete", False)),
        # So anyone holding the roles file can check later that the actor asked for this.
        "request": {
            "issued_at": request.issued_at,
            "signature": request.signature.hex() if request.signature else None,
            "signature_verified": _request_verifies(request, roles),
        },
        **recorded_by,
    }
    if "error" in result:
        evidence["error"] = str(result["error"])
    return new_event(EventType.ERASED, ERASURE_CHAIN, None, request.actor, evidence=evidence)


def _request_verifies(request: LifecycleCommand, roles: Roles | None) -> bool:
    if roles is None or request.key_id is None:
        return False
    entry = roles.keyring.get(request.key_id)
    return entry is not None and entry.actor == request.actor and request.verify(entry.public_key)


def _with_evidence(event: LifecycleEvent, extra: dict[str, Any]) -> LifecycleEvent:
    return replace(event, evidence={**event.evidence, **extra})


def _message(exc: Exception, entity_id: str) -> str:
    """An error's first line with the entity id cut out, so it can be logged and audited."""
    text = str(exc).strip()
    text = text.splitlines()[0] if text else type(exc).__name__
    return text.replace(entity_id, "<entity>") if entity_id else text
