"""Everything `driftline audit verify` checks, and what it cannot.

:func:`verify_audit` puts together, per model:

1. the hash chain (:func:`driftline.lineage.audit.chain.walk`): edits, gaps, reorderings,
   duplicates;
2. the signed checkpoints in ``audit_checkpoints``: only the lineage writer's
   key (:class:`~driftline.lineage.audit.checkpoints.WriterKey`) may sign them, each must
   verify, link to its predecessor, and its row must still hold the signed hash;
3. the cadence: the writer checkpoints every ``interval`` (and at every clean
   shutdown), so rows past the newest checkpoint that are older than
   ``interval + grace`` are ``unverified_tail``;
4. the anchor topic, a copy of every checkpoint outside ClickHouse: a
   checkpoint deleted or edited in the table is ``checkpoint_missing``;
5. the source records on Kafka (:mod:`driftline.lineage.audit.sources`): a row with no
   source record or a different one is ``forged``, an event on the lifecycle
   topic with no row is ``row_missing``.

Without 4 and 5 (no broker reachable) the verdict is ``UNVERIFIED``, never
intact: someone who can write both tables can delete rows together with the
checkpoints above them, and only Kafka still remembers.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from driftline.lineage.audit.chain import AuditProblem, ChainRow, chain_models, read_chain, walk
from driftline.lineage.audit.checkpoints import (
    Checkpoint,
    WriterKey,
    check_links,
    check_signatures,
    load_checkpoints,
)
from driftline.lineage.audit.checkpoints import check_rows as check_checkpointed_rows
from driftline.lineage.audit.sources import SourceFetcher, check_rows, missing_rows, wanted
from driftline.lineage.events import now_ms as _now_ms
from driftline.lineage.store.clickhouse import ClickHouseClient

INTACT, NOT_INTACT, UNVERIFIED = "intact", "NOT intact", "UNVERIFIED"


@dataclass(frozen=True)
class Cadence:
    """How often the writer checkpoints, and how late a checkpoint may be before a row
    past it counts as ``unverified_tail``."""

    interval_ms: int
    grace_ms: int

    @property
    def allowed_ms(self) -> int:
        return self.interval_ms + self.grace_ms


@dataclass(frozen=True)
class KafkaEvidence:
    """What verification reads from Kafka: the anchor topic's checkpoints and a way to
    fetch the source records of audit rows."""

    anchor_topic: str
    anchors: Sequence[Checkpoint]
    fetch: SourceFetcher


@dataclass(frozen=True)
class AuditVerdict:
    problems: tuple[AuditProblem, ...]
    unverified: tuple[str, ...]  # checks that could not run, and why
    notes: tuple[str, ...]
    models_checked: int
    rows_checked: int
    checkpoints_checked: int = 0
    sources_checked: int = 0
    heads: dict[str, tuple[int, str]] = field(default_factory=dict)

    @property
    def status(self) -> str:
        if self.problems:
            return NOT_INTACT
        return UNVERIFIED if self.unverified else INTACT

    @property
    def ok(self) -> bool:
        return self.status == INTACT

    @property
    def first(self) -> AuditProblem | None:
        return self.problems[0] if self.problems else None

    def summary(self) -> str:
        counts = (
            f"{self.models_checked} model(s), {self.rows_checked} row(s), "
            f"{self.checkpoints_checked} signed checkpoint(s), "
            f"{self.sources_checked} row(s) matched to their source records"
        )
        lines = [f"audit log {self.status}: {counts}"]
        lines += [f"  {p}" for p in self.problems]
        lines += [f"  not verified: {reason}" for reason in self.unverified]
        lines += [f"  note: {note}" for note in self.notes]
        return "\n".join(lines)


def verify_audit(
    client: ClickHouseClient,
    database: str,
    writer: WriterKey,
    cadence: Cadence,
    *,
    kafka: KafkaEvidence | None = None,
    kafka_unavailable: str = "no Kafka broker was given",
    model: str | None = None,
    now_ms: int | None = None,
) -> AuditVerdict:
    """The full verification (see the module docstring); ``model`` limits it to one chain."""
    now = _now_ms() if now_ms is None else now_ms
    stored = load_checkpoints(client, database, model)
    anchors = [] if kafka is None else [a for a in kafka.anchors if model in (None, a.model)]
    models = set(chain_models(client, database) if model is None else [model])
    models |= {c.model for c in stored} | {a.model for a in anchors}
    problems: list[AuditProblem] = []
    notes: list[str] = []
    unverified: list[str] = []

    valid, bad = check_signatures(stored, writer)
    problems += bad
    anchored: list[Checkpoint] = []
    if kafka is not None:
        anchored, bad = check_signatures(
            anchors, writer, where=f"anchor topic {kafka.anchor_topic}"
        )
        problems += bad
        problems += _compare_anchors(stored, valid, anchored, kafka.anchor_topic, now, cadence)
    else:
        unverified.append(
            f"{kafka_unavailable}: checkpoints were not compared with their copies on the anchor "
            "topic and rows were not compared with their source records, so rows deleted "
            "together with the checkpoints above them, or a chain recomputed with its "
            "checkpoints removed, would go unseen"
        )

    chains: dict[str, list[ChainRow]] = {}
    heads: dict[str, tuple[int, str]] = {}
    signed = _dedup(valid + anchored)
    for m in sorted(models):
        rows = read_chain(client, database, m)
        chains[m] = rows
        problem = walk(m, rows)
        if problem is not None:
            problems.append(problem)
        elif rows:
            heads[m] = (rows[-1].seq, rows[-1].hash)
        mine = [c for c in signed if c.model == m]
        row_hashes: dict[int, list[str]] = {}
        for row in rows:
            row_hashes.setdefault(row.seq, []).append(row.hash)
        problems += check_checkpointed_rows(mine, row_hashes)
        problems += check_links([c for c in valid if c.model == m])
        tail_problem, note = _tail(m, rows, mine, cadence, now)
        if tail_problem is not None:
            problems.append(tail_problem)
        if note:
            notes.append(note)

    sources_checked = 0
    if kafka is not None:
        log = kafka.fetch(wanted(row for rows in chains.values() for row in rows))
        unsourced = 0
        for m, rows in chains.items():
            result = check_rows(m, rows, log)
            problems += result.problems
            sources_checked += result.checked
            unsourced += len(result.unsourced)
        problems += missing_rows(
            log,
            chains,
            models=None if model is None else {model},
            before_ms=now - cadence.grace_ms,
            signed_seq=_highest_seq(signed),
        )
        if unsourced:
            notes.append(
                f"{unsourced} row(s) predate the oldest record their topic still holds (a "
                "broker restarted without its data, or retention): they are checked against "
                "the chain and the signed checkpoints only"
            )
    return AuditVerdict(
        problems=tuple(_dedup_problems(problems)),
        unverified=tuple(unverified),
        notes=tuple(notes),
        models_checked=len(models),
        rows_checked=sum(len(rows) for rows in chains.values()),
        checkpoints_checked=len(signed),
        sources_checked=sources_checked,
        heads=heads,
    )


def _compare_anchors(
    stored: Sequence[Checkpoint],
    valid: Sequence[Checkpoint],
    anchored: Sequence[Checkpoint],
    topic: str,
    now: int,
    cadence: Cadence,
) -> list[AuditProblem]:
    problems = []
    in_table = {(c.model, c.seq, c.signed_at) for c in stored}
    for a in anchored:
        # A table row at the same place but altered is already bad_signature.
        if (a.model, a.seq, a.signed_at) not in in_table:
            problems.append(
                AuditProblem(
                    a.model,
                    a.seq,
                    "checkpoint_missing",
                    f"the anchor topic {topic} holds the {a.describe()}, which "
                    "audit_checkpoints no longer has: it was deleted from the table",
                )
            )
    on_topic = {_identity(a) for a in anchored}
    for c in valid:
        # The writer publishes right after storing; a fresh one may still be on its way.
        if _identity(c) not in on_topic and c.signed_at < now - cadence.allowed_ms:
            problems.append(
                AuditProblem(
                    c.model,
                    c.seq,
                    "checkpoint_unanchored",
                    f"the {c.describe()} is in audit_checkpoints but not on the anchor topic "
                    f"{topic}: it was never published, or was put in the table by hand",
                )
            )
    return problems


def _tail(
    model: str,
    rows: Sequence[ChainRow],
    checkpoints: Sequence[Checkpoint],
    cadence: Cadence,
    now: int,
) -> tuple[AuditProblem | None, str]:
    covered = max((c.seq for c in checkpoints), default=0)
    tail = [r for r in rows if r.seq > covered]
    if not tail:
        return None, ""
    late = [r for r in tail if r.recorded_at < now - cadence.allowed_ms]
    newest = f"the newest checkpoint is at seq {covered}" if covered else "no checkpoint covers it"
    if not late:
        return None, (
            f"{model}: {len(tail)} row(s) after seq {covered} were recorded in the last "
            f"{cadence.allowed_ms / 1000:g} s and await their checkpoint"
        )
    first = late[0]
    age_s = (now - first.recorded_at) / 1000
    return AuditProblem(
        model,
        first.seq,
        "unverified_tail",
        f"rows {tail[0].seq}..{tail[-1].seq} are past any signed checkpoint ({newest}); row "
        f"{first.seq} was recorded {age_s:.0f} s ago, but the lineage writer checkpoints every "
        f"{cadence.interval_ms / 1000:g} s and at shutdown (grace "
        f"{cadence.grace_ms / 1000:g} s): rows appended by hand, or checkpoints removed",
    ), ""


def _identity(c: Checkpoint) -> tuple:
    return (c.model, c.seq, c.hash, c.signed_at, c.signature)


def _highest_seq(checkpoints: Iterable[Checkpoint]) -> dict[str, int]:
    highest: dict[str, int] = {}
    for c in checkpoints:
        highest[c.model] = max(highest.get(c.model, 0), c.seq)
    return highest


def _dedup(checkpoints: Iterable[Checkpoint]) -> list[Checkpoint]:
    seen, out = set(), []
    for c in checkpoints:
        if _identity(c) not in seen:
            seen.add(_identity(c))
            out.append(c)
    return out


def _dedup_problems(problems: Iterable[AuditProblem]) -> list[AuditProblem]:
    seen, out = set(), []
    for p in problems:
        if (p.model, p.seq, p.kind) not in seen:
            seen.add((p.model, p.seq, p.kind))
            out.append(p)
    return sorted(out, key=lambda p: (p.model, p.seq, p.kind))
