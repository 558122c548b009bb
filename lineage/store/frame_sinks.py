"""Buffered column-wise sinks for PredictionFrames and logged feature rows.

Same contract as :mod:`driftline.lineage.store.sinks`: ``add`` buffers, ``flush`` writes all
pending rows in one insert and keeps the buffer if it fails, and a retried
identical insert carries the same ``insert_deduplication_token``. The token is
built from frame-level ids (one per part), never from per-row values, so it
costs nothing per row.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from driftline.inference.columns import PackedStrings
from driftline.inference.frames import Frame, unpack_prediction_frame
from driftline.inference.routing import entity_buckets
from driftline.lineage.store.arrow_insert import insert_arrow_table
from driftline.lineage.store.clickhouse import FEATURES, PREDICTIONS, ClickHouseClient, table


def _token(table_name: str, keys: list[str]) -> str:
    digest = hashlib.sha256("\x1e".join(sorted(keys)).encode()).hexdigest()
    return f"{table_name}:{digest}"


def _repeat(values: list[Any], counts: list[int], kind: pa.DataType) -> pa.Array:
    """One value per part, repeated over the part's rows, as a dictionary-free Arrow array."""
    indices = np.repeat(np.arange(len(values), dtype=np.int32), counts)
    return pa.array(values, kind).take(pa.array(indices))


def _row_ids(prefixes: list[str], counts: list[int], rows: np.ndarray) -> pa.Array:
    """``<prefix>:<row>`` for every row, built in Arrow rather than one f-string per row."""
    row_text = pa.array(rows.astype(np.int64)).cast(pa.string())
    return pc.binary_join_element_wise(_repeat(prefixes, counts, pa.string()), row_text, ":")


class PredictionFrameSink:
    """Buffers decoded PredictionFrame records for the ``predictions`` table."""

    def __init__(
        self, client: ClickHouseClient, database: str, table_name: str = PREDICTIONS
    ) -> None:
        self.client = client
        self.table = table(database, table_name)
        self.clear()

    @property
    def pending(self) -> int:
        return sum(self._counts)

    def clear(self) -> None:
        self._parts: list[Mapping[str, Any]] = []
        self._counts: list[int] = []
        self._ids: list[str] = []
        self._arrays: list[dict[str, Any]] = []
        self._trace_ids: list[str] = []

    def add(self, record: Mapping[str, Any], trace_id: str = "") -> None:
        arrays = unpack_prediction_frame(record)
        self._parts.append(record)
        self._counts.append(record["n_rows"])
        self._ids.append(record["prediction_frame_id"])
        self._arrays.append(arrays)
        self._trace_ids.append(trace_id)

    def to_arrow(self) -> pa.Table:
        parts, counts = self._parts, self._counts
        rows = np.concatenate([a["rows"] for a in self._arrays])
        entity_ids = PackedStrings.concat([a["entity_ids"] for a in self._arrays])
        events = np.concatenate([a["event_times"] for a in self._arrays]).astype(np.int64)
        score = np.concatenate([a["score"] for a in self._arrays])
        flat = np.concatenate([a["scores"].ravel() for a in self._arrays])
        widths = np.repeat([a["scores"].shape[1] for a in self._arrays], counts)
        offsets = np.concatenate([[0], np.cumsum(widths)]).astype(np.int32)
        scored = np.repeat([p["scored_at"] for p in parts], counts).astype(np.int64)
        return pa.table(
            {
                "prediction_id": _row_ids([p["prediction_frame_id"] for p in parts], counts, rows),
                "record_id": _row_ids([p["frame_id"] for p in parts], counts, rows),
                "entity_id": entity_ids.to_arrow(),
                "model": _repeat([p["model"] for p in parts], counts, pa.string()),
                "version": pa.array(np.repeat([p["version"] for p in parts], counts), pa.int32()),
                "arm": _repeat([p["arm"] for p in parts], counts, pa.string()),
                "experiment_id": _repeat([p["experiment_id"] for p in parts], counts, pa.string()),
                "score": pa.array(score),
                "scores": pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat)),
                "event_time": pa.array(events),
                "scored_at": pa.array(scored),
                "latency_ms": pa.array((scored - events).astype(np.float64)),
                "model_latency_ms": pa.array(
                    np.repeat([p["model_latency_ms"] for p in parts], counts), pa.float64()
                ),
                "trace_id": _repeat(self._trace_ids, counts, pa.string()),
                "feature_service": _repeat(
                    [p.get("feature_service") for p in parts], counts, pa.string()
                ),
            }
        )

    def flush(self) -> int:
        if not self._parts:
            return 0
        written = insert_arrow_table(
            self.client,
            self.table,
            self.to_arrow(),
            millis=("event_time", "scored_at"),
            settings={"insert_deduplication_token": _token(self.table, self._ids)},
        )
        self.clear()
        return written


class FeatureSink:
    """Buffers feature rows for the ``features`` table, keeping a sample chosen by entity.

    ``sample_rate`` in [0, 1]: an entity is kept when its bucket under the
    salt "features" is below ``rate * 10000``, so all of an entity's rows are
    kept or none are, the same on every worker.
    """

    def __init__(
        self,
        client: ClickHouseClient,
        database: str,
        *,
        sample_rate: float = 1.0,
        table_name: str = FEATURES,
    ) -> None:
        if not 0.0 <= sample_rate <= 1.0:
            raise ValueError(f"feature sample rate must be within [0, 1], got {sample_rate!r}")
        self.client = client
        self.table = table(database, table_name)
        self.sample_rate = sample_rate
        self.clear()

    def clear(self) -> None:
        self._record_ids: list[pa.Array] = []
        self._entity_ids: list[PackedStrings] = []
        self._models: list[str] = []
        self._names: list[str] = []
        self._counts: list[int] = []
        self._event_times: list[np.ndarray] = []
        self._matrices: list[np.ndarray] = []
        self._keys: list[str] = []
        self._services: list[str | None] = []

    @property
    def pending(self) -> int:
        return sum(self._counts)

    def _keep(self, entity_ids: Sequence[str] | PackedStrings) -> np.ndarray | None:
        """Row indices to keep, or None for all."""
        if self.sample_rate >= 1.0:
            return None
        buckets = entity_buckets(entity_ids, "features")
        return np.flatnonzero(buckets < round(self.sample_rate * 10_000))

    def add_frame(self, frame: Frame, feature_service: str | None = None) -> int:
        """``feature_service``: the service that completed the rows, for served rows."""
        keep = self._keep(frame.entity_ids)
        if keep is None:
            rows, matrix = np.arange(frame.n_rows), frame.matrix
            entity_ids, event_times = frame.entity_ids, frame.event_times
        else:
            rows, matrix = keep, frame.matrix[keep]
            entity_ids, event_times = frame.entity_ids.take(keep), frame.event_times[keep]
        record_ids = _row_ids([frame.frame_id], [len(rows)], rows)
        self._add(record_ids, entity_ids, frame.model, frame.feature_names, event_times, matrix)
        self._services[-1] = feature_service
        self._keys.append(frame.frame_id)
        return len(entity_ids)

    def add_records(self, records: Sequence[Mapping[str, Any]]) -> int:
        """Single FeatureRecords; rows of different widths are kept apart, not mixed."""
        keep = self._keep([r["entity_id"] for r in records])
        chosen = records if keep is None else [records[i] for i in keep.tolist()]
        by_shape: dict[tuple[str, tuple[str, ...], int], list[Mapping[str, Any]]] = {}
        for record in chosen:
            names = tuple(record.get("feature_names") or ())
            key = (record["model"], names, len(record["features"]))
            by_shape.setdefault(key, []).append(record)
        for (model, names, _), group in by_shape.items():
            matrix = np.array([r["features"] for r in group], dtype=np.float32)
            self._add(
                pa.array([r["record_id"] for r in group], pa.string()),
                PackedStrings.from_strings([r["entity_id"] for r in group]),
                model,
                list(names),
                np.array([r["event_time"] for r in group], dtype=np.int64),
                matrix,
            )
            self._keys += [r["record_id"] for r in group]
        return len(chosen)

    def _add(self, record_ids, entity_ids, model, names, event_times, matrix) -> None:
        self._record_ids.append(record_ids)
        self._entity_ids.append(entity_ids)
        self._event_times.append(np.asarray(event_times, dtype=np.int64))
        self._models.append(model)
        self._names.append(",".join(names))
        self._counts.append(len(record_ids))
        self._matrices.append(np.asarray(matrix, dtype=np.float32))
        self._services.append(None)

    def to_arrow(self) -> pa.Table:
        counts = self._counts
        flat = np.concatenate([m.ravel() for m in self._matrices])
        widths = np.repeat([m.shape[1] if m.ndim == 2 else 0 for m in self._matrices], counts)
        offsets = np.concatenate([[0], np.cumsum(widths)]).astype(np.int32)
        return pa.table(
            {
                "record_id": pa.concat_arrays(self._record_ids),
                "entity_id": PackedStrings.concat(self._entity_ids).to_arrow(),
                "model": _repeat(self._models, counts, pa.string()),
                "event_time": pa.array(np.concatenate(self._event_times)),
                "feature_names": _repeat(self._names, counts, pa.string()),
                "features": pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat)),
                "feature_service": _repeat(self._services, counts, pa.string()),
            }
        )

    def flush(self) -> int:
        if not self.pending:
            self.clear()
            return 0
        written = insert_arrow_table(
            self.client,
            self.table,
            self.to_arrow(),
            millis=("event_time",),
            settings={"insert_deduplication_token": _token(self.table, self._keys)},
        )
        self.clear()
        return written
