"""The soak's verdicts: RSS growth and lag trend over the last window, from fitted lines."""

from __future__ import annotations

import pytest

from bench.soak import Sample, fitted_ends, growth_pct, layout, rise, verdict
from driftline.core.settings import WORKER_ROLES


def test_a_straight_line_is_read_end_to_end() -> None:
    assert fitted_ends([(0, 100.0), (10, 110.0), (20, 120.0)]) == pytest.approx((100.0, 120.0))


def test_growth_reads_only_the_last_window() -> None:
    # Start-up grows 400 -> 800 MiB in the first 5 minutes, then it is flat at 800.
    points = [(t, 400 + 400 * t / 300 if t < 300 else 800.0) for t in range(0, 601, 10)]
    assert growth_pct(points, window_s=300) == pytest.approx(0.0, abs=1e-9)
    assert growth_pct(points, window_s=600) > 50


def test_one_spike_does_not_decide_the_growth() -> None:
    # Flat at 500 MiB with one sample at 900 (a GC pause, a merge) in the middle.
    points = [(t, 900.0 if t == 150 else 500.0) for t in range(0, 301, 10)]
    assert abs(growth_pct(points)) < 1
    last_vs_first = (points[-1][1] - points[0][1]) / points[0][1] * 100
    assert last_vs_first == 0  # while a spike at the end would move first/last a lot


def test_a_lag_that_saws_up_and_down_does_not_rise() -> None:
    lag = [(t, 600_000.0 if (t // 10) % 2 else 0.0) for t in range(0, 301, 10)]
    assert abs(rise(lag)) < 100_000


def test_a_growing_lag_rises_by_the_deficit() -> None:
    # The worker scores 1% less than comes in at 200k rows/s: 2,000 rows more each second.
    lag = [(t, 2_000.0 * t) for t in range(0, 601, 10)]
    assert rise(lag, window_s=300) == pytest.approx(600_000)


def test_too_few_points_is_an_error() -> None:
    with pytest.raises(ValueError, match="at least 2"):
        fitted_ends([(0, 1.0)])


def _sample(t: float, rss: float, lag: int, *, store_rss: float = 600.0) -> Sample:
    workers = {"inference": rss, "store": store_rss}
    cpu = {"inference": 1.0, "store": 0.5}
    return Sample(t, workers, 400.0, cpu, 0.3, 200_000.0, 200_000.0, lag, lag // 2, lag // 4, 0)


def _passed(checks) -> list[bool]:
    return [passed for *_, passed in checks]


def test_the_verdict_passes_a_steady_run_and_fails_a_leaking_one() -> None:
    steady = [_sample(t, 700.0, 400_000 if t % 20 else 0) for t in range(10, 601, 10)]
    assert _passed(verdict(steady, rate=200_000)) == [True] * 7
    # RSS +23% over the last 5 minutes; 2% of 200k rows/s left behind: 1.2M rows more lag
    # on features, and half that on predictions (still over 5 s of input).
    leaking = [_sample(t, 500.0 + t / 2, 8_000 * t) for t in range(10, 601, 10)]
    checks = verdict(leaking, rate=200_000)
    assert _passed(checks) == [True, False, True, True, False, False, True]
    assert checks[1][0].startswith("inference RSS growth")


def test_each_worker_is_judged_on_its_own() -> None:
    # The scoring worker is fine; the store's worker is over the limit.
    samples = [_sample(t, 700.0, 0, store_rss=1_300.0) for t in range(10, 601, 10)]
    checks = verdict(samples, rate=200_000)
    assert [c[0].split()[0] for c in checks[:4]] == ["inference"] * 2 + ["store"] * 2
    assert _passed(checks) == [True, True, False, True, True, True, True]


def test_a_short_run_judges_its_second_half() -> None:
    samples = [_sample(t, 1_100.0 if t <= 60 else 700.0, 0) for t in range(10, 121, 10)]
    checks = verdict(samples, rate=200_000)
    assert "last 1.0 min" in checks[1][0]
    assert checks[1][2]  # flat over the second minute
    assert not checks[0][2]  # but the first minute reached 1,100 MiB


def test_the_layouts_cover_every_role_once() -> None:
    for split in (False, True):
        roles = [r for rs in layout(split).values() for r in rs.split(",")]
        assert sorted(roles) == sorted(WORKER_ROLES)
