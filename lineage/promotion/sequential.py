"""Always-valid A/B decisions: the mixture SPRT, safe to check after every new observation.

A fixed-sample z-test checked after every batch finds a "winner" in an A/A test
far more often than its alpha says (every look is another chance to cross 1.96).
The mixture sequential probability ratio test of Johari, Pekelis & Walsh
("Always valid inference: continuous monitoring of A/B tests", Operations
Research 70(3), 2022; arXiv 1512.04922) keeps its type-I error at alpha however
often it is checked, because ``Lambda_n`` is a nonnegative martingale with mean 1
under H0 and Ville's inequality bounds ``P(sup_n Lambda_n >= 1/alpha) <= alpha``.

With ``delta = mean_B - mean_A`` (treatment minus control), a normal mixture
``theta ~ N(0, tau^2)`` over the alternatives, and the variance of ``delta``

    V = var_A / n_A + var_B / n_B    (binary: var = p (1 - p) from each arm's running mean)

the statistic, p-value and confidence sequence at check ``n`` are

    log Lambda_n(theta) = 1/2 log(V / (V + tau^2)) + tau^2 (delta - theta)^2 / (2 V (V + tau^2))
    p_n  = min(1, min_{k <= n} 1 / Lambda_k(0))            (running minimum: never goes up)
    CS_n = intersection over k <= n of delta_k -/+ sqrt(V_k (V_k + tau^2) / tau^2
                                   * (log((V_k + tau^2) / V_k) + 2 log(1 / alpha)))

``CS_n`` is ``{theta : Lambda_k(theta) < 1/alpha for every k <= n}``, so 0 leaves
it exactly when ``p_n <= alpha``. For equal arms with one per-observation
variance ``sigma^2`` (``V = 2 sigma^2 / n``) the statistic is the paper's
two-stream normal mSPRT; ``V`` from each arm's own variance and n carries it to
unequal splits and variances. The variances are plug-in estimates, so the
guarantee is asymptotic (normal approximation): nothing is decided before
``min_samples_per_arm`` observations in each arm, and earlier checks are not
folded into ``p_n`` or ``CS_n`` (they report 1, 0 for the log statistic and an
unbounded interval).

Choices, documented once here:

* ``tau`` defaults to ``min_effect`` (the smallest difference worth acting on),
  and one of the two must be set. The mixture then weights effects of that size
  most; the paper shows the expected time to detect an effect depends on the
  mixture only through a lower-order (logarithmic) term, so a roughly matched
  ``tau`` costs little.
* ``alpha_spent`` is the type-I error a decision has committed: ``p_n`` once
  the test rejects (``p_n <= alpha``), else 0. Looking is free in an mSPRT, so
  a test that is still running (or stopped for futility) has spent nothing.
* Outcome precedence at a check: efficacy, then futility (the confidence
  sequence lies inside ``(-min_effect, min_effect)``), then the sample cap
  (the smaller arm has ``max_samples_per_arm``), else continue.

>>> test = SequentialTest(SequentialConfig(metric="binary", min_effect=0.02))
>>> d = test.update(ArmSummary.from_counts(5000, 500), ArmSummary.from_counts(5000, 650))
>>> d.outcome, d.winner, d.p_value < 0.05
('efficacy', 'treatment', True)
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from driftline.lineage.exceptions import SequentialConfigError, SequentialInputError
from driftline.lineage.promotion.sequential_stats import (
    ArmSummary,
    bernoulli_variance,
    cs_half_width,
    difference_variance,
    is_finite_real,
    is_int,
    log_mixture_lr,
    p_from_log_lr,
)

METRICS = ("binary", "continuous")
OUTCOMES = ("continue", "efficacy", "futility", "max_samples")


@dataclass(frozen=True)
class SequentialConfig:
    """How one A/B comparison is tested; see the module docstring for every formula."""

    metric: str  # "binary" | "continuous"
    alpha: float = 0.05
    tau: float | None = None  # mixing sd of the effect; None: min_effect
    min_effect: float = 0.0  # smallest |difference| worth acting on; 0: no futility-by-CI
    max_samples_per_arm: int | None = None
    min_samples_per_arm: int = 100  # nothing is decided before this (normal approximation)
    higher_is_better: bool = True

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise SequentialConfigError(
                f"metric={self.metric!r} is unknown; choose one of {', '.join(METRICS)}"
            )
        if not is_finite_real(self.alpha) or not 0 < self.alpha < 1:
            raise SequentialConfigError(f"alpha={self.alpha!r} is out of range: need 0 < alpha < 1")
        if not is_finite_real(self.min_effect) or self.min_effect < 0:
            raise SequentialConfigError(
                f"min_effect={self.min_effect!r} is out of range: need a finite number >= 0"
            )
        if self.metric == "binary" and self.min_effect >= 1:
            raise SequentialConfigError(
                f"min_effect={self.min_effect!r} cannot be met by a binary metric, whose "
                "difference of rates lies in (-1, 1); give it as a rate difference, e.g. 0.02"
            )
        if self.tau is not None and (not is_finite_real(self.tau) or self.tau <= 0):
            raise SequentialConfigError(
                f"tau={self.tau!r} is out of range: need a finite number > 0, or None "
                "to use min_effect"
            )
        if self.tau is None and self.min_effect == 0:
            raise SequentialConfigError(
                "tau=None with min_effect=0 leaves the mixture without a scale: set min_effect "
                "(the smallest difference worth acting on) or tau (the mixing sd) explicitly"
            )
        if not is_int(self.min_samples_per_arm) or self.min_samples_per_arm < 2:
            raise SequentialConfigError(
                f"min_samples_per_arm={self.min_samples_per_arm!r} is out of range: need an "
                "int >= 2 (variances need two observations; 100 or more is advised)"
            )
        cap = self.max_samples_per_arm
        if cap is not None and (not is_int(cap) or cap < self.min_samples_per_arm):
            raise SequentialConfigError(
                f"max_samples_per_arm={cap!r} is out of range: need None or an int >= "
                f"min_samples_per_arm ({self.min_samples_per_arm})"
            )
        if not isinstance(self.higher_is_better, bool):
            raise SequentialConfigError(
                f"higher_is_better={self.higher_is_better!r} must be True or False"
            )

    @property
    def mixing_sd(self) -> float:
        """``tau`` as used: the configured one, else ``min_effect``."""
        return float(self.tau if self.tau is not None else self.min_effect)

    def as_dict(self) -> dict[str, Any]:
        return dict(asdict(self), mixing_sd=self.mixing_sd)


def _json_number(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


@dataclass(frozen=True)
class Decision:
    """One check's verdict; ``statistic`` is ``log Lambda_n`` (natural log) at this check."""

    outcome: str  # one of OUTCOMES
    winner: str | None  # "control" | "treatment" | None
    statistic: float  # log of the mixture likelihood ratio Lambda_n at this check
    p_value: float  # always-valid p-value (running minimum)
    ci_low: float  # confidence sequence for mean_treatment - mean_control
    ci_high: float
    n_control: int
    n_treatment: int
    mean_control: float
    mean_treatment: float
    alpha: float
    alpha_spent: float  # p_value once rejected, else 0 (module docstring)
    tau: float
    checks: int  # checks folded into p_value and the confidence sequence
    config: SequentialConfig = field(repr=False)

    @property
    def stopped(self) -> bool:
        return self.outcome != "continue"

    def evidence(self) -> dict[str, Any]:
        """JSON-ready record of the decision and its config; unbounded CI ends are None."""
        out = {k: v for k, v in asdict(self).items() if k != "config"}
        out = {k: _json_number(v) if isinstance(v, float) else v for k, v in out.items()}
        return dict(
            out,
            test="msprt",
            statistic_name="log_mixture_likelihood_ratio",
            difference=self.mean_treatment - self.mean_control,
            ci=[out["ci_low"], out["ci_high"]],
            ci_level=1.0 - self.alpha,
            config=self.config.as_dict(),
        )


def _check_stats(config: SequentialConfig, control: tuple, treatment: tuple):
    """(delta, log Lambda_n(0), CS half-width) from ``(n, mean, variance)`` of each arm:
    scalars for one check, arrays for many."""
    (n_c, m_c, v_c), (n_t, m_t, v_t) = control, treatment
    tau2 = config.mixing_sd**2
    if config.metric == "binary":
        v_c, v_t = bernoulli_variance(m_c), bernoulli_variance(m_t)
    v = difference_variance(v_c, n_c, v_t, n_t, tau2)
    delta = np.asarray(m_t, dtype=np.float64) - m_c
    return delta, log_mixture_lr(delta, v, tau2), cs_half_width(v, tau2, config.alpha)


def _interval(low: Any, high: Any) -> tuple[Any, Any]:
    """The running intersection as reported: an empty one (possible only when the
    plug-in variances mislead; 0 has then left it, so the test has rejected) is
    shown as the single point between its crossed ends."""
    crossed = low > high
    # Before the first check the ends are -inf and +inf, whose sum is NaN; only crossed
    # ends (both finite) use the midpoint, so that NaN is never reported.
    with np.errstate(invalid="ignore"):
        mid = (low + high) / 2.0
    return np.where(crossed, mid, low), np.where(crossed, mid, high)


def _winner_sign(low: Any, high: Any, delta: Any) -> Any:
    """+1 where treatment is higher, -1 where control is: by the interval, else by delta."""
    return np.where(low > 0, 1, np.where(high < 0, -1, np.sign(delta))).astype(np.int64)


class SequentialTest:
    """Feed cumulative arm summaries after every batch; stop at the first non-"continue"."""

    def __init__(self, config: SequentialConfig) -> None:
        if not isinstance(config, SequentialConfig):
            raise SequentialConfigError(f"config must be a SequentialConfig, got {config!r}")
        self.config = config
        self.reset()

    def reset(self) -> None:
        """Forget every check: the next update starts a new experiment."""
        self._p, self._low, self._high = 1.0, -math.inf, math.inf
        self._checks, self._last = 0, (0, 0)

    def update(self, control: ArmSummary, treatment: ArmSummary) -> Decision:
        """Fold in one check of the cumulative summaries and return the verdict."""
        cfg = self.config
        self._validate(control, treatment)
        started = min(control.n, treatment.n) >= cfg.min_samples_per_arm
        statistic = 0.0  # log Lambda_0 = 0: no evidence before the test starts
        if started:
            arms = [(a.n, a.mean, a.variance) for a in (control, treatment)]
            delta, log_lr, width = _check_stats(cfg, *arms)
            statistic = float(log_lr)
            self._p = min(self._p, float(p_from_log_lr(log_lr)))
            self._low = max(self._low, float(delta - width))
            self._high = min(self._high, float(delta + width))
            self._checks += 1
        low, high = (float(x) for x in _interval(self._low, self._high))
        sign = int(_winner_sign(low, high, treatment.mean - control.mean))
        outcome = OUTCOMES[int(_outcome_code(cfg, self._p, low, high, control.n, treatment.n))]
        winner = None
        if outcome == "efficacy" and sign != 0:
            better_is_treatment = (sign > 0) == cfg.higher_is_better
            winner = "treatment" if better_is_treatment else "control"
        return Decision(
            outcome=outcome,
            winner=winner,
            statistic=statistic,
            p_value=self._p,
            ci_low=low,
            ci_high=high,
            n_control=control.n,
            n_treatment=treatment.n,
            mean_control=control.mean,
            mean_treatment=treatment.mean,
            alpha=cfg.alpha,
            alpha_spent=self._p if self._p <= cfg.alpha else 0.0,
            tau=cfg.mixing_sd,
            checks=self._checks,
            config=cfg,
        )

    def _validate(self, control: ArmSummary, treatment: ArmSummary) -> None:
        for name, arm, last in (
            ("control", control, self._last[0]),
            ("treatment", treatment, self._last[1]),
        ):
            if not isinstance(arm, ArmSummary):
                raise SequentialInputError(f"{name} must be an ArmSummary, got {arm!r}")
            if self.config.metric == "binary" and not 0 <= arm.mean <= 1:
                raise SequentialInputError(
                    f"{name} mean={arm.mean!r} is not a rate: a binary metric needs means in "
                    "[0, 1]; use metric='continuous' for other values"
                )
            if arm.n < last:
                raise SequentialInputError(
                    f"{name} n={arm.n} is below the previous check's {last}: update() takes "
                    "cumulative summaries; call reset() to start a new experiment"
                )
        self._last = (control.n, treatment.n)


def _outcome_code(config: SequentialConfig, p: Any, low: Any, high: Any, n_c: Any, n_t: Any):
    """Index into OUTCOMES with the precedence efficacy > futility > max_samples > continue."""
    efficacy = np.asarray(p) <= config.alpha
    m = config.min_effect
    futility = (low > -m) & (high < m) if m > 0 else np.zeros_like(efficacy)
    cap = config.max_samples_per_arm
    capped = np.minimum(n_c, n_t) >= cap if cap is not None else np.zeros_like(efficacy)
    return np.select([efficacy, futility, capped], [1, 2, 3], default=0)


@dataclass(frozen=True)
class PathDecisions:
    """Per-experiment verdicts of :func:`evaluate_paths` (arrays of length ``experiments``)."""

    outcome: np.ndarray  # index into OUTCOMES at the stopping check
    stop: np.ndarray  # index of the first non-"continue" check, else the last check
    winner: np.ndarray  # +1 treatment, -1 control, 0 none (efficacy only)
    n_control: np.ndarray  # at the stopping check
    n_treatment: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    p_values: np.ndarray  # [experiments, checks] always-valid p-value after each check


def evaluate_paths(
    config: SequentialConfig,
    n_control: Any,
    mean_control: Any,
    n_treatment: Any,
    mean_treatment: Any,
    var_control: Any = 0.0,
    var_treatment: Any = 0.0,
) -> PathDecisions:
    """:class:`SequentialTest` over many experiments at once, all checks vectorised.

    Each argument is ``[experiments, checks]`` of cumulative figures (or
    broadcasts to it, e.g. ``n`` as ``[checks]``); ``var_*`` are ignored for a
    binary metric. Gives the same verdicts as feeding each row, check by check,
    to a fresh :class:`SequentialTest` and stopping at its first decision.
    """
    given = (n_control, mean_control, var_control, n_treatment, mean_treatment, var_treatment)
    arrays = np.broadcast_arrays(*(np.asarray(a, dtype=np.float64) for a in given))
    n_c, m_c, v_c, n_t, m_t, v_t = (np.atleast_2d(a) for a in arrays)
    started = np.minimum(n_c, n_t) >= config.min_samples_per_arm
    with np.errstate(divide="ignore", invalid="ignore"):
        arms = (np.maximum(n_c, 1), m_c, v_c), (np.maximum(n_t, 1), m_t, v_t)
        delta, log_lr, width = _check_stats(config, *arms)
    p = np.minimum.accumulate(np.where(started, p_from_log_lr(log_lr), 1.0), axis=-1)
    low = np.maximum.accumulate(np.where(started, delta - width, -np.inf), axis=-1)
    high = np.minimum.accumulate(np.where(started, delta + width, np.inf), axis=-1)
    low, high = _interval(low, high)
    codes = _outcome_code(config, p, low, high, n_c, n_t)
    stopped = codes != 0
    stop = np.where(stopped.any(axis=-1), stopped.argmax(axis=-1), codes.shape[-1] - 1)
    rows = np.arange(codes.shape[0])
    at = (rows, stop)
    sign = _winner_sign(low[at], high[at], delta[at])
    outcome = codes[at]
    winner = np.where(outcome == 1, sign if config.higher_is_better else -sign, 0)
    return PathDecisions(
        outcome=outcome,
        stop=stop,
        winner=winner,
        n_control=n_c[at].astype(np.int64),
        n_treatment=n_t[at].astype(np.int64),
        ci_low=low[at],
        ci_high=high[at],
        p_values=p,
    )
