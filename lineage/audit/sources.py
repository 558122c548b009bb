"""Audit rows against the Kafka records they were written from.

Each audit row stores the (topic, partition, offset) of the record it came
from: a LifecycleEvent on the lifecycle topic, or a DriftEvent on the drift
topic (chained as ``drift_detected``). The lifecycle topic keeps everything
forever and is the source of truth, so a row is ``forged`` when no record is
at its coordinates, or when the record there decodes to another event. In the
other direction, a lifecycle event on the topic that the log lacks is
``row_missing``.

A record can be legitimately gone: below a partition's low watermark
(retention, on the drift topic), or from a broker that kept nothing across a
restart (the embedded one). A row recorded before the oldest record its topic
still holds is counted as *unsourced*, not forged: it can be checked only
against the signed checkpoints. Reading Kafka is the caller's job (see
``driftline.streams.kafka.audit_records``); this module only compares.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from driftline.lineage.audit.chain import AuditProblem, ChainRow
from driftline.lineage.events import LifecycleEvent

Coordinates = tuple[str, int, int]  # topic, partition, offset
# (topic, partition) -> (lowest, highest) offset wanted, inclusive.
Wanted = Mapping[tuple[str, int], tuple[int, int]]


@dataclass(frozen=True)
class SourceRecord:
    """A record as read from Kafka: the event it decodes to, or why it does not."""

    event: LifecycleEvent | None
    timestamp_ms: int
    error: str = ""


@dataclass
class SourceLog:
    """What the source topics hold, as far as they were read."""

    records: dict[Coordinates, SourceRecord] = field(default_factory=dict)
    # (topic, partition) -> (low, high) watermarks: offsets low..high-1 exist.
    extents: dict[tuple[str, int], tuple[int, int]] = field(default_factory=dict)
    # topic -> timestamp of the oldest record it still holds (None: it holds none).
    first_ms: dict[str, int | None] = field(default_factory=dict)
    # Topics read end to end, so an event missing from the audit log can be found.
    complete: frozenset[str] = frozenset()

    @property
    def topics(self) -> set[str]:
        return set(self.first_ms)


SourceFetcher = Callable[[Wanted], SourceLog]


def wanted(rows: Iterable[ChainRow]) -> dict[tuple[str, int], tuple[int, int]]:
    """The offset range to read per (topic, partition) so every row's source is covered."""
    ranges: dict[tuple[str, int], tuple[int, int]] = {}
    for row in rows:
        key = (row.source_topic, row.source_partition)
        low, high = ranges.get(key, (row.source_offset, row.source_offset))
        ranges[key] = (min(low, row.source_offset), max(high, row.source_offset))
    return ranges


@dataclass
class SourceCheck:
    problems: list[AuditProblem] = field(default_factory=list)
    checked: int = 0
    unsourced: list[ChainRow] = field(default_factory=list)  # rows whose source is gone


def check_rows(
    model: str, rows: Iterable[ChainRow], log: SourceLog, *, limit: int = 10
) -> SourceCheck:
    """Each row against its source record; at most ``limit`` forged rows named per model."""
    result = SourceCheck()
    forged = 0
    for row in rows:
        detail = _judge(row, log)
        if detail is None:
            result.checked += 1
            continue
        if detail == "":
            result.unsourced.append(row)
            continue
        forged += 1
        if forged <= limit:
            result.problems.append(AuditProblem(model, row.seq, "forged", detail))
    if forged > limit:
        last = result.problems[-1]
        result.problems[-1] = AuditProblem(
            model, last.seq, "forged", f"{last.detail} (and {forged - limit} more forged rows)"
        )
    return result


def _judge(row: ChainRow, log: SourceLog) -> str | None:
    """None: the source matches. "": the source is gone (unsourced). Else why it is forged."""
    where = f"{row.source_topic}[{row.source_partition}]@{row.source_offset}"
    if row.source_topic not in log.first_ms:
        return (
            f"it cites {where}, but {row.source_topic!r} is not a topic audit events come "
            f"from (those are: {', '.join(sorted(log.topics)) or 'none read'})"
        )
    first = log.first_ms.get(row.source_topic)
    if first is None or row.recorded_at < first:
        # Older than anything the topic still holds (a broker that kept nothing across a
        # restart reuses offsets): whatever sits at these coordinates now is not its source.
        return ""
    record = log.records.get((row.source_topic, row.source_partition, row.source_offset))
    if record is None:
        extent = log.extents.get((row.source_topic, row.source_partition))
        if extent is None:
            return f"it cites {where}, but the topic has no partition {row.source_partition}"
        low, high = extent
        if row.source_offset < low:
            return ""  # expired by retention
        return (
            f"no record at {where} (the partition holds offsets {low}..{high - 1}): "
            "the row has no source record"
        )
    if record.event is None:
        return f"the record at {where} is not an audit event ({record.error})"
    source = record.event.canonical_json()
    if source != row.canonical:
        return f"it differs from its source record at {where}: {_difference(source, row.canonical)}"
    return None


def _difference(source: bytes, stored: bytes) -> str:
    try:
        a, b = json.loads(source), json.loads(stored)
    except ValueError:
        return "the stored event is not JSON"
    if not isinstance(b, dict):
        return "the stored event is not a JSON object"
    keys = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    shown = ", ".join(f"{k}: source {a.get(k)!r} vs row {b.get(k)!r}" for k in keys[:3])
    return shown or "the canonical bytes differ"


def missing_rows(
    log: SourceLog,
    audited: Mapping[str, Iterable[ChainRow]],
    *,
    models: set[str] | None,
    before_ms: int,
    signed_seq: Mapping[str, int] | None = None,
) -> list[AuditProblem]:
    """Events on a completely read topic that the log lacks, once the writer has had its
    chance to store them.

    ``audited``: model -> its rows. Only models in ``models`` (None: all) are looked at.
    An event counts as missing when it is older than ``before_ms`` (the writer's grace),
    or sooner when the writer provably went past it: the log holds a later record of the
    same partition, or a signed checkpoint (``signed_seq``: model -> highest signed seq)
    covers the seq where it belongs. Without that, deleting the newest row and its
    checkpoint would go unseen for a whole grace period.
    """
    rows_of = {m: list(rows) for m, rows in audited.items()}
    ids = {m: {r.event_id for r in rows} for m, rows in rows_of.items()}
    # (topic, partition) -> the highest source offset any stored row cites.
    reached: dict[tuple[str, int], int] = {}
    for rows in rows_of.values():
        for r in rows:
            key = (r.source_topic, r.source_partition)
            reached[key] = max(reached.get(key, -1), r.source_offset)
    signed_seq = signed_seq or {}
    problems = []
    placed: dict[str, int] = {}  # model -> the seq given to its last missing event
    for (topic, partition, offset), record in sorted(log.records.items()):
        event = record.event
        if topic not in log.complete or event is None:
            continue
        if models is not None and event.model not in models:
            continue
        if event.event_id in ids.get(event.model, ()):
            continue
        # Where it belongs: after the model's last row from the same partition before it.
        before = [
            r.seq
            for r in rows_of.get(event.model, ())
            if (r.source_topic, r.source_partition) == (topic, partition)
            and r.source_offset < offset
        ]
        seq = max(max(before, default=0), placed.get(event.model, 0)) + 1
        passed = (
            reached.get((topic, partition), -1) > offset or signed_seq.get(event.model, 0) >= seq
        )
        if record.timestamp_ms >= before_ms and not passed:
            continue  # recent: the writer may not have stored it yet
        placed[event.model] = seq
        problems.append(
            AuditProblem(
                event.model,
                seq,
                "row_missing",
                f"event {event.event_id} ({event.type}, {topic}[{partition}]@{offset}) is on the "
                f"lifecycle topic but not in the audit log; it belongs at about seq {seq}",
            )
        )
    return problems
