"""Point-in-time training datasets from the feature store, each with a manifest.

``build_dataset`` takes entity rows (an entity id, an event timestamp, and any label
columns), asks the store for every feature of a service as it was at each row's time
(Feast's historical retrieval), and writes the result as Parquet. Beside it goes
``<out>.manifest.json``: the content fingerprint, the feature service and its views'
versions, the entity time range and the row count. Registering a model with the dataset
checks the fingerprint against the file and records the manifest, so model -> dataset ->
feature views can be followed later.

The fingerprint hashes the table's content (Arrow IPC of its columns, schema metadata
dropped), not the Parquet bytes, which differ between writers for the same data.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from driftline.features.exceptions import DatasetError
from driftline.features.store import FeatureStore

MANIFEST_FORMAT = 1
CHUNK_ROWS = 50_000  # rows per historical retrieval, so progress moves on large builds


@dataclass(frozen=True)
class DatasetManifest:
    path: str
    fingerprint: str  # sha256:<hex> of the table's content
    rows: int
    columns: list[str]
    feature_service: dict[str, Any]  # FeatureServiceRef.as_dict()
    entity_time_range: list[str]  # ISO 8601 UTC, first and last event timestamp
    label_columns: list[str]
    created_at: str
    format: int = MANIFEST_FORMAT

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str, where: str) -> DatasetManifest:
        try:
            data = json.loads(text)
            if data.get("format") != MANIFEST_FORMAT:
                raise ValueError(f"format {data.get('format')!r}, expected {MANIFEST_FORMAT}")
            return cls(**data)
        except (ValueError, TypeError) as exc:
            raise DatasetError(f"{where} is not a driftline dataset manifest: {exc}") from exc

    def summary(self) -> dict[str, Any]:
        """What the audit chain and OpenLineage keep: everything but the column list."""
        service = self.feature_service
        return {
            "path": self.path,
            "fingerprint": self.fingerprint,
            "rows": self.rows,
            "feature_service": f"{service['name']}@{service['version']}",
            "views": service["views"],
            "entity_time_range": self.entity_time_range,
        }


def manifest_path(dataset: Path) -> Path:
    return dataset.with_name(dataset.name + ".manifest.json")


def content_fingerprint(table: pa.Table) -> str:
    table = table.replace_schema_metadata(None)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        for batch in table.combine_chunks().to_batches():
            writer.write_batch(batch)
    return "sha256:" + hashlib.sha256(sink.getvalue()).hexdigest()


def read_entities(path: Path, entity_column: str = "entity_id") -> pa.Table:
    """Entity rows from Parquet: ``entity_column`` (renamed entity_id) and
    ``event_timestamp``; any other column (a label) is carried into the dataset."""
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowInvalid) as exc:
        raise DatasetError(f"cannot read entities from {path}: {exc}") from exc
    missing = [c for c in (entity_column, "event_timestamp") if c not in table.column_names]
    if missing:
        raise DatasetError(
            f"{path} lacks the columns {missing}: entity rows need {entity_column!r} and "
            f"'event_timestamp' (got {table.column_names})"
        )
    if entity_column != "entity_id":
        names = ["entity_id" if c == entity_column else c for c in table.column_names]
        table = table.rename_columns(names)
    if not pa.types.is_timestamp(table.schema.field("event_timestamp").type):
        raise DatasetError(
            f"{path}: event_timestamp must be a timestamp column, got "
            f"{table.schema.field('event_timestamp').type}"
        )
    return table.set_column(
        table.column_names.index("entity_id"),
        "entity_id",
        table.column("entity_id").cast(pa.string()),
    )


def build_dataset(
    store: FeatureStore,
    service: str,
    entities: pa.Table,
    out: Path,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> DatasetManifest:
    """Retrieve, write ``out`` and its manifest; ``progress(done, total)`` per chunk."""
    if entities.num_rows == 0:
        raise DatasetError("no entity rows: the dataset would be empty")
    ref = store.service(service)
    labels = [c for c in entities.column_names if c not in ("entity_id", "event_timestamp")]
    clash = sorted(set(labels) & set(ref.feature_names))
    if clash:
        raise DatasetError(f"entity columns {clash} clash with features of {ref.label}")
    parts = []
    for start in range(0, entities.num_rows, CHUNK_ROWS):
        chunk = entities.slice(start, CHUNK_ROWS)
        features = store.historical(service, chunk)
        for name in labels:
            features = features.append_column(name, chunk.column(name))
        parts.append(features)
        if progress is not None:
            progress(min(start + CHUNK_ROWS, entities.num_rows), entities.num_rows)
    table = pa.concat_tables(parts).combine_chunks()
    out.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, out)
    times = pc.min_max(table.column("event_timestamp"))
    manifest = DatasetManifest(
        path=str(out.resolve()),
        fingerprint=content_fingerprint(table),
        rows=table.num_rows,
        columns=table.column_names,
        feature_service=ref.as_dict(),
        entity_time_range=[_iso(times["min"].as_py()), _iso(times["max"].as_py())],
        label_columns=labels,
        created_at=_iso(dt.datetime.now(dt.UTC)),
    )
    manifest_path(out).write_text(manifest.to_json())
    return manifest


def load_dataset(path: Path) -> tuple[pa.Table, DatasetManifest]:
    """The dataset and its manifest, refused unless the content matches the fingerprint."""
    where = manifest_path(path)
    if not where.is_file():
        raise DatasetError(
            f"{path} has no manifest ({where.name}); build it with `driftline dataset build`"
        )
    manifest = DatasetManifest.from_json(where.read_text(), str(where))
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowInvalid) as exc:
        raise DatasetError(f"cannot read the dataset {path}: {exc}") from exc
    actual = content_fingerprint(table)
    if actual != manifest.fingerprint:
        raise DatasetError(
            f"{path} does not match its manifest: content {actual}, manifest "
            f"{manifest.fingerprint}; the file changed after it was built"
        )
    return table, manifest


def _iso(value: dt.datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC).isoformat()
