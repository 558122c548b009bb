"""What the model quality gates measure, and on which rows.

:mod:`driftline.lineage.promotion.gates` decides whether a model version may take traffic; this
module holds its numeric inputs:

* binary-classification metrics in plain, vectorised NumPy (no scikit-learn at
  run time: it is a training dependency, and the gate must give the same number
  wherever it runs), registered in :data:`METRICS` with the direction that
  counts as better, so a configured threshold is a floor or a ceiling without
  the user saying which;
* the labelled rows a version is judged on are :class:`driftline.lineage.promotion.holdout.Holdout`;
* scoring a model on it (:func:`evaluate_model`, :func:`compare_schema`) and
  timing its batch ``predict`` (:func:`measure_latency`).

Positions in metric errors are 0-based array indices; in holdout errors they
are 1-based data rows (CSV: file lines, the header being line 1).

>>> auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
0.75
>>> accuracy([0, 1, 1], [0.2, 0.5, 0.4])
0.6666666666666666
>>> METRICS["log_loss"].higher_is_better
False
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from driftline.inference.exceptions import InferenceError
from driftline.inference.model import LoadedModel
from driftline.lineage.exceptions import GateConfigError, InvalidHoldout, MetricUndefined
from driftline.lineage.promotion.holdout import Holdout, binary_labels

# sklearn >= 1.5 clips probabilities to the float64 machine epsilon; so do we,
# so that a log loss recorded here equals the one a notebook computes.
_EPS = float(np.finfo(np.float64).eps)
WARMUP_CALLS = 3  # untimed predict calls before latency is measured


# --------------------------------------------------------------------------- metrics


def _pair(labels: Any, scores: Any) -> tuple[np.ndarray, np.ndarray]:
    y = binary_labels(labels)
    s = np.asarray(scores, dtype=np.float64)
    if s.shape != y.shape:
        raise MetricUndefined(f"{len(y)} labels but scores of shape {s.shape}")
    if len(y) == 0:
        raise MetricUndefined("no rows to score: the metric is undefined on an empty holdout")
    finite = np.isfinite(s)
    if not finite.all():
        row = int(np.argmin(finite))
        raise MetricUndefined(f"score at index {row} is {s[row]}; scores must be finite")
    return y, s


def _probabilities(scores: np.ndarray, metric: str) -> None:
    outside = (scores < 0) | (scores > 1)
    if outside.any():
        row = int(np.argmax(outside))
        raise MetricUndefined(
            f"{metric} needs probabilities in [0, 1]; score at index {row} is {scores[row]}. "
            "Gate a regressor on auc/accuracy only, or export the classifier's probabilities"
        )


def auc(labels: Any, scores: Any) -> float:
    """ROC AUC as the Mann-Whitney U statistic over average ranks (ties count one half).

    One stable sort, then average ranks per run of equal scores, all vectorised:
    O(n log n) and equal to ``sklearn.metrics.roc_auc_score`` to rounding.
    """
    y, s = _pair(labels, scores)
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        only = "1 (positive)" if n_neg == 0 else "0 (negative)"
        raise MetricUndefined(
            f"AUC is undefined: all {len(y)} holdout labels are {only}; "
            "use a holdout that contains both classes, or gate on accuracy/log_loss instead"
        )
    order = np.argsort(s, kind="mergesort")
    ordered = s[order]
    starts_run = np.r_[True, ordered[1:] != ordered[:-1]]
    starts = np.flatnonzero(starts_run)
    ends = np.r_[starts[1:], len(s)]
    average_rank = (starts + ends + 1) / 2.0  # 1-based ranks start+1 .. end, averaged
    ranks = np.empty(len(s), dtype=np.float64)
    ranks[order] = average_rank[np.cumsum(starts_run) - 1]
    u = ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def log_loss(labels: Any, scores: Any) -> float:
    """Mean binary cross-entropy, probabilities clipped to [eps, 1 - eps] (float64 eps)."""
    y, s = _pair(labels, scores)
    _probabilities(s, "log_loss")
    p = np.clip(s, _EPS, 1.0 - _EPS)
    return float(-np.mean(np.where(y == 1, np.log(p), np.log1p(-p))))


def brier(labels: Any, scores: Any) -> float:
    """Mean squared difference between the probability and the 0/1 label."""
    y, s = _pair(labels, scores)
    _probabilities(s, "brier")
    return float(np.mean((s - y) ** 2))


def accuracy(labels: Any, scores: Any, threshold: float = 0.5) -> float:
    """Share of rows whose decision (score >= ``threshold``) equals the label."""
    y, s = _pair(labels, scores)
    return float(np.mean((s >= threshold) == (y == 1)))


def positive_rate(scores: Any, threshold: float = 0.5) -> float:
    """Share of rows decided positive (score >= ``threshold``).

    Reported, not gated: neither direction is better, but a candidate that
    flags five times as many rows as its champion is worth seeing in evidence.
    """
    s = np.asarray(scores, dtype=np.float64)
    if s.size == 0:
        raise MetricUndefined("positive rate is undefined on zero rows")
    return float(np.mean(s >= threshold))


class Metric(NamedTuple):
    """A gateable metric: ``compute(labels, scores, threshold)``, its direction and range."""

    compute: Callable[[np.ndarray, np.ndarray, float], float]
    higher_is_better: bool
    lower_bound: float
    upper_bound: float


METRICS: dict[str, Metric] = {
    "auc": Metric(lambda y, s, t: auc(y, s), True, 0.0, 1.0),
    "accuracy": Metric(accuracy, True, 0.0, 1.0),
    "log_loss": Metric(lambda y, s, t: log_loss(y, s), False, 0.0, math.inf),
    "brier": Metric(lambda y, s, t: brier(y, s), False, 0.0, 1.0),
}


def worse_by(name: str, candidate: float, champion: float) -> float:
    """How much worse ``candidate`` is than ``champion`` on ``name`` (negative: better)."""
    if METRICS[name].higher_is_better:
        return champion - candidate
    return candidate - champion


def finite_number(name: str, value: Any) -> float:
    """A config number as float; bools, strings and NaN/inf are errors naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise GateConfigError(f"{name} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise GateConfigError(f"{name} must be finite, got {value!r}")
    return float(value)


def metric_limits(name: str, mapping: Any) -> dict[str, float]:
    """Validate a ``metric -> number`` table of the gate config.

    ``thresholds`` must lie in the metric's range; ``max_regression`` values
    are allowances (how much worse), so they must be >= 0.
    """
    if not isinstance(mapping, Mapping):
        raise GateConfigError(f"{name} must be a mapping of metric -> number, got {mapping!r}")
    result: dict[str, float] = {}
    for metric, raw in mapping.items():
        if metric not in METRICS:
            raise GateConfigError(
                f"{name} names unknown metric {metric!r}; choose from {sorted(METRICS)}"
            )
        label = f"{name}[{metric!r}]"
        value = finite_number(label, raw)
        spec = METRICS[metric]
        if name == "max_regression" and value < 0:
            raise GateConfigError(
                f"{label} is {value}; it is how much worse than the champion the candidate "
                "may be: give 0 (no regression at all) or a positive allowance"
            )
        if name != "max_regression" and not spec.lower_bound <= value <= spec.upper_bound:
            raise GateConfigError(
                f"{label} is {value}, outside the range of {metric} "
                f"[{spec.lower_bound}, {spec.upper_bound}]"
            )
        result[metric] = value
    return result


# --------------------------------------------------------------------------- scoring


@dataclass(frozen=True)
class ModelEvaluation:
    """A model's scores on the holdout: every metric in :data:`METRICS` that is defined.

    ``metric_errors`` says why a metric is missing; ``not_run`` why nothing
    was scored at all (signature mismatch, scoring failure).
    """

    name: str
    version: int
    digest: str
    metrics: dict[str, float] = field(default_factory=dict)
    metric_errors: dict[str, str] = field(default_factory=dict)
    positive_rate: float | None = None
    not_run: str | None = None


@dataclass(frozen=True)
class LatencyStats:
    """Timings of ``repeats`` batch ``predict`` calls after ``warmup`` untimed ones."""

    batch_rows: int
    repeats: int
    warmup: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    rows_per_second: float | None


class SchemaComparison(NamedTuple):
    """Whether a model can read the holdout's columns; ``value``/``expected`` are short labels."""

    ok: bool
    value: str
    expected: str
    detail: str


def compare_schema(model: LoadedModel, holdout: Holdout) -> SchemaComparison:
    """The model's input feature names against the holdout's columns.

    Names must match exactly and in order (a model fed ``[b, a]`` for
    ``[a, b]`` scores garbage without an error); the detail names the first
    difference. A model without ``feature_names`` metadata is checked on the
    column count only, and the detail says so.
    """
    label = model.signature.describe_model()
    names = holdout.feature_names
    expected = model.description.feature_names
    if expected is None:
        n = model.signature.n_features
        ok = n == len(names)
        detail = f"{label} records no feature names; compared the column count only: "
        detail += f"model takes {n}, holdout has {len(names)}"
        return SchemaComparison(ok, f"{len(names)} columns", f"{n} columns", detail)
    for i, (want, got) in enumerate(zip(expected, names, strict=False)):
        if want != got:
            detail = f"first difference at column {i} (0-based): {label} expects {want!r}, "
            detail += f"holdout has {got!r}"
            return SchemaComparison(False, f"[{i}]={got!r}", f"[{i}]={want!r}", detail)
    if len(expected) == len(names):
        detail = f"{len(names)} feature names match {label} in order"
        return SchemaComparison(True, f"{len(names)} names", "same, in order", detail)
    i = min(len(expected), len(names))
    if len(expected) > len(names):
        detail = f"first difference at column {i} (0-based): {label} expects {expected[i]!r}, "
        detail += f"the holdout ends after {len(names)} columns"
        return SchemaComparison(False, f"{len(names)} names", f"{len(expected)} names", detail)
    detail = f"first difference at column {i} (0-based): holdout has extra column "
    detail += f"{names[i]!r}; {label} takes {len(expected)} features"
    return SchemaComparison(False, f"{len(names)} names", f"{len(expected)} names", detail)


def evaluate_model(
    model: LoadedModel, holdout: Holdout, *, decision_threshold: float = 0.5
) -> ModelEvaluation:
    """Score the holdout once and compute every metric in :data:`METRICS` that is defined.

    Never raises for a model that cannot be judged: a signature mismatch or a
    scoring failure is recorded in ``not_run``, an undefined metric (one class,
    scores outside [0, 1]) in ``metric_errors``, so the gates can report it.
    """
    schema = compare_schema(model, holdout)
    identity = {"name": model.name, "version": model.version, "digest": model.digest}
    if not schema.ok:
        return ModelEvaluation(**identity, not_run=f"input signature mismatch: {schema.detail}")
    try:
        scores = model.predict(holdout.features)
    except InferenceError as exc:
        return ModelEvaluation(**identity, not_run=f"scoring failed: {exc}")
    if scores.scores.shape[1] > 2:
        columns = scores.scores.shape[1]
        reason = f"the model outputs {columns} score columns; gates judge binary classifiers"
        return ModelEvaluation(**identity, not_run=reason)
    metrics: dict[str, float] = {}
    errors: dict[str, str] = {}
    threshold = decision_threshold
    for name, spec in METRICS.items():
        try:
            metrics[name] = spec.compute(holdout.labels, scores.score, threshold)
        except MetricUndefined as exc:
            errors[name] = str(exc)
    rate = positive_rate(scores.score, threshold)
    return ModelEvaluation(**identity, metrics=metrics, metric_errors=errors, positive_rate=rate)


def compare_metrics(
    candidate: ModelEvaluation, champion: ModelEvaluation | None
) -> dict[str, dict[str, Any]]:
    """Per metric both values, ``delta`` (candidate - champion) and oriented ``worse_by``."""
    if champion is None:
        return {}
    comparison = {}
    for name, spec in METRICS.items():
        mine, theirs = candidate.metrics.get(name), champion.metrics.get(name)
        if mine is not None and theirs is not None:
            comparison[name] = {
                "candidate": mine,
                "champion": theirs,
                "delta": mine - theirs,
                "worse_by": worse_by(name, mine, theirs),
                "higher_is_better": spec.higher_is_better,
            }
    return comparison


def measure_latency(
    model: LoadedModel,
    features: np.ndarray,
    *,
    batch_rows: int,
    repeats: int,
    warmup: int = WARMUP_CALLS,
    clock: Callable[[], float] = time.perf_counter,
) -> LatencyStats:
    """Time ``repeats`` ``predict`` calls on one batch of ``batch_rows`` rows.

    Rows are tiled when ``features`` is shorter than the batch, so a small
    holdout still measures the batch size the config asks for. The ``warmup``
    calls (ORT allocates and picks kernels on the first runs) are not timed.
    """
    if len(features) == 0:
        raise InvalidHoldout("cannot measure latency on zero rows")
    batch = np.ascontiguousarray(features[np.arange(batch_rows) % len(features)])
    for _ in range(warmup):
        model.predict(batch)
    elapsed = np.empty(repeats, dtype=np.float64)
    for i in range(repeats):
        start = clock()
        model.predict(batch)
        elapsed[i] = clock() - start
    total = float(elapsed.sum())
    millis = elapsed * 1000.0
    return LatencyStats(
        batch_rows=batch_rows,
        repeats=repeats,
        warmup=warmup,
        p50_ms=float(np.percentile(millis, 50)),
        p99_ms=float(np.percentile(millis, 99)),
        max_ms=float(millis.max()),
        rows_per_second=batch_rows * repeats / total if total > 0 else None,
    )
