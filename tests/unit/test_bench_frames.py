"""The frames benchmark's steady-rate window: only stretches where every worker scores."""

from __future__ import annotations

import pytest

from bench.bench_frames import rate_while_all_rising, steady_window, window_usage


def test_the_rate_leaves_out_start_up_and_the_tail_after_a_worker_ran_dry() -> None:
    samples = [
        (0.0, [0, 0]),
        (1.0, [100, 0]),  # the second worker is still joining
        (2.0, [200, 0]),
        (3.0, [300, 50]),
        (4.0, [400, 150]),
        (5.0, [500, 250]),
        (6.0, [500, 350]),  # the first worker ran dry
        (7.0, [500, 450]),
    ]
    # From t=2 to t=5 both rose: (750 - 200) rows in 3 s.
    assert rate_while_all_rising(samples) == pytest.approx(550 / 3)


def test_too_few_samples_to_measure_is_an_error_not_a_number() -> None:
    with pytest.raises(RuntimeError, match="too few rows"):
        rate_while_all_rising([(0.0, [0, 0]), (1.0, [10, 0])])


def test_usage_is_read_over_the_same_stretch_as_the_rate() -> None:
    samples = [(0.0, [0]), (1.0, [0]), (2.0, [100]), (3.0, [300]), (4.0, [300])]
    # name -> (CPU seconds so far, resident MiB) at each sample
    probes = [{"broker": (10.0 + t, 100.0 + 10 * t), "worker 0": (2.0 * t, 50.0)}
              for t in range(5)]  # fmt: skip
    start, end = steady_window(samples)
    assert (start, end) == (1, 3)
    usage = window_usage(samples, probes, start, end)
    assert usage["seconds"] == 2.0 and usage["rows"] == 300
    assert usage["cpu_s"] == {"broker": 2.0, "worker 0": 4.0}
    assert usage["rss_mib"] == {"broker": 130.0, "worker 0": 50.0}  # the largest in it
