"""Vectorised KS / PSI window banks against SciPy and hand-written references."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats

from driftline.drift import window_tests
from driftline.drift.exceptions import InvalidDetectorConfig, InvalidValue, SnapshotError
from driftline.drift.multiplicity import reject
from driftline.drift.profile import ReferenceProfile
from driftline.drift.window_tests import KSBank, PSIBank, WindowResult

BANKS = [KSBank, PSIBank]
K = 16
NAMES = [f"f{i}" for i in range(K)]


def _cuda_ready() -> bool:
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


@pytest.fixture(scope="module")
def normal_profile() -> ReferenceProfile:
    x = np.random.default_rng(11).normal(size=(100_000, K))
    return ReferenceProfile.from_matrix(x, NAMES)


@pytest.fixture(scope="module")
def fine_training() -> tuple[np.ndarray, ReferenceProfile]:
    rng = np.random.default_rng(12)
    x = np.column_stack(
        [rng.normal(size=200_000), rng.exponential(size=200_000), rng.uniform(size=200_000)]
    )
    return x, ReferenceProfile.from_matrix(x, ["normal", "exp", "uniform"], n_quantiles=1001)


def _same(a: list[WindowResult], b: list[WindowResult]) -> None:
    assert len(a) == len(b)
    for left, right in zip(a, b, strict=True):
        assert (left.test, left.window_index, left.first_row, left.rows) == (
            right.test,
            right.window_index,
            right.first_row,
            right.rows,
        )
        np.testing.assert_array_equal(left.statistic, right.statistic)
        np.testing.assert_array_equal(left.p_value, right.p_value)
        np.testing.assert_array_equal(left.effect_ok, right.effect_ok)


class TestKSStatistic:
    @pytest.mark.parametrize("shift", [0.0, 0.05, 0.2, 1.0])
    def test_agrees_with_scipy_two_sample_d(self, fine_training, shift):
        x, profile = fine_training
        rng = np.random.default_rng(int(shift * 100))
        window = np.column_stack(
            [rng.normal(size=1000), rng.exponential(size=1000), rng.uniform(size=1000)]
        )
        window = window + shift
        (result,) = KSBank(profile, window=1000).update(window)
        for j in range(3):
            expected = stats.ks_2samp(window[:, j], x[:, j]).statistic
            assert result.statistic[j] == pytest.approx(expected, abs=0.01)

    def test_window_outside_training_range_gives_d_one(self, fine_training):
        _, profile = fine_training
        (result,) = KSBank(profile, window=50).update(np.full((50, 3), 1e6))
        np.testing.assert_allclose(result.statistic, 1.0)
        assert np.all(result.p_value < 1e-20)

    def test_heavy_ties_give_finite_d_and_p(self):
        rng = np.random.default_rng(3)
        train = rng.choice([0.0, 1.0, 2.0, 7.0], p=[0.7, 0.2, 0.05, 0.05], size=(50_000, 2))
        profile = ReferenceProfile.from_matrix(train, ["a", "b"])
        window = rng.choice([0.0, 1.0, 2.0, 7.0], p=[0.5, 0.3, 0.1, 0.1], size=(400, 2))
        window[:, 1] = 1.0  # a constant window sitting exactly on a repeated knot
        (result,) = KSBank(profile, window=400).update(window)
        assert np.isfinite(result.statistic).all() and np.isfinite(result.p_value).all()
        assert np.all((result.p_value >= 0) & (result.p_value <= 1))
        for j in range(2):
            expected = stats.ks_2samp(window[:, j], train[:, j]).statistic
            assert result.statistic[j] == pytest.approx(expected, abs=0.015)


class TestDetection:
    @pytest.mark.parametrize("bank_type", BANKS)
    def test_half_sigma_shift_flags_only_that_feature(self, normal_profile, bank_type):
        window = np.random.default_rng(5).normal(size=(1000, K))
        window[:, 7] += 0.5
        (result,) = bank_type(normal_profile, window=1000).update(window)
        assert result.p_value[7] < 1e-12
        assert np.all(np.delete(result.p_value, 7) > 1e-3)
        assert reject(result.p_value, 0.05, "bh").nonzero()[0].tolist() == [7]

    @pytest.mark.parametrize("bank_type", BANKS)
    def test_null_false_positive_rate_is_calibrated(self, normal_profile, bank_type):
        rows = np.random.default_rng(6).normal(size=(125 * 1000, K))
        results = bank_type(normal_profile, window=1000).update(rows)
        p = np.stack([r.p_value for r in results])
        assert p.size >= 2000
        assert 0.02 <= np.mean(p < 0.05) <= 0.08


class TestPSI:
    @staticmethod
    def _reference_psi(window, profile, epsilon):
        out = []
        for j in range(profile.n_features):
            edges = profile.bin_edges[j]
            index = np.searchsorted(edges[1:-1], window[:, j], side="right")
            counts = np.bincount(index, minlength=len(edges) - 1)
            p_w = np.where(counts == 0, epsilon, counts / len(window))
            ref = profile.counts[j]
            p_r = np.where(ref == 0, epsilon, ref / profile.n)
            out.append(sum((a - b) * np.log(a / b) for a, b in zip(p_w, p_r, strict=True)))
        return np.array(out)

    def test_matches_per_feature_python_reference(self):
        rng = np.random.default_rng(8)
        train = np.column_stack([rng.normal(size=20_000), rng.integers(0, 3, size=20_000)])
        profile = ReferenceProfile.from_matrix(train, ["z", "ties"], n_bins=10)
        window = np.column_stack([rng.normal(0.3, 2.0, size=300), rng.integers(0, 5, size=300)])
        (result,) = PSIBank(profile, window=300, epsilon=1e-3).update(window)
        expected = self._reference_psi(window, profile, 1e-3)
        np.testing.assert_allclose(result.statistic, expected, rtol=1e-12)
        dof = (profile.counts > 0).sum(axis=1) - 1
        p = stats.chi2.sf(expected / (1 / 300 + 1 / profile.n), dof)
        np.testing.assert_allclose(result.p_value, p, rtol=1e-9)
        assert result.effect_ok.tolist() == (expected >= 0.1).tolist()
        assert result.threshold == 0.1


class TestBuffering:
    @pytest.mark.parametrize("bank_type", BANKS)
    def test_uneven_updates_equal_one_big_update(self, normal_profile, bank_type):
        rows = np.random.default_rng(9).normal(size=(5300, K))
        whole = bank_type(normal_profile, window=250).update(rows)
        bank = bank_type(normal_profile, window=250)
        pieces = []
        for cut in np.split(rows, [1, 250, 251, 900, 900, 3377, 3378]):
            pieces.extend(bank.update(cut))
        _same(whole, pieces)
        assert len(whole) == 21 and bank.n_seen == 5300
        assert [r.first_row for r in whole[:3]] == [0, 250, 500]
        assert whole[-1].window_index == 20

    def test_ten_windows_from_one_call_with_metadata(self, normal_profile):
        results = KSBank(normal_profile).update(np.zeros((10_000, K)) + 0.01)
        assert [r.window_index for r in results] == list(range(10))
        first = results[0]
        assert (first.rows, first.reference_n, first.feature_names) == (1000, 100_000, tuple(NAMES))
        assert first.statistic.dtype == np.float64 and first.p_value.shape == (K,)
        assert first.effect_ok.dtype == bool and first.effect_ok.all()  # min_effect 0

    @pytest.mark.parametrize("bank_type", BANKS)
    def test_snapshot_mid_window_continues_identically(self, normal_profile, bank_type):
        rows = np.random.default_rng(10).normal(size=(5000, K))
        bank = bank_type(normal_profile, window=400)
        bank.update(rows[:1234])
        fresh = bank_type(normal_profile, window=400)
        fresh.restore(bank.snapshot())
        assert fresh.n_seen == 1234
        _same(bank.update(rows[1234:]), fresh.update(rows[1234:]))

    def test_reset_forgets_partial_window(self, normal_profile):
        bank = KSBank(normal_profile, window=100)
        bank.update(np.ones((150, K)))
        bank.reset()
        assert bank.n_seen == 0
        (result,) = bank.update(np.zeros((100, K)))
        assert result.window_index == 0 and result.first_row == 0


class TestErrors:
    def test_params_are_stored_as_given_and_json_able(self, normal_profile):
        bank = PSIBank(normal_profile, window=500, min_effect=0.2, epsilon=1e-3)
        assert bank.params() == {"window": 500, "min_effect": 0.2, "device": "cpu", "epsilon": 1e-3}
        assert json.loads(json.dumps(bank.params())) == bank.params()
        assert KSBank(normal_profile).params()["min_effect"] == 0.0

    @pytest.mark.parametrize(
        ("kwargs", "named"),
        [
            ({"window": 19}, "window=19"),
            ({"window": 100.0}, "window=100.0"),
            ({"min_effect": -0.1}, "min_effect=-0.1"),
            ({"device": "tpu"}, "device='tpu'"),
            ({"epsilon": 0.1}, "epsilon=0.1"),
            ({"epsilon": 0}, "epsilon=0"),
        ],
    )
    def test_bad_params_name_the_parameter(self, normal_profile, kwargs, named):
        with pytest.raises(InvalidDetectorConfig, match=named.replace("(", r"\(")):
            PSIBank(normal_profile, **kwargs)

    def test_cuda_without_cupy_names_the_fix(self, normal_profile, monkeypatch):
        monkeypatch.setattr(window_tests, "_import_cupy", lambda: None)
        with pytest.raises(InvalidDetectorConfig, match=r"driftline\[gpu\]"):
            KSBank(normal_profile, device="cuda")

    @pytest.mark.parametrize("bank_type", BANKS)
    def test_wrong_width_and_non_finite_rows_are_refused(self, normal_profile, bank_type):
        bank = bank_type(normal_profile, window=100)
        with pytest.raises(InvalidValue, match=r"3 feature columns.*16"):
            bank.update(np.zeros((5, 3)))
        with pytest.raises(InvalidValue):
            bank.update(np.zeros(K))
        rows = np.zeros((10, K))
        rows[2, 4], rows[7, 0] = np.nan, np.inf
        with pytest.raises(InvalidValue, match="2 of 10 rows"):
            bank.update(rows)
        assert bank.n_seen == 0

    def test_restore_refuses_foreign_snapshots(self, normal_profile):
        ks = KSBank(normal_profile, window=100)
        ks.update(np.zeros((30, K)))
        with pytest.raises(SnapshotError):
            ks.restore(b"not a snapshot")
        with pytest.raises(SnapshotError, match="'psi'"):
            ks.restore(PSIBank(normal_profile, window=100).snapshot())
        with pytest.raises(SnapshotError, match="window 200"):
            ks.restore(KSBank(normal_profile, window=200).snapshot())
        other = ReferenceProfile.from_matrix(np.zeros((10, K)), [f"g{i}" for i in range(K)])
        with pytest.raises(SnapshotError, match="features"):
            ks.restore(KSBank(other, window=100).snapshot())
        assert ks.n_seen == 30


@pytest.mark.gpu
@pytest.mark.skipif(not _cuda_ready(), reason="needs CuPy and a CUDA device")
class TestCuda:
    @pytest.mark.parametrize("bank_type", BANKS)
    def test_cuda_matches_cpu(self, normal_profile, bank_type):
        import cupy

        rng = np.random.default_rng(13)
        rows = rng.normal(size=(7300, K))
        rows[:, 3] = np.round(rows[:, 3])  # ties
        rows[:, 5] += 0.4
        cpu = bank_type(normal_profile, window=700)
        gpu = bank_type(normal_profile, window=700, device="cuda")
        assert gpu.device == "cuda"
        expected = cpu.update(rows[:100]) + cpu.update(rows[100:])
        got = gpu.update(rows[:100]) + gpu.update(cupy.asarray(rows[100:]))  # host or device in
        assert len(got) == len(expected) == 10
        self._close(expected, got)
        moved = bank_type(normal_profile, window=700)
        moved.restore(gpu.snapshot())  # snapshots move between devices
        assert moved.n_seen == 7300
        self._close(moved.update(rows[:700]), gpu.update(rows[:700]))

    @staticmethod
    def _close(expected: list[WindowResult], got: list[WindowResult]) -> None:
        # Same algorithm, but CUDA's log and reduction order differ from NumPy's by ulps.
        assert len(got) == len(expected)
        for a, b in zip(expected, got, strict=True):
            assert isinstance(b.statistic, np.ndarray) and isinstance(b.p_value, np.ndarray)
            assert b.window_index == a.window_index
            np.testing.assert_allclose(b.statistic, a.statistic, rtol=0, atol=1e-12)
            np.testing.assert_allclose(b.p_value, a.p_value, rtol=1e-9, atol=1e-300)
