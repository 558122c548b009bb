"""Point-in-time datasets and their manifests, against the real example Feast repository."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from driftline.features.datasets import (
    build_dataset,
    content_fingerprint,
    load_dataset,
    manifest_path,
    read_entities,
)
from driftline.features.example_repo import DAYS, SERVICE, entity_ids, profile_values
from driftline.features.exceptions import DatasetError, FeatureServiceNotFound


def _entities(n: int, when: dt.datetime) -> pa.Table:
    return pa.table(
        {
            "entity_id": entity_ids(200)[:n],
            "event_timestamp": pa.array([when] * n, pa.timestamp("us", "UTC")),
            "label": np.arange(n) % 2,
        }
    )


def test_a_build_writes_the_point_in_time_rows_and_a_manifest(feature_store, tmp_path):
    now = dt.datetime.now(dt.UTC)
    progress: list[tuple[int, int]] = []
    manifest = build_dataset(
        feature_store,
        SERVICE,
        _entities(30, now),
        tmp_path / "train.parquet",
        progress=lambda done, total: progress.append((done, total)),
    )
    table, again = load_dataset(tmp_path / "train.parquet")
    assert again == manifest and progress[-1] == (30, 30)
    assert manifest.rows == 30 and manifest.label_columns == ["label"]
    assert manifest.feature_service["name"] == SERVICE
    assert manifest.feature_service["views"][0]["name"] == "customer_profile"
    assert manifest.fingerprint == content_fingerprint(table)
    np.testing.assert_array_equal(
        table.column("f05").to_numpy(), profile_values(200, DAYS - 1)[:30, 5]
    )
    assert table.column("label").to_pylist() == [i % 2 for i in range(30)]


def test_an_edited_dataset_is_refused(feature_store, tmp_path):
    out = tmp_path / "train.parquet"
    build_dataset(feature_store, SERVICE, _entities(5, dt.datetime.now(dt.UTC)), out)
    table = pq.read_table(out)
    pq.write_table(table.set_column(2, "f00", pa.array(np.zeros(5, np.float32))), out)
    with pytest.raises(DatasetError, match="does not match its manifest"):
        load_dataset(out)
    manifest_path(out).unlink()
    with pytest.raises(DatasetError, match="no manifest"):
        load_dataset(out)


def test_the_fingerprint_follows_content_not_file_bytes():
    table = pa.table({"a": [1, 2, 3]})
    assert content_fingerprint(table) == content_fingerprint(
        pa.concat_tables([table.slice(0, 1), table.slice(1)])
    )
    assert content_fingerprint(table) != content_fingerprint(pa.table({"a": [1, 2, 4]}))


def test_entity_files_are_checked_with_messages_that_name_the_columns(tmp_path):
    path = tmp_path / "entities.parquet"
    pq.write_table(pa.table({"customer": ["a"], "ts": [1]}), path)
    with pytest.raises(
        DatasetError, match=r"lacks the columns \['customer_id', 'event_timestamp'\]"
    ):
        read_entities(path, "customer_id")
    pq.write_table(pa.table({"customer_id": ["a"], "event_timestamp": [1]}), path)
    with pytest.raises(DatasetError, match="must be a timestamp"):
        read_entities(path, "customer_id")


def test_an_unknown_service_names_the_known_ones(feature_store, tmp_path):
    with pytest.raises(FeatureServiceNotFound, match=f"'nope'.*known: {SERVICE}"):
        build_dataset(feature_store, "nope", _entities(1, dt.datetime.now(dt.UTC)), tmp_path / "x")


def test_repeated_entity_rows_each_get_their_answer_in_order(feature_store):
    now = dt.datetime.now(dt.UTC)
    ids = ["customer-00003", "customer-00001", "customer-00003", "customer-00003"]
    times = [now, now, now, now - dt.timedelta(hours=12)]
    entities = pa.table(
        {"entity_id": ids, "event_timestamp": pa.array(times, pa.timestamp("us", "UTC"))}
    )
    table = feature_store.historical(SERVICE, entities)
    assert table.column("entity_id").to_pylist() == ids
    latest, before = profile_values(200, DAYS - 1), profile_values(200, DAYS - 2)
    assert table.column("f00").to_pylist() == pytest.approx(
        [latest[3, 0], latest[1, 0], latest[3, 0], before[3, 0]]
    )
