"""The feature store protocol over Feast (the ``driftline[feast]`` extra).

Feast has no version numbers a serving system can rely on, so a feature view's version
here is the hash of its definition (schema, entities, source, TTL), with Feast's own
bookkeeping (creation and update times) left out: re-applying the same definition keeps
the version, and changing it changes the version.
"""

from __future__ import annotations

import contextlib
import hashlib
import sqlite3
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
from feast import FeatureStore as _Feast
from feast.errors import FeastError
from feast.infra.key_encoding_utils import serialize_entity_key
from feast.infra.online_stores.helpers import compute_table_id
from feast.protos.feast.types.EntityKey_pb2 import EntityKey
from feast.protos.feast.types.Value_pb2 import Value

from driftline.features.exceptions import (
    FeatureServiceNotFound,
    FeatureStoreError,
    FeatureStoreUnavailable,
)
from driftline.features.store import FeatureServiceRef, FeatureViewRef, OnlineFeatures

# Row order of a historical retrieval: Feast sorts by timestamp, callers want theirs.
_ROW = "_driftline_row"
# Under SQLite's default limit of bound parameters (32766 since 3.32).
_SQLITE_KEYS_PER_QUERY = 10_000
# Serialised entity keys kept between lookups; cleared when full (a key is ~60 bytes).
_ENTITY_KEY_CACHE = 200_000


def _float_of(blob: bytes) -> float:
    """A stored Feast Value as a float; NaN for a null or a non-numeric value."""
    value = Value()
    value.ParseFromString(blob)
    kind = value.WhichOneof("val")
    if kind in ("float_val", "double_val", "int32_val", "int64_val", "bool_val"):
        return float(getattr(value, kind))
    return float("nan")


# A Value holding only float_val (field 6, a fixed 32-bit wire type): tag byte, 4 bytes LE.
_FLOAT_VAL_TAG = (6 << 3) | 5


def _floats_of(blobs: Sequence[bytes]) -> np.ndarray:
    """Stored Feast Values as float32, in one NumPy pass when all are float_val (Float32
    features, the usual case), else Value by Value."""
    joined = b"".join(blobs)
    if len(joined) == 5 * len(blobs):
        packed = np.frombuffer(joined, np.uint8).reshape(-1, 5)
        if (packed[:, 0] == _FLOAT_VAL_TAG).all():
            return np.ascontiguousarray(packed[:, 1:]).view("<f4").ravel().astype(np.float32)
    return np.array([_float_of(blob) for blob in blobs], np.float32)


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:12]


def view_version(view) -> str:
    """The hash of a feature view's definition, without Feast's timestamps."""
    spec = view.to_proto().spec
    for source in ("batch_source", "stream_source"):
        if spec.HasField(source):
            getattr(spec, source).ClearField("meta")
    return _digest(spec.SerializeToString(deterministic=True))


class FeastFeatureStore:
    """A Feast repository (its ``feature_store.yaml``) as driftline's feature store."""

    def __init__(self, repo_path: str | Path) -> None:
        self.repo_path = Path(repo_path)
        if not (self.repo_path / "feature_store.yaml").is_file():
            raise FeatureStoreError(
                f"no feature_store.yaml in {self.repo_path}: point "
                "DRIFTLINE_FEATURES_REPO (or --feature-repo) at a Feast repository"
            )
        try:
            self._feast = _Feast(repo_path=str(self.repo_path))
        except (FeastError, ValueError, OSError) as exc:
            raise FeatureStoreError(
                f"cannot open the Feast repository {self.repo_path}: {exc}"
            ) from exc
        self._services: dict[str, FeatureServiceRef] = {}
        self._table_plans: dict[str, list[tuple[str, list[str]]]] = {}
        self._entity_keys: dict[tuple[str, str], bytes] = {}
        self._online_path = self._sqlite_online_path()

    def _sqlite_online_path(self) -> Path | None:
        """Where a SQLite online store keeps its file; None for any other kind."""
        config = self._feast.config
        if config.online_store.type != "sqlite":
            return None
        path = Path(config.online_store.path)
        return path if path.is_absolute() else self.repo_path / path

    @property
    def feast(self) -> _Feast:
        return self._feast

    def service(self, name: str) -> FeatureServiceRef:
        if name not in self._services:
            self._services[name] = self._resolve(name)
        return self._services[name]

    def refresh(self) -> None:
        """Forget resolved services, so a re-applied definition is read again."""
        self._feast.refresh_registry()
        self._services.clear()
        self._table_plans.clear()

    def _resolve(self, name: str) -> FeatureServiceRef:
        try:
            service = self._feast.get_feature_service(name, allow_cache=False)
        except FeastError as exc:
            known = ", ".join(s.name for s in self._feast.list_feature_services()) or "none"
            raise FeatureServiceNotFound(
                f"feature service {name!r} is not defined in {self.repo_path} (known: {known})"
            ) from exc
        names: list[str] = []
        views: list[FeatureViewRef] = []
        keys: set[str] = set()
        for projection in service.feature_view_projections:
            view = self._feast.get_feature_view(projection.name)
            views.append(FeatureViewRef(view.name, view_version(view)))
            keys.update(column.name for column in view.entity_columns)
            names += [feature.name for feature in projection.features]
        if len(keys) != 1:
            raise FeatureStoreError(
                f"feature service {name!r} joins on {sorted(keys)}: driftline serves "
                "services over one entity key, the records' entity_id"
            )
        version = _digest("|".join([*(f"{v.name}={v.version}" for v in views), *names]).encode())
        return FeatureServiceRef(name, version, keys.pop(), tuple(names), tuple(views))

    def online(self, service: str, entity_ids: Sequence[str]) -> OnlineFeatures:
        ref = self.service(service)
        if not len(entity_ids):
            empty = np.empty((0, len(ref.feature_names)), np.float32)
            return OnlineFeatures(ref.feature_names, empty, np.ones(0, bool))
        try:
            if self._online_path is not None:
                values = self._online_sqlite(ref, entity_ids)
            else:
                values = self._online_feast(service, ref, entity_ids)
        except (FeastError, sqlite3.Error, OSError) as exc:
            raise FeatureStoreUnavailable(
                f"online lookup of {len(entity_ids)} entities for {ref.label} failed: {exc}"
            ) from exc
        found = ~np.isnan(values).any(axis=1)
        return OnlineFeatures(ref.feature_names, values, found)

    def _online_feast(
        self, service: str, ref: FeatureServiceRef, entity_ids: Sequence[str]
    ) -> np.ndarray:
        """Feast's own online read: any online store, ~130 us per row on two cores."""
        rows = [{ref.entity_key: entity_id} for entity_id in entity_ids]
        table = self._feast.get_online_features(
            features=self._feast.get_feature_service(service), entity_rows=rows
        ).to_arrow()
        values = np.empty((len(rows), len(ref.feature_names)), np.float32)
        for j, feature in enumerate(ref.feature_names):
            column = table.column(feature).cast(pa.float32())
            values[:, j] = column.to_numpy(zero_copy_only=False)  # nulls become NaN
        return values

    def _online_sqlite(self, ref: FeatureServiceRef, entity_ids: Sequence[str]) -> np.ndarray:
        """The same answer as :meth:`_online_feast` from Feast's SQLite online store, read
        in one query per view: Feast builds a protobuf response value by value, which
        costs ~60x more than the read itself (bench/bench_enrichment.py). The layout (a
        table per view, rows of serialised entity key, feature name and Value bytes) is
        Feast's, as :meth:`erase_online` uses it; a test holds the two paths equal."""
        slot = {entity_id: i for i, entity_id in enumerate(dict.fromkeys(entity_ids))}
        keys = [self._entity_key(ref.entity_key, entity_id) for entity_id in slot]
        row_of = {key: i for i, key in enumerate(keys)}
        values = np.full((len(slot), len(ref.feature_names)), np.nan, np.float32)
        column_of = {name: j for j, name in enumerate(ref.feature_names)}
        # Read-only, and an error (not a new empty file) when the store is not there.
        reader = sqlite3.connect(f"file:{self._online_path}?mode=ro", uri=True)
        with contextlib.closing(reader) as conn:
            for table, features in self._online_tables(ref.name):
                wanted = {name: column_of[name] for name in features}
                for start in range(0, len(keys), _SQLITE_KEYS_PER_QUERY):
                    chunk = keys[start : start + _SQLITE_KEYS_PER_QUERY]
                    found = conn.execute(
                        f'SELECT entity_key, feature_name, value FROM "{table}" '
                        f"WHERE entity_key IN ({','.join('?' * len(chunk))})",
                        chunk,
                    ).fetchall()
                    if not found:
                        continue
                    stored_keys, names, blobs = zip(*found, strict=True)
                    rows = np.fromiter((row_of[k] for k in stored_keys), np.intp, len(found))
                    columns = np.fromiter((wanted.get(n, -1) for n in names), np.intp, len(found))
                    taken = columns >= 0  # the view's features this service does not project
                    values[rows[taken], columns[taken]] = _floats_of(blobs)[taken]
        return values[[slot[entity_id] for entity_id in entity_ids]]

    def _entity_key(self, join_key: str, entity_id: str) -> bytes:
        """Feast's serialised entity key, remembered: serialising costs ~10 us a key."""
        cached = self._entity_keys.get((join_key, entity_id))
        if cached is None:
            if len(self._entity_keys) >= _ENTITY_KEY_CACHE:
                self._entity_keys.clear()
            cached = serialize_entity_key(
                EntityKey(join_keys=[join_key], entity_values=[Value(string_val=entity_id)]),
                entity_key_serialization_version=self._feast.config.entity_key_serialization_version,
            )
            self._entity_keys[(join_key, entity_id)] = cached
        return cached

    def _online_tables(self, service: str) -> list[tuple[str, list[str]]]:
        """The online tables a service reads, each with the features it takes from it."""
        plan = self._table_plans.get(service)
        if plan is None:
            config = self._feast.config
            versioned = config.registry.enable_online_feature_view_versioning
            plan = [
                (
                    compute_table_id(
                        config.project, self._feast.get_feature_view(projection.name), versioned
                    ),
                    [feature.name for feature in projection.features],
                )
                for projection in self._feast.get_feature_service(service).feature_view_projections
            ]
            self._table_plans[service] = plan
        return plan

    def historical(self, service: str, entities: pa.Table) -> pa.Table:
        ref = self.service(service)
        frame = entities.select(["entity_id", "event_timestamp"]).to_pandas()
        frame = frame.rename(columns={"entity_id": ref.entity_key})
        # Feast returns one row per distinct (entity, time): ask for each once, then give
        # every row asked for its answer, in the order asked.
        frame[_ROW] = np.arange(len(frame))
        first = frame.groupby([ref.entity_key, "event_timestamp"], sort=False)[_ROW].transform(
            "first"
        )
        unique = frame[frame[_ROW] == first]
        try:
            result = self._feast.get_historical_features(
                entity_df=unique, features=self._feast.get_feature_service(service)
            ).to_arrow()
        except (FeastError, OSError) as exc:
            raise FeatureStoreUnavailable(
                f"historical retrieval of {len(unique)} rows for {ref.label} failed: {exc}"
            ) from exc
        position = np.full(len(frame), -1, np.int64)
        position[result.column(_ROW).to_numpy()] = np.arange(result.num_rows)
        picks = position[first.to_numpy()]
        if (picks < 0).any():
            raise FeatureStoreError(
                f"historical retrieval for {ref.label} returned no row for "
                f"{int((picks < 0).sum())} of {len(frame)} entity rows"
            )
        result = result.take(pa.array(picks))
        columns = [
            pa.array(frame[ref.entity_key].astype(str).tolist(), pa.string()),
            entities.column("event_timestamp"),
            *(result.column(f) for f in ref.feature_names),
        ]
        return pa.table(columns, names=["entity_id", "event_timestamp", *ref.feature_names])

    def erase_online(self, entity_ids: Sequence[str]) -> int:
        """Delete the entities' rows from every feature view over their key.

        Feast has no delete; this reaches into the SQLite online store, whose layout
        (one table per view, rows keyed by the serialised entity key) Feast defines in
        ``feast.infra.online_stores.sqlite``. Other online stores are refused by name.
        """
        config = self._feast.config
        if self._online_path is None:
            raise FeatureStoreError(
                f"erasure from a {config.online_store.type!r} online store is not supported; "
                "delete the entity with that store's own tools"
            )
        versioned = config.registry.enable_online_feature_view_versioning
        deleted = 0
        # closing: sqlite3's own context manager commits but leaves the file open.
        with contextlib.closing(sqlite3.connect(self._online_path)) as conn, conn:
            for view in self._feast.list_feature_views():
                keys = [column.name for column in view.entity_columns]
                if len(keys) != 1:
                    continue
                blobs = [
                    serialize_entity_key(
                        EntityKey(join_keys=keys, entity_values=[Value(string_val=str(entity_id))]),
                        entity_key_serialization_version=config.entity_key_serialization_version,
                    )
                    for entity_id in entity_ids
                ]
                table = compute_table_id(config.project, view, versioned)
                cursor = conn.execute(
                    f'DELETE FROM "{table}" WHERE entity_key IN ({",".join("?" * len(blobs))})',
                    blobs,
                )
                deleted += cursor.rowcount
        return deleted

    def locations(self) -> dict[str, str]:
        config = self._feast.config
        where = {"registry": str(config.registry.path), "online_store": config.online_store.type}
        if self._online_path is not None:
            where["online_store"] = str(self._online_path)
        offline = config.offline_store
        where["offline_store"] = offline.type
        for view in self._feast.list_feature_views():
            source = view.batch_source
            path = getattr(source, "path", None)
            if path:
                where[f"source:{view.name}"] = str(path)
        return where
