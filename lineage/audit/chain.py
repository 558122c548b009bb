"""The hash-chained audit log of lifecycle events, and its verifier.

Long on purpose: the writer and the walk are the two halves of one row format; keeping
them together keeps the hash rule in one place.

Per model, each row carries ``seq`` (1, 2, 3, ...), ``prev_hash`` (the previous
row's hash, ``"0" * 64`` for the first) and
``hash = sha256(bytes.fromhex(prev_hash) + canonical)``, where ``canonical`` is
the event's canonical JSON, stored verbatim. Editing, deleting, inserting or
reordering rows breaks the chain where it happened, and :func:`verify` says
where and how.

What the chain cannot show on its own: rows cut off the end of a chain, or a
whole chain recomputed (or extended) by someone who can write to the table.
:mod:`driftline.lineage.audit.checkpoints` signs the heads with the lineage writer's key, and
:mod:`driftline.lineage.audit.verify` checks the chain, those checkpoints, their copies on
the anchor topic and each row's source record on Kafka together.

The writer assumes one writer per model at a time, which the lineage
consumer gets from Kafka: lifecycle events are keyed by model, so one
partition (one consumer) carries a model's events in order. Call
:meth:`AuditLogWriter.reset` when partitions are reassigned.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from driftline.lineage.events import LifecycleEvent, now_ms
from driftline.lineage.exceptions import StoreError
from driftline.lineage.store.clickhouse import (
    AUDIT_LOG,
    ClickHouseClient,
    insert_and_release,
    table,
)

GENESIS = "0" * 64

COLUMNS = (
    "model",
    "seq",
    "event_id",
    "event_type",
    "version",
    "actor",
    "occurred_at",
    "canonical",
    "prev_hash",
    "hash",
    "source_topic",
    "source_partition",
    "source_offset",
    "recorded_at",
)

AuditItem = tuple[LifecycleEvent, str, int, int]


def chain_hash(prev_hash: str, canonical: bytes) -> str:
    """``sha256(bytes.fromhex(prev_hash) + canonical)`` as hex."""
    return hashlib.sha256(bytes.fromhex(prev_hash) + canonical).hexdigest()


class AuditLogWriter:
    """Appends lifecycle events to ``<database>.audit_log``, extending each model's chain."""

    def __init__(self, client: ClickHouseClient, database: str) -> None:
        self.client = client
        self.database = database
        self.table = table(database, AUDIT_LOG)
        self._heads: dict[str, tuple[int, str]] = {}  # model -> (seq, hash) of the last row
        # (topic, partition) -> highest source offset stored. Kafka offsets only grow, so
        # an item above it is new; only items at or below it (a redelivery) need the
        # event-id lookup, which otherwise costs a third of a batch's time.
        self._stored_offsets: dict[tuple[str, int], int] = {}

    def reset(self) -> None:
        """Forget cached heads and offsets (after a rebalance); they reload from the table."""
        self._heads.clear()
        self._stored_offsets.clear()

    def write(self, items: Sequence[AuditItem]) -> int:
        """Append ``(event, topic, partition, offset)`` items in order; returns rows inserted.

        Events already in the log (by event_id) are skipped, so re-delivery after a
        crash neither duplicates rows nor forks a chain. The whole batch is one
        insert; if it fails the error is a StoreError, no cached head advances
        (the batch's heads are dropped and reread from the table, in case the
        insert landed after all), so retrying the same batch is correct.
        """
        items = list(items)
        if not items:
            return 0
        self._load_offsets({(topic, partition) for _, topic, partition, _ in items})
        redelivered = {
            event.event_id
            for event, topic, partition, offset in items
            if offset <= self._stored_offsets.get((topic, partition), -1)
        }
        already = self._existing_ids(redelivered) if redelivered else set()
        staged: dict[str, tuple[int, str]] = {}
        self._load_heads({event.model for event, *_ in items} - self._heads.keys())
        columns: list[list[Any]] = [[] for _ in COLUMNS]
        recorded_at = now_ms()
        for event, topic, partition, offset in items:
            if event.event_id in already:
                continue
            already.add(event.event_id)
            seq, prev_hash = staged.get(event.model) or self._heads.get(event.model, (0, GENESIS))
            canonical = event.canonical_json()
            digest = chain_hash(prev_hash, canonical)
            row = (
                event.model,
                seq + 1,
                event.event_id,
                event.type,
                event.version,
                event.actor,
                event.occurred_at,
                canonical.decode("utf-8"),
                prev_hash,
                digest,
                topic,
                partition,
                offset,
                recorded_at,
            )
            for column, value in zip(columns, row, strict=True):
                column.append(value)
            staged[event.model] = (seq + 1, digest)
        if not staged:
            return 0
        written = len(columns[0])
        try:
            insert_and_release(
                self.client, self.table, columns, column_names=COLUMNS, column_oriented=True
            )
        except Exception as exc:
            # The insert may or may not have landed (a timeout after the server
            # committed looks the same as a refusal), so drop these heads and
            # reload them from the table rather than guess.
            for model in staged:
                self._heads.pop(model, None)
            self._stored_offsets.clear()
            raise StoreError(
                f"inserting {written} audit rows into {self.table} failed: {exc}; "
                "retry the same batch (already-written events are skipped)"
            ) from exc
        self._heads.update(staged)
        for _, topic, partition, offset in items:
            key = (topic, partition)
            self._stored_offsets[key] = max(self._stored_offsets.get(key, -1), offset)
        return written

    def _load_offsets(self, partitions: set[tuple[str, int]]) -> None:
        missing = partitions - self._stored_offsets.keys()
        if not missing:
            return
        for topic, partition in missing:
            self._stored_offsets[(topic, partition)] = -1
        rows = self._query(
            f"SELECT source_topic, source_partition, max(source_offset) FROM {self.table} "
            "WHERE source_topic IN {topics:Array(String)} GROUP BY source_topic, source_partition",
            {"topics": sorted({topic for topic, _ in missing})},
        )
        for topic, partition, offset in rows:
            if (topic, partition) in missing:
                self._stored_offsets[(topic, partition)] = int(offset)

    def _existing_ids(self, event_ids: set[str]) -> set[str]:
        if all(_PLAIN_ID.match(event_id) for event_id in event_ids):
            # Plain ids (uuids) are inlined: the driver's generic parameter escaping
            # costs more than the whole query for a batch of thousands.
            listed = ",".join(f"'{event_id}'" for event_id in sorted(event_ids))
            sql = f"SELECT event_id FROM {self.table} WHERE event_id IN ({listed})"
            rows = self._query(sql, {})
        else:
            rows = self._query(
                f"SELECT event_id FROM {self.table} WHERE event_id IN {{ids:Array(String)}}",
                {"ids": sorted(event_ids)},
            )
        return {row[0] for row in rows}

    def _load_heads(self, models: set[str]) -> None:
        if not models:
            return
        rows = self._query(
            f"SELECT model, max(seq), argMax(hash, seq) FROM {self.table} "
            "WHERE model IN {models:Array(String)} GROUP BY model",
            {"models": sorted(models)},
        )
        for model, seq, digest in rows:
            self._heads[model] = (int(seq), _text(digest))

    def _query(self, sql: str, parameters: dict[str, Any]) -> list[tuple]:
        try:
            return self.client.query(sql, parameters=parameters).result_rows
        except Exception as exc:
            raise StoreError(f"reading {self.table} failed: {exc}") from exc


_PLAIN_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")


# -- verification ---------------------------------------------------------------


@dataclass(frozen=True)
class AuditProblem:
    """One way a model's audit trail does not hold, at the row it concerns.

    ``kind`` is one of (the chain walk finds the first four, :mod:`driftline.lineage.audit.verify`
    the rest):

    - ``edited``: a row's content or hash was changed;
    - ``broken_link``: prev_hash is not the previous row's hash (rows deleted,
      inserted, reordered, or a row rewritten with a recomputed hash);
    - ``gap``: seq skips (rows deleted);
    - ``duplicate``: two rows share a seq, or an event appears twice;
    - ``truncated``: a checkpointed row is gone;
    - ``rewritten``: a checkpointed row's hash is not the signed one;
    - ``bad_signature``: a checkpoint's signature does not verify (the checkpoint was edited);
    - ``untrusted_signer``: a checkpoint is signed by a key other than the lineage writer's;
    - ``checkpoint_missing``: a checkpoint was removed from ``audit_checkpoints`` (the
      next checkpoint links back to it, or the anchor topic still holds it);
    - ``checkpoint_unanchored``: a checkpoint in the table that the anchor topic lacks;
    - ``unverified_tail``: rows past the newest checkpoint, older than the writer's
      checkpoint cadence allows;
    - ``forged``: a row whose source record (topic, partition, offset) is missing or
      says something else;
    - ``row_missing``: an event on the lifecycle topic that the audit log lacks.
    """

    model: str
    seq: int
    kind: str
    detail: str

    def __str__(self) -> str:
        return f"model {self.model!r} seq {self.seq}: {self.kind}: {self.detail}"


@dataclass(frozen=True)
class AuditReport:
    problems: tuple[AuditProblem, ...]
    models_checked: int
    rows_checked: int
    heads: dict[str, tuple[int, str]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def first(self) -> AuditProblem | None:
        return self.problems[0] if self.problems else None

    def summary(self) -> str:
        if self.ok:
            return f"audit log intact: {self.models_checked} model(s), {self.rows_checked} row(s)"
        return "audit log NOT intact:\n" + "\n".join(f"  {p}" for p in self.problems)


@dataclass(frozen=True)
class ChainRow:
    """One audit_log row as verification reads it (timestamps in int ms)."""

    seq: int
    event_id: str
    event_type: str
    version: int | None
    actor: str
    occurred_at: int
    canonical: bytes
    prev_hash: str
    hash: str
    source_topic: str
    source_partition: int
    source_offset: int
    recorded_at: int


_CHAIN_SQL = (
    "SELECT seq, event_id, event_type, version, actor, toUnixTimestamp64Milli(occurred_at), "
    "canonical, prev_hash, hash, source_topic, source_partition, source_offset, "
    "toUnixTimestamp64Milli(recorded_at) FROM {table} "
    "WHERE model = {{model:String}} AND seq >= {{from_seq:UInt64}} "
    "ORDER BY seq, recorded_at, event_id"
)


def read_chain(
    client: ClickHouseClient, database: str, model: str, from_seq: int = 1
) -> list[ChainRow]:
    """``model``'s rows from ``from_seq`` on, in chain order (raises StoreError)."""
    name = table(database, AUDIT_LOG)
    try:
        rows = client.query(
            _CHAIN_SQL.format(table=name),
            parameters={"model": model, "from_seq": max(0, from_seq)},
            column_formats={"canonical": "bytes"},
        ).result_rows
    except Exception as exc:
        raise StoreError(f"reading {model!r}'s chain from {name} failed: {exc}") from exc
    return [
        ChainRow(
            int(seq), event_id, event_type, version, actor, int(occurred_at), bytes(canonical),
            _text(prev), _text(digest), topic, int(partition), int(offset), int(recorded),
        )
        for (seq, event_id, event_type, version, actor, occurred_at, canonical, prev, digest,
             topic, partition, offset, recorded) in rows
    ]  # fmt: skip


def chain_models(client: ClickHouseClient, database: str) -> list[str]:
    name = table(database, AUDIT_LOG)
    try:
        return sorted(r[0] for r in client.query(f"SELECT DISTINCT model FROM {name}").result_rows)
    except Exception as exc:
        raise StoreError(f"listing the models in {name} failed: {exc}") from exc


def verify(client: ClickHouseClient, database: str, model: str | None = None) -> AuditReport:
    """Walk every model's chain (or just ``model``'s) and report the first problem in each.

    The chain alone: see :func:`driftline.lineage.audit.verify.verify_audit` for the checks
    against signed checkpoints and the Kafka source records.
    """
    models = chain_models(client, database) if model is None else [model]
    problems: list[AuditProblem] = []
    heads: dict[str, tuple[int, str]] = {}
    rows_checked = 0
    for m in models:
        rows = read_chain(client, database, m)
        rows_checked += len(rows)
        problem = walk(m, rows)
        if problem is not None:
            problems.append(problem)
        elif rows:
            heads[m] = (rows[-1].seq, rows[-1].hash)
    return AuditReport(
        problems=tuple(problems),
        models_checked=len(models),
        rows_checked=rows_checked,
        heads=heads,
    )


def walk(
    model: str, rows: Sequence[ChainRow], start: tuple[int, str] = (0, GENESIS)
) -> AuditProblem | None:
    """The first problem in ``rows``, which must continue the chain after ``start``
    ((seq, hash) of the row before the first one; (0, GENESIS) for a whole chain)."""
    prev_seq, prev_hash = start
    seen_ids: dict[str, int] = {}
    for i, row in enumerate(rows):
        seq = row.seq

        def problem(kind: str, detail: str, seq: int = seq) -> AuditProblem:
            return AuditProblem(model=model, seq=seq, kind=kind, detail=detail)

        if i + 1 < len(rows) and rows[i + 1].seq == seq:
            return problem("duplicate", f"more than one row has seq {seq}")
        if seq != prev_seq + 1:
            missing = (
                f"seq {prev_seq + 1}" if seq == prev_seq + 2 else f"seqs {prev_seq + 1}..{seq - 1}"
            )
            return problem("gap", f"{missing} missing: seq jumps from {prev_seq} to {seq}")
        if row.prev_hash != prev_hash:
            return problem(
                "broken_link",
                f"prev_hash {row.prev_hash[:12]}... is not the hash of the row before "
                f"({prev_hash[:12]}...): a row before it was deleted, inserted, reordered "
                "or rewritten with a recomputed hash",
            )
        if not _is_hex64(row.prev_hash) or chain_hash(row.prev_hash, row.canonical) != row.hash:
            return problem("edited", "stored hash does not match the row's canonical content")
        mismatch = _column_mismatch(row, model)
        if mismatch:
            return problem("edited", mismatch)
        if row.event_id in seen_ids:
            return problem(
                "duplicate",
                f"event {row.event_id} was already recorded at seq {seen_ids[row.event_id]}",
            )
        seen_ids[row.event_id] = seq
        prev_seq, prev_hash = seq, row.hash
    return None


def _column_mismatch(row: ChainRow, model: str) -> str | None:
    # The convenience columns are what dashboards show; they must say what the
    # hashed canonical JSON says, or an edit to them would go unnoticed.
    try:
        body = json.loads(row.canonical)
    except (ValueError, UnicodeDecodeError):
        return "canonical column is not valid JSON"
    if not isinstance(body, dict):
        return "canonical column is not a JSON object"
    expected = (
        ("model", "model", model),
        ("event_id", "event_id", row.event_id),
        ("event_type", "type", row.event_type),
        ("version", "version", row.version),
        ("actor", "actor", row.actor),
        ("occurred_at", "occurred_at", row.occurred_at),
    )
    for column, key, value in expected:
        if body.get(key) != value:
            return f"column {column} says {value!r} but the hashed event says {body.get(key)!r}"
    return None


def _is_hex64(value: str) -> bool:
    return len(value) == 64 and all(c in "0123456789abcdef" for c in value)


def _text(value: str | bytes) -> str:
    # FixedString columns come back as bytes; a forged short value is NUL-padded.
    return value.decode("ascii", "replace") if isinstance(value, bytes) else value
