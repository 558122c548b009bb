"""Model description, digest-verified loading and vectorised prediction."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import onnxruntime
import pytest
from onnx import TensorProto, helper
from skl2onnx import to_onnx
from skl2onnx.common.data_types import FloatTensorType
from sklearn.linear_model import LinearRegression

from driftline.inference import (
    InferenceError,
    LoadedModel,
    ModelDigestMismatch,
    ModelLoadError,
    SyntheticFeatures,
    UnsupportedModel,
    describe_onnx,
    train_logistic,
)


@pytest.fixture(scope="module")
def trained():
    return train_logistic(n_features=16, n_samples=5_000, seed=0)


@pytest.fixture(scope="module")
def loaded(trained):
    return LoadedModel.load(
        trained.onnx_bytes, name="fraud", version=2, expected_digest=trained.digest
    )


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _handmade(
    inputs: list[tuple[str, int, list[int | str | None]]],
    *,
    metadata: dict[str, str] | None = None,
) -> bytes:
    """A tiny graph: output = Cast(first input to float) (+ the others)."""
    value_infos = [helper.make_tensor_value_info(n, t, s) for n, t, s in inputs]
    nodes = [helper.make_node("Cast", [inputs[0][0]], ["cast"], to=TensorProto.FLOAT)]
    last = "cast"
    for i, (name, _, _) in enumerate(inputs[1:]):
        nodes.append(helper.make_node("Add", [last, name], [f"sum{i}"]))
        last = f"sum{i}"
    nodes.append(helper.make_node("Identity", [last], ["output"]))
    out = helper.make_tensor_value_info("output", TensorProto.FLOAT, None)
    graph = helper.make_graph(nodes, "handmade", value_infos, [out])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    if metadata:
        helper.set_model_props(model, metadata)
    return model.SerializeToString()


# --- describe_onnx -------------------------------------------------------------------


def test_describe_trained_model(trained):
    d = describe_onnx(trained.onnx_bytes)
    assert d.input_name == "features"
    assert d.input_shape == [None, 16]
    assert d.input_type == "tensor(float)"
    assert d.output_names == ["label", "probabilities"]
    assert d.n_features == 16
    assert d.feature_names == trained.feature_names
    assert json.loads(d.metadata_props["metrics"]) == trained.metrics


def test_to_attributes_has_exactly_the_lifecycle_keys(trained):
    attrs = describe_onnx(trained.onnx_bytes).to_attributes()
    assert set(attrs) == {"input_name", "input_shape", "feature_names", "metadata_props"}
    assert all(isinstance(v, str) for v in attrs.values())
    assert attrs["input_shape"] == "[null, 16]"
    assert json.loads(attrs["feature_names"]) == trained.feature_names
    assert json.loads(attrs["metadata_props"])["seed"] == "0"


def test_to_attributes_omits_unknown_feature_names():
    d = describe_onnx(_handmade([("x", TensorProto.FLOAT, ["N", 4])]))
    assert d.feature_names is None and d.n_features == 4
    assert set(d.to_attributes()) == {"input_name", "input_shape", "metadata_props"}


def test_feature_count_falls_back_to_metadata_names():
    names = ["a", "b", "c"]
    d = describe_onnx(
        _handmade(
            [("x", TensorProto.FLOAT, ["N", "K"])], metadata={"feature_names": json.dumps(names)}
        )
    )
    assert d.input_shape == [None, None]
    assert d.n_features == 3 and d.feature_names == names


@pytest.mark.parametrize(
    ("inputs", "metadata", "message"),
    [
        (
            [("a", TensorProto.FLOAT, ["N", 2]), ("b", TensorProto.FLOAT, ["N", 2])],
            None,
            "has 2 inputs",
        ),
        ([("x", TensorProto.INT64, ["N", 2])], None, r"tensor\(int64\), expected tensor\(float\)"),
        ([("x", TensorProto.DOUBLE, ["N", 2])], None, r"tensor\(double\)"),
        ([("x", TensorProto.FLOAT, ["N", 2, 3])], None, "rank 2"),
        ([("x", TensorProto.FLOAT, ["N", 2])], {"feature_names": "not json"}, "not JSON"),
        ([("x", TensorProto.FLOAT, ["N", 2])], {"feature_names": '{"a": 1}'}, "list of strings"),
        ([("x", TensorProto.FLOAT, ["N", 2])], {"feature_names": '["a", "b", "c"]'}, "lists 3"),
    ],
)
def test_describe_rejects_unservable_interfaces(inputs, metadata, message):
    with pytest.raises(UnsupportedModel, match=message):
        describe_onnx(_handmade(inputs, metadata=metadata))


def test_describe_wraps_unparseable_bytes():
    with pytest.raises(ModelLoadError, match="cannot load") as info:
        describe_onnx(b"definitely not onnx")
    assert not isinstance(info.value, ModelDigestMismatch)
    assert info.value.__cause__ is not None


# --- LoadedModel.load ----------------------------------------------------------------


def test_load_sets_identity_and_signature(loaded, trained):
    assert (loaded.name, loaded.version, loaded.digest) == ("fraud", 2, trained.digest)
    assert loaded.signature.input_name == "features"
    assert loaded.signature.n_features == 16
    assert loaded.signature.feature_names == tuple(trained.feature_names)
    assert loaded.description.n_features == 16
    assert loaded.providers == ["CPUExecutionProvider"]
    assert isinstance(loaded.loaded_at, int)


def test_load_accepts_prefixed_upper_case_digest(trained):
    model = LoadedModel.load(
        trained.onnx_bytes,
        name="fraud",
        version=1,
        expected_digest="sha256:" + trained.digest.upper(),
    )
    assert model.digest == trained.digest


def test_tampered_byte_is_refused(trained):
    tampered = bytearray(trained.onnx_bytes)
    tampered[len(tampered) // 2] ^= 0x01
    with pytest.raises(ModelDigestMismatch) as info:
        LoadedModel.load(bytes(tampered), name="fraud", version=3, expected_digest=trained.digest)
    err = info.value
    assert (err.model, err.version, err.expected) == ("fraud", 3, trained.digest)
    assert err.actual == _sha(bytes(tampered))
    for part in ("'fraud'", "v3", trained.digest, err.actual):
        assert part in str(err)


def test_digest_mismatch_wins_before_onnxruntime_sees_the_bytes(monkeypatch):
    calls = []

    def spy(*args, **kwargs):
        calls.append(args)
        raise AssertionError("onnxruntime must not be called")

    monkeypatch.setattr(onnxruntime, "InferenceSession", spy)
    garbage = b"\x00\xffnot an onnx model"
    with pytest.raises(ModelDigestMismatch):
        LoadedModel.load(garbage, name="fraud", version=1, expected_digest="0" * 64)
    assert calls == []


def test_garbage_with_matching_digest_is_a_load_error():
    garbage = b"\x00\xffnot an onnx model"
    with pytest.raises(ModelLoadError, match="'fraud' v1") as info:
        LoadedModel.load(garbage, name="fraud", version=1, expected_digest=_sha(garbage))
    assert not isinstance(info.value, ModelDigestMismatch)


def test_load_refuses_unknown_feature_count():
    data = _handmade([("x", TensorProto.FLOAT, ["N", "K"])])
    with pytest.raises(UnsupportedModel, match="how many features"):
        LoadedModel.load(data, name="m", version=1, expected_digest=_sha(data))


def test_load_refuses_bad_thread_count(trained):
    with pytest.raises(ModelLoadError, match="intra_op_threads"):
        LoadedModel.load(
            trained.onnx_bytes,
            name="fraud",
            version=1,
            expected_digest=trained.digest,
            intra_op_threads=0,
        )


# --- predict -------------------------------------------------------------------------


def test_predict_shapes_and_range(loaded):
    x = SyntheticFeatures(16, seed=5).rows(257)
    out = loaded.predict(x)
    assert out.score.shape == (257,) and out.score.dtype == np.float64
    assert out.scores.shape == (257, 2) and out.scores.dtype == np.float64
    assert ((out.score >= 0) & (out.score <= 1)).all()
    np.testing.assert_allclose(out.scores.sum(axis=1), 1.0, atol=1e-6)
    np.testing.assert_array_equal(out.score, out.scores[:, 1])


def test_predict_matches_sklearn(loaded, trained):
    x = SyntheticFeatures(16, seed=9).rows(2_000)
    expected = trained.estimator.predict_proba(x)
    out = loaded.predict(x)
    np.testing.assert_allclose(out.scores, expected, atol=1e-5)
    np.testing.assert_allclose(out.score, expected[:, 1], atol=1e-5)


def test_predict_runs_once_per_call(loaded, monkeypatch):
    calls = []
    session = loaded._runner._session
    real_run = session.run

    class CountingSession:
        def run(self, *args, **kwargs):
            calls.append(args)
            return real_run(*args, **kwargs)

    monkeypatch.setattr(loaded._runner, "_session", CountingSession())
    loaded.predict(SyntheticFeatures(16, seed=1).rows(1_000))
    assert len(calls) == 1


def test_predict_accepts_non_contiguous_input(loaded):
    x = SyntheticFeatures(16, seed=2).rows(40)
    view = np.asfortranarray(x)
    np.testing.assert_array_equal(loaded.predict(view).score, loaded.predict(x).score)


def test_predict_empty_batch(loaded):
    out = loaded.predict(np.empty((0, 16), dtype=np.float32))
    assert out.score.shape == (0,)


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((3, 15), dtype=np.float32),
        np.zeros((3, 16), dtype=np.float64),
        np.zeros(16, dtype=np.float32),
        [[0.0] * 16],
    ],
)
def test_predict_rejects_wrong_arrays(loaded, bad):
    with pytest.raises(InferenceError, match=r"float32 \[n, 16\]"):
        loaded.predict(bad)


def test_regression_model_scores_are_the_values():
    gen = SyntheticFeatures(4, seed=0)
    x = gen.rows(500)
    y = gen.logits(x)
    reg = LinearRegression().fit(x, y)
    data = to_onnx(
        reg, initial_types=[("features", FloatTensorType([None, 4]))]
    ).SerializeToString()
    model = LoadedModel.load(data, name="reg", version=1, expected_digest=_sha(data))
    out = model.predict(x[:50])
    assert out.score.shape == (50,) and out.scores.shape == (50, 1)
    np.testing.assert_allclose(out.score, reg.predict(x[:50]), rtol=1e-4, atol=1e-4)


def test_model_without_float_output_is_unsupported():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2])
    y = helper.make_tensor_value_info("y", TensorProto.INT64, ["N", 2])
    graph = helper.make_graph(
        [helper.make_node("Cast", ["x"], ["y"], to=TensorProto.INT64)], "g", [x], [y]
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    data = model.SerializeToString()
    with pytest.raises(UnsupportedModel, match="no float output"):
        LoadedModel.load(data, name="m", version=1, expected_digest=_sha(data))


def test_multiclass_score_is_the_top_class_probability():
    from sklearn.linear_model import LogisticRegression

    x = SyntheticFeatures(4, seed=0).rows(600)
    y = np.digitize(x[:, 0], np.quantile(x[:, 0], [1 / 3, 2 / 3]))
    clf = LogisticRegression(max_iter=500).fit(x, y)
    data = to_onnx(
        clf, initial_types=[("features", FloatTensorType([None, 4]))], options={"zipmap": False}
    ).SerializeToString()
    model = LoadedModel.load(data, name="tri", version=1, expected_digest=_sha(data))
    out = model.predict(x[:20])
    assert out.scores.shape == (20, 3)
    np.testing.assert_allclose(out.score, clf.predict_proba(x[:20]).max(axis=1), atol=1e-5)
