"""Replay logged feature rows through a candidate model, paired with what was served.

:func:`replay` reads the ``features`` rows of a model in a time window, scores
them with a candidate :class:`~driftline.inference.model.LoadedModel` and writes one
``replay_predictions`` row per scored record: the candidate's score beside the
served (non-shadow) prediction for the same record id, NULL when nothing was
served. :func:`replay_report` summarises one replay in SQL.

Data moves as Arrow columns both ways: a chunk's ``Array(Float32)`` column
becomes the float32 matrix from its flattened values, and the paired rows go
back with one Arrow insert per chunk. No per-row Python on the common path.
"""

from __future__ import annotations

import itertools
import math
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from driftline.inference.signature import FEATURE_COUNT_MISMATCH, FEATURE_NAMES_MISMATCH, NON_FINITE
from driftline.lineage.exceptions import LineageError, StoreError
from driftline.lineage.store.arrow_insert import insert_arrow_table
from driftline.lineage.store.clickhouse import (
    FEATURES,
    PREDICTIONS,
    REPLAYS,
    ClickHouseClient,
    table,
)

if TYPE_CHECKING:
    from driftline.inference.model import LoadedModel

_WINDOW = (
    "model = {model:String} AND event_time >= fromUnixTimestamp64Milli({start:Int64}, 'UTC') "
    "AND event_time < fromUnixTimestamp64Milli({end:Int64}, 'UTC')"
)
# Keyset pagination over the sort key: each chunk starts after the last
# (event_time, record_id) seen, so a chunk costs the same wherever it lies.
_AFTER = (
    " AND event_time >= fromUnixTimestamp64Milli({after_ms:Int64}, 'UTC') AND (event_time, "
    "record_id) > (fromUnixTimestamp64Milli({after_ms:Int64}, 'UTC'), {after_id:String})"
)
_CHUNK_SQL = (
    "SELECT record_id, entity_id, toUnixTimestamp64Milli(event_time) AS event_ms, feature_names, "
    "features FROM {features} FINAL WHERE " + _WINDOW + "{after} "
    "ORDER BY event_time, record_id LIMIT {limit:UInt64}"
)
# Served predictions carry the record's own event_time, so the chunk's time
# range bounds the lookup; argMax keeps the latest of re-scored records.
_SERVED_SQL = (
    "SELECT record_id, argMax(version, scored_at) AS served_version, "
    "argMax(arm, scored_at) AS served_arm, argMax(score, scored_at) AS served_score "
    "FROM {predictions} WHERE model = {model:String} AND arm != 'shadow' "
    "AND event_time >= fromUnixTimestamp64Milli({lo:Int64}, 'UTC') "
    "AND event_time <= fromUnixTimestamp64Milli({hi:Int64}, 'UTC') GROUP BY record_id"
)


@dataclass(frozen=True)
class ReplaySummary:
    """What one replay wrote: rows scored, of which paired with a served score, and skips."""

    replay_id: str
    model: str
    version: int
    start_ms: int
    end_ms: int
    rows_replayed: int
    rows_paired: int
    skipped: dict[str, int]  # reason code -> rows not scored
    seconds: float


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")


def _query(
    client: ClickHouseClient, sql: str, parameters: dict[str, Any], what: str, arrow: bool = False
):
    try:
        run = client.query_arrow if arrow else client.query
        return run(sql, parameters=parameters)
    except Exception as exc:  # clickhouse_connect raises several unrelated types
        raise StoreError(f"{what} failed: {exc}") from exc


def _no_rows_error(
    client: ClickHouseClient, database: str, model: str, start_ms: int, end_ms: int
) -> str:
    name = table(database, FEATURES)
    count, first, last = _query(
        client,
        f"SELECT count(), toUnixTimestamp64Milli(min(event_time)), "
        f"toUnixTimestamp64Milli(max(event_time)) FROM {name} WHERE model = {{model:String}}",
        {"model": model},
        f"reading {name}",
    ).result_rows[0]
    logged = (
        f"its logged rows span {_iso(first)} to {_iso(last)}; pick a window inside that"
        if count
        else "no feature rows are logged for it at all"
    )
    return (
        f"no feature rows of model {model!r} logged in [{_iso(start_ms)}, {_iso(end_ms)}) in "
        f"{name}: {logged}. Replay needs feature logging while the model serves: set "
        "DRIFTLINE_CLICKHOUSE_FEATURE_SAMPLE_RATE above 0 (1.0 logs every entity)"
    )


def _checked_matrix(chunk: pa.Table, model: LoadedModel, skipped: dict[str, int]):
    """Row mask of scorable rows and their float32 matrix; counts the others in ``skipped``."""
    k = model.signature.n_features
    features = chunk.column("features").combine_chunks()
    ok = pc.list_value_length(features).to_numpy(zero_copy_only=False) == k
    bad = {FEATURE_COUNT_MISMATCH: int((~ok).sum())}
    if model.signature.feature_names is not None:
        # Rows logged without names ("") passed the worker's checks by width alone.
        names = chunk.column("feature_names")
        expected = ",".join(model.signature.feature_names)
        named = pc.or_(pc.equal(names, expected), pc.equal(names, ""))
        named = named.to_numpy(zero_copy_only=False) & ok
        bad[FEATURE_NAMES_MISMATCH] = int(ok.sum() - named.sum())
        ok = named
    matrix = features.filter(pa.array(ok)).flatten().to_numpy(zero_copy_only=False)
    matrix = matrix.astype(np.float32, copy=False).reshape(-1, k)
    finite = np.isfinite(matrix).all(axis=1)
    bad[NON_FINITE] = int((~finite).sum())
    if not finite.all():
        ok[np.flatnonzero(ok)[~finite]] = False
        matrix = matrix[finite]
    for reason, count in bad.items():
        if count:
            skipped[reason] = skipped.get(reason, 0) + count
    return ok, np.ascontiguousarray(matrix)


def replay(
    client: ClickHouseClient,
    database: str,
    model: LoadedModel,
    *,
    start_ms: int,
    end_ms: int,
    replay_id: str | None = None,
    chunk_rows: int = 100_000,
    progress: Callable[[int, int], None] | None = None,
) -> ReplaySummary:
    """Score ``model``'s logged feature rows in ``[start_ms, end_ms)`` and store the pairs."""
    if start_ms >= end_ms:
        raise LineageError(
            f"replay window start {_iso(start_ms)} is not before its end {_iso(end_ms)}; "
            "pass --from earlier than --to"
        )
    if chunk_rows < 1:
        raise LineageError(f"chunk_rows must be at least 1, got {chunk_rows}")
    started = time.perf_counter()
    replay_id = replay_id or str(uuid.uuid4())
    features = table(database, FEATURES)
    window = {"model": model.name, "start": start_ms, "end": end_ms}
    total = _query(
        client, f"SELECT count() FROM {features} FINAL WHERE {_WINDOW}", window, "counting rows"
    ).result_rows[0][0]
    if not total:
        raise LineageError(_no_rows_error(client, database, model.name, start_ms, end_ms))
    done = replayed = paired = 0
    skipped: dict[str, int] = {}
    after: dict[str, Any] = {}
    for index in itertools.count():
        sql = _CHUNK_SQL.replace("{features}", features).replace("{after}", _AFTER if after else "")
        params = {**window, **after, "limit": chunk_rows}
        chunk = _query(client, sql, params, f"reading {features}", arrow=True)
        if not chunk.num_rows:
            break
        times = chunk.column("event_ms").to_numpy()
        after = {"after_ms": int(times[-1]), "after_id": chunk.column("record_id")[-1].as_py()}
        ok, matrix = _checked_matrix(chunk, model, skipped)
        if len(matrix):
            scores = model.predict(matrix).score
            pairs = _paired(client, database, model, replay_id, chunk.filter(pa.array(ok)), scores)
            token = {"insert_deduplication_token": f"replay:{replay_id}:{index}"}
            try:
                insert_arrow_table(
                    client, table(database, REPLAYS), pairs, millis=("event_time",), settings=token
                )
            except StoreError as exc:
                raise StoreError(
                    f"replay {replay_id} stopped at chunk {index} ({done} of {total} rows "
                    f"done): {exc.__cause__ or exc}. Run it again with replay_id={replay_id!r}: "
                    "rows already written are replaced, not doubled"
                ) from exc
            replayed += pairs.num_rows
            paired += pairs.num_rows - pairs.column("served_score").null_count
        done += chunk.num_rows
        if progress is not None:
            progress(done, max(total, done))  # rows may still land in an open window
        if chunk.num_rows < chunk_rows:
            break
    return ReplaySummary(
        replay_id, model.name, model.version, start_ms, end_ms, replayed, paired, skipped,
        time.perf_counter() - started,
    )  # fmt: skip


def _paired(
    client: ClickHouseClient,
    database: str,
    model: LoadedModel,
    replay_id: str,
    rows: pa.Table,
    scores: Any,
) -> pa.Table:
    """The chunk's scored rows beside what was served for each record id (NULL if nothing)."""
    times = rows.column("event_ms")
    lookup = {"model": model.name, "lo": pc.min(times).as_py(), "hi": pc.max(times).as_py()}
    sql = _SERVED_SQL.replace("{predictions}", table(database, PREDICTIONS))
    found = _query(client, sql, lookup, "reading served predictions", arrow=True)
    at = pc.index_in(rows.column("record_id"), value_set=found.column("record_id"))
    n = len(scores)
    return pa.table(
        {
            "replay_id": pa.repeat(pa.scalar(replay_id), n),
            "record_id": rows.column("record_id"),
            "entity_id": rows.column("entity_id"),
            "model": pa.repeat(pa.scalar(model.name), n),
            "candidate_version": pa.array(np.full(n, model.version, np.int32)),
            "candidate_score": pa.array(scores, pa.float64()),
            "served_version": found.column("served_version").take(at).cast(pa.int32()),
            "served_arm": found.column("served_arm").take(at).cast(pa.string()),
            "served_score": found.column("served_score").take(at).cast(pa.float64()),
            "event_time": times,
        }
    )


@dataclass(frozen=True)
class ServedGroup:
    """Paired rows served by one version and arm, and their mean candidate - served gap."""

    version: int
    arm: str
    n: int
    mean_diff: float


@dataclass(frozen=True)
class ReplayReport:
    """Paired comparison of one replay; statistics are over rows with a served score."""

    replay_id: str
    model: str
    candidate_version: int
    threshold: float
    n_paired: int
    n_unpaired: int
    mean_candidate: float | None
    mean_served: float | None
    mean_diff: float | None
    ci_low: float | None
    ci_high: float | None
    mean_abs_diff: float | None
    p99_abs_diff: float | None
    correlation: float | None
    agreement: float | None
    flips_to_negative: int  # served >= threshold, candidate below
    flips_to_positive: int  # served below threshold, candidate >= it
    by_served: tuple[ServedGroup, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values (undefined statistics are None)."""
        out = asdict(self)
        out["by_served"] = [asdict(g) for g in self.by_served]
        return out

    def rows(self) -> list[tuple[str, str]]:
        def num(value: float | None, spec: str = ".4f") -> str:
            return "n/a" if value is None else format(value, spec)

        ci = "n/a"
        if self.ci_low is not None:
            ci = f"[{num(self.ci_low, '+.4f')}, {num(self.ci_high, '+.4f')}]"
        out = [
            ("replay", self.replay_id),
            ("candidate", f"{self.model} v{self.candidate_version}"),
            ("paired rows", f"{self.n_paired:,}"),
            ("unpaired rows (nothing served)", f"{self.n_unpaired:,}"),
            ("mean score, candidate", num(self.mean_candidate)),
            ("mean score, served", num(self.mean_served)),
            ("mean difference (candidate - served)", f"{num(self.mean_diff, '+.4f')} 95% CI {ci}"),
            ("mean |difference|", num(self.mean_abs_diff)),
            ("p99 |difference|", num(self.p99_abs_diff)),
            ("correlation", num(self.correlation)),
            (f"decision agreement at {self.threshold:g}", num(self.agreement, ".2%")),
            ("flips served positive -> candidate negative", f"{self.flips_to_negative:,}"),
            ("flips served negative -> candidate positive", f"{self.flips_to_positive:,}"),
        ]
        return out + [
            (f"served v{g.version} ({g.arm})", f"n={g.n:,}, mean diff {g.mean_diff:+.4f}")
            for g in self.by_served
        ]


def _finite(value: Any) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


# Aggregates skip NULLs, so d (NULL when nothing was served) limits them to paired rows.
_REPORT_SQL = """
WITH {t:Float64} AS t
SELECT count(), count(served_score), any(model), any(candidate_version),
    avgIf(candidate_score, served_score IS NOT NULL), avg(served_score), avg(d),
    stddevSamp(d), avg(abs(d)), quantileExact(0.99)(abs(d)), corr(candidate_score, served_score),
    avgIf((candidate_score >= t) = (served_score >= t), served_score IS NOT NULL),
    countIf(served_score >= t AND candidate_score < t),
    countIf(served_score < t AND candidate_score >= t)
FROM (SELECT *, candidate_score - served_score AS d FROM {table} FINAL
      WHERE replay_id = {id:String})
"""
_GROUPS_SQL = """
SELECT served_version, served_arm, count(), avg(candidate_score - served_score)
FROM {table} FINAL WHERE replay_id = {id:String} AND served_score IS NOT NULL
GROUP BY served_version, served_arm ORDER BY served_version, served_arm
"""


def replay_report(
    client: ClickHouseClient, database: str, replay_id: str, *, threshold: float = 0.5
) -> ReplayReport:
    """The paired comparison of one replay, computed in ClickHouse."""
    name = table(database, REPLAYS)
    params = {"id": replay_id, "t": float(threshold)}
    what = f"reading {name}"
    sql = _REPORT_SQL.replace("{table}", name)
    (row,) = _query(client, sql, params, what).result_rows
    total, n, model, version, *stats, flips_neg, flips_pos = row
    if not total:
        raise LineageError(
            f"no replay {replay_id!r} in {name}; run `driftline replay` first, or pass the "
            "replay id it printed (latest_replay_id() finds a model's most recent one)"
        )
    mean_c, mean_s, mean_d, sd, mean_abs, p99, corr, agree = (_finite(v) for v in stats)
    ci_low = ci_high = None
    if mean_d is not None and sd is not None and n >= 2:
        half = 1.96 * sd / math.sqrt(n)
        ci_low, ci_high = mean_d - half, mean_d + half
    groups = _query(client, _GROUPS_SQL.replace("{table}", name), params, what).result_rows
    return ReplayReport(
        replay_id, model, int(version), float(threshold), int(n), int(total - n),
        mean_c, mean_s, mean_d, ci_low, ci_high, mean_abs, p99, corr, agree,
        int(flips_neg), int(flips_pos),
        tuple(ServedGroup(int(v), str(a), int(c), float(d)) for v, a, c, d in groups),
    )  # fmt: skip


def latest_replay_id(client: ClickHouseClient, database: str, model: str) -> str | None:
    """The id of ``model``'s most recently written replay, or None if it has none."""
    name = table(database, REPLAYS)
    rows = _query(
        client,
        f"SELECT replay_id FROM {name} WHERE model = {{model:String}} "
        "ORDER BY replayed_at DESC LIMIT 1",
        {"model": model},
        f"reading {name}",
    ).result_rows
    return rows[0][0] if rows else None
