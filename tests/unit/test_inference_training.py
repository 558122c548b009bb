"""Synthetic data and the demo model's training/export."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import onnx
import pytest

from driftline.inference import InferenceError, SyntheticFeatures, train_logistic

N_SAMPLES = 5_000


@pytest.fixture(scope="module")
def trained():
    return train_logistic(n_features=16, n_samples=N_SAMPLES, seed=0)


def test_synthetic_rows_are_deterministic_per_seed():
    a, b = SyntheticFeatures(8, seed=3), SyntheticFeatures(8, seed=3)
    np.testing.assert_array_equal(a.rows(100), b.rows(100))
    np.testing.assert_array_equal(a.rows(7), b.rows(7))  # the stream continues identically
    xa, ya = a.sample(50)
    xb, yb = b.sample(50)
    np.testing.assert_array_equal(xa, xb)
    np.testing.assert_array_equal(ya, yb)


def test_synthetic_seeds_differ_and_rows_are_float32_contiguous():
    rows = SyntheticFeatures(8, seed=3).rows(100)
    assert rows.dtype == np.float32 and rows.shape == (100, 8) and rows.flags.c_contiguous
    assert not np.array_equal(rows, SyntheticFeatures(8, seed=4).rows(100))


def test_synthetic_labels_follow_the_true_coefficients():
    gen = SyntheticFeatures(16, seed=0)
    x, y = gen.sample(20_000)
    positive = gen.logits(x) > 0
    # Labels are noisy but mostly agree with the sign of the true logit.
    assert 0.75 < float((y == positive).mean()) < 0.95
    assert 0.2 < float(y.mean()) < 0.8


def test_synthetic_rejects_bad_sizes():
    with pytest.raises(InferenceError, match="n_features"):
        SyntheticFeatures(0)
    with pytest.raises(InferenceError, match="row count"):
        SyntheticFeatures(4).rows(-1)


def test_trained_model_learns_and_reports_metrics(trained):
    assert trained.metrics["roc_auc"] > 0.85
    assert trained.metrics["accuracy"] > 0.75
    assert trained.metrics["n_train"] + trained.metrics["n_holdout"] == N_SAMPLES
    assert trained.feature_names == [f"f{j:02d}" for j in range(16)]
    assert trained.digest == hashlib.sha256(trained.onnx_bytes).hexdigest()


def test_export_carries_provenance_metadata(trained):
    model = onnx.load_from_string(trained.onnx_bytes)
    props = {p.key: p.value for p in model.metadata_props}
    assert json.loads(props["feature_names"]) == trained.feature_names
    assert json.loads(props["metrics"]) == trained.metrics
    assert props["n_samples"] == str(N_SAMPLES) and props["seed"] == "0"
    x_train = SyntheticFeatures(16, seed=0).rows(N_SAMPLES)[: trained.metrics["n_train"]]
    assert props["training_data_sha256"] == hashlib.sha256(x_train.tobytes()).hexdigest()
    (graph_input,) = model.graph.input
    assert graph_input.name == "features"
    assert graph_input.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert [o.name for o in model.graph.output] == ["label", "probabilities"]


def test_same_arguments_give_the_same_artifact(trained):
    again = train_logistic(n_features=16, n_samples=N_SAMPLES, seed=0)
    assert again.digest == trained.digest
    assert train_logistic(n_features=16, n_samples=N_SAMPLES, seed=1).digest != trained.digest


def test_train_refuses_tiny_samples():
    with pytest.raises(InferenceError, match="n_samples"):
        train_logistic(n_samples=10)
