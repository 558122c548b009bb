"""Quality gates a model version must pass before it takes traffic ("CI/CD for models").

:func:`evaluate_gates` judges a loaded candidate on a labelled :class:`Holdout`:
artifact integrity, input signature, metric floors/ceilings, regression against
the serving champion, and batch latency. It never stops at the first failure:
the point is a complete record (:meth:`GateReport.evidence`) that a lifecycle
event can carry and an auditor can read without re-running anything. Only a
signature mismatch skips scoring (the model cannot read the rows); the checks
that needed scores are then recorded as failed, "not run".

Pure domain code: NumPy and ONNX Runtime through :class:`LoadedModel`, no
Kafka, no ClickHouse. The artifact store computes :class:`Integrity`; this
module only gates on it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from driftline.inference.exceptions import InferenceError
from driftline.inference.model import LoadedModel
from driftline.lineage.exceptions import GateConfigError
from driftline.lineage.promotion.config_tables import table_arguments
from driftline.lineage.promotion.gate_metrics import (
    METRICS,
    LatencyStats,
    ModelEvaluation,
    compare_metrics,
    compare_schema,
    evaluate_model,
    finite_number,
    measure_latency,
    metric_limits,
    worse_by,
)
from driftline.lineage.promotion.holdout import Holdout

EVIDENCE_FORMAT = 1
_TOLERANCE = 1e-12  # a regression of exactly the allowance passes despite float rounding


@dataclass(frozen=True, kw_only=True)
class GateConfig:
    """What a candidate must achieve; one value per model, e.g. a ``[gates]`` TOML section.

    - ``thresholds``: metric -> limit on the holdout. A floor for metrics where
      higher is better (``auc``, ``accuracy``), a ceiling where lower is
      better (``log_loss``, ``brier``); :data:`METRICS` says which.
    - ``max_regression``: metric -> how much worse than the champion the
      candidate may be, in the metric's own units (``{"auc": 0.02}``).
    - ``latency_budget_ms``: the p99 of ``latency_repeats`` timed ``predict``
      calls on ``latency_batch_rows`` rows must not exceed it.
    - ``decision_threshold``: score at or above which a row counts as positive.
    """

    latency_budget_ms: float
    thresholds: dict[str, float] = field(default_factory=dict)
    max_regression: dict[str, float] = field(default_factory=dict)
    latency_batch_rows: int = 1000
    latency_repeats: int = 50
    decision_threshold: float = 0.5

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "thresholds", metric_limits("thresholds", self.thresholds))
        set_(self, "max_regression", metric_limits("max_regression", self.max_regression))
        budget = finite_number("latency_budget_ms", self.latency_budget_ms)
        if budget <= 0:
            raise GateConfigError(
                f"latency_budget_ms must be > 0, got {budget}; give the p99 budget in milliseconds"
            )
        set_(self, "latency_budget_ms", budget)
        for name in ("latency_batch_rows", "latency_repeats"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise GateConfigError(f"{name} must be an integer >= 1, got {value!r}")
        threshold = finite_number("decision_threshold", self.decision_threshold)
        if not 0 < threshold < 1:
            raise GateConfigError(f"decision_threshold must be in (0, 1), got {threshold}")
        set_(self, "decision_threshold", threshold)

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any]) -> GateConfig:
        """Build from a parsed TOML/JSON section; unknown or missing keys are errors."""
        values = table_arguments(
            cls, mapping, what="gate config", error=GateConfigError, noun="gate setting"
        )
        if "latency_budget_ms" not in values:
            raise GateConfigError("latency_budget_ms is required: the p99 budget in milliseconds")
        return cls(**values)

    def as_dict(self) -> dict[str, Any]:
        """Plain values; ``GateConfig.from_mapping(c.as_dict()) == c``."""
        return asdict(self)


@dataclass(frozen=True)
class Integrity:
    """The artifact store's verdict: digest verified, signature verified (None: not required)."""

    digest_ok: bool
    signature_ok: bool | None
    detail: str = ""


@dataclass(frozen=True)
class GateCheck:
    """One gate outcome: what was measured (``value``) against what (``threshold``), and why."""

    name: str
    passed: bool
    value: float | str | None
    threshold: float | str | None
    detail: str


@dataclass(frozen=True)
class GateReport:
    """Every check, plus the numbers behind them; ``passed`` only if every check passed."""

    checks: list[GateCheck]
    candidate: ModelEvaluation
    champion: ModelEvaluation | None
    holdout: dict[str, Any]
    latency: LatencyStats | None
    integrity: Integrity | None
    config: GateConfig

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(check.passed for check in self.checks)

    def failures(self) -> list[GateCheck]:
        return [check for check in self.checks if not check.passed]

    def evidence(self) -> dict[str, Any]:
        """Everything needed to audit the verdict, JSON-safe (non-finite numbers become null)."""
        evidence = {
            "format": EVIDENCE_FORMAT,
            "passed": self.passed,
            "failed": [check.name for check in self.failures()],
            "checks": [asdict(check) for check in self.checks],
            "candidate": asdict(self.candidate),
            "champion": None if self.champion is None else asdict(self.champion),
            "comparison": compare_metrics(self.candidate, self.champion),
            "latency": None if self.latency is None else asdict(self.latency),
            "holdout": self.holdout,
            "integrity": None if self.integrity is None else asdict(self.integrity),
            "config": self.config.as_dict(),
        }
        return _json_safe(evidence)

    def summary_lines(self) -> list[str]:
        """A short table for the CLI, then one line per failure with its reason."""
        width = max(len("check"), *(len(check.name) for check in self.checks))
        lines = [f"{'check':<{width}}  result  {'value':>12}  limit"]
        for check in self.checks:
            result = "pass" if check.passed else "FAIL"
            value = _text(check.value)
            lines.append(f"{check.name:<{width}}  {result:<6}  {value:>12}  {_limit(check)}")
        for check in self.failures():
            lines.append(f"  {check.name}: {check.detail}")
        failed = len(self.failures())
        verdict = "PASSED" if self.passed else f"FAILED ({failed} of {len(self.checks)} checks)"
        c = self.candidate
        lines.append(
            f"{verdict}: model {c.name!r} v{c.version} on {self.holdout['source']} "
            f"({self.holdout['rows']} rows)"
        )
        return lines


def _text(value: float | str | None) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _limit(check: GateCheck) -> str:
    if not isinstance(check.threshold, float):
        return _text(check.threshold)
    kind, _, metric = check.name.partition(".")
    higher = kind == "metric" and METRICS[metric].higher_is_better
    return f"{'>=' if higher else '<='} {check.threshold:.4g}"


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(key): _json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(item) for item in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def evaluate_gates(
    candidate: LoadedModel,
    holdout: Holdout,
    config: GateConfig,
    *,
    champion: LoadedModel | None = None,
    integrity: Integrity | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> GateReport:
    """Run every gate on ``candidate`` and return the full report; raises nothing for a failure.

    ``integrity`` None means the caller did not check the artifact (no
    integrity checks are recorded; the digest was still verified by
    :meth:`LoadedModel.load`). ``champion`` None means there is nothing to
    regress against (a first version): no regression checks. ``clock``
    returns seconds, for the latency gate (tests inject a fake one).
    """
    checks = _integrity_checks(integrity)
    schema = compare_schema(candidate, holdout)
    checks.append(
        GateCheck("input_signature", schema.ok, schema.value, schema.expected, schema.detail)
    )
    threshold = config.decision_threshold
    mine = evaluate_model(candidate, holdout, decision_threshold=threshold)
    checks += [_threshold_check(mine, name, limit) for name, limit in config.thresholds.items()]

    theirs = None
    if champion is not None:
        theirs = evaluate_model(champion, holdout, decision_threshold=threshold)
        checks += [
            _regression_check(mine, theirs, name, allowed)
            for name, allowed in config.max_regression.items()
        ]

    latency_check, latency = _latency_check(candidate, holdout, config, mine, clock)
    checks.append(latency_check)
    return GateReport(checks, mine, theirs, holdout.summary(), latency, integrity, config)


def _latency_check(
    model: LoadedModel,
    holdout: Holdout,
    config: GateConfig,
    mine: ModelEvaluation,
    clock: Callable[[], float],
) -> tuple[GateCheck, LatencyStats | None]:
    name, budget = "latency.p99_ms", config.latency_budget_ms
    if mine.not_run is not None:
        return GateCheck(name, False, None, budget, f"not run: {mine.not_run}"), None
    try:
        latency = measure_latency(
            model,
            holdout.features,
            batch_rows=config.latency_batch_rows,
            repeats=config.latency_repeats,
            clock=clock,
        )
    except InferenceError as exc:
        return GateCheck(name, False, None, budget, f"not run: {exc}"), None
    ok = latency.p99_ms <= budget
    detail = f"p99 {latency.p99_ms:.4g} ms ({'within' if ok else 'over'} budget {budget:g} ms), "
    detail += f"p50 {latency.p50_ms:.4g} ms, {latency.batch_rows} rows per call"
    return GateCheck(name, ok, latency.p99_ms, budget, detail), latency


def _integrity_checks(integrity: Integrity | None) -> list[GateCheck]:
    if integrity is None:
        return []
    note = f": {integrity.detail}" if integrity.detail else ""
    verdicts = [("digest", integrity.digest_ok, "mismatch")]
    if integrity.signature_ok is not None:
        verdicts.append(("signature", integrity.signature_ok, "missing or invalid"))
    return [
        GateCheck(
            f"integrity.{what}",
            ok,
            "ok" if ok else bad,
            "ok",
            f"{what} {'verified' if ok else bad}{note}",
        )
        for what, ok, bad in verdicts
    ]


def _threshold_check(mine: ModelEvaluation, name: str, limit: float) -> GateCheck:
    check = f"metric.{name}"
    if mine.not_run is not None:
        return GateCheck(check, False, None, limit, f"not run: {mine.not_run}")
    if name not in mine.metrics:
        return GateCheck(check, False, None, limit, f"undefined: {mine.metric_errors[name]}")
    value = mine.metrics[name]
    higher = METRICS[name].higher_is_better
    ok = value >= limit if higher else value <= limit
    bound = "floor" if higher else "ceiling"
    verdict = "meets" if ok else "misses"
    detail = f"{name} {value:.4f} {verdict} the {bound} {limit:g}"
    return GateCheck(check, ok, value, limit, detail)


def _regression_check(
    mine: ModelEvaluation, theirs: ModelEvaluation, name: str, allowed: float
) -> GateCheck:
    check = f"regression.{name}"
    for who, evaluation in (("candidate", mine), ("champion", theirs)):
        if evaluation.not_run is not None:
            return GateCheck(check, False, None, allowed, f"not run: {who} {evaluation.not_run}")
        if name not in evaluation.metrics:
            reason = evaluation.metric_errors[name]
            return GateCheck(check, False, None, allowed, f"not run: {who} {name}: {reason}")
    a, b = mine.metrics[name], theirs.metrics[name]
    worse = worse_by(name, a, b)
    ok = worse <= allowed + _TOLERANCE
    detail = f"candidate {name} {a:.4f} vs champion v{theirs.version} {b:.4f}: "
    detail += f"{abs(worse):.4f} {'worse' if worse > 0 else 'better or equal'}"
    detail += f", allowed {allowed:g} worse"
    return GateCheck(check, ok, worse, allowed, detail)
