"""The catalog's invariants: files, released history, pinned ids, the field contract."""

from __future__ import annotations

import json
from importlib.resources import files

import avro.schema
import fastavro
import pytest

from driftline.schemas import SCHEMA_NAMES, SchemaError, UnknownRecordName, catalog
from driftline.schemas.testing import sample

# The field names are the cross-package contract (see the brief); v1 is frozen.
CONTRACT_V1 = {
    "FeatureRecord": [
        "record_id", "entity_id", "model", "features", "feature_names", "event_time",
    ],
    "FeatureFrame": [
        "frame_id", "model", "entity_ids", "event_times", "feature_names", "n_rows",
        "n_features", "matrix",
    ],
    "Prediction": [
        "prediction_id", "record_id", "entity_id", "model", "version", "arm", "experiment_id",
        "score", "scores", "event_time", "scored_at", "latency_ms", "model_latency_ms",
    ],
    "Outcome": ["prediction_id", "entity_id", "value", "label", "event_time"],
    "DriftEvent": [
        "event_id", "model", "version", "arm", "detector", "feature", "statistic", "threshold",
        "p_value", "window_size", "evidence", "detected_at",
    ],
    "LifecycleEvent": [
        "event_id", "type", "model", "version", "actor", "state", "previous_state",
        "attributes", "evidence", "occurred_at",
    ],
    "LifecycleCommand": [
        "command_id", "action", "model", "version", "actor", "arguments", "issued_at",
        "key_id", "signature",
    ],
    "DeadLetter": [
        "source_topic", "partition", "offset", "key", "reason", "detail", "raw", "failed_at",
    ],
    "PredictionFrame": [
        "frame_id", "prediction_frame_id", "model", "version", "arm", "experiment_id", "n_rows",
        "rows", "entity_ids", "event_times", "n_outputs", "score", "scores", "scored_at",
        "model_latency_ms",
    ],
}  # fmt: skip

TIMESTAMP_FIELDS = {
    "FeatureRecord": {"event_time"},
    "FeatureFrame": {"event_times"},
    "Prediction": {"event_time", "scored_at"},
    "Outcome": {"event_time"},
    "DriftEvent": {"detected_at"},
    "LifecycleEvent": {"occurred_at"},
    "LifecycleCommand": {"issued_at"},
    "DeadLetter": {"failed_at"},
    "PredictionFrame": {"event_times", "scored_at"},
}


def _is_timestamp_millis(field_type) -> bool:
    if isinstance(field_type, dict) and field_type.get("type") == "array":
        return _is_timestamp_millis(field_type["items"])
    return isinstance(field_type, dict) and field_type == {
        "type": "long",
        "logicalType": "timestamp-millis",
    }


def test_schema_names_match_the_shipped_files():
    avro_dir = files("driftline.schemas") / "avro"
    current = {r.name for r in avro_dir.iterdir() if r.name.endswith(".avsc")}
    assert current == {f"{catalog.snake_name(n)}.avsc" for n in SCHEMA_NAMES}
    released = {r.name for r in (avro_dir / "history").iterdir() if r.is_dir()}
    assert released == set(SCHEMA_NAMES)


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_current_schema_equals_highest_released_version(name):
    # Editing a .avsc without adding history/<Name>/v<N+1>.avsc fails here.
    versions = catalog.history(name)
    assert catalog.latest_schema(name) == versions[max(versions)]
    assert catalog.latest_version(name) == max(versions)


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_history_is_contiguous_from_v1(name):
    versions = sorted(catalog.history(name))
    assert versions == list(range(1, len(versions) + 1))


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_v1_field_names_are_the_contract(name):
    v1 = catalog.history(name)[1]
    assert [f["name"] for f in v1["fields"]] == CONTRACT_V1[name]


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_schema_shape(name):
    for schema in catalog.history(name).values():
        assert schema["type"] == "record"
        assert schema["name"] == name
        assert schema["namespace"] == "driftline.v1"
        assert schema["doc"].strip()
        for field in schema["fields"]:
            assert field.get("doc", "").strip(), f"{name}.{field['name']} has no doc"
            if isinstance(field["type"], list) and "null" in field["type"]:
                assert field["type"][0] == "null" and field.get("default", "x") is None, (
                    f"{name}.{field['name']}: optional fields are ['null', T] with default null"
                )
        stamps = {f["name"] for f in schema["fields"] if _is_timestamp_millis(f["type"])}
        assert stamps == TIMESTAMP_FIELDS[name]


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_every_version_parses_with_both_avro_libraries(name):
    for schema in catalog.history(name).values():
        fastavro.parse_schema(schema, named_schemas={})
        parsed = avro.schema.parse(json.dumps(schema))
        assert parsed.fullname == f"driftline.v1.{name}"


def test_pinned_ids_cover_every_released_version_and_nothing_else():
    pinned = catalog.pinned_ids()
    assert set(pinned) == set(SCHEMA_NAMES)
    for name in SCHEMA_NAMES:
        assert set(pinned[name]) == set(catalog.history(name))


def test_pinned_ids_are_unique_and_positive():
    ids = [i for versions in catalog.pinned_ids().values() for i in versions.values()]
    assert len(ids) == len(set(ids))
    assert all(0 < i < 2**31 for i in ids)


def test_entries_pair_each_version_with_its_id():
    entries = catalog.entries()
    assert {(e.name, e.version): e.schema_id for e in entries} == {
        (name, v): i for name, versions in catalog.pinned_ids().items() for v, i in versions.items()
    }
    assert entries[0].fullname == "driftline.v1.FeatureRecord"


def test_entries_without_an_id_for_a_version_fail_naming_it():
    ids = catalog.pinned_ids()
    del ids["Outcome"][1]
    with pytest.raises(SchemaError, match=r"Outcome v1.*pinned_ids\.json"):
        catalog.entries(ids)


def test_unknown_name_is_rejected():
    with pytest.raises(UnknownRecordName, match="'Nope'.*FeatureRecord"):
        catalog.latest_schema("Nope")


def test_latest_schema_returns_an_independent_copy():
    catalog.latest_schema("Outcome")["fields"].clear()
    assert catalog.latest_schema("Outcome")["fields"]


def test_snake_names_and_subjects():
    assert catalog.snake_name("LifecycleCommand") == "lifecycle_command"
    assert catalog.subject("DeadLetter") == "driftline.v1.DeadLetter"


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_samples_cover_every_field(name):
    assert list(sample(name)) == [f["name"] for f in catalog.latest_schema(name)["fields"]]


def test_sample_rejects_unknown_fields():
    with pytest.raises(SchemaError, match="typo"):
        sample("Outcome", typo=1)
