"""Closed forms behind :mod:`.sequential`, written once for scalars and arrays alike.

Also home to :class:`ArmSummary`, :func:`naive_z_test` and the input errors,
re-exported by :mod:`driftline.lineage.promotion.sequential` (import them from there).

Every function takes floats or NumPy arrays (broadcast together) so the
per-check :class:`~driftline.lineage.promotion.sequential.SequentialTest` and the simulation
harness (``bench/bench_ab_simulation.py``, a thousand experiments by hundreds of
checks at once) compute the same numbers from the same lines.

The mixture likelihood ratio (Johari, Pekelis & Walsh, "Always valid inference:
continuous monitoring of A/B tests", Operations Research 70(3), 2022; arXiv
1512.04922): with ``delta`` the observed difference of means (treatment minus
control), ``V`` its variance and a normal mixture ``theta ~ N(theta0, tau^2)``,

    log Lambda_n(theta0) = 1/2 log(V / (V + tau^2))
                           + tau^2 (delta - theta0)^2 / (2 V (V + tau^2))

For equal arms of ``n`` with common per-observation variance ``sigma^2``,
``V = 2 sigma^2 / n`` and this is the paper's two-stream normal mSPRT,
``sqrt(2s/(2s + n tau^2)) exp(n^2 tau^2 (mean_B - mean_A - theta0)^2 / (4s (2s + n tau^2)))``
with ``s = sigma^2``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Any

import numpy as np
from scipy.special import erfc
from scipy.stats import norm

from driftline.lineage.exceptions import SequentialInputError

BINARY_FLOOR = 1e-6  # conversion rates are clipped to [floor, 1 - floor] before p(1 - p)
VARIANCE_FLOOR = 1e-12  # V is floored at this share of tau^2: identical values stay finite


def bernoulli_variance(mean: Any) -> Any:
    """``p (1 - p)`` with ``p`` clipped into (0, 1): an arm of all zeros still has a variance.

    Without the floor a run that starts 0/100 vs 0/100 has ``V = 0`` and the
    ratio is 0/0; the floor makes it ``Lambda ~ 0`` (no evidence), as it should.
    """
    p = np.clip(mean, BINARY_FLOOR, 1.0 - BINARY_FLOOR)
    return p * (1.0 - p)


def difference_variance(
    var_control: Any, n_control: Any, var_treatment: Any, n_treatment: Any, tau2: float
) -> Any:
    """``V = var_A / n_A + var_B / n_B``, the variance of ``mean_B - mean_A``, floored above 0."""
    v = np.asarray(var_control) / n_control + np.asarray(var_treatment) / n_treatment
    return np.maximum(v, VARIANCE_FLOOR * tau2)


def log_mixture_lr(delta: Any, v: Any, tau2: float, theta0: float = 0.0) -> Any:
    """``log Lambda_n(theta0)`` (module docstring); kept in logs so it never overflows."""
    total = v + tau2
    return 0.5 * np.log(v / total) + tau2 * (delta - theta0) ** 2 / (2.0 * v * total)


def p_from_log_lr(log_lr: Any) -> Any:
    """``min(1, 1 / Lambda)`` for one check (the caller takes the running minimum)."""
    return np.exp(-np.maximum(log_lr, 0.0))


def cs_half_width(v: Any, tau2: float, alpha: float) -> Any:
    """Half-width of ``{theta : Lambda_n(theta) < 1 / alpha}``, centred on ``delta``.

    Solving ``log Lambda_n(theta) = log(1 / alpha)`` for ``theta``:
    ``(delta - theta)^2 = V (V + tau^2) / tau^2 * (log((V + tau^2) / V) + 2 log(1 / alpha))``.
    """
    total = v + tau2
    return np.sqrt(v * total / tau2 * (np.log(total / v) - 2.0 * np.log(alpha)))


def z_test_p(delta: Any, v: Any) -> Any:
    """Two-sided fixed-sample p-value ``2 (1 - Phi(|delta| / sqrt(V)))``; 1 where ``V = 0``."""
    delta, v = np.asarray(delta, dtype=np.float64), np.asarray(v, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.abs(delta) / np.sqrt(v)
    p = erfc(z / np.sqrt(2.0))
    return np.where(v > 0, p, np.where(delta == 0, 1.0, 0.0))


def variance_from_sums(n: Any, total: Any, total_sq: Any) -> Any:
    """Unbiased sample variance from ``n``, ``sum x`` and ``sum x^2`` (0 where ``n < 2``).

    ``(sum x^2 - (sum x)^2 / n) / (n - 1)``, clipped at 0: rounding can push a
    near-constant column a hair below zero. Fine for metrics of modest mean; a
    metric centred far from 0 loses digits here and should be fed centred.
    """
    n = np.asarray(n, dtype=np.float64)
    safe = np.maximum(n, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        var = (np.asarray(total_sq) - np.asarray(total) ** 2 / safe) / (safe - 1.0)
    return np.where(n >= 2, np.maximum(var, 0.0), 0.0)


def running_min(values: np.ndarray) -> np.ndarray:
    """Running minimum along the last axis (the checks of each experiment)."""
    return np.minimum.accumulate(values, axis=-1)


def fixed_sample_size_proportions(
    p0: float, p1: float, alpha: float = 0.05, power: float = 0.8
) -> int:
    """Per-arm n of a classical two-sided two-proportion z-test (pooled under H0).

    ``n = (z_{1-a/2} sqrt(2 pbar qbar) + z_{1-b} sqrt(p0 q0 + p1 q1))^2 / (p1 - p0)^2``
    (Fleiss), rounded up: the sample a fixed-horizon test would have to wait for.
    """
    pbar = (p0 + p1) / 2.0
    za, zb = norm.ppf(1.0 - alpha / 2.0), norm.ppf(power)
    root = za * np.sqrt(2 * pbar * (1 - pbar)) + zb * np.sqrt(p0 * (1 - p0) + p1 * (1 - p1))
    return int(np.ceil(root**2 / (p1 - p0) ** 2))


def fixed_sample_size_means(
    effect: float, sd: float, alpha: float = 0.05, power: float = 0.8
) -> int:
    """Per-arm n of a two-sided two-sample z-test: ``2 sd^2 (z_{1-a/2} + z_{1-b})^2 / effect^2``."""
    za, zb = norm.ppf(1.0 - alpha / 2.0), norm.ppf(power)
    return int(np.ceil(2.0 * sd**2 * (za + zb) ** 2 / effect**2))


def is_finite_real(value: Any) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value)


def is_int(value: Any) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool)


@dataclass(frozen=True)
class ArmSummary:
    """Count, mean and unbiased (ddof=1) variance of one arm's metric, cumulative so far."""

    n: int
    mean: float = 0.0
    variance: float = 0.0

    def __post_init__(self) -> None:
        if not is_int(self.n) or self.n < 0:
            raise SequentialInputError(f"n={self.n!r} is out of range: need an int >= 0")
        if not is_finite_real(self.mean):
            raise SequentialInputError(f"mean={self.mean!r} must be a finite number")
        if not is_finite_real(self.variance) or self.variance < 0:
            raise SequentialInputError(
                f"variance={self.variance!r} is out of range: need a finite number >= 0"
            )
        for name in ("n", "mean", "variance"):
            cast = int if name == "n" else float
            object.__setattr__(self, name, cast(getattr(self, name)))

    @classmethod
    def from_values(cls, values: Any) -> ArmSummary:
        """Summary of raw observations (a 1-D sequence of finite numbers)."""
        x = np.asarray(values, dtype=np.float64)
        if x.ndim != 1 or not np.isfinite(x).all():
            raise SequentialInputError(
                f"values must be a 1-D sequence of finite numbers; got shape {x.shape} "
                f"with {int(np.size(x) - np.isfinite(x).sum())} non-finite"
            )
        if x.size == 0:
            return cls(0)
        return cls(x.size, float(x.mean()), float(x.var(ddof=1)) if x.size > 1 else 0.0)

    @classmethod
    def from_sums(cls, n: int, sum: float, sum_sq: float) -> ArmSummary:
        """Summary from ``count()``, ``sum(x)`` and ``sum(x * x)``, e.g. SQL aggregates."""
        if not is_int(n) or n < 0:
            raise SequentialInputError(f"n={n!r} is out of range: need an int >= 0")
        if not (is_finite_real(sum) and is_finite_real(sum_sq)) or sum_sq < 0:
            raise SequentialInputError(
                f"sum={sum!r}, sum_sq={sum_sq!r} must be finite numbers with sum_sq >= 0"
            )
        if n == 0:
            return cls(0)
        variance = (sum_sq - sum * sum / n) / (n - 1) if n > 1 else 0.0  # variance_from_sums
        return cls(int(n), sum / n, max(variance, 0.0))

    @classmethod
    def from_counts(cls, n: int, successes: int) -> ArmSummary:
        """Summary of ``n`` 0/1 outcomes of which ``successes`` are 1 (a binary metric)."""
        if not (is_int(n) and is_int(successes)) or not 0 <= successes <= n:
            raise SequentialInputError(
                f"n={n!r}, successes={successes!r} are out of range: need ints with "
                "0 <= successes <= n"
            )
        return cls.from_sums(int(n), float(successes), float(successes))

    def merge(self, other: ArmSummary) -> ArmSummary:
        """This summary and ``other`` as one (Chan et al.'s pairwise update: no raw values)."""
        if other.n == 0:
            return self
        if self.n == 0:
            return other
        n = self.n + other.n
        delta = other.mean - self.mean
        m2 = (
            self.variance * (self.n - 1)
            + other.variance * (other.n - 1)
            + delta**2 * self.n * other.n / n
        )
        return ArmSummary(n, self.mean + delta * other.n / n, m2 / (n - 1))


def naive_z_test(control: ArmSummary, treatment: ArmSummary) -> float:
    """Classical two-sided fixed-sample p-value of ``mean_B - mean_A`` (Welch-type z).

    ``2 (1 - Phi(|delta| / sqrt(var_A / n_A + var_B / n_B)))`` from the
    summaries' own variances: valid once, at a sample size fixed in advance, and
    what the harness shows going wrong when it is checked at every batch.
    """
    if control.n == 0 or treatment.n == 0:
        return 1.0
    v = control.variance / control.n + treatment.variance / treatment.n
    delta = treatment.mean - control.mean
    if v == 0:
        return 1.0 if delta == 0 else 0.0
    return math.erfc(abs(delta) / math.sqrt(2.0 * v))  # z_test_p, without array overhead
