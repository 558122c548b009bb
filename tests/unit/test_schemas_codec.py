"""SchemaCodec: property round-trips for every record, errors, old-version resolution."""

from __future__ import annotations

import copy
import datetime as dt
import math
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from driftline.schemas import (
    SCHEMA_NAMES,
    InvalidRecord,
    SchemaCodec,
    SchemaError,
    UnknownRecordName,
    UnknownSchemaId,
    catalog,
    default_codec,
    wire,
)
from driftline.schemas.catalog import SchemaEntry
from driftline.schemas.compat import check_backward
from driftline.schemas.testing import sample

INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)


def values(schema: Any) -> st.SearchStrategy:
    """A strategy for valid values of an Avro (sub)schema."""
    if isinstance(schema, list):
        return st.one_of(*[values(branch) for branch in schema])
    if isinstance(schema, dict):
        kind = schema["type"]
        if kind == "record":
            return st.fixed_dictionaries({f["name"]: values(f["type"]) for f in schema["fields"]})
        if kind == "array":
            return st.lists(values(schema["items"]), max_size=6)
        if kind == "map":
            return st.dictionaries(st.text(max_size=8), values(schema["values"]), max_size=4)
        return values(kind)  # primitive with a logicalType: still the primitive
    return {
        "null": st.none(),
        "boolean": st.booleans(),
        "int": st.integers(*INT32),
        "long": st.integers(*INT64),
        # Any double in float32 range; the codec rounds it to float32.
        "float": st.floats(-1e38, 1e38),
        "double": st.floats(allow_nan=False),
        "bytes": st.binary(max_size=24),
        "string": st.text(max_size=12),
    }[schema]


def expected(schema: Any, value: Any) -> Any:
    """What decoding ``value`` should give: floats come back rounded to float32."""
    if isinstance(schema, list):
        if value is None:
            return None
        (branch,) = [b for b in schema if b != "null"]
        return expected(branch, value)
    if isinstance(schema, dict):
        kind = schema["type"]
        if kind == "record":
            return {f["name"]: expected(f["type"], value[f["name"]]) for f in schema["fields"]}
        if kind == "array":
            return [expected(schema["items"], v) for v in value]
        if kind == "map":
            return {k: expected(schema["values"], v) for k, v in value.items()}
        return expected(kind, value)
    if schema == "float":
        return float(np.float32(value))
    return value


@pytest.mark.parametrize("name", SCHEMA_NAMES)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_round_trip_every_record(name, data):
    schema = catalog.latest_schema(name)
    record = data.draw(values(schema), label=name)
    codec = default_codec()
    encoded = codec.encode(name, record)
    assert wire.split(encoded)[0] == codec.schema_id(name)
    decoded_name, decoded = codec.decode(encoded)
    assert decoded_name == name
    assert decoded == expected(schema, record)
    assert codec.decode_as(name, encoded) == decoded


@given(features=st.lists(st.floats(width=32, allow_nan=False), max_size=32))
def test_float32_features_are_exact(features):
    codec = default_codec()
    record = sample("FeatureRecord", features=features, feature_names=None)
    assert codec.decode_as("FeatureRecord", codec.encode("FeatureRecord", record)) == record


def test_doubles_are_rounded_to_float32_in_feature_records():
    codec = default_codec()
    got = codec.decode_as("FeatureRecord", codec.encode("FeatureRecord", sample("FeatureRecord")))
    assert got == sample("FeatureRecord")  # sample values are exact in float32
    got = codec.decode_as(
        "FeatureRecord", codec.encode("FeatureRecord", sample("FeatureRecord", features=[0.1]))
    )
    assert got["features"] == [float(np.float32(0.1))] != [0.1]


def test_non_finite_features_pass_through_for_the_worker_to_reject():
    codec = default_codec()
    record = sample("FeatureRecord", features=[math.nan, math.inf, -math.inf])
    got = codec.decode_as("FeatureRecord", codec.encode("FeatureRecord", record))["features"]
    assert math.isnan(got[0]) and got[1:] == [math.inf, -math.inf]


def test_feature_frame_matrix_round_trips_as_float32():
    rng = np.random.default_rng(7)
    matrix = rng.normal(size=(50, 16)).astype("<f4")
    record = sample(
        "FeatureFrame",
        entity_ids=[f"e{i}" for i in range(50)],
        event_times=list(range(1_700_000_000_000, 1_700_000_000_050)),
        feature_names=[f"f{i}" for i in range(16)],
        n_rows=50,
        n_features=16,
        matrix=matrix.tobytes(),
    )
    codec = default_codec()
    got = codec.decode_as("FeatureFrame", codec.encode("FeatureFrame", record))
    back = np.frombuffer(got["matrix"], dtype="<f4").reshape(got["n_rows"], got["n_features"])
    np.testing.assert_array_equal(back, matrix)


def test_timestamps_stay_int_millis():
    codec = default_codec()
    got = codec.decode_as("Prediction", codec.encode("Prediction", sample("Prediction")))
    assert type(got["event_time"]) is int and got["event_time"] == 1_700_000_000_000
    assert type(got["scored_at"]) is int
    # The v1 layout's array of timestamp-millis, still in v2, reads as ints too.
    times = [1_700_000_000_000, 1_700_000_000_001]
    v1_layout = sample("FeatureFrame", entity_ids=["a", "b"], event_times=times)
    frame = codec.decode_as("FeatureFrame", codec.encode("FeatureFrame", v1_layout))
    assert frame["event_times"] == times and all(type(t) is int for t in frame["event_times"])


def test_datetimes_are_rejected_naming_the_field():
    when = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    with pytest.raises(InvalidRecord, match="Outcome.event_time.*long.*epoch milliseconds"):
        default_codec().encode("Outcome", sample("Outcome", event_time=when))


def test_optional_fields_default_when_left_out():
    codec = default_codec()
    got = codec.decode_as(
        "DriftEvent",
        codec.encode(
            "DriftEvent",
            {
                "event_id": "d1",
                "model": "m",
                "detector": "adwin",
                "statistic": 1.0,
                "threshold": 0.5,
                "window_size": 10,
                "detected_at": 5,
            },
        ),
    )
    assert got["version"] is got["arm"] is got["feature"] is got["p_value"] is None
    assert got["evidence"] == "{}"


@pytest.mark.parametrize(
    ("record", "pattern"),
    [
        (sample("Prediction", score="high"), r"Prediction record: Prediction\.score is 'high'"),
        ({**sample("Prediction"), "scroe": 1.0}, "more fields than the schema specifies: scroe"),
        ({k: v for k, v in sample("Prediction").items() if k != "arm"}, "arm"),
        (sample("Prediction", version=None), r"Prediction\.version is missing or None"),
        (["not", "a", "dict"], "expected a dict of fields, got list"),
    ],
)
def test_invalid_records_name_the_field(record, pattern):
    with pytest.raises(InvalidRecord, match=pattern) as info:
        default_codec().encode("Prediction", record)
    assert "schemas/avro/prediction.avsc" in str(info.value)
    assert info.value.__cause__ is not None


def test_encode_many_matches_encode_and_names_the_bad_index():
    codec = default_codec()
    records = [sample("Outcome", prediction_id=f"p{i}", value=float(i)) for i in range(5)]
    assert codec.encode_many("Outcome", records) == [codec.encode("Outcome", r) for r in records]
    records[3]["value"] = "x"
    with pytest.raises(InvalidRecord, match="Outcome record #3"):
        codec.encode_many("Outcome", records)


def test_unknown_record_name():
    codec = default_codec()
    for call in (
        lambda: codec.encode("Nope", {}),
        lambda: codec.schema_id("Nope"),
        lambda: codec.decode_as("Nope", codec.encode("Outcome", sample("Outcome"))),
    ):
        with pytest.raises(UnknownRecordName, match="'Nope'"):
            call()


def test_schema_ids_are_the_pinned_ones():
    pinned = catalog.pinned_ids()
    codec = default_codec()
    for name in SCHEMA_NAMES:
        assert codec.schema_id(name) == pinned[name][max(pinned[name])]
    assert default_codec() is codec


def test_duplicate_ids_are_rejected():
    ids = catalog.pinned_ids()
    ids["Outcome"][1] = ids["FeatureRecord"][1]
    with pytest.raises(SchemaError, match="schema id 1 is given to both"):
        SchemaCodec(ids)


# -- old versions: a synthetic v2 of FeatureRecord ---------------------------------

V2_ID = 101


def feature_record_v2() -> dict[str, Any]:
    v2 = copy.deepcopy(catalog.latest_schema("FeatureRecord"))
    v2["fields"].append(
        {"name": "source", "type": "string", "default": "unknown", "doc": "Producing system."}
    )
    return v2


@pytest.fixture(scope="module")
def codec_v2() -> SchemaCodec:
    entries = [*catalog.entries(), SchemaEntry("FeatureRecord", 2, V2_ID, feature_record_v2())]
    return SchemaCodec.from_entries(entries)


def test_synthetic_v2_is_backward_compatible():
    assert check_backward(feature_record_v2(), catalog.latest_schema("FeatureRecord")) == []


def test_v1_payloads_are_read_with_the_latest_schema(codec_v2):
    v1_payload = default_codec().encode("FeatureRecord", sample("FeatureRecord"))
    assert wire.split(v1_payload)[0] == 1
    name, record = codec_v2.decode(v1_payload)
    assert name == "FeatureRecord"
    assert record == {**sample("FeatureRecord"), "source": "unknown"}
    assert codec_v2.decode_as("FeatureRecord", v1_payload)["source"] == "unknown"


def test_v2_is_written_under_its_own_id(codec_v2):
    assert codec_v2.schema_id("FeatureRecord") == V2_ID
    payload = codec_v2.encode("FeatureRecord", {**sample("FeatureRecord"), "source": "pos"})
    assert wire.split(payload)[0] == V2_ID
    assert codec_v2.decode(payload)[1]["source"] == "pos"
    # A worker that only knows the pinned v1 cannot read it and says so.
    with pytest.raises(UnknownSchemaId, match=f"schema id {V2_ID}"):
        default_codec().decode(payload)


def test_fetched_unknown_ids_are_resolved_once_and_cached(codec_v2):
    v2_payload = codec_v2.encode("FeatureRecord", {**sample("FeatureRecord"), "source": "pos"})
    calls: list[int] = []

    def fetch(schema_id: int) -> dict[str, Any]:
        calls.append(schema_id)
        if schema_id == V2_ID:
            return feature_record_v2()
        raise UnknownSchemaId(f"schema id {schema_id} is not registered")

    codec = SchemaCodec(fetch=fetch)
    for _ in range(3):
        # Written with v2, read with this codec's latest (v1): the new field is dropped.
        assert codec.decode(v2_payload) == ("FeatureRecord", sample("FeatureRecord"))
    for _ in range(3):
        with pytest.raises(UnknownSchemaId):
            codec.decode(wire.frame(555, b""))
    assert calls == [V2_ID, 555]


def test_fetched_foreign_record_is_an_unknown_id():
    foreign = {"type": "record", "name": "Other", "namespace": "acme", "fields": []}
    codec = SchemaCodec(fetch=lambda schema_id: foreign)
    with pytest.raises(UnknownSchemaId, match="acme.Other, not a driftline record"):
        codec.decode(wire.frame(77, b""))
