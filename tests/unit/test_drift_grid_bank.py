"""The grid bank against the exact KS and PSI banks, and its own contract."""

from __future__ import annotations

import numpy as np
import pytest

from driftline.drift.exceptions import InvalidDetectorConfig, InvalidValue, SnapshotError
from driftline.drift.grid_bank import GridBank
from driftline.drift.profile import ReferenceProfile
from driftline.drift.window_tests import KSBank, PSIBank

NAMES = [f"f{i:02d}" for i in range(16)]


@pytest.fixture(scope="module")
def reference() -> ReferenceProfile:
    return ReferenceProfile.from_matrix(np.random.default_rng(0).normal(size=(50_000, 16)), NAMES)


def _by_test(results, test):
    return [r for r in results if r.test == test]


def test_ks_is_conservative_and_close_and_psi_is_exact(reference):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(20_000, 16))
    x[:, 3] += 0.3
    x[:, 7] *= 1.5
    grid = GridBank(reference).update(x)
    exact_ks, exact_psi = KSBank(reference).update(x), PSIBank(reference).update(x)
    for got, want in zip(_by_test(grid, "ks"), exact_ks, strict=True):
        assert np.all(got.statistic <= want.statistic + 1e-12)
        assert np.max(want.statistic - got.statistic) < 0.011  # 1 / (101 - 1) quantile levels
    for got, want in zip(_by_test(grid, "psi"), exact_psi, strict=True):
        np.testing.assert_allclose(got.statistic, want.statistic, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(got.p_value, want.p_value, rtol=1e-9, atol=1e-300)


def test_values_outside_the_reference_range_and_heavy_ties(reference):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(1_000, 16)) * 10  # far outside the knots on both sides
    (ks, psi) = GridBank(reference).update(x)
    want = KSBank(reference).update(x)[0]
    assert np.all(np.abs(ks.statistic - want.statistic) < 0.011)
    discrete = rng.integers(0, 4, size=(20_000, 2)).astype(float)
    profile = ReferenceProfile.from_matrix(discrete, ["a", "b"])
    window = rng.integers(0, 4, size=(1_000, 2)).astype(float)
    window[:, 1] = np.where(window[:, 1] == 0, 1.0, window[:, 1])  # no zeros any more
    ks_d, psi_d = GridBank(profile).update(window)
    exact = KSBank(profile).update(window)[0]
    assert np.all(np.isfinite(ks_d.statistic)) and np.all((ks_d.p_value >= 0) & (ks_d.p_value <= 1))
    assert ks_d.statistic[1] == pytest.approx(exact.statistic[1], abs=0.011)
    assert ks_d.p_value[1] < 1e-10 < ks_d.p_value[0]


def test_null_calibration(reference):
    rng = np.random.default_rng(3)
    results = GridBank(reference).update(rng.normal(size=(200_000, 16)))
    for test in ("ks", "psi"):
        p = np.concatenate([r.p_value for r in _by_test(results, test)])
        assert 0.02 <= np.mean(p < 0.05) <= 0.08, (test, np.mean(p < 0.05))


def test_float32_rows_bin_exactly_as_their_float64_values(reference):
    x = np.random.default_rng(5).normal(size=(3_000, 16)).astype(np.float32)
    x[:50, 2] = reference.quantiles[2, 10]  # values on a knot: the edge cases
    narrow, wide = GridBank(reference), GridBank(reference)
    np.testing.assert_array_equal(narrow._bin(x), wide._bin(x.astype(np.float64)))
    for a, b in zip(narrow.update(x), wide.update(x.astype(np.float64)), strict=True):
        np.testing.assert_array_equal(a.statistic, b.statistic)


def test_uneven_updates_equal_one_update_and_snapshot_resumes(reference):
    x = np.random.default_rng(4).normal(size=(5_500, 16))
    whole = GridBank(reference).update(x)
    bank, pieces = GridBank(reference), []
    for start, stop in [(0, 1), (1, 999), (999, 2_345), (2_345, 2_600)]:
        pieces += bank.update(x[start:stop])
    resumed = GridBank(reference)
    resumed.restore(bank.snapshot())
    pieces += resumed.update(x[2_600:])
    assert [(r.test, r.window_index, r.first_row) for r in pieces] == [
        (r.test, r.window_index, r.first_row) for r in whole
    ]
    for a, b in zip(pieces, whole, strict=True):
        np.testing.assert_array_equal(a.statistic, b.statistic)
    assert resumed.n_seen == 5_500


def test_errors_name_the_problem(reference):
    with pytest.raises(InvalidDetectorConfig, match="window"):
        GridBank(reference, window=5)
    with pytest.raises(InvalidDetectorConfig, match="tests"):
        GridBank(reference, tests=("chi2",))
    odd = ReferenceProfile.from_matrix(
        np.random.default_rng(5).normal(size=(500, 1)), ["z"], n_bins=7
    )
    assert not GridBank.supports(odd)
    with pytest.raises(InvalidDetectorConfig, match="PSIBank"):
        GridBank(odd)
    GridBank(odd, tests=("ks",))  # KS alone needs no PSI bins
    bank = GridBank(reference)
    with pytest.raises(InvalidValue, match="16 features"):
        bank.update(np.zeros((3, 4)))
    with pytest.raises(InvalidValue, match="NaN"):
        bank.update(np.full((3, 16), np.nan))
    with pytest.raises(SnapshotError):
        bank.restore(b"junk")
    with pytest.raises(SnapshotError):
        bank.restore(GridBank(reference, window=500).snapshot())


def _gpu() -> bool:
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


@pytest.mark.gpu
@pytest.mark.skipif(not _gpu(), reason="needs CuPy and a CUDA device")
def test_cuda_equals_cpu(reference):
    x = np.random.default_rng(6).normal(size=(10_000, 16))
    x[:, 2] += 0.2
    for cpu, gpu in zip(
        GridBank(reference).update(x), GridBank(reference, device="cuda").update(x), strict=True
    ):
        np.testing.assert_allclose(gpu.statistic, cpu.statistic, rtol=0, atol=1e-12)
        np.testing.assert_allclose(gpu.p_value, cpu.p_value, rtol=1e-9, atol=1e-300)
