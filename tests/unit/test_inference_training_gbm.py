"""The gradient-boosted demo model: training, ONNX export and serving parity."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import onnx
import pytest

from driftline.inference import InferenceError, SyntheticFeatures
from driftline.inference.model import LoadedModel
from driftline.inference.training import train_gbm, train_mlp

N_SAMPLES = 3_000
N_TREES = 20


@pytest.fixture(scope="module")
def trained():
    return train_gbm(n_features=16, n_samples=N_SAMPLES, seed=0, n_trees=N_TREES)


def _props(model: onnx.ModelProto) -> dict[str, str]:
    return {p.key: p.value for p in model.metadata_props}


def test_same_arguments_give_the_same_artifact(trained):
    again = train_gbm(n_features=16, n_samples=N_SAMPLES, seed=0, n_trees=N_TREES)
    assert again.onnx_bytes == trained.onnx_bytes
    other = train_gbm(n_features=16, n_samples=N_SAMPLES, seed=1, n_trees=N_TREES)
    assert other.digest != trained.digest


def test_graph_is_one_tree_ensemble_with_n_trees(trained):
    model = onnx.load_from_string(trained.onnx_bytes)
    (ensemble,) = [n for n in model.graph.node if n.op_type.startswith("TreeEnsemble")]
    assert ensemble.domain == "ai.onnx.ml"
    attributes = {a.name: a for a in ensemble.attribute}
    assert len(set(attributes["nodes_treeids"].ints)) == N_TREES
    (graph_input,) = model.graph.input
    assert graph_input.name == "features"
    assert graph_input.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    dims = graph_input.type.tensor_type.shape.dim
    assert not dims[0].HasField("dim_value") and dims[1].dim_value == 16
    assert [o.name for o in model.graph.output] == ["label", "probabilities"]


def test_export_carries_provenance_metadata(trained):
    props = _props(onnx.load_from_string(trained.onnx_bytes))
    assert props["model_kind"] == "gradient_boosting"
    assert props["trainer"] == "driftline.inference.training.train_gbm"
    assert json.loads(props["feature_names"]) == trained.feature_names
    assert json.loads(props["metrics"]) == trained.metrics
    assert props["n_samples"] == str(N_SAMPLES) and props["seed"] == "0"
    assert json.loads(props["hyperparameters"])["n_trees"] == N_TREES
    x_train = SyntheticFeatures(16, seed=0).rows(N_SAMPLES)[: trained.metrics["n_train"]]
    assert props["training_data_sha256"] == hashlib.sha256(x_train.tobytes()).hexdigest()


def test_holdout_auc_is_recorded_and_useful(trained):
    metrics = json.loads(_props(onnx.load_from_string(trained.onnx_bytes))["metrics"])
    assert metrics["roc_auc"] > 0.7
    assert metrics["n_train"] + metrics["n_holdout"] == N_SAMPLES


def test_loaded_model_scores_match_sklearn(trained):
    loaded = LoadedModel.load(
        trained.onnx_bytes, name="gbm", version=1, expected_digest=trained.digest
    )
    rows = SyntheticFeatures(16, seed=42).rows(2_000)
    scores = loaded.predict(rows)
    expected = trained.estimator.predict_proba(rows)[:, 1]
    np.testing.assert_allclose(scores.score, expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"n_trees": 0}, "n_trees must be >= 1, got 0"),
        ({"max_depth": 0}, "max_depth must be >= 1, got 0"),
        ({"subsample": 0.0}, r"subsample must be in \(0, 1\], got 0.0"),
        ({"learning_rate": -0.1}, "learning_rate must be > 0, got -0.1"),
        ({"n_samples": 10}, "n_samples must be >= 50.*got 10"),
    ],
)
def test_bad_arguments_raise_inference_error_naming_the_value(kwargs, named):
    with pytest.raises(InferenceError, match=named):
        train_gbm(**kwargs)


class TestMlp:
    def test_graph_uses_only_standard_operators_and_matches_sklearn(self):
        trained = train_mlp(n_features=8, n_samples=1_000, seed=2, hidden=(16,))
        graph = onnx.load_from_string(trained.onnx_bytes).graph
        assert {node.domain for node in graph.node} == {""}
        assert [output.name for output in graph.output] == ["probabilities"]
        model = LoadedModel.load(
            trained.onnx_bytes, name="m", version=1, expected_digest=trained.digest
        )
        x = np.random.default_rng(0).normal(size=(200, 8)).astype(np.float32)
        want = trained.estimator.predict_proba(x)[:, 1]
        np.testing.assert_allclose(model.predict(x).score, want, atol=1e-5)

    def test_empty_hidden_layers_are_refused(self):
        with pytest.raises(InferenceError, match="hidden"):
            train_mlp(hidden=())
