"""The A/B simulation harness still runs and reports sane figures (guards it against bit-rot)."""

from __future__ import annotations

import numpy as np
import pytest

from bench.bench_ab_simulation import binary_paths, main, normal_paths

SECTIONS = ("aa_binary", "ab_binary", "aa_continuous", "ab_continuous")
RATES = ("winner_rate", "right_winner_rate", "futility_rate", "max_samples_rate")


@pytest.fixture(scope="module")
def figures() -> dict:
    return main(["--experiments", "40", "--max-per-arm", "3000", "--seed", "7"])


def test_every_section_reports_rates_and_samples(figures: dict) -> None:
    assert set(SECTIONS) | {"settings", "agreement", "elapsed_s"} <= set(figures)
    for key in SECTIONS:
        rules = {name: t for name, t in figures[key].items() if name != "summary"}
        assert len(rules) == 4
        for t in rules.values():
            assert t["experiments"] == 40
            assert all(0.0 <= t[rate] <= 1.0 for rate in RATES)
            assert t["futility_rate"] + t["max_samples_rate"] + t["winner_rate"] <= 1.0 + 1e-12
            assert 100 <= t["median_n"] <= t["p90_n"] <= 3_000
            assert t["ci_coverage"] is None or 0.0 <= t["ci_coverage"] <= 1.0


def test_headline_figures_are_present_and_sane(figures: dict) -> None:
    for key in ("aa_binary", "aa_continuous"):
        summary = figures[key]["summary"]
        assert {"msprt", "deployable", "naive_peeking", "ratio"} <= set(summary)
        assert 0.0 <= summary["msprt"] <= summary["naive_peeking"] <= 1.0
    for key in ("ab_binary", "ab_continuous"):
        summary = figures[key]["summary"]
        assert 0.0 <= summary["power"] <= 1.0
        assert summary["fixed_sample_n"] > 0
    assert figures["ab_binary"]["summary"]["fixed_sample_n"] == 3_841
    assert figures["ab_continuous"]["summary"]["fixed_sample_n"] == 1_570
    agreement = figures["agreement"]
    assert all(agreement[key] == agreement["experiments"] == 20 for key in SECTIONS)


def test_the_path_generators_have_the_right_moments() -> None:
    rng = np.random.default_rng(1)
    n = 100 * np.arange(1, 51)
    rates = binary_paths(rng, 400, n, 0.1)
    assert rates.shape == (400, 50)
    assert rates[:, -1].mean() == pytest.approx(0.1, abs=0.002)
    assert rates[:, -1].std() == pytest.approx(np.sqrt(0.09 / 5_000), rel=0.15)
    means, variances = normal_paths(rng, 400, n, 0.3)
    assert means[:, -1].mean() == pytest.approx(0.3, abs=0.005)
    assert means[:, -1].std() == pytest.approx(np.sqrt(1 / 5_000), rel=0.15)
    assert variances[:, -1].mean() == pytest.approx(1.0, abs=0.01)
