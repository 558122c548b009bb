"""The mSPRT A/B decisions: calibrated under peeking, powerful, and honest about their inputs."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
from scipy.stats import norm

from driftline.lineage.exceptions import SequentialConfigError, SequentialInputError
from driftline.lineage.promotion.sequential import (
    Decision,
    SequentialConfig,
    SequentialTest,
    evaluate_paths,
)
from driftline.lineage.promotion.sequential_stats import ArmSummary, log_mixture_lr, naive_z_test

ALPHA = 0.05


def binary_counts(rng: np.random.Generator, rate: float, checks: int, step: int) -> np.ndarray:
    """Cumulative successes after each check of ``step`` Bernoulli(rate) observations."""
    return rng.binomial(step, rate, size=checks).cumsum()


def run_binary(
    test: SequentialTest, control: np.ndarray, treatment: np.ndarray, step: int, stop: bool = True
) -> list[Decision]:
    """Feed cumulative counts check by check; stop at the first decision unless told not to."""
    decisions = []
    for k, (c, t) in enumerate(zip(control.tolist(), treatment.tolist(), strict=True)):
        n = step * (k + 1)
        decisions.append(test.update(ArmSummary.from_counts(n, c), ArmSummary.from_counts(n, t)))
        if stop and decisions[-1].stopped:
            break
    return decisions


def run_normal(
    test: SequentialTest, rng: np.random.Generator, shift: float, checks: int, step: int
) -> Decision:
    """N(0, 1) control vs N(shift, 1) treatment, merged batch by batch, to the first decision."""
    control = treatment = ArmSummary(0)
    for _ in range(checks):
        control = control.merge(ArmSummary.from_values(rng.normal(0.0, 1.0, step)))
        treatment = treatment.merge(ArmSummary.from_values(rng.normal(shift, 1.0, step)))
        decision = test.update(control, treatment)
        if decision.stopped:
            break
    return decision


def binomial_margin(p: float, trials: int) -> float:
    return 2.5 * math.sqrt(p * (1 - p) / trials)


def test_aa_binary_false_winners_stay_under_alpha_where_naive_peeking_does_not() -> None:
    rng = np.random.default_rng(2024)
    experiments, step, checks = 300, 100, 200  # checked every 100 per arm, up to 20,000
    config = SequentialConfig("binary", alpha=ALPHA, tau=0.02)
    msprt_winners = naive_winners = 0
    for _ in range(experiments):
        control = binary_counts(rng, 0.10, checks, step)
        treatment = binary_counts(rng, 0.10, checks, step)
        decisions = run_binary(SequentialTest(config), control, treatment, step)
        msprt_winners += decisions[-1].outcome == "efficacy"
        for k in range(checks):
            n = step * (k + 1)
            arms = (
                ArmSummary.from_counts(n, int(control[k])),
                ArmSummary.from_counts(n, int(treatment[k])),
            )
            if naive_z_test(*arms) <= ALPHA:
                naive_winners += 1
                break
    assert msprt_winners / experiments <= ALPHA + binomial_margin(ALPHA, experiments)
    assert naive_winners / experiments > 2 * ALPHA


def test_a_two_point_lift_is_found_and_the_direction_names_the_winner() -> None:
    rng = np.random.default_rng(7)
    up = SequentialConfig("binary", min_effect=0.02, max_samples_per_arm=20_000)
    down = SequentialConfig(
        "binary", min_effect=0.02, max_samples_per_arm=20_000, higher_is_better=False
    )
    runs, found = 20, {"treatment": 0, "control": 0}
    for _ in range(runs):
        control = binary_counts(rng, 0.10, 100, 200)
        treatment = binary_counts(rng, 0.12, 100, 200)
        higher = run_binary(SequentialTest(up), control, treatment, 200)[-1]
        lower = run_binary(SequentialTest(down), control, treatment, 200)[-1]
        assert (higher.outcome, higher.n_control) == (lower.outcome, lower.n_control)
        if higher.outcome == "efficacy":
            assert (higher.winner, lower.winner) == ("treatment", "control")
            assert higher.ci_low > 0
            found["treatment"] += higher.winner == "treatment"
            found["control"] += lower.winner == "control"
    assert found["treatment"] == found["control"] >= 0.8 * runs


def test_a_tenth_sd_shift_in_a_continuous_metric_is_found() -> None:
    rng = np.random.default_rng(11)
    config = SequentialConfig("continuous", min_effect=0.1, max_samples_per_arm=20_000)
    decisions = [run_normal(SequentialTest(config), rng, 0.1, 40, 500) for _ in range(10)]
    wins = [d for d in decisions if (d.outcome, d.winner) == ("efficacy", "treatment")]
    assert len(wins) >= 8
    assert all(d.n_control < 20_000 for d in wins)


def test_aa_continuous_false_winners_stay_under_alpha() -> None:
    rng = np.random.default_rng(5)
    experiments = 100
    config = SequentialConfig("continuous", tau=0.1, max_samples_per_arm=5_000)
    decisions = [run_normal(SequentialTest(config), rng, 0.0, 50, 100) for _ in range(experiments)]
    winners = sum(d.outcome == "efficacy" for d in decisions)
    assert winners / experiments <= ALPHA + binomial_margin(ALPHA, experiments)
    assert sum(d.outcome == "max_samples" for d in decisions) == experiments - winners


def test_the_p_value_never_rises_across_checks() -> None:
    rng = np.random.default_rng(3)
    test = SequentialTest(SequentialConfig("binary", tau=0.02))
    control, treatment = binary_counts(rng, 0.10, 150, 100), binary_counts(rng, 0.105, 150, 100)
    decisions = run_binary(test, control, treatment, 100, stop=False)
    p = np.array([d.p_value for d in decisions])
    one_check = np.minimum(1.0, np.exp(-np.array([d.statistic for d in decisions])))
    assert np.any(np.diff(one_check) > 0)  # the evidence of a single check does fall back...
    assert np.all(np.diff(p) <= 0)  # ...but the always-valid p-value keeps its minimum
    assert p[-1] < p[0] <= 1.0
    assert np.array_equal(p, np.minimum.accumulate(one_check))


@pytest.mark.parametrize("lift", [0.0, 0.01])
def test_the_confidence_sequence_holds_the_true_difference_at_every_check(lift: float) -> None:
    rng = np.random.default_rng(17)
    config = SequentialConfig("binary", tau=0.02)
    runs, covered = 60, 0
    for _ in range(runs):
        control, treatment = (
            binary_counts(rng, 0.10, 100, 100),
            binary_counts(rng, 0.10 + lift, 100, 100),
        )
        decisions = run_binary(SequentialTest(config), control, treatment, 100, stop=False)
        covered += all(d.ci_low < lift < d.ci_high for d in decisions)
        lows, highs = [d.ci_low for d in decisions], [d.ci_high for d in decisions]
        assert np.all(np.diff(lows) >= 0) and np.all(np.diff(highs) <= 0)  # an intersection
    assert covered / runs >= 0.9


def test_futility_stops_an_aa_run_once_the_interval_is_inside_the_minimum_effect() -> None:
    rng = np.random.default_rng(23)
    config = SequentialConfig("binary", min_effect=0.02)
    for _ in range(5):
        control, treatment = binary_counts(rng, 0.10, 80, 500), binary_counts(rng, 0.10, 80, 500)
        last = run_binary(SequentialTest(config), control, treatment, 500)[-1]
        assert last.outcome == "futility" and last.winner is None
        assert -0.02 < last.ci_low < last.ci_high < 0.02
        assert last.n_control < 40_000
        assert last.alpha_spent == 0.0


def test_the_sample_cap_stops_a_run_without_a_winner() -> None:
    rng = np.random.default_rng(29)
    config = SequentialConfig("binary", tau=0.02, max_samples_per_arm=2_000)
    control, treatment = binary_counts(rng, 0.10, 40, 100), binary_counts(rng, 0.10, 40, 100)
    decisions = run_binary(SequentialTest(config), control, treatment, 100)
    assert [d.outcome for d in decisions[:-1]] == ["continue"] * 19
    last = decisions[-1]
    assert (last.outcome, last.winner, last.n_control, last.n_treatment) == (
        "max_samples",
        None,
        2_000,
        2_000,
    )


def test_nothing_is_decided_before_the_minimum_sample() -> None:
    test = SequentialTest(SequentialConfig("binary", min_effect=0.02, min_samples_per_arm=100))
    early = test.update(ArmSummary.from_counts(60, 0), ArmSummary.from_counts(60, 60))
    assert (early.outcome, early.p_value, early.statistic, early.checks) == ("continue", 1, 0, 0)
    assert (early.ci_low, early.ci_high) == (-math.inf, math.inf)
    assert early.evidence()["ci"] == [None, None]
    late = test.update(ArmSummary.from_counts(100, 0), ArmSummary.from_counts(100, 100))
    assert (late.outcome, late.winner, late.checks) == ("efficacy", "treatment", 1)


def test_a_continuous_p_value_matches_the_papers_closed_form() -> None:
    n, sigma2, tau, delta = 2_000, 1.3, 0.1, 0.12
    config = SequentialConfig("continuous", tau=tau)
    decision = SequentialTest(config).update(
        ArmSummary(n, 5.0, sigma2), ArmSummary(n, 5.0 + delta, sigma2)
    )
    # Johari et al., two-stream normal mSPRT: Lambda_n = sqrt(2s / (2s + n tau^2))
    #   * exp(n^2 tau^2 (Ybar - Xbar)^2 / (4 s (2s + n tau^2))), s = sigma^2
    s, t2 = sigma2, tau**2
    lam = math.sqrt(2 * s / (2 * s + n * t2)) * math.exp(
        n**2 * t2 * delta**2 / (4 * s * (2 * s + n * t2))
    )
    assert decision.statistic == pytest.approx(math.log(lam), rel=1e-9)
    assert decision.p_value == pytest.approx(min(1.0, 1.0 / lam), rel=1e-9)
    assert decision.p_value < ALPHA and decision.outcome == "efficacy"


def test_unequal_arms_give_the_gaussian_bayes_factor() -> None:
    control, treatment = ArmSummary(800, 1.0, 2.0), ArmSummary(3_000, 1.15, 0.5)
    tau = 0.2
    decision = SequentialTest(SequentialConfig("continuous", tau=tau)).update(control, treatment)
    v = 2.0 / 800 + 0.5 / 3_000
    bayes_factor = norm.pdf(0.15, 0, math.sqrt(v + tau**2)) / norm.pdf(0.15, 0, math.sqrt(v))
    assert decision.statistic == pytest.approx(math.log(bayes_factor), rel=1e-9)


def test_binary_variances_come_from_the_running_rates() -> None:
    control, treatment = ArmSummary.from_counts(4_000, 400), ArmSummary.from_counts(5_000, 560)
    decision = SequentialTest(SequentialConfig("binary", tau=0.02)).update(control, treatment)
    v = 0.1 * 0.9 / 4_000 + 0.112 * 0.888 / 5_000
    assert decision.statistic == pytest.approx(log_mixture_lr(0.012, v, 0.02**2), rel=1e-9)


def test_the_interval_ends_are_where_the_ratio_reaches_one_over_alpha() -> None:
    config = SequentialConfig("continuous", tau=0.05, alpha=0.1)
    d = SequentialTest(config).update(ArmSummary(1_000, 0.0, 1.0), ArmSummary(1_000, 0.03, 1.0))
    v = 2.0 / 1_000
    for end in (d.ci_low, d.ci_high):
        assert log_mixture_lr(0.03, v, 0.05**2, theta0=end) == pytest.approx(math.log(10))
    assert d.ci_low < 0 < d.ci_high and d.outcome == "continue"


def test_a_fully_stopped_all_zero_start_stays_finite() -> None:
    d = SequentialTest(SequentialConfig("binary", tau=0.02)).update(
        ArmSummary.from_counts(200, 0), ArmSummary.from_counts(200, 0)
    )
    assert d.outcome == "continue" and d.p_value == 1.0
    assert all(map(math.isfinite, (d.statistic, d.ci_low, d.ci_high)))


def test_evidence_is_json_ready_and_complete() -> None:
    config = SequentialConfig("binary", min_effect=0.02, max_samples_per_arm=50_000)
    d = SequentialTest(config).update(
        ArmSummary.from_counts(5_000, 500), ArmSummary.from_counts(5_000, 650)
    )
    evidence = json.loads(json.dumps(d.evidence(), allow_nan=False))
    for key, value in {
        "n_control": 5_000,
        "n_treatment": 5_000,
        "outcome": "efficacy",
        "winner": "treatment",
        "alpha": ALPHA,
        "statistic_name": "log_mixture_likelihood_ratio",
    }.items():
        assert evidence[key] == value
    assert evidence["statistic"] == pytest.approx(d.statistic)
    assert evidence["p_value"] == pytest.approx(d.p_value) and d.p_value <= ALPHA
    assert evidence["alpha_spent"] == pytest.approx(d.p_value)
    assert evidence["ci"] == pytest.approx([d.ci_low, d.ci_high])
    assert evidence["config"]["mixing_sd"] == 0.02 and evidence["config"]["metric"] == "binary"


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"metric": "ratio"}, "'ratio'"),
        ({"metric": "binary", "alpha": 1.5, "tau": 0.1}, "alpha=1.5"),
        ({"metric": "binary", "alpha": 0, "tau": 0.1}, "alpha=0"),
        ({"metric": "binary", "tau": -0.1}, "tau=-0.1"),
        ({"metric": "binary"}, "min_effect"),
        ({"metric": "binary", "min_effect": 1.5}, "min_effect=1.5"),
        ({"metric": "continuous", "min_effect": -1.0}, "min_effect=-1.0"),
        ({"metric": "binary", "tau": 0.1, "min_samples_per_arm": 1}, "min_samples_per_arm=1"),
        ({"metric": "binary", "tau": 0.1, "max_samples_per_arm": 50}, "max_samples_per_arm=50"),
        ({"metric": "binary", "tau": 0.1, "higher_is_better": "yes"}, "higher_is_better='yes'"),
    ],
)
def test_config_errors_name_the_bad_value(kwargs: dict, named: str) -> None:
    with pytest.raises(SequentialConfigError, match=named.replace("(", r"\(")) as caught:
        SequentialConfig(**kwargs)
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize(
    ("build", "named"),
    [
        (lambda: ArmSummary(-1), "n=-1"),
        (lambda: ArmSummary(10, math.nan), "mean=nan"),
        (lambda: ArmSummary(10, 0.5, -2.0), "variance=-2.0"),
        (lambda: ArmSummary.from_counts(10, 11), "successes=11"),
        (lambda: ArmSummary.from_sums(-3, 1.0, 1.0), "n=-3"),
        (lambda: ArmSummary.from_values([1.0, math.inf]), "non-finite"),
    ],
)
def test_summary_errors_name_the_bad_value(build, named: str) -> None:
    with pytest.raises(SequentialInputError, match=named):
        build()


def test_update_rejects_rates_outside_zero_one_and_shrinking_counts() -> None:
    test = SequentialTest(SequentialConfig("binary", tau=0.02))
    with pytest.raises(SequentialInputError, match=r"treatment mean=1\.2"):
        test.update(ArmSummary(200, 0.1), ArmSummary(200, 1.2))
    test.update(ArmSummary.from_counts(500, 50), ArmSummary.from_counts(500, 55))
    with pytest.raises(SequentialInputError, match="control n=400 is below .* 500.*reset"):
        test.update(ArmSummary.from_counts(400, 40), ArmSummary.from_counts(600, 60))
    test.reset()
    assert test.update(ArmSummary.from_counts(400, 40), ArmSummary(400, 0.1)).checks == 1
    with pytest.raises(SequentialConfigError, match="SequentialConfig"):
        SequentialTest({"metric": "binary"})  # type: ignore[arg-type]


def test_tau_defaults_to_the_minimum_effect() -> None:
    assert SequentialConfig("binary", min_effect=0.03).mixing_sd == 0.03
    assert SequentialConfig("binary", min_effect=0.03, tau=0.01).mixing_sd == 0.01


def test_summaries_agree_with_numpy_however_they_are_built() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(3.0, 2.0, 1_001)
    whole = ArmSummary.from_values(x)
    assert whole.mean == pytest.approx(x.mean()) and whole.variance == pytest.approx(x.var(ddof=1))
    merged = ArmSummary.from_values(x[:10]).merge(ArmSummary.from_values(x[10:]))
    sums = ArmSummary.from_sums(x.size, float(x.sum()), float((x**2).sum()))
    for other in (merged, sums):
        assert other.n == whole.n
        assert (other.mean, other.variance) == pytest.approx((whole.mean, whole.variance))
    bits = (rng.random(500) < 0.3).astype(float)
    counted = ArmSummary.from_counts(500, int(bits.sum()))
    assert (counted.mean, counted.variance) == pytest.approx((bits.mean(), bits.var(ddof=1)))
    assert ArmSummary(0).merge(whole) == whole == whole.merge(ArmSummary.from_values([]))


def test_the_naive_z_test_is_the_textbook_two_sided_p_value() -> None:
    control, treatment = ArmSummary(1_000, 0.10, 0.09), ArmSummary(1_200, 0.13, 0.1131)
    z = 0.03 / math.sqrt(0.09 / 1_000 + 0.1131 / 1_200)
    assert naive_z_test(control, treatment) == pytest.approx(2 * norm.sf(z))
    assert naive_z_test(ArmSummary(0), treatment) == 1.0


@pytest.mark.parametrize("higher_is_better", [True, False])
def test_vectorised_paths_give_the_checks_verdicts(higher_is_better: bool) -> None:
    rng = np.random.default_rng(31)
    config = SequentialConfig(
        "binary", min_effect=0.02, max_samples_per_arm=6_000, higher_is_better=higher_is_better
    )
    step, checks = 100, 60
    n = step * np.arange(1, checks + 1)
    rates = [(0.10, 0.10), (0.10, 0.13), (0.13, 0.10), (0.10, 0.11)] * 6
    counts = np.array([[binary_counts(rng, r, checks, step) for r in pair] for pair in rates])
    paths = evaluate_paths(config, n, counts[:, 0] / n, n, counts[:, 1] / n)
    outcomes = set()
    for e, (control, treatment) in enumerate(counts):
        last = run_binary(SequentialTest(config), control, treatment, step)[-1]
        sign = {"treatment": 1, "control": -1, None: 0}[last.winner]
        assert last.outcome == ["continue", "efficacy", "futility", "max_samples"][paths.outcome[e]]
        assert last.n_control == paths.n_control[e] == n[paths.stop[e]]
        assert sign == paths.winner[e]  # +1 treatment, -1 control, 0 none, in both
        assert (last.ci_low, last.ci_high) == pytest.approx((paths.ci_low[e], paths.ci_high[e]))
        assert last.p_value == pytest.approx(paths.p_values[e, paths.stop[e]])
        outcomes.add(last.outcome)
    assert {"efficacy", "futility"} <= outcomes


def test_vectorised_paths_warn_nothing_before_the_first_check() -> None:
    """Checks before min_samples_per_arm have an unbounded interval; no NaN warning from it."""
    config = SequentialConfig("binary", min_effect=0.02, min_samples_per_arm=500)
    n = np.array([100, 200, 600, 1_000])
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        paths = evaluate_paths(config, n, np.full(4, 0.1), n, np.full(4, 0.2))
    assert np.isfinite(paths.ci_low).all() and np.isfinite(paths.ci_high).all()
