"""score_records: Prediction dicts, deterministic ids, rejections."""

from __future__ import annotations

import math
import uuid

import fastavro
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from driftline.inference import (
    FEATURE_COUNT_MISMATCH,
    NON_FINITE,
    PREDICTION_NAMESPACE,
    InferenceError,
    LoadedModel,
    SyntheticFeatures,
    prediction_id,
    score_records,
    train_logistic,
)

NOW = 1_700_000_060_000
T0 = 1_700_000_000_000

# The Prediction contract from the brief, inline until schemas/ ships the .avsc.
_TS = {"type": "long", "logicalType": "timestamp-millis"}
PREDICTION_SCHEMA = fastavro.parse_schema(
    {
        "type": "record",
        "name": "Prediction",
        "namespace": "driftline.v1",
        "fields": [
            {"name": "prediction_id", "type": "string"},
            {"name": "record_id", "type": "string"},
            {"name": "entity_id", "type": "string"},
            {"name": "model", "type": "string"},
            {"name": "version", "type": "int"},
            {"name": "arm", "type": "string"},
            {"name": "experiment_id", "type": ["null", "string"], "default": None},
            {"name": "score", "type": "double"},
            {"name": "scores", "type": {"type": "array", "items": "double"}},
            {"name": "event_time", "type": _TS},
            {"name": "scored_at", "type": _TS},
            {"name": "latency_ms", "type": "double"},
            {"name": "model_latency_ms", "type": "double"},
        ],
    }
)


@pytest.fixture(scope="module")
def trained():
    return train_logistic(n_features=16, n_samples=5_000, seed=0)


def _load(trained, version: int) -> LoadedModel:
    return LoadedModel.load(
        trained.onnx_bytes, name="fraud", version=version, expected_digest=trained.digest
    )


@pytest.fixture(scope="module")
def model(trained):
    return _load(trained, 2)


def records(n: int, seed: int = 0, model: str = "fraud") -> list[dict]:
    rows = SyntheticFeatures(16, seed=seed).rows(n).tolist()
    return [
        {
            "record_id": f"rec-{i}",
            "entity_id": f"ent-{i % 7}",
            "model": model,
            "features": values,
            "feature_names": None,
            "event_time": T0 + i,
        }
        for i, values in enumerate(rows)
    ]


def test_predictions_follow_the_contract(model):
    recs = records(20)
    batch = score_records(model, recs, now_ms=lambda: NOW)
    assert len(batch.predictions) == 20 and batch.rejected == []
    assert batch.accepted == list(range(20))
    assert batch.model_latency_ms > 0
    expected = model.predict(np.array([r["features"] for r in recs], np.float32))
    for i, p in enumerate(batch.predictions):
        fastavro.validation.validate(p, PREDICTION_SCHEMA, raise_errors=True)
        assert p["record_id"] == f"rec-{i}" and p["entity_id"] == f"ent-{i % 7}"
        assert (p["model"], p["version"], p["arm"], p["experiment_id"]) == (
            "fraud",
            2,
            "champion",
            None,
        )
        assert type(p["event_time"]) is int and type(p["scored_at"]) is int
        assert p["scored_at"] == NOW
        assert p["latency_ms"] == float(NOW - (T0 + i))
        assert p["model_latency_ms"] == batch.model_latency_ms
        assert p["score"] == pytest.approx(expected.score[i])
        assert p["scores"] == pytest.approx(expected.scores[i].tolist())
        assert type(p["score"]) is float and all(type(s) is float for s in p["scores"])
        assert p["prediction_id"] == str(uuid.uuid5(PREDICTION_NAMESPACE, f"rec-{i}|fraud|served"))


def test_arm_and_experiment_are_carried(model):
    batch = score_records(model, records(3), arm="shadow", experiment_id="exp-1")
    assert {p["arm"] for p in batch.predictions} == {"shadow"}
    assert {p["experiment_id"] for p in batch.predictions} == {"exp-1"}
    champion = score_records(model, records(3))
    assert all(
        a["prediction_id"] != b["prediction_id"]
        for a, b in zip(batch.predictions, champion.predictions, strict=True)
    )


def test_prediction_id_is_stable_across_redelivery_and_versions(trained, model):
    recs = records(10)
    first = score_records(model, recs)
    again = score_records(model, recs)
    newer = score_records(_load(trained, 3), recs)
    retrained = train_logistic(n_features=16, n_samples=2_000, seed=4)
    other_model = LoadedModel.load(
        retrained.onnx_bytes, name="fraud", version=4, expected_digest=retrained.digest
    )
    other = score_records(other_model, recs)
    ids = [p["prediction_id"] for p in first.predictions]
    assert len(set(ids)) == 10
    for batch in (again, newer, other):
        assert [p["prediction_id"] for p in batch.predictions] == ids
    assert {p["version"] for p in newer.predictions} == {3}
    assert [p["score"] for p in other.predictions] != [p["score"] for p in first.predictions]


@settings(max_examples=200, deadline=None)
@given(st.text(), st.text(min_size=1), st.sampled_from(["champion", "challenger", "canary"]))
def test_prediction_id_equals_uuid5(record_id, model_name, arm):
    expected = uuid.uuid5(PREDICTION_NAMESPACE, f"{record_id}|{model_name}|{arm}")
    assert prediction_id(record_id, model_name, arm) == str(expected)


def test_namespace_is_the_documented_uuid5():
    documented = uuid.uuid5(uuid.NAMESPACE_URL, "https://driftline.dev/ns/prediction")
    assert documented == PREDICTION_NAMESPACE


def test_rejected_records_are_reported_and_the_rest_scored(model):
    recs = records(6)
    recs[1]["features"] = recs[1]["features"][:15]
    recs[4]["features"] = [math.nan] + recs[4]["features"][1:]
    batch = score_records(model, recs, now_ms=lambda: NOW)
    assert batch.accepted == [0, 2, 3, 5]
    assert [p["record_id"] for p in batch.predictions] == ["rec-0", "rec-2", "rec-3", "rec-5"]
    assert [(r.index, r.reason) for r in batch.rejected] == [
        (1, FEATURE_COUNT_MISMATCH),
        (4, NON_FINITE),
    ]
    assert batch.rejected[0].detail == "expected 16 features for model 'fraud' v2, got 15"
    # Scores line up with the right rows despite the gaps.
    alone = score_records(model, [recs[5]])
    assert alone.predictions[0]["score"] == pytest.approx(batch.predictions[-1]["score"], abs=1e-7)
    assert alone.predictions[0]["score"] != pytest.approx(batch.predictions[-2]["score"], abs=1e-7)


def test_all_rejected_batch_scores_nothing(model):
    recs = records(2)
    for r in recs:
        r["features"] = [1.0]
    batch = score_records(model, recs)
    assert batch.predictions == [] and batch.accepted == []
    assert len(batch.rejected) == 2 and batch.model_latency_ms == 0.0


def test_empty_batch(model):
    batch = score_records(model, [])
    assert batch.predictions == [] and batch.rejected == []


def test_records_for_another_model_are_a_routing_error(model):
    recs = records(3)
    recs[2]["model"] = "churn"
    with pytest.raises(InferenceError, match=r"\['churn'\].*'fraud'"):
        score_records(model, recs)
