"""Continuous verification by the lineage writer: check each new tail, then sign its head.

Cheap enough to run on every checkpoint: per model it reads only the rows after
the last head it verified, walks them from that head, looks up whether any of
their events was already recorded earlier (an old event copied onto the end
would chain), and compares them with their source records on Kafka, all models'
records in one read. Only a tail that passes is signed. A failing one comes back
as problems (the caller raises an ``audit_alarm``) and its model stays at its last
good head, so the same problems come back until someone repairs the chain.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from driftline.lineage.audit.chain import GENESIS, AuditProblem, ChainRow, read_chain, walk
from driftline.lineage.audit.checkpoints import (
    Checkpoint,
    WriterKey,
    check_signatures,
    load_checkpoints,
)
from driftline.lineage.audit.sources import SourceFetcher, check_rows, wanted
from driftline.lineage.exceptions import SourcesUnavailable, StoreError
from driftline.lineage.store.clickhouse import AUDIT_LOG, ClickHouseClient, table


@dataclass(frozen=True)
class TailResult:
    signed: tuple[Checkpoint, ...]
    problems: tuple[AuditProblem, ...]
    # Models left unsigned this round because their source records could not be read.
    deferred: tuple[str, ...] = ()


class TailVerifier:
    """Keeps, per model, the last head it verified (seeded from the valid stored and
    anchored checkpoints) and signs heads whose new tail verifies (module docstring)."""

    def __init__(
        self,
        client: ClickHouseClient,
        database: str,
        writer: WriterKey,
        sign: Callable[[str, int, str, int, str], Checkpoint],
        *,
        fetch: SourceFetcher | None = None,
        grace_ms: int = 0,
    ) -> None:
        self._client = client
        self._database = database
        self._writer = writer
        self._sign = sign  # (model, seq, hash, prev_seq, reason) -> a signed Checkpoint
        self.fetch = fetch  # None: tails are checked without their source records
        self._grace_ms = grace_ms
        self._verified: dict[str, tuple[int, str]] = {}
        self._signed_at: dict[str, int] = {}  # when each verified head was signed

    def seed(self, checkpoints: Iterable[Checkpoint]) -> list[AuditProblem]:
        """Start from these checkpoints (stored and anchored); returns the invalid ones."""
        valid, problems = check_signatures(checkpoints, self._writer)
        for c in valid:
            self._take(c)
        return problems

    def _take(self, c: Checkpoint) -> None:
        if c.seq > self._verified.get(c.model, (0, ""))[0]:
            self._verified[c.model] = (c.seq, c.hash)
            self._signed_at[c.model] = c.signed_at

    @property
    def verified(self) -> dict[str, tuple[int, str]]:
        return dict(self._verified)

    def forget(self, models: Iterable[str]) -> None:
        """Drop these models' verified heads (their checkpoints were not stored); they
        are re-seeded from the table on the next run."""
        for model in models:
            self._verified.pop(model, None)
            self._signed_at.pop(model, None)

    def run(self, heads: dict[str, tuple[int, str]], reason: str) -> TailResult:
        """Verify every chain whose head moved past its verified one; sign those that hold."""
        problems = self._catch_up()
        tails: dict[str, list[ChainRow]] = {}
        for model, (head_seq, head_hash) in sorted(heads.items()):
            seq, digest = self._verified.get(model, (0, ""))
            if head_seq == seq and head_hash == digest:
                continue
            found, rows = self._check_chain(model, seq, digest, head_seq)
            problems += found
            if not found:
                tails[model] = rows
        deferred: list[str] = []
        if tails and self.fetch is not None:
            try:
                log = self.fetch(wanted(row for rows in tails.values() for row in rows))
            except SourcesUnavailable as exc:
                # Unsigned until their sources can be read.
                deferred = [f"{model}: {exc}" for model in tails]
                tails = {}
            else:
                for model in list(tails):
                    check = check_rows(model, tails[model], log)
                    found = check.problems + self._unvouched(model, check.unsourced)
                    if found:
                        problems += found
                        del tails[model]
        signed = []
        for model in tails:
            prev_seq = self._verified.get(model, (0, ""))[0]
            checkpoint = self._sign(model, *heads[model], prev_seq, reason)
            signed.append(checkpoint)
            self._verified[model] = heads[model]
            self._signed_at[model] = checkpoint.signed_at
        for model, (seq, _) in sorted(self._verified.items()):
            if model not in heads:
                problems.append(
                    AuditProblem(
                        model, 1, "truncated", f"every row is gone, but seq {seq} was signed"
                    )
                )
        return TailResult(tuple(signed), tuple(problems), tuple(deferred))

    def _catch_up(self) -> list[AuditProblem]:
        # Another lineage worker (same key) may have signed heads meanwhile, after a
        # rebalance; only each model's newest checkpoint is read, so a round stays cheap.
        newest = load_checkpoints(self._client, self._database, newest=True)
        fresh = [c for c in newest if c.seq > self._verified.get(c.model, (0, ""))[0]]
        valid, problems = check_signatures(fresh, self._writer)
        for c in valid:
            self._take(c)
        return problems

    def _unvouched(self, model: str, unsourced: Sequence[ChainRow]) -> list[AuditProblem]:
        """Tail rows whose source is gone are taken only when they are plausibly new.

        Their content cannot be checked, and recorded_at is not hashed, so a forger can
        date a row before anything the topic holds. A row past the verified head was
        written after that head was signed; one dated earlier is backdated. A chain no
        checkpoint vouches for yet gets no benefit of the doubt.
        """
        if not unsourced:
            return []
        row = unsourced[0]
        signed_at = self._signed_at.get(model)
        if signed_at is None:
            return [
                AuditProblem(
                    model,
                    row.seq,
                    "unverified_tail",
                    "its source record is older than anything the topic holds and no "
                    "checkpoint vouches for the chain yet, so it cannot be verified",
                )
            ]
        if row.recorded_at < signed_at - self._grace_ms:
            seq = self._verified[model][0]
            return [
                AuditProblem(
                    model,
                    row.seq,
                    "forged",
                    f"it is dated {row.recorded_at}, before the checkpoint at seq {seq} was "
                    f"signed ({signed_at}), which would then have covered it, and its source "
                    "record is not on the topic: a backdated row",
                )
            ]
        return []

    def _check_chain(
        self, model: str, seq: int, digest: str, head_seq: int
    ) -> tuple[list[AuditProblem], list[ChainRow]]:
        """(problems, the tail's rows) for the rows after the verified (seq, digest)."""
        if head_seq < seq:
            return [
                AuditProblem(
                    model,
                    head_seq + 1,
                    "truncated",
                    f"rows {head_seq + 1}..{seq} are gone, but seq {seq} was signed",
                )
            ], []
        rows = read_chain(self._client, self._database, model, from_seq=max(seq, 1))
        start = (0, GENESIS)
        if seq:
            at = [r for r in rows if r.seq == seq]
            if len(at) != 1 or at[0].hash != digest:
                return [
                    AuditProblem(
                        model,
                        seq,
                        "rewritten",
                        f"row {seq} no longer holds the hash signed at its checkpoint "
                        f"({digest[:16]}...)",
                    )
                ], []
            start = (seq, digest)
            rows = [r for r in rows if r.seq > seq]
        problem = walk(model, rows, start)
        if problem is not None:
            return [problem], rows
        return self._repeated_events(model, rows, seq), rows

    def _repeated_events(
        self, model: str, rows: Sequence[ChainRow], below: int
    ) -> list[AuditProblem]:
        # The tail walk sees only the tail: an old event copied onto the end would chain.
        if not rows or not below:
            return []
        ids = {r.event_id: r.seq for r in rows}
        name = table(self._database, AUDIT_LOG)
        try:
            found = self._client.query(
                f"SELECT event_id, min(seq) FROM {name} WHERE model = {{m:String}} "
                "AND seq <= {s:UInt64} AND event_id IN {ids:Array(String)} GROUP BY event_id",
                parameters={"m": model, "s": below, "ids": sorted(ids)},
            ).result_rows
        except Exception as exc:
            raise StoreError(f"looking up {model!r}'s tail events in {name} failed: {exc}") from exc
        return [
            AuditProblem(
                model,
                ids[event_id],
                "duplicate",
                f"event {event_id} was already recorded at seq {earlier}: a replayed row",
            )
            for event_id, earlier in sorted(found, key=lambda r: ids[r[0]])
        ]
