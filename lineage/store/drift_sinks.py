"""Buffered ClickHouse sinks for drift alarms and outcomes, and drift alarms as audit events.

Same contract as :mod:`driftline.lineage.store.sinks`: ``add``/``add_many`` buffer decoded Avro
records, ``flush`` writes them in one insert with an ``insert_deduplication_token``
and keeps the buffer if the insert fails.

:func:`drift_audit_event` turns a DriftEvent into a ``drift_detected``
:class:`~driftline.lineage.events.LifecycleEvent`, so an alarm is appended to its model's
hash chain beside the lifecycle events. The registry records it in the model's
history and moves nothing (it has no target state).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from typing import Any

from driftline.lineage.events import EventType, LifecycleEvent
from driftline.lineage.exceptions import InvalidRecord
from driftline.lineage.store.clickhouse import DRIFT, OUTCOMES, ClickHouseClient
from driftline.lineage.store.sinks import _REQUIRED, _ColumnSink

# (column, default) in table order. ``stream`` is not a DriftEvent field: the
# sink takes it from the evidence JSON.
DRIFT_FIELDS: tuple[tuple[str, Any], ...] = (
    ("event_id", _REQUIRED),
    ("model", _REQUIRED),
    ("version", None),
    ("arm", None),
    ("detector", _REQUIRED),
    ("feature", None),
    ("stream", ""),
    ("statistic", _REQUIRED),
    ("threshold", _REQUIRED),
    ("p_value", None),
    ("window_size", _REQUIRED),
    ("evidence", "{}"),
    ("detected_at", _REQUIRED),
)

# Outcome fields plus the Kafka coordinates the record was read from.
OUTCOME_FIELDS: tuple[tuple[str, Any], ...] = (
    ("prediction_id", _REQUIRED),
    ("entity_id", None),
    ("value", _REQUIRED),
    ("label", None),
    ("event_time", _REQUIRED),
    ("source_partition", _REQUIRED),
    ("source_offset", _REQUIRED),
)

# DriftEvent fields that become the audit event's evidence (the others are its header).
_EVIDENCE_FIELDS = (
    "arm",
    "detector",
    "feature",
    "statistic",
    "threshold",
    "p_value",
    "window_size",
    "evidence",
    "detected_at",
)


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def parse_evidence(text: Any, event_id: Any = None) -> dict[str, Any]:
    """The DriftEvent's evidence string as a JSON object; raises InvalidRecord if it is not one.

    NaN and +-Infinity (which Python's json writes by default, and which a
    too-large literal like 1e999 parses to) become null: the audit log's
    canonical JSON refuses non-finite numbers.
    """
    if isinstance(text, Mapping):
        text = json.dumps(dict(text), allow_nan=True)
    what = f"drift event {event_id!r} evidence"
    if not isinstance(text, str):
        raise InvalidRecord(f"{what} must be a JSON string, got {text!r}")
    try:
        body = json.loads(
            text or "{}",
            parse_constant=lambda _: None,
            parse_float=lambda s: _finite(float(s)),
        )
    except json.JSONDecodeError as exc:
        raise InvalidRecord(f"{what} is not JSON: {text!r} ({exc})") from exc
    if not isinstance(body, dict):
        raise InvalidRecord(f"{what} must be a JSON object, got {text!r}")
    return body


def _stream_of(evidence: Any) -> str:
    try:
        stream = parse_evidence(evidence).get("stream")
    except InvalidRecord:
        return ""
    return stream if isinstance(stream, str) else ""


def drift_audit_event(record: Mapping[str, Any]) -> LifecycleEvent:
    """A decoded DriftEvent record as the ``drift_detected`` event the audit log chains."""
    missing = [n for n in ("event_id", "model", "detector", "detected_at") if n not in record]
    if missing:
        raise InvalidRecord(f"drift event lacks fields {missing}; fields present: {sorted(record)}")
    event_id = record["event_id"]
    parsed = parse_evidence(record.get("evidence", "{}"), event_id)
    evidence: dict[str, Any] = {}
    for name in _EVIDENCE_FIELDS:
        value = record.get(name)
        if isinstance(value, float):
            # NaN / infinite statistics (a PSI over an empty bin, a p_value a
            # detector could not compute) are not JSON: record them as null.
            value = _finite(value)
        evidence[name] = parsed if name == "evidence" else value
    labels = {
        "arm": record.get("arm"),
        "detector": record.get("detector"),
        "feature": record.get("feature"),
        "stream": parsed.get("stream"),
    }
    attributes = {k: str(v) for k, v in labels.items() if v is not None}
    detector = record["detector"]
    return LifecycleEvent(
        event_id=event_id,
        type=EventType.DRIFT_DETECTED,
        model=record["model"],
        version=record.get("version"),
        actor=f"detector:{detector}",
        state=None,
        attributes=attributes,
        evidence=evidence,
        occurred_at=record["detected_at"],
    )


class DriftSink(_ColumnSink):
    """Buffers DriftEvent records for ``drift``; ``stream`` comes from the evidence."""

    kind = "drift event"
    fields = DRIFT_FIELDS
    identity = ("event_id",)

    def __init__(
        self,
        client: ClickHouseClient,
        database: str,
        table_name: str = DRIFT,
        *,
        dedup_token: bool = True,
    ) -> None:
        super().__init__(client, database, table_name, dedup_token=dedup_token)

    @staticmethod
    def _row(record: Mapping[str, Any]) -> Mapping[str, Any]:
        if "stream" in record:
            return record
        return {**record, "stream": _stream_of(record.get("evidence", "{}"))}

    def add(self, record: Mapping[str, Any]) -> None:
        super().add(self._row(record))

    def add_many(self, records: Iterable[Mapping[str, Any]]) -> None:
        super().add_many([self._row(r) for r in records])


class OutcomeSink(_ColumnSink):
    """Buffers Outcome records for ``outcomes``; each also needs its Kafka
    ``source_partition`` and ``source_offset``."""

    kind = "outcome"
    fields = OUTCOME_FIELDS
    # Not prediction_id alone: a later correction of the same prediction, in a
    # batch with the same ids, must not carry the token of the original insert.
    identity = ("prediction_id", "source_partition", "source_offset")

    def __init__(
        self,
        client: ClickHouseClient,
        database: str,
        table_name: str = OUTCOMES,
        *,
        dedup_token: bool = True,
    ) -> None:
        super().__init__(client, database, table_name, dedup_token=dedup_token)
