"""A/B decision evaluation: false winners under continuous monitoring, power and samples used.

Every experiment is checked after each step of --step (100) new observations per
arm, up to --max-per-arm (20,000) per arm, i.e. 200 checks (--step 10: 2,000), by:

* the mSPRT of :mod:`driftline.lineage.promotion.sequential` alone (tau = 0.02, run to the cap),
* the deployable rule: the mSPRT plus futility when the confidence sequence lies
  inside (-0.02, 0.02) (min_effect = tau = 0.02) and the cap,
* a naive fixed-sample z-test checked at every step (stop at the first p <= alpha),
* the same z-test once, at the cap (what it is valid for).

Sections: 1. A/A binary (10% base rate): false-winner rates (target: mSPRT <=
alpha = 0.05); 2. A/B binary, 10% -> 12%: power, samples per arm at stopping and
the classical fixed-sample n (80% power); 3. A/A and A/B continuous (normal, a
0.1-sd shift), simulated through exact per-step sufficient statistics (a step's
mean is N(mu, sd^2/step), its within-step sum of squares sd^2 chi^2(step - 1));
4. the vectorised verdicts replayed through ``SequentialTest`` check by check.
No decision is made before 100 observations per arm. Nothing here asserts a timing.

Usage: python -m bench.bench_ab_simulation [--experiments N] [--seed S] [--step K]
       [--max-per-arm M]
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np

from driftline.lineage.promotion.sequential import (
    OUTCOMES,
    PathDecisions,
    SequentialConfig,
    SequentialTest,
    evaluate_paths,
)
from driftline.lineage.promotion.sequential_stats import (
    ArmSummary,
    bernoulli_variance,
    fixed_sample_size_means,
    fixed_sample_size_proportions,
    variance_from_sums,
    z_test_p,
)

SEED = 20_240
ALPHA = 0.05
STEP = 100  # observations per arm between two checks (default)
MIN_PER_ARM = 100  # no decision before this many per arm
MAX_PER_ARM = 20_000
BASE, LIFT = 0.10, 0.02  # binary: control rate and absolute lift
SHIFT = 0.1  # continuous: mean shift in sd units (sd = 1)
REPLAY = 20  # experiments per section replayed through SequentialTest


def rules(metric: str, effect: float, cap: int) -> dict[str, SequentialConfig]:
    """The two mSPRT rules compared, both with tau = effect (the module's default rule)."""
    base = dict(
        metric=metric, alpha=ALPHA, max_samples_per_arm=cap, min_samples_per_arm=MIN_PER_ARM
    )
    return {
        f"mSPRT alone (tau {effect:g}, to the cap)": SequentialConfig(**base, tau=effect),
        f"mSPRT + futility |d| < {effect:g} + cap": SequentialConfig(**base, min_effect=effect),
    }


def binary_paths(rng: np.random.Generator, experiments: int, n: np.ndarray, rate: float):
    """Cumulative conversion rate at each check (cumulative sizes ``n``, equal steps)."""
    step = int(n[0])
    counts = rng.binomial(step, rate, size=(experiments, n.size)).cumsum(axis=1)
    return counts / n


def normal_paths(rng: np.random.Generator, experiments: int, n: np.ndarray, mu: float):
    """Cumulative (mean, unbiased variance) of N(mu, 1) at each check, exactly in law."""
    step = int(n[0])
    means = rng.normal(mu, 1.0 / np.sqrt(step), size=(experiments, n.size))
    within = rng.chisquare(step - 1, size=(experiments, n.size))
    total = (step * means).cumsum(axis=1)
    total_sq = (within + step * means**2).cumsum(axis=1)
    return total / n, variance_from_sums(n, total, total_sq)


def tally(d: PathDecisions, right: int, effect: float) -> dict[str, Any]:
    """Shares of the verdicts. ``right`` is the sign of the true winner (0: none, A/A) and
    ``effect`` the true difference, which the confidence sequence at stopping should hold."""
    efficacy = d.outcome == 1
    n = np.maximum(d.n_control, d.n_treatment)
    covered = (d.ci_low <= effect) & (effect <= d.ci_high)
    return {
        "experiments": int(d.outcome.size),
        "winners": int(efficacy.sum()),
        "winner_rate": float(efficacy.mean()),
        "right_winner_rate": float((efficacy & (d.winner == right)).mean()) if right else 0.0,
        "futility_rate": float((d.outcome == OUTCOMES.index("futility")).mean()),
        "max_samples_rate": float((d.outcome == OUTCOMES.index("max_samples")).mean()),
        "ci_coverage": float(covered.mean()) if np.isfinite(d.ci_low).all() else None,
        "median_n": float(np.median(n)),
        "p90_n": float(np.percentile(n, 90, method="inverted_cdf")),
    }


def naive(p: np.ndarray, delta: np.ndarray, n: np.ndarray, every: bool) -> PathDecisions:
    """The z-test as a stopping rule: first check with p <= alpha (or only the last check)."""
    hit = p <= ALPHA
    if not every:
        hit[:, :-1] = False
    stop = np.where(hit.any(axis=1), hit.argmax(axis=1), p.shape[1] - 1)
    rows = np.arange(p.shape[0])
    found = hit[rows, stop]
    outcome = np.where(found, 1, OUTCOMES.index("max_samples"))
    sign = np.where(found, np.sign(delta[rows, stop]), 0).astype(np.int64)
    nan = np.full(p.shape[0], np.nan)  # no confidence sequence
    return PathDecisions(outcome, stop, sign, n[stop], n[stop], nan, nan, p)


def section(label: str, paths: tuple, metric: str, effect: float, truth: float, cap: int):
    """Every rule over the same simulated ``paths``: prints one table, returns its figures."""
    n, (m_c, m_t), (v_c, v_t) = paths
    right = int(np.sign(truth))
    out = {}
    for name, config in rules(metric, effect, cap).items():
        out[name] = tally(evaluate_paths(config, n, m_c, n, m_t, v_c, v_t), right, truth)
    p = z_test_p(m_t - m_c, (v_c + v_t) / n)
    for name, every in (("checked every step", True), ("once at the cap", False)):
        out[f"naive z-test, {name}"] = tally(naive(p, m_t - m_c, n, every), right, truth)
    print(f"\n{label}")
    print(
        f"  {'rule':<40}{'winners':>8}{'rate':>8}{'right':>8}{'futile':>8}{'capped':>8}"
        f"{'CS covers':>11}{'median n':>10}{'p90 n':>9}"
    )
    for name, t in out.items():
        right_rate = f"{t['right_winner_rate']:.3f}" if right else "-"
        covers = "-" if t["ci_coverage"] is None else f"{t['ci_coverage']:.3f}"
        print(
            f"  {name:<40}{t['winners']:>8}{t['winner_rate']:>8.3f}{right_rate:>8}"
            f"{t['futility_rate']:>8.3f}{t['max_samples_rate']:>8.3f}{covers:>11}"
            f"{t['median_n']:>10,.0f}{t['p90_n']:>9,.0f}"
        )
    return out


def false_winners(figures: dict[str, dict], experiments: int) -> dict[str, float]:
    """The headline A/A comparison: mSPRT vs the naive z-test peeked at every step."""
    alone, deployable, peek, _ = (t["winner_rate"] for t in figures.values())
    bound = ALPHA + 2 * np.sqrt(ALPHA * (1 - ALPHA) / experiments)
    ratio = peek / alone if alone else float("inf")
    print(
        f"  false winners: mSPRT {alone:.3f}, with futility {deployable:.3f} (target <= alpha "
        f"{ALPHA}: {'met' if max(alone, deployable) <= bound else 'MISSED'}; alpha + 2 se = "
        f"{bound:.3f}) vs naive z-test peeked every step {peek:.3f}: {ratio:,.1f}x the mSPRT, "
        f"{peek / ALPHA:,.1f}x alpha"
    )
    return {"msprt": alone, "deployable": deployable, "naive_peeking": peek, "ratio": ratio}


def power(figures: dict[str, dict], fixed: int) -> dict[str, float]:
    """The headline A/B figures of the deployable rule, beside the classical fixed n."""
    t = list(figures.values())[1]
    print(
        f"  power (right winner) of mSPRT + futility {t['right_winner_rate']:.3f}, samples per "
        f"arm at stopping: median {t['median_n']:,.0f}, p90 {t['p90_n']:,.0f}; a fixed-sample "
        f"z-test (80% power, two-sided {ALPHA}) needs {fixed:,} per arm"
    )
    return dict(
        power=t["right_winner_rate"], median_n=t["median_n"], p90_n=t["p90_n"], fixed_sample_n=fixed
    )


def replay(config: SequentialConfig, paths: tuple, count: int) -> int:
    """How many of the first ``count`` experiments get the same (outcome, stop, winner)
    from ``SequentialTest``, check by check, as from ``evaluate_paths``."""
    n, (m_c, m_t), (v_c, v_t) = paths[0], *((a[:count] for a in pair) for pair in paths[1:])
    paths_ = evaluate_paths(config, n, m_c, n, m_t, v_c, v_t)
    agree = 0
    for e in range(m_c.shape[0]):
        test = SequentialTest(config)
        for k, size in enumerate(n.tolist()):
            arms = (
                ArmSummary(size, float(m[e, k]), float(v[e, k]))
                for m, v in ((m_c, v_c), (m_t, v_t))
            )
            d = test.update(*arms)
            if d.stopped:
                break
        sign = {"treatment": 1, "control": -1, None: 0}[d.winner]
        got = (OUTCOMES.index(d.outcome), k, sign)
        agree += got == (paths_.outcome[e], paths_.stop[e], paths_.winner[e])
    return agree


def simulate(rng: np.random.Generator, e: int, n: np.ndarray) -> dict[str, tuple]:
    """Seeded paths of every section: ``{key: (label, metric, effect, truth, paths)}``."""
    out = {}
    for key, lift, label in (
        ("aa_binary", 0.0, f"1. A/A binary, both arms {BASE:.0%}"),
        ("ab_binary", LIFT, f"2. A/B binary, {BASE:.0%} -> {BASE + LIFT:.0%}"),
    ):
        means = binary_paths(rng, e, n, BASE), binary_paths(rng, e, n, BASE + lift)
        paths = n, means, tuple(bernoulli_variance(m) for m in means)
        out[key] = label, "binary", LIFT, lift, paths
    for key, shift, label in (
        ("aa_continuous", 0.0, "3a. A/A continuous, N(0, 1) in both arms"),
        ("ab_continuous", SHIFT, f"3b. A/B continuous, N(0, 1) -> N({SHIFT:g}, 1)"),
    ):
        (m_c, v_c), (m_t, v_t) = (normal_paths(rng, e, n, mu) for mu in (0.0, shift))
        out[key] = label, "continuous", SHIFT, shift, (n, (m_c, m_t), (v_c, v_t))
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run every section; print the tables and return the figures (for the bit-rot test)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiments", type=int, default=1000, help="per section (1,000)")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--max-per-arm", type=int, default=MAX_PER_ARM, help="sample cap per arm")
    parser.add_argument("--step", type=int, default=STEP, help="observations per arm per check")
    args = parser.parse_args(argv)
    e, cap, step, started = args.experiments, args.max_per_arm, args.step, time.perf_counter()
    if not 2 <= step <= cap or cap < MIN_PER_ARM or e < 1:
        parser.error(f"need 2 <= --step <= --max-per-arm, --max-per-arm >= {MIN_PER_ARM}, N >= 1")
    checks = cap // step
    cap = checks * step  # the last check
    print("driftline A/B decision evaluation (mSPRT, Johari, Pekelis & Walsh 2022)")
    print(
        f"seed {args.seed}; {e:,} experiments per section; a check every {step} observations "
        f"per arm up to {cap:,} per arm ({checks:,} checks); alpha {ALPHA}; no "
        f"decision before {MIN_PER_ARM} per arm; tau = min_effect"
    )
    figures: dict[str, Any] = {"settings": dict(experiments=e, seed=args.seed, step=step, cap=cap)}
    n = step * np.arange(1, checks + 1)
    sections = simulate(np.random.default_rng(args.seed), e, n)
    fixed = {
        "ab_binary": fixed_sample_size_proportions(BASE, BASE + LIFT, ALPHA, 0.8),
        "ab_continuous": fixed_sample_size_means(SHIFT, 1.0, ALPHA, 0.8),
    }
    for key, (label, metric, effect, truth, paths) in sections.items():
        figures[key] = section(label, paths, metric, effect, truth, cap)
        if truth:
            figures[key]["summary"] = power(figures[key], fixed[key])
        else:
            figures[key]["summary"] = false_winners(figures[key], e)
    count, agreed = min(REPLAY, e), {}
    for key, (_, metric, effect, _, paths) in sections.items():
        agreed[key] = replay(list(rules(metric, effect, cap).values())[1], paths, count)
    print(
        f"\n4. SequentialTest check by check vs evaluate_paths (mSPRT + futility, first {count} "
        f"experiments of each section): {sum(agreed.values())}/{count * len(agreed)} agree"
    )
    figures["agreement"] = dict(agreed, experiments=count)
    figures["elapsed_s"] = time.perf_counter() - started
    print(f"\ntotal {figures['elapsed_s']:,.1f} s")
    return figures


if __name__ == "__main__":
    main()
