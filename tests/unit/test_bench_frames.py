"""The frames benchmark's steady-rate window: only stretches where every worker scores."""

from __future__ import annotations

import pytest

from bench.bench_frames import rate_while_all_rising


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
