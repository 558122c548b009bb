"""A small local Feast repository for the demo, the README's example and the tests.

Entity ``customer`` (join key ``customer_id``, the records' ``entity_id``); feature view
``customer_profile`` serves ``f00``..``f11`` from a Parquet file holding a value per
customer per day, so a point-in-time lookup gives a different row on each day; the
model's last four features ``f12``..``f15`` are request-time features the producer
sends. Feature service ``scoring`` serves the profile. SQLite online store, file
(Dask) offline store: nothing to run besides this process.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from feast import FeatureStore
from feast.repo_config import load_repo_config
from feast.repo_operations import apply_total

SERVICE = "scoring"
VIEW = "customer_profile"
STORE_FEATURES = tuple(f"f{j:02d}" for j in range(12))
REQUEST_FEATURES = tuple(f"f{j:02d}" for j in range(12, 16))
DAYS = 3

FEATURE_STORE_YAML = """\
project: driftline_example
provider: local
registry: data/registry.db
online_store:
  type: sqlite
  path: data/online.db
offline_store:
  type: dask
entity_key_serialization_version: 3
"""

DEFINITIONS = '''\
"""Feature definitions of driftline's example (see driftline.features.example_repo)."""

from datetime import timedelta

from feast import Entity, FeatureService, FeatureView, Field, FileSource, ValueType
from feast.types import Float32

customer = Entity(name="customer", join_keys=["customer_id"], value_type=ValueType.STRING)

profile_source = FileSource(
    name="customer_profile_source",
    path="{source}",
    timestamp_field="event_timestamp",
)

customer_profile = FeatureView(
    name="{view}",
    entities=[customer],
    ttl=timedelta(days={ttl_days}),
    schema=[{fields}],
    source=profile_source,
    online=True,
)

scoring = FeatureService(name="{service}", features=[customer_profile])
'''


def entity_ids(n: int) -> list[str]:
    return [f"customer-{i:05d}" for i in range(n)]


def profile_values(n_entities: int, day: int, seed: int = 7) -> np.ndarray:
    """The store features of every customer on ``day``: float32, one row per customer."""
    rng = np.random.default_rng([seed, day])
    return rng.normal(size=(n_entities, len(STORE_FEATURES))).astype(np.float32)


def write_example_repo(
    path: str | Path, n_entities: int = 500, *, now: dt.datetime | None = None
) -> Path:
    """Write the repository, its Parquet source (``DAYS`` daily snapshots ending at
    ``now``), apply the definitions and materialise the latest values online."""
    root = Path(path).resolve()
    (root / "data").mkdir(parents=True, exist_ok=True)
    now = (now or dt.datetime.now(dt.UTC)).replace(microsecond=0)
    ids = entity_ids(n_entities)
    columns: dict[str, list] = {"customer_id": [], "event_timestamp": []}
    matrices = []
    for day in range(DAYS):
        at = now - dt.timedelta(days=DAYS - 1 - day)
        columns["customer_id"] += ids
        columns["event_timestamp"] += [at] * n_entities
        matrices.append(profile_values(n_entities, day))
    matrix = np.concatenate(matrices)
    table = pa.table(
        {
            "customer_id": columns["customer_id"],
            "event_timestamp": pa.array(columns["event_timestamp"], pa.timestamp("us", "UTC")),
            **{name: matrix[:, j] for j, name in enumerate(STORE_FEATURES)},
        }
    )
    source = root / "data" / "customer_profile.parquet"
    pq.write_table(table, source)
    (root / "feature_store.yaml").write_text(FEATURE_STORE_YAML)
    fields = ", ".join(f'Field(name="{name}", dtype=Float32)' for name in STORE_FEATURES)
    (root / "definitions.py").write_text(
        DEFINITIONS.format(
            view=VIEW, service=SERVICE, fields=fields, ttl_days=DAYS + 1, source=source
        )
    )
    apply_definitions(root)
    with contextlib.redirect_stdout(io.StringIO()):
        store = FeatureStore(repo_path=str(root))
        store.materialize(now - dt.timedelta(days=DAYS + 1), now + dt.timedelta(seconds=1))
    return root


def apply_definitions(root: Path) -> None:
    """``feast apply`` of the repository at ``root``, quietly."""
    # Feast reports each step on stdout; a library call should not.
    # Feast imports the repository's modules by name, as its CLI does from the repo's root.
    sys.path.insert(0, str(root))
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            config = load_repo_config(root, root / "feature_store.yaml")
            apply_total(config, root, skip_source_validation=True)
    finally:
        sys.path.remove(str(root))
        sys.modules.pop("definitions", None)  # the next repository has its own


def request_records(
    model: str, ids: Sequence[str], *, seed: int, prefix: str = ""
) -> list[dict[str, Any]]:
    """FeatureRecords for ``ids`` that carry only the request-time features: the worker
    fetches the store's features online. Record ids are ``<prefix><n>``."""
    request = np.random.default_rng(seed).normal(size=(len(ids), len(REQUEST_FEATURES)))
    now = int(time.time() * 1000)
    return [
        {
            "record_id": f"{prefix}{i}",
            "entity_id": entity,
            "model": model,
            "features": request[i].astype(np.float32).tolist(),
            "feature_names": list(REQUEST_FEATURES),
            "event_time": now,
        }
        for i, entity in enumerate(ids)
    ]
