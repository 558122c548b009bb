"""Model quality gates: metrics, holdout loading, config validation and the gate report."""

from __future__ import annotations

import hashlib
import json
import math

import numpy as np
import onnx
import pytest
from sklearn import metrics as skm

from driftline.inference import LoadedModel, SyntheticFeatures, train_logistic
from driftline.lineage.exceptions import (
    GateConfigError,
    InvalidHoldout,
    LineageError,
    MetricUndefined,
)
from driftline.lineage.promotion.gate_metrics import (
    METRICS,
    ModelEvaluation,
    accuracy,
    auc,
    brier,
    log_loss,
    measure_latency,
    positive_rate,
)
from driftline.lineage.promotion.gates import (
    GateCheck,
    GateConfig,
    GateReport,
    Integrity,
    evaluate_gates,
)
from driftline.lineage.promotion.holdout import Holdout

N_FEATURES = 8
N_TRAIN = 3_000
GENEROUS_MS = 60_000.0


def _load(data: bytes, version: int) -> LoadedModel:
    digest = hashlib.sha256(data).hexdigest()
    return LoadedModel.load(data, name="fraud", version=version, expected_digest=digest)


@pytest.fixture(scope="module")
def champion() -> LoadedModel:
    return _load(train_logistic(N_FEATURES, N_TRAIN, seed=0).onnx_bytes, version=1)


@pytest.fixture(scope="module")
def worse() -> LoadedModel:
    """Trained on another population (seed 1): same features, useless on seed-0 rows."""
    return _load(train_logistic(N_FEATURES, N_TRAIN, seed=1).onnx_bytes, version=2)


@pytest.fixture(scope="module")
def holdout() -> Holdout:
    generator = SyntheticFeatures(N_FEATURES, seed=0)
    generator.sample(N_TRAIN)  # the rows the champion was trained on
    x, y = generator.sample(2_000)
    return Holdout.from_arrays(x, y, generator.feature_names, source="synthetic seed 0")


def _config(**overrides) -> GateConfig:
    values = {
        "latency_budget_ms": GENEROUS_MS,
        "thresholds": {"auc": 0.8, "accuracy": 0.7, "log_loss": 0.6, "brier": 0.2},
        "latency_repeats": 5,
    }
    return GateConfig(**{**values, **overrides})


def _check(report: GateReport, name: str) -> GateCheck:
    (check,) = [c for c in report.checks if c.name == name]
    return check


# --------------------------------------------------------------------------- metrics


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_metrics_equal_sklearn_on_tied_scores(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 700)
    # One decimal: many ties, and exact 0.0 / 1.0 that exercise log-loss clipping.
    s = np.round(np.clip(0.3 * y + rng.random(700) * 0.7, 0, 1), 1)
    assert len(np.unique(s)) < 12
    assert auc(y, s) == pytest.approx(skm.roc_auc_score(y, s), abs=1e-12)
    assert log_loss(y, s) == pytest.approx(skm.log_loss(y, s), rel=1e-12)
    assert brier(y, s) == pytest.approx(skm.brier_score_loss(y, s), abs=1e-12)
    assert accuracy(y, s, 0.5) == pytest.approx(skm.accuracy_score(y, s >= 0.5))
    assert accuracy(y, s, 0.3) == pytest.approx(skm.accuracy_score(y, s >= 0.3))
    assert positive_rate(s, 0.5) == pytest.approx(np.mean(s >= 0.5))


def test_auc_of_constant_scores_is_one_half_and_perfect_ranking_is_one():
    y = np.array([0, 1, 0, 1, 1])
    assert auc(y, np.full(5, 0.3)) == 0.5
    assert auc(y, y * 0.5 + 0.2) == 1.0
    assert auc(y, 1 - y) == 0.0


def test_metric_inputs_are_checked():
    with pytest.raises(MetricUndefined, match=r"0 or 1; index 2 has 2"):
        auc([0, 1, 2], [0.1, 0.2, 0.3])
    with pytest.raises(MetricUndefined, match=r"AUC is undefined: all 3 .* 1 \(positive\)"):
        auc([1, 1, 1], [0.1, 0.2, 0.3])
    with pytest.raises(MetricUndefined, match="both classes"):
        auc([0, 0], [0.1, 0.2])
    with pytest.raises(MetricUndefined, match=r"log_loss needs probabilities .* index 1"):
        log_loss([0, 1], [0.5, 1.5])
    with pytest.raises(MetricUndefined, match="index 0 is nan"):
        brier([0, 1], [np.nan, 0.5])
    with pytest.raises(MetricUndefined, match="3 labels"):
        accuracy([0, 1, 1], [0.5, 0.5])
    err = MetricUndefined("x")
    assert isinstance(err, LineageError) and isinstance(err, ValueError)


def test_registry_directions():
    assert {name for name, m in METRICS.items() if m.higher_is_better} == {"auc", "accuracy"}
    assert {name for name, m in METRICS.items() if not m.higher_is_better} == {
        "log_loss",
        "brier",
    }


# --------------------------------------------------------------------------- config


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"thresholds": {"f1": 0.5}}, r"unknown metric 'f1'; choose from \['accuracy'"),
        ({"thresholds": {"auc": 1.5}}, r"thresholds\['auc'\] is 1.5, outside the range"),
        ({"thresholds": {"auc": "high"}}, r"thresholds\['auc'\] must be a number"),
        ({"thresholds": {"log_loss": math.nan}}, "must be finite"),
        ({"max_regression": {"auc": -0.01}}, r"max_regression\['auc'\] is -0.01; .* allowance"),
        ({"thresholds": [("auc", 0.7)]}, "must be a mapping"),
        ({"latency_budget_ms": 0}, "latency_budget_ms must be > 0, got 0.0"),
        ({"latency_budget_ms": True}, "latency_budget_ms must be a number"),
        ({"latency_repeats": 0}, "latency_repeats must be an integer >= 1, got 0"),
        ({"latency_batch_rows": 10.5}, "latency_batch_rows must be an integer"),
        ({"decision_threshold": 1.0}, r"decision_threshold must be in \(0, 1\)"),
    ],
)
def test_config_rejects_bad_values(kwargs, message):
    with pytest.raises(GateConfigError, match=message):
        _config(**kwargs)


def test_config_mapping_round_trip_and_errors():
    config = GateConfig.from_mapping(
        {"latency_budget_ms": 25, "thresholds": {"auc": 0.7}, "max_regression": {"brier": 0}}
    )
    assert config.latency_budget_ms == 25.0 and config.latency_batch_rows == 1000
    assert config.thresholds == {"auc": 0.7} and config.max_regression == {"brier": 0.0}
    assert GateConfig.from_mapping(json.loads(json.dumps(config.as_dict()))) == config
    with pytest.raises(GateConfigError, match=r"unknown gate setting\(s\) \['min_auc'\]"):
        GateConfig.from_mapping({"latency_budget_ms": 25, "min_auc": 0.7})
    with pytest.raises(GateConfigError, match="latency_budget_ms is required"):
        GateConfig.from_mapping({"thresholds": {"auc": 0.7}})
    with pytest.raises(GateConfigError, match="must be a table"):
        GateConfig.from_mapping([("latency_budget_ms", 1)])


# --------------------------------------------------------------------------- holdout


def _write(path, text: str):
    path.write_text(text, encoding="utf-8")
    return path


def test_holdout_csv_round_trip(tmp_path, holdout):
    path = tmp_path / "holdout.csv"
    header = ["f0", "outcome", *holdout.feature_names[1:]]
    table = np.column_stack([holdout.features[:, :1], holdout.labels, holdout.features[:, 1:]])
    lines = [",".join(header)] + [",".join(repr(float(v)) for v in row) for row in table]
    _write(path, "\n".join(lines) + "\n")
    loaded = Holdout.from_csv(path, label_column="outcome")
    assert loaded.feature_names == holdout.feature_names
    assert loaded.features.dtype == np.float32 and loaded.features.flags.c_contiguous
    np.testing.assert_array_equal(loaded.features, holdout.features)
    np.testing.assert_array_equal(loaded.labels, holdout.labels)
    assert loaded.source == str(path) and loaded.rows == holdout.rows


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a,b\n1,2\n", r"no label column 'label'; columns are \['a', 'b'\]"),
        ("a,label\n1,0\nnan,1\n", r"line 3, column 'a' is nan"),
        ("a,label\n1,0\n2,1\nabc,1\n", r"line 4, column 'a': 'abc' is not a number"),
        ("a,label\n1,0\n,1\n", r"line 3, column 'a': '' is not a number"),
        ("a,label\n1,0\n2,7\n", r"line 3, label column 'label' is 7; labels must be 0 or 1"),
        ("a,label\n1,0\n2\n", r"line 3 has 1 fields, the header has 2"),
        ("a,label\n", "a header but no data rows"),
        ("", "the file is empty"),
    ],
)
def test_holdout_csv_errors_name_file_column_and_line(tmp_path, text, message):
    path = _write(tmp_path / "bad.csv", text)
    with pytest.raises(InvalidHoldout, match=message) as info:
        Holdout.from_csv(path)
    assert str(path) in str(info.value)


def test_holdout_parquet_round_trip_and_null(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    path = tmp_path / "holdout.parquet"
    pq.write_table(pa.table({"x": [0.5, 1.5, 2.5], "n": [1, 2, 3], "label": [0, 1, 1]}), path)
    loaded = Holdout.from_parquet(path)
    assert loaded.feature_names == ["x", "n"]
    np.testing.assert_array_equal(loaded.features, [[0.5, 1], [1.5, 2], [2.5, 3]])
    np.testing.assert_array_equal(loaded.labels, [0, 1, 1])
    pq.write_table(pa.table({"x": [0.5, None], "label": [0, 1]}), path)
    with pytest.raises(InvalidHoldout, match=r"holdout.parquet: row 2, column 'x' is null"):
        Holdout.from_parquet(path)
    pq.write_table(pa.table({"x": ["a", "b"], "label": [0, 1]}), path)
    with pytest.raises(InvalidHoldout, match=r"column 'x' is string, not numeric"):
        Holdout.from_parquet(path)


def test_holdout_from_arrays_validates():
    x = np.ones((3, 2))
    with pytest.raises(InvalidHoldout, match=r"row 2, column 'b' is inf"):
        Holdout.from_arrays(np.array([[1, 2], [3, np.inf]]), [0, 1], ["a", "b"])
    with pytest.raises(InvalidHoldout, match="0 or 1; index 1 has -1"):
        Holdout.from_arrays(x, [0, -1, 1], ["a", "b"])
    with pytest.raises(InvalidHoldout, match=r"repeated \['a'\]"):
        Holdout.from_arrays(x, [0, 1, 1], ["a", "a"])
    with pytest.raises(InvalidHoldout, match="3 rows but 2 labels"):
        Holdout.from_arrays(x, [0, 1], ["a", "b"])
    with pytest.raises(InvalidHoldout, match="no rows"):
        Holdout.from_arrays(np.ones((0, 2)), [], ["a", "b"])


# --------------------------------------------------------------------------- gates


def test_good_model_passes_sensible_gates(champion, holdout):
    report = evaluate_gates(champion, holdout, _config(), integrity=Integrity(True, True, "ok"))
    assert report.passed, report.summary_lines()
    assert report.failures() == []
    names = [c.name for c in report.checks]
    assert names == [
        "integrity.digest",
        "integrity.signature",
        "input_signature",
        "metric.auc",
        "metric.accuracy",
        "metric.log_loss",
        "metric.brier",
        "latency.p99_ms",
    ]
    assert 0.8 < report.candidate.metrics["auc"] < 1.0
    assert report.summary_lines()[-1].startswith("PASSED: model 'fraud' v1")


def test_absurd_threshold_fails_and_is_named(champion, holdout):
    report = evaluate_gates(champion, holdout, _config(thresholds={"auc": 0.999}))
    assert not report.passed
    (failure,) = report.failures()
    assert failure.name == "metric.auc" and failure.threshold == 0.999
    assert failure.value == report.candidate.metrics["auc"] < 0.999
    assert "misses the floor 0.999" in failure.detail
    text = "\n".join(report.summary_lines())
    assert "metric.auc" in text and "FAIL" in text and ">= 0.999" in text
    assert report.evidence()["failed"] == ["metric.auc"]


def test_worse_candidate_fails_regression_against_champion(champion, worse, holdout):
    config = _config(thresholds={}, max_regression={"auc": 0.02, "log_loss": 0.05})
    report = evaluate_gates(worse, holdout, config, champion=champion)
    assert not report.passed
    regression = _check(report, "regression.auc")
    mine, theirs = report.candidate.metrics["auc"], report.champion.metrics["auc"]
    assert theirs - mine > 0.02
    assert regression.value == pytest.approx(theirs - mine) and regression.threshold == 0.02
    assert "champion v1" in regression.detail
    assert not _check(report, "regression.log_loss").passed

    evidence = report.evidence()
    assert set(evidence["candidate"]["metrics"]) == set(METRICS)
    assert set(evidence["champion"]["metrics"]) == set(METRICS)
    assert evidence["comparison"]["auc"]["delta"] == pytest.approx(mine - theirs)
    assert evidence["comparison"]["auc"]["worse_by"] == pytest.approx(theirs - mine)
    log = evidence["comparison"]["log_loss"]
    assert log["worse_by"] == pytest.approx(log["candidate"] - log["champion"])
    assert log["worse_by"] > 0 and log["higher_is_better"] is False


def test_same_model_as_champion_does_not_regress(champion, holdout):
    config = _config(max_regression={"auc": 0.0, "brier": 0.0})
    report = evaluate_gates(champion, holdout, config, champion=champion)
    assert report.passed
    assert _check(report, "regression.auc").value == 0.0


def test_latency_gate_generous_passes_tiny_fails(champion, holdout):
    ok = evaluate_gates(champion, holdout, _config(thresholds={}))
    assert _check(ok, "latency.p99_ms").passed
    tiny = evaluate_gates(champion, holdout, _config(thresholds={}, latency_budget_ms=1e-6))
    check = _check(tiny, "latency.p99_ms")
    assert not check.passed and check.threshold == 1e-6 and "over budget" in check.detail
    assert tiny.failures() == [check]


def test_latency_stats_from_injected_clock_and_tiled_rows():
    class Recorder:
        def __init__(self):
            self.shapes = []

        def predict(self, matrix):
            self.shapes.append(matrix.shape)

    durations = iter(np.arange(1, 101) / 1000.0)  # timed call i takes i ms
    now = [0.0]
    ticks: list[float] = []

    def fake_clock() -> float:
        """Called as start/stop pairs; every stop advances time by the next duration."""
        if len(ticks) % 2:
            now[0] += next(durations)
        ticks.append(now[0])
        return now[0]

    model = Recorder()
    features = np.arange(20, dtype=np.float32).reshape(10, 2)
    stats = measure_latency(model, features, batch_rows=25, repeats=100, clock=fake_clock)
    assert model.shapes == [(25, 2)] * 103  # 3 untimed warm-up calls
    assert stats.p50_ms == pytest.approx(50.5) and stats.max_ms == pytest.approx(100)
    assert stats.p99_ms == pytest.approx(np.percentile(np.arange(1, 101), 99))
    assert stats.rows_per_second == pytest.approx(25 * 100 / (5050 / 1000))


def test_signature_mismatch_names_first_difference_and_skips_scoring(champion, holdout):
    names = list(holdout.feature_names)
    names[3] = "amount"
    renamed = Holdout.from_arrays(holdout.features, holdout.labels, names, source="renamed")
    config = _config(max_regression={"auc": 0.02})
    report = evaluate_gates(champion, renamed, config, champion=champion)
    signature = _check(report, "input_signature")
    assert not signature.passed
    assert "column 3 (0-based)" in signature.detail
    assert "expects 'f3'" in signature.detail and "'amount'" in signature.detail
    for name in ("metric.auc", "metric.brier", "regression.auc", "latency.p99_ms"):
        check = _check(report, name)
        assert not check.passed and check.detail.startswith("not run: ")
        assert check.value is None
    assert report.candidate.metrics == {} and report.latency is None
    json.dumps(report.evidence(), allow_nan=False)


def test_signature_mismatch_on_feature_count(champion, holdout):
    fewer = Holdout.from_arrays(
        holdout.features[:, :-1], holdout.labels, holdout.feature_names[:-1], source="fewer"
    )
    check = _check(evaluate_gates(champion, fewer, _config()), "input_signature")
    assert not check.passed and "expects 'f7'" in check.detail and "after 7 columns" in check.detail
    extra = Holdout.from_arrays(
        np.column_stack([holdout.features, holdout.features[:, 0]]),
        holdout.labels,
        [*holdout.feature_names, "extra"],
        source="extra",
    )
    check = _check(evaluate_gates(champion, extra, _config()), "input_signature")
    assert not check.passed and "extra column 'extra'" in check.detail


def test_model_without_feature_names_is_checked_on_count(holdout):
    model = onnx.load_from_string(train_logistic(N_FEATURES, N_TRAIN, seed=0).onnx_bytes)
    kept = [p for p in model.metadata_props if p.key != "feature_names"]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    anonymous = _load(model.SerializeToString(), version=3)
    report = evaluate_gates(anonymous, holdout, _config())
    check = _check(report, "input_signature")
    assert check.passed and "records no feature names" in check.detail
    assert report.passed


def test_integrity_failures(champion, holdout):
    report = evaluate_gates(
        champion, holdout, _config(), integrity=Integrity(False, None, "sha256 differs")
    )
    digest = _check(report, "integrity.digest")
    assert not digest.passed and digest.value == "mismatch" and "sha256 differs" in digest.detail
    assert "integrity.signature" not in [c.name for c in report.checks]
    assert not report.passed and [c.name for c in report.failures()] == ["integrity.digest"]
    # Scoring still ran: the evidence is complete even after a failure.
    assert set(report.candidate.metrics) == set(METRICS)

    unsigned = evaluate_gates(champion, holdout, _config(), integrity=Integrity(True, False))
    assert [c.name for c in unsigned.failures()] == ["integrity.signature"]


def test_single_class_holdout_reports_auc_undefined(champion, holdout):
    positives = holdout.labels == 1
    only = Holdout.from_arrays(
        holdout.features[positives], holdout.labels[positives], holdout.feature_names
    )
    report = evaluate_gates(champion, only, _config(thresholds={"auc": 0.7, "brier": 0.5}))
    check = _check(report, "metric.auc")
    assert not check.passed and "AUC is undefined" in check.detail
    assert _check(report, "metric.brier").passed
    assert "auc" in report.evidence()["candidate"]["metric_errors"]


def test_evidence_is_complete_and_strict_json(champion, worse, holdout):
    report = evaluate_gates(
        worse,
        holdout,
        _config(max_regression={"auc": 0.02}),
        champion=champion,
        integrity=Integrity(True, None),
    )
    evidence = json.loads(json.dumps(report.evidence(), allow_nan=False))
    assert set(evidence) == {
        "format",
        "passed",
        "failed",
        "checks",
        "candidate",
        "champion",
        "comparison",
        "latency",
        "holdout",
        "integrity",
        "config",
    }
    assert evidence["holdout"]["source"] == "synthetic seed 0"
    assert evidence["holdout"]["rows"] == 2_000
    assert 0 < evidence["holdout"]["label_positive_rate"] < 1
    assert set(evidence["latency"]) >= {"p50_ms", "p99_ms", "rows_per_second", "batch_rows"}
    assert evidence["config"] == report.config.as_dict()
    assert evidence["candidate"]["digest"] == worse.digest
    assert 0 <= evidence["candidate"]["positive_rate"] <= 1
    assert len(evidence["checks"]) == len(report.checks)

    nan_report = GateReport(
        checks=[GateCheck("metric.auc", False, math.nan, 0.7, "nan")],
        candidate=ModelEvaluation("m", 1, "d", metrics={"auc": math.nan, "brier": math.inf}),
        champion=None,
        holdout={"source": "s", "rows": 1},
        latency=None,
        integrity=None,
        config=_config(),
    )
    strict = json.loads(json.dumps(nan_report.evidence(), allow_nan=False))
    assert strict["candidate"]["metrics"] == {"auc": None, "brier": None}
    assert strict["checks"][0]["value"] is None
