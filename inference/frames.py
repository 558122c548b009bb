"""Feature frames: many rows in one message, scored as one matrix per arm.

A FeatureFrame carries ``n_rows`` rows as a packed little-endian float32
matrix, so one Kafka message, one decode and one ONNX Runtime call cover
hundreds or thousands of rows. Scoring a frame yields one PredictionFrame per
arm that got rows (the served arms split the rows by entity; each shadow
scores them all), with scores packed as float64 bytes.

Ids without per-row hashing: row ``r`` of frame ``F`` has record id ``F:r``;
its prediction id is ``<prediction_frame_id>:r``, where the prediction frame
id is the same uuid5 a single record with id ``F`` would get. Replaying a
frame therefore yields the same ids.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from driftline.inference.columns import PackedStrings, pack_times, unpack_times
from driftline.inference.exceptions import FrameRejected
from driftline.inference.routing import RoutingTable
from driftline.inference.scoring import _uuid5_hex, id_key
from driftline.inference.signature import FEATURE_COUNT_MISMATCH, FEATURE_NAMES_MISMATCH

INVALID_FRAME = "invalid_frame"
NO_CHAMPION = "no_champion"


@dataclass(frozen=True)
class Frame:
    """A decoded FeatureFrame; ``matrix`` is a read-only float32 ``[n_rows, n_features]`` view.

    ``entity_ids`` and ``event_times`` stay packed (see :mod:`driftline.inference.columns`).
    """

    frame_id: str
    model: str
    entity_ids: PackedStrings
    event_times: np.ndarray  # int64 epoch milliseconds
    feature_names: list[str]
    matrix: np.ndarray

    @property
    def n_rows(self) -> int:
        return len(self.entity_ids)

    @classmethod
    def from_avro(cls, record: Mapping[str, Any]) -> Frame:
        """Check a decoded FeatureFrame's sizes agree; raise FrameRejected naming the mismatch."""
        n, k = record["n_rows"], record["n_features"]
        where = f"frame {record['frame_id']!r}"
        if n < 0 or k < 1:
            raise FrameRejected(INVALID_FRAME, f"{where}: n_rows={n}, n_features={k}")
        entity_ids, event_times = _row_columns(record, n, where)
        if len(record["feature_names"]) != k:
            raise FrameRejected(
                INVALID_FRAME,
                f"{where}: n_features={k} but {len(record['feature_names'])} feature_names",
            )
        data = record["matrix"]
        if len(data) != n * k * 4:
            raise FrameRejected(
                INVALID_FRAME,
                f"{where}: matrix has {len(data)} bytes, expected {n * k * 4} (4 * n_rows * k)",
            )
        matrix = np.frombuffer(data, dtype="<f4").reshape(n, k)
        names = record["feature_names"]
        return cls(record["frame_id"], record["model"], entity_ids, event_times, names, matrix)


def _row_columns(record: Mapping[str, Any], n: int, where: str) -> tuple[PackedStrings, np.ndarray]:
    """Entity ids and event times of a frame, packed (v2) or as Avro arrays (v1)."""
    if record.get("packed_entity_offsets"):
        try:
            ids = PackedStrings.from_buffers(
                n, record["packed_entity_offsets"], record["packed_entity_ids"], where
            )
            return ids, unpack_times(record["packed_event_times"], n, where)
        except ValueError as exc:
            raise FrameRejected(INVALID_FRAME, str(exc)) from None
    if len(record["entity_ids"]) != n or len(record["event_times"]) != n:
        raise FrameRejected(
            INVALID_FRAME,
            f"{where}: n_rows={n} but {len(record['entity_ids'])} entity_ids and "
            f"{len(record['event_times'])} event_times; every row needs both",
        )
    return PackedStrings.from_strings(record["entity_ids"]), np.asarray(
        record["event_times"], dtype=np.int64
    )


def pack_frame(
    frame_id: str,
    model: str,
    entity_ids: Sequence[str],
    event_times: Sequence[int] | np.ndarray,
    feature_names: Sequence[str],
    matrix: np.ndarray,
) -> dict[str, Any]:
    """The Avro FeatureFrame dict for a float ``[n_rows, n_features]`` matrix (the producer API)."""
    matrix = np.asarray(matrix)
    if matrix.ndim != 2:
        raise ValueError(f"frame {frame_id!r}: matrix must be 2-D, got shape {matrix.shape}")
    n, k = matrix.shape
    if len(entity_ids) != n or len(event_times) != n or len(feature_names) != k:
        raise ValueError(
            f"frame {frame_id!r}: matrix is {n}x{k} but got {len(entity_ids)} entity_ids, "
            f"{len(event_times)} event_times and {len(feature_names)} feature_names"
        )
    ids = PackedStrings.from_strings(entity_ids)
    return {
        "frame_id": frame_id,
        "model": model,
        "entity_ids": [],
        "event_times": [],
        "feature_names": list(feature_names),
        "n_rows": n,
        "n_features": k,
        "matrix": np.ascontiguousarray(matrix, dtype="<f4").tobytes(),
        "packed_entity_offsets": ids.offsets_bytes(),
        "packed_entity_ids": ids.data_bytes(),
        "packed_event_times": pack_times(event_times),
    }


@dataclass(frozen=True)
class ScoredFrame:
    """PredictionFrame dicts, one per arm with rows, and rows nobody could score.

    ``bad_rows`` are non-finite rows (scored by no arm); ``unserved_rows`` fell
    in no served arm (no champion loaded). Both are frame row indices.
    """

    parts: list[dict[str, Any]]
    bad_rows: np.ndarray
    unserved_rows: np.ndarray

    @property
    def served_rows(self) -> int:
        return sum(p["n_rows"] for p in self.parts if p["arm"] != "shadow")


def _check_signature(frame: Frame, table: RoutingTable) -> None:
    for model in [arm.model for arm in table.served] + list(table.shadows):
        sig = model.signature
        if frame.matrix.shape[1] != sig.n_features:
            raise FrameRejected(
                FEATURE_COUNT_MISMATCH,
                f"frame {frame.frame_id!r} has {frame.matrix.shape[1]} features; "
                f"{sig.describe_model()} expects {sig.n_features}",
            )
        if sig.feature_names is not None and tuple(frame.feature_names) != sig.feature_names:
            raise FrameRejected(
                FEATURE_NAMES_MISMATCH,
                f"frame {frame.frame_id!r} names its columns {frame.feature_names[:4]}...; "
                f"{sig.describe_model()} expects {list(sig.feature_names[:4])}... in that order",
            )


def non_finite_detail(frame: Frame, bad_rows: np.ndarray) -> str:
    shown = ", ".join(str(r) for r in bad_rows[:10])
    more = f" and {len(bad_rows) - 10} more" if len(bad_rows) > 10 else ""
    return (
        f"frame {frame.frame_id!r}: {len(bad_rows)} of {frame.n_rows} rows hold NaN or "
        f"infinity (rows {shown}{more}); the other rows were scored"
    )


def score_frame(
    table: RoutingTable,
    frame: Frame,
    *,
    now_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
    skip: np.ndarray | None = None,
) -> ScoredFrame:
    """Route the frame's rows to arms by entity and score each arm's rows in one call.

    ``skip`` (a bool mask) leaves rows unscored that the caller has dealt with already,
    e.g. rows whose features the feature store could not complete.
    """
    _check_signature(frame, table)
    matrix = frame.matrix
    finite = np.isfinite(matrix).all(axis=1)
    bad_rows = np.flatnonzero(~finite)
    assigned = table.assign(frame.entity_ids)
    if skip is not None and skip.any():
        assigned = assigned.copy()
        assigned[skip] = -2
        finite = finite & ~skip
        bad_rows = np.flatnonzero(~finite & ~skip)
    if len(bad_rows):
        assigned = assigned.copy()
        assigned[bad_rows] = -2  # scored by nobody
    parts = []
    for index, arm in enumerate(table.served):
        rows = None if (assigned == index).all() else np.flatnonzero(assigned == index)
        if rows is not None and len(rows) == 0:
            continue
        parts.append(_score_part(table, frame, arm.model, arm.name, rows, now_ms))
    every_good_row = None if finite.all() else np.flatnonzero(finite)
    for model in table.shadows:
        if every_good_row is not None and len(every_good_row) == 0:
            break
        parts.append(_score_part(table, frame, model, "shadow", every_good_row, now_ms))
    return ScoredFrame(parts, bad_rows, np.flatnonzero(assigned == -1))


def _score_part(
    table: RoutingTable,
    frame: Frame,
    model: Any,
    arm: str,
    rows: np.ndarray | None,
    now_ms: Callable[[], int],
) -> dict[str, Any]:
    subset = frame.matrix if rows is None else frame.matrix[rows]
    started = time.perf_counter()
    result = model.predict(np.ascontiguousarray(subset, dtype=np.float32))
    latency_ms = (time.perf_counter() - started) * 1_000.0
    key = id_key(arm, model.version)
    if rows is None:
        entity_ids, event_times, packed_rows = frame.entity_ids, frame.event_times, b""
    else:
        entity_ids, event_times = frame.entity_ids.take(rows), frame.event_times[rows]
        packed_rows = rows.astype("<i4").tobytes()
    return {
        "frame_id": frame.frame_id,
        "prediction_frame_id": _uuid5_hex(frame.frame_id, f"|{frame.model}|{key}".encode()),
        "model": model.name,
        "version": model.version,
        "arm": arm,
        "experiment_id": table.experiment_id,
        "n_rows": len(entity_ids),
        "rows": packed_rows,
        "entity_ids": [],
        "event_times": [],
        "n_outputs": result.scores.shape[1],
        "score": result.score.astype("<f8").tobytes(),
        "scores": result.scores.astype("<f8").tobytes(),
        "scored_at": now_ms(),
        "model_latency_ms": latency_ms,
        "packed_entity_offsets": entity_ids.offsets_bytes(),
        "packed_entity_ids": entity_ids.data_bytes(),
        "packed_event_times": pack_times(event_times),
        "feature_service": None,
    }


def unpack_prediction_frame(record: Mapping[str, Any]) -> dict[str, Any]:
    """Column arrays of a decoded PredictionFrame (v1 or v2), for sinks and consumers.

    ``rows``, ``score``, ``scores`` and ``event_times`` are NumPy arrays;
    ``entity_ids`` is a :class:`PackedStrings` (``.to_list()`` for Python strings).
    Buffers whose sizes disagree raise FrameRejected naming them.
    """
    n, c = record["n_rows"], record["n_outputs"]
    where = f"prediction frame {record['frame_id']!r}"
    sizes = {"score": 8 * n, "scores": 8 * n * c, "rows": 4 * n if record["rows"] else 0}
    wrong = [f"{field} has {len(record[field])} bytes, expected {size}"
             for field, size in sizes.items() if len(record[field]) != size]  # fmt: skip
    if n < 0 or c < 1 or wrong:
        raise FrameRejected(INVALID_FRAME, f"{where}: n_rows={n}, n_outputs={c}; {wrong}")
    rows = (
        np.arange(n, dtype=np.int32)
        if not record["rows"]
        else np.frombuffer(record["rows"], dtype="<i4")
    )
    entity_ids, event_times = _row_columns(record, n, where)
    return {
        "rows": rows,
        "score": np.frombuffer(record["score"], dtype="<f8"),
        "scores": np.frombuffer(record["scores"], dtype="<f8").reshape(n, c),
        "entity_ids": entity_ids,
        "event_times": event_times,
    }


def split_prediction_frame(part: Mapping[str, Any], pieces: int) -> list[dict[str, Any]]:
    """``part`` cut into ``pieces`` PredictionFrames of consecutive rows, for the size limit.

    Each piece keeps the frame and prediction-frame ids and names its source
    rows explicitly, so every row keeps its prediction id
    (``<prediction_frame_id>:<row>``) and consumers need no reassembly.
    """
    columns = unpack_prediction_frame(part)
    n = part["n_rows"]
    out = []
    for chunk in np.array_split(np.arange(n), max(1, min(pieces, n))):
        if not len(chunk):
            continue
        entity_ids = columns["entity_ids"].take(chunk)
        out.append(
            dict(
                part,
                n_rows=len(chunk),
                rows=columns["rows"][chunk].astype("<i4").tobytes(),
                entity_ids=[],
                event_times=[],
                score=columns["score"][chunk].astype("<f8").tobytes(),
                scores=columns["scores"][chunk].astype("<f8").tobytes(),
                packed_entity_offsets=entity_ids.offsets_bytes(),
                packed_entity_ids=entity_ids.data_bytes(),
                packed_event_times=pack_times(columns["event_times"][chunk]),
            )
        )
    return out
