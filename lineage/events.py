"""Lifecycle events: the facts the model registry and the audit log are built from.

A :class:`LifecycleEvent` mirrors the Avro ``driftline.v1.LifecycleEvent`` record
field for field. Its :meth:`~LifecycleEvent.canonical_json` form is what the
audit log hashes, so it must be byte-for-byte reproducible: sorted keys, no
whitespace, UTF-8, evidence as a parsed JSON object (not the Avro string, whose
spelling could vary between producers). :meth:`~LifecycleEvent.from_canonical`
reads those bytes back, so the registry can be rebuilt from the audit log alone.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from driftline.lineage.exceptions import InvalidRecord
from driftline.schemas import records

AVRO_FIELDS = (
    "event_id",
    "type",
    "model",
    "version",
    "actor",
    "state",
    "previous_state",
    "attributes",
    "evidence",
    "occurred_at",
)


class EventType(StrEnum):
    """Known lifecycle event types. Unknown types still decode (the contract is open)."""

    REGISTERED = "registered"
    VALIDATED = "validated"
    REJECTED = "rejected"
    CHALLENGER_ASSIGNED = "challenger_assigned"
    CANARY_STARTED = "canary_started"
    SHADOW_STARTED = "shadow_started"
    TRAFFIC_CHANGED = "traffic_changed"
    PROMOTED = "promoted"
    ARCHIVED = "archived"
    ROLLED_BACK = "rolled_back"
    COMMAND_REJECTED = "command_rejected"
    # A drift detector's alarm (driftline.lineage.store.drift_sinks.drift_audit_event): recorded in
    # the model's audit chain and history; it moves no version or alias.
    DRIFT_DETECTED = "drift_detected"
    # The lineage role found the model's audit chain does not verify
    # (driftline.lineage.audit.alarms): promotions of the model freeze until it is cleared.
    AUDIT_ALARM = "audit_alarm"
    AUDIT_ALARM_CLEARED = "audit_alarm_cleared"
    # An entity's data was deleted (driftline.lineage.audit.erasure), recorded in the
    # "_erasure" chain with a keyed hash of the entity id, never the id itself.
    ERASED = "erased"


def now_ms() -> int:
    """Wall-clock time in integer milliseconds since the epoch."""
    return time.time_ns() // 1_000_000


def _dumps(value: Any) -> str:
    # allow_nan=False: NaN/Infinity are not JSON, and a hash over a
    # non-standard spelling could not be recomputed by other tools.
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


@dataclass(frozen=True)
class LifecycleEvent:
    """One lifecycle fact about a model (version). Timestamps are int milliseconds."""

    event_id: str
    type: str
    model: str
    version: int | None
    actor: str
    state: str | None = None
    previous_state: str | None = None
    attributes: dict[str, str] = field(default_factory=dict)
    evidence: dict[str, Any] = field(default_factory=dict)
    occurred_at: int = 0

    def __post_init__(self) -> None:
        for name in ("event_id", "type", "model", "actor"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise InvalidRecord(
                    f"lifecycle event {name} must be a non-empty string, got {value!r}"
                )
        for name in ("state", "previous_state"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise InvalidRecord(
                    f"lifecycle event {name} must be a string or None, got {value!r}"
                )
        if self.version is not None and (
            not isinstance(self.version, int) or isinstance(self.version, bool)
        ):
            raise InvalidRecord(
                f"lifecycle event version must be an int or None, got {self.version!r}"
            )
        if not isinstance(self.occurred_at, int) or isinstance(self.occurred_at, bool):
            raise InvalidRecord(
                f"lifecycle event occurred_at must be int milliseconds, got {self.occurred_at!r}"
            )
        if not isinstance(self.attributes, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in self.attributes.items()
        ):
            raise InvalidRecord(
                f"lifecycle event attributes must map strings to strings (Avro map<string>), "
                f"got {self.attributes!r}; JSON-encode structured values"
            )
        if not isinstance(self.evidence, Mapping):
            raise InvalidRecord(
                f"lifecycle event evidence must be a JSON object, got {self.evidence!r}"
            )
        # Defensive copies: a frozen event must not change because a caller's dict did.
        object.__setattr__(self, "type", str(self.type))
        object.__setattr__(self, "attributes", dict(self.attributes))
        object.__setattr__(self, "evidence", _json_copy(self.evidence, self.event_id))

    def to_avro(self) -> records.LifecycleEvent:
        """The Avro record as a dict (evidence JSON-encoded, timestamps int ms)."""
        return {
            "event_id": self.event_id,
            "type": self.type,
            "model": self.model,
            "version": self.version,
            "actor": self.actor,
            "state": self.state,
            "previous_state": self.previous_state,
            "attributes": dict(self.attributes),
            "evidence": _dumps(self.evidence),
            "occurred_at": self.occurred_at,
        }

    @classmethod
    def from_avro(cls, record: records.LifecycleEvent | Mapping[str, Any]) -> LifecycleEvent:
        """Build an event from a decoded Avro record (or anything shaped like one)."""
        try:
            raw_evidence = record.get("evidence") or "{}"
            evidence = json.loads(raw_evidence) if isinstance(raw_evidence, str) else raw_evidence
            return cls(
                event_id=record["event_id"],
                type=record["type"],
                model=record["model"],
                version=record.get("version"),
                actor=record["actor"],
                state=record.get("state"),
                previous_state=record.get("previous_state"),
                attributes=dict(record.get("attributes") or {}),
                evidence=evidence,
                occurred_at=record["occurred_at"],
            )
        except KeyError as exc:
            raise InvalidRecord(
                f"lifecycle event record lacks field {exc.args[0]!r}; fields: {sorted(record)}"
            ) from exc
        except json.JSONDecodeError as exc:
            raise InvalidRecord(
                f"lifecycle event {record.get('event_id')!r} has evidence that is not JSON: "
                f"{record.get('evidence')!r} ({exc})"
            ) from exc

    def canonical_json(self) -> bytes:
        """Deterministic UTF-8 JSON of every field; the bytes the audit chain hashes."""
        body = self.to_avro()
        body["evidence"] = self.evidence
        return _dumps(body).encode("utf-8")

    @classmethod
    def from_canonical(cls, data: bytes | str) -> LifecycleEvent:
        """The inverse of :meth:`canonical_json`: an event from the audit log's stored bytes.

        Every field must be present and no other, so what is rebuilt is exactly
        what was hashed; the registry can then be replayed from the audit log alone.
        """
        if isinstance(data, bytes | bytearray):
            try:
                data = bytes(data).decode("utf-8")
            except UnicodeDecodeError as exc:
                raise InvalidRecord(
                    f"canonical lifecycle event is not UTF-8 ({exc}); the audit log's "
                    "canonical column holds UTF-8 JSON"
                ) from exc
        try:
            body = json.loads(data)
        except json.JSONDecodeError as exc:
            raise InvalidRecord(
                f"canonical lifecycle event is not JSON ({exc}): {data[:80]!r}"
            ) from exc
        if not isinstance(body, dict):
            raise InvalidRecord(f"canonical lifecycle event must be a JSON object, got {body!r}")
        missing = sorted(set(AVRO_FIELDS) - body.keys())
        extra = sorted(body.keys() - set(AVRO_FIELDS))
        if missing or extra:
            raise InvalidRecord(
                f"canonical lifecycle event {body.get('event_id')!r} has the wrong fields "
                f"(missing {missing}, unexpected {extra}); expected exactly {sorted(AVRO_FIELDS)}"
            )
        return cls(**body)


def _json_copy(evidence: Mapping[str, Any], event_id: str) -> dict[str, Any]:
    # A round trip through the canonical encoder both validates (JSON types,
    # string keys, finite floats) and deep-copies the evidence.
    try:
        text = _dumps(dict(evidence))
        text.encode("utf-8")  # a lone surrogate (JSON "\ud800") has no UTF-8 form
        return json.loads(text)
    except (TypeError, ValueError) as exc:
        raise InvalidRecord(
            f"evidence of lifecycle event {event_id!r} is not plain JSON ({exc}); use str/int/"
            "float/bool/None, lists and string-keyed dicts, and null for NaN or infinite values"
        ) from exc


def new_event(
    type: str,
    model: str,
    version: int | None,
    actor: str,
    *,
    state: str | None = None,
    previous_state: str | None = None,
    attributes: Mapping[str, str] | None = None,
    evidence: Mapping[str, Any] | None = None,
    occurred_at: int | None = None,
) -> LifecycleEvent:
    """A fresh event with a uuid4 id, stamped now unless ``occurred_at`` is given."""
    return LifecycleEvent(
        event_id=str(uuid.uuid4()),
        type=str(type),
        model=model,
        version=version,
        actor=actor,
        state=state,
        previous_state=previous_state,
        attributes=dict(attributes or {}),
        evidence=dict(evidence or {}),
        occurred_at=now_ms() if occurred_at is None else occurred_at,
    )


def registered(
    model: str,
    version: int,
    actor: str,
    attributes: Mapping[str, str],
    *,
    evidence: Mapping[str, Any] | None = None,
) -> LifecycleEvent:
    """A ``registered`` event; ``attributes`` carry digest, artifact, input signature."""
    return new_event(
        EventType.REGISTERED,
        model,
        version,
        actor,
        state="registered",
        attributes=attributes,
        evidence=evidence,
    )


def promoted(
    model: str,
    version: int,
    actor: str,
    previous_state: str,
    previous_champion: int | None,
    *,
    evidence: Mapping[str, Any] | None = None,
) -> LifecycleEvent:
    """A ``promoted`` event making ``version`` champion; the old champion is recorded."""
    attributes = {} if previous_champion is None else {"previous_champion": str(previous_champion)}
    return new_event(
        EventType.PROMOTED,
        model,
        version,
        actor,
        state="champion",
        previous_state=previous_state,
        attributes=attributes,
        evidence=evidence,
    )
