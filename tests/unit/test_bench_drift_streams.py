"""The drift harness's stream generators: seeded, and drifting where and by how much they say."""

from __future__ import annotations

import numpy as np
import pytest

from bench.drift_streams import feature_rows, sea_errors


def test_feature_rows_are_seeded() -> None:
    a = feature_rows(2000, 4, seed=7, drift_at=1000, feature=2)
    assert np.array_equal(a, feature_rows(2000, 4, seed=7, drift_at=1000, feature=2))
    assert not np.array_equal(a, feature_rows(2000, 4, seed=8, drift_at=1000, feature=2))


def test_sudden_shift_moves_only_that_feature_from_the_drift_point() -> None:
    clean = feature_rows(40_000, 4, seed=3)
    rows = feature_rows(40_000, 4, seed=3, drift_at=10_000, feature=2, shift=0.5)
    moved = rows - clean
    assert np.all(moved[:10_000] == 0)
    assert moved[10_000:, 2] == pytest.approx(np.full(30_000, 0.5))
    assert np.all(moved[:, [0, 1, 3]] == 0)
    after, before = rows[10_000:, 2].mean(), rows[:10_000, 2].mean()
    assert after - before == pytest.approx(0.5, abs=0.05)


def test_gradual_shift_ramps_linearly_then_holds() -> None:
    clean = feature_rows(30_000, 2, seed=4)
    rows = feature_rows(30_000, 2, seed=4, drift_at=10_000, feature=0, shift=0.5, ramp=5_000)
    moved = (rows - clean)[:, 0]
    assert np.all(moved[:10_000] == 0)
    assert moved[10_000] == pytest.approx(0.5 / 5_000)
    assert moved[12_499] == pytest.approx(0.25)
    assert np.all(moved[14_999:] == pytest.approx(0.5))


def test_sea_errors_are_seeded_and_rise_after_the_drift() -> None:
    errors = sea_errors(20_000, seed=5, position=8_000, width=100)
    assert np.array_equal(errors, sea_errors(20_000, seed=5, position=8_000, width=100))
    assert not np.array_equal(errors, sea_errors(20_000, seed=6, position=8_000, width=100))
    before, after = errors[:7_900].mean(), errors[8_100:].mean()
    assert before == pytest.approx(0.10, abs=0.015)  # label noise 0.1, the rule is right
    assert after - before > 0.04  # variant 2's threshold 7 vs the frozen rule's 8


def test_stationary_sea_errors_do_not_drift() -> None:
    errors = sea_errors(20_000, seed=5)
    assert abs(errors[:10_000].mean() - errors[10_000:].mean()) < 0.02


def test_sea_refuses_a_width_that_overflows_river() -> None:
    with pytest.raises(ValueError, match="width >="):
        sea_errors(100, seed=1, position=10_000, width=1)
