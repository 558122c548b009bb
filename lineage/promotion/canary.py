"""Progressive canary rollout: advance, promote, wait or roll back, from per-arm statistics.

A canary serves a growing share of entities (``steps``: 1% -> 5% -> 25% -> 50%
-> 100%). :func:`decide_canary` turns the canary's and the champion's figures
into one :class:`CanaryDecision`:

* ``rollback`` as soon as any guardrail is breached (error rate, p99 latency,
  score shift, or the always-valid error-rate test). A breach beats everything:
  a canary known to hurt is never kept serving to "finish baking".
* ``advance`` / ``promote`` only once the step has baked, has enough canary
  predictions of its own, and no guardrail is pending: moving on needs positive
  evidence, not merely the absence of bad news.
* ``wait`` otherwise, the reasons saying what is missing.

Guardrails use cumulative figures (since the canary started), because outcomes
arrive late and thinly; the per-step sample count only gates advancing. Pass the
same :class:`~driftline.lineage.promotion.sequential.SequentialTest` at every check: its running
minimum p-value is what keeps repeated looks from inflating false alarms.
Pure domain code: no Faust, Kafka or ClickHouse.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from numbers import Integral, Real
from typing import Any

from driftline.lineage.exceptions import CanaryConfigError, SequentialConfigError
from driftline.lineage.promotion.config_tables import table_arguments
from driftline.lineage.promotion.sequential import SequentialConfig, SequentialTest
from driftline.lineage.promotion.sequential_stats import ArmSummary, is_finite_real, is_int

ARMS = ("champion", "canary", "challenger", "shadow")
ACTIONS = ("wait", "advance", "promote", "rollback")
STATUSES = ("pass", "breach", "pending")


def json_safe(value: Any) -> Any:
    """``value`` as strict JSON accepts it: NaN/inf -> None, tuples -> lists, NumPy -> Python."""
    if value is None or isinstance(value, (str, bool)):
        return value
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, Integral):
        return int(value)
    if isinstance(value, Real):
        number = float(value)
        return number if math.isfinite(number) else None
    return value


def _need(ok: bool, message: str) -> None:
    if not ok:
        raise CanaryConfigError(message)


def _real_or_nan(name: str, value: Any) -> float:
    """Aggregates of no rows come back as NaN (or NULL -> None): kept as NaN, never rejected."""
    if value is None:
        return math.nan
    if not isinstance(value, Real) or isinstance(value, bool):
        raise CanaryConfigError(f"{name}={value!r} must be a number (NaN when there is no data)")
    return float(value)


@dataclass(frozen=True)
class ArmStats:
    """What ClickHouse says about one served arm since a start time."""

    version: int
    arm: str  # "champion" | "canary" | "challenger"
    n: int  # predictions
    latency_p99_ms: float  # produce-to-prediction p99 (NaN if n == 0)
    score_mean: float
    score_var: float
    n_outcomes: int  # predictions with an outcome joined
    errors: int  # of those, wrong decisions (binary error count)
    outcome_sum: float = 0.0  # sum of outcome values (continuous metric)
    outcome_sum_sq: float = 0.0

    def __post_init__(self) -> None:
        what = f"{self.arm!r} arm stats"
        _need(self.arm in ARMS, f"arm={self.arm!r} is not one of {list(ARMS)}")
        for name in ("version", "n", "n_outcomes", "errors"):
            value = getattr(self, name)
            _need(is_int(value) and value >= 0, f"{what}: {name}={value!r} must be an int >= 0")
            object.__setattr__(self, name, int(value))
        bad = f"{what}: errors={self.errors} exceeds n_outcomes={self.n_outcomes}"
        _need(self.errors <= self.n_outcomes, bad)
        for name in ("latency_p99_ms", "score_mean", "score_var"):
            object.__setattr__(self, name, _real_or_nan(f"{what}: {name}", getattr(self, name)))
        for name in ("outcome_sum", "outcome_sum_sq"):
            value = getattr(self, name)
            ok = is_finite_real(value) and (name == "outcome_sum" or value >= 0)
            _need(ok, f"{what}: {name}={value!r} must be a finite number (sum_sq >= 0)")
            object.__setattr__(self, name, float(value))

    @property
    def error_rate(self) -> float:
        """Share of joined outcomes that were wrong decisions; NaN before the first outcome."""
        return self.errors / self.n_outcomes if self.n_outcomes else math.nan

    def error_summary(self) -> ArmSummary:
        return ArmSummary.from_counts(self.n_outcomes, self.errors)

    def outcome_summary(self) -> ArmSummary:
        return ArmSummary.from_sums(self.n_outcomes, self.outcome_sum, self.outcome_sum_sq)

    def as_dict(self) -> dict[str, Any]:
        return json_safe(dict(asdict(self), error_rate=self.error_rate))


_CONFIG_LIMITS: dict[str, tuple[Any, str]] = {  # scalar settings: (is it valid?, what is needed)
    "bake_s": (lambda v: is_finite_real(v) and v >= 0, "a number of seconds >= 0"),
    "min_samples": (lambda v: is_int(v) and v >= 0, "an int >= 0"),
    "min_outcomes": (lambda v: is_int(v) and v >= 2, "an int >= 2 (100 or more is advised)"),
    "max_error_rate_increase": (
        lambda v: is_finite_real(v) and 0 <= v < 1,
        "0 <= value < 1 (an absolute difference of error rates)",
    ),
    "max_latency_p99_ms": (lambda v: is_finite_real(v) and v > 0, "a number of ms > 0"),
    "max_score_shift": (lambda v: is_finite_real(v) and v >= 0, "a number >= 0"),
    "alpha": (lambda v: is_finite_real(v) and 0 < v < 1, "0 < alpha < 1"),
    "min_effect": (lambda v: is_finite_real(v) and 0 < v < 1, "0 < value < 1 (a rate difference)"),
}


@dataclass(frozen=True)
class CanaryConfig:
    """How a canary rolls out; every limit is checked here so a bad policy fails on load."""

    steps: tuple[float, ...] = (1.0, 5.0, 25.0, 50.0, 100.0)  # percent; 100 means "promote"
    bake_s: float = 60.0  # minimum time at each step
    min_samples: int = 500  # canary predictions at the current step before it may advance
    min_outcomes: int = 100  # canary outcomes (cumulative) before the error guardrail can pass
    max_error_rate_increase: float = 0.02  # absolute, over the champion's error rate
    max_latency_p99_ms: float = 250.0
    max_score_shift: float = 0.15  # |canary mean score - champion mean score|
    alpha: float = 0.05  # sequential error-rate test
    min_effect: float = 0.02  # its mixing sd and futility band

    def __post_init__(self) -> None:
        steps = self.steps
        ok = isinstance(steps, (tuple, list)) and len(steps) > 0
        _need(ok, f"steps={steps!r} must be a non-empty list of percents, e.g. [1, 5, 100]")
        for step in steps:
            ok = is_finite_real(step) and 0 < step <= 100
            _need(ok, f"steps: {step!r} is out of range: need 0 < percent <= 100")
        for low, high in zip(steps, steps[1:], strict=False):
            _need(high > low, f"steps must be strictly increasing: {high!r} follows {low!r}")
        object.__setattr__(self, "steps", tuple(float(s) for s in steps))
        for name, (ok, need) in _CONFIG_LIMITS.items():
            value = getattr(self, name)
            _need(ok(value), f"{name}={value!r} is out of range: need {need}")
        try:
            self.sequential_config()
        except SequentialConfigError as exc:
            raise CanaryConfigError(f"canary sequential test: {exc}") from exc

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any] | None) -> CanaryConfig:
        """From a policy-file table; unknown keys are an error (a typo must not go unnoticed)."""
        values = table_arguments(cls, mapping, what="canary", error=CanaryConfigError)
        if isinstance(values.get("steps"), list):
            values["steps"] = tuple(values["steps"])
        return cls(**values)

    def as_dict(self) -> dict[str, Any]:
        return dict(asdict(self), steps=list(self.steps))

    def sequential_config(self) -> SequentialConfig:
        """The error-rate test: binary, lower is better, control = champion."""
        return SequentialConfig(
            metric="binary",
            alpha=self.alpha,
            min_effect=self.min_effect,
            min_samples_per_arm=self.min_outcomes,
            higher_is_better=False,
        )

    def next_percent(self, percent_now: float) -> float | None:
        """The first step strictly above ``percent_now``; None at 100% or past the last step."""
        if percent_now >= 100:
            return None
        return next((s for s in self.steps if s > percent_now), None)


@dataclass(frozen=True)
class Guardrail:
    name: str  # "error_rate" | "latency_p99_ms" | "score_shift" | "sequential_error_test"
    value: float | None
    limit: float | None
    status: str  # "pass" | "breach" | "pending" (not enough data yet)
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return json_safe(asdict(self))


@dataclass(frozen=True)
class CanaryDecision:
    action: str  # "wait" | "advance" | "promote" | "rollback"
    percent_now: float
    next_percent: float | None  # for "advance": the new share; None otherwise
    reasons: tuple[str, ...]
    guardrails: tuple[Guardrail, ...]
    test: dict | None  # the sequential Decision.evidence(), or None before min_outcomes
    canary: ArmStats
    champion: ArmStats
    config: CanaryConfig = field(default_factory=CanaryConfig)

    @property
    def breaches(self) -> tuple[Guardrail, ...]:
        return tuple(g for g in self.guardrails if g.status == "breach")

    def guardrail(self, name: str) -> Guardrail:
        return next(g for g in self.guardrails if g.name == name)

    def evidence(self) -> dict[str, Any]:
        """Strict-JSON record of the decision, every guardrail, both arms and the config."""
        return json_safe(
            dict(
                action=self.action,
                reason="; ".join(self.reasons),
                percent_now=self.percent_now,
                next_percent=self.next_percent,
                reasons=self.reasons,
                guardrails=[g.as_dict() for g in self.guardrails],
                test=self.test,
                canary=self.canary.as_dict(),
                champion=self.champion.as_dict(),
                canary_version=self.canary.version,
                champion_version=self.champion.version,
                config=self.config.as_dict(),
            )
        )


def _outcomes_short(cfg: CanaryConfig, canary: ArmStats, champion: ArmStats) -> str | None:
    """Why the error guardrails cannot judge yet, or None when they can."""
    if canary.n_outcomes < cfg.min_outcomes:
        return f"canary outcomes {canary.n_outcomes} < {cfg.min_outcomes}"
    return "champion has no outcomes yet" if champion.n_outcomes == 0 else None


def _judge(name: str, value: float, limit: float, text: str) -> Guardrail:
    """A guardrail with data: breached when ``value`` is above ``limit``."""
    status, op = ("breach", ">") if value > limit else ("pass", "<=")
    return Guardrail(name, value, limit, status, text % op)


def _error_rate(cfg: CanaryConfig, canary: ArmStats, champion: ArmStats) -> Guardrail:
    short = _outcomes_short(cfg, canary, champion)
    if short:
        return Guardrail("error_rate", canary.error_rate, None, "pending", short)
    value, base, more = canary.error_rate, champion.error_rate, cfg.max_error_rate_increase
    return _judge("error_rate", value, base + more, f"{value:.3f} %s {base:.3f} + {more:g}")


def _latency(cfg: CanaryConfig, canary: ArmStats) -> Guardrail:
    value, limit = canary.latency_p99_ms, cfg.max_latency_p99_ms
    if canary.n == 0 or math.isnan(value):
        return Guardrail("latency_p99_ms", None, limit, "pending", "no canary latency yet")
    return _judge("latency_p99_ms", value, limit, f"{value:.1f} ms %s {limit:g} ms")


def _score_shift(cfg: CanaryConfig, canary: ArmStats, champion: ArmStats) -> Guardrail:
    need, limit = min(cfg.min_samples, 100), cfg.max_score_shift
    a, b = canary.score_mean, champion.score_mean
    why = (
        f"canary predictions {canary.n} < {need}" if canary.n < need
        else "champion has no predictions yet" if champion.n == 0
        else "mean scores not available" if math.isnan(a - b)
        else None
    )  # fmt: skip
    if why:
        return Guardrail("score_shift", None, limit, "pending", why)
    shift = abs(a - b)
    return _judge("score_shift", shift, limit, f"|{a:.3f} - {b:.3f}| = {shift:.3f} %s {limit:g}")


def _sequential(
    cfg: CanaryConfig, canary: ArmStats, champion: ArmStats, test: SequentialTest
) -> tuple[Guardrail, dict | None]:
    name, short = "sequential_error_test", _outcomes_short(cfg, canary, champion)
    if short:
        return Guardrail(name, None, cfg.alpha, "pending", short), None
    tc = test.config
    if tc.metric != "binary" or tc.higher_is_better:
        raise CanaryConfigError(
            f"the canary error test must be binary with higher_is_better=False, got "
            f"metric={tc.metric!r}, higher_is_better={tc.higher_is_better!r}: build it from "
            "CanaryConfig.sequential_config()"
        )
    d = test.update(champion.error_summary(), canary.error_summary())
    ci = f"CI for canary - champion [{d.ci_low:.4f}, {d.ci_high:.4f}]"
    if min(d.n_control, d.n_treatment) < tc.min_samples_per_arm:  # not started: no evidence
        detail = f"test not started: champion outcomes {d.n_control} < {tc.min_samples_per_arm}"
        return Guardrail(name, d.p_value, d.alpha, "pending", detail), d.evidence()
    if d.outcome == "efficacy" and d.winner == "control":
        detail = f"canary error rate significantly higher: p={d.p_value:.4g} <= {d.alpha:g}, {ci}"
        return Guardrail(name, d.p_value, d.alpha, "breach", detail), d.evidence()
    detail = f"{d.outcome}: p={d.p_value:.4g}, {ci}"
    return Guardrail(name, d.p_value, d.alpha, "pass", detail), d.evidence()


def decide_canary(
    config: CanaryConfig,
    *,
    percent_now: float,
    step_started_ms: int,
    now_ms: int,
    step_samples: int,
    canary: ArmStats,
    champion: ArmStats,
    test: SequentialTest,
) -> CanaryDecision:
    """One check of a canary rollout (module docstring): rollback > advance/promote > wait."""
    if not is_finite_real(percent_now) or not 0 <= percent_now <= 100:
        raise CanaryConfigError(f"percent_now={percent_now!r} must be within [0, 100]")
    if not is_int(step_samples) or step_samples < 0:
        raise CanaryConfigError(f"step_samples={step_samples!r} must be an int >= 0")
    sequential, evidence = _sequential(config, canary, champion, test)
    guardrails = (
        _error_rate(config, canary, champion),
        _latency(config, canary),
        _score_shift(config, canary, champion),
        sequential,
    )

    def decision(action: str, reasons: list[str], nxt: float | None = None) -> CanaryDecision:
        return CanaryDecision(
            action, float(percent_now), nxt, tuple(reasons), guardrails, evidence,
            canary, champion, config,
        )  # fmt: skip

    breaches = [g for g in guardrails if g.status == "breach"]
    if breaches:
        return decision("rollback", [f"{g.name} breach: {g.detail}" for g in breaches])
    baked_s = (now_ms - step_started_ms) / 1000.0
    pending = [g for g in guardrails if g.status == "pending"]
    waiting = []
    if baked_s < config.bake_s:
        left = math.ceil(config.bake_s - baked_s)
        waiting.append(f"baking {baked_s:.0f} s of {config.bake_s:g} s ({left} s left)")
    if step_samples < config.min_samples:
        waiting.append(f"canary samples {step_samples} < {config.min_samples} at this step")
    waiting += [f"{g.name} pending: {g.detail}" for g in pending]
    if waiting:
        return decision("wait", waiting)
    reasons = [
        f"baked {baked_s:.0f} s >= {config.bake_s:g} s",
        f"canary samples {step_samples} >= {config.min_samples}",
        *(f"{g.name} pass: {g.detail}" for g in guardrails),
    ]
    nxt = config.next_percent(percent_now)
    if nxt is None or nxt >= 100:
        return decision("promote", [*reasons, f"promote {percent_now:g}% -> 100%"])
    return decision("advance", [*reasons, f"advance {percent_now:g}% -> {nxt:g}%"], nxt)
