"""Benjamini-Hochberg and Bonferroni corrections of per-feature p-values."""

from __future__ import annotations

import numpy as np
import pytest

from driftline.drift.exceptions import InvalidDetectorConfig, InvalidValue
from driftline.drift.multiplicity import METHODS, adjust, reject


class TestBenjaminiHochberg:
    def test_hand_worked_adjusted_values(self):
        # sorted 0.01, 0.03, 0.04, 0.2 -> p * 4 / rank = 0.04, 0.06, 0.0533, 0.2,
        # then a running minimum from the largest rank down.
        adjusted = adjust([0.01, 0.04, 0.03, 0.2], "bh")
        np.testing.assert_allclose(adjusted, [0.04, 0.16 / 3, 0.16 / 3, 0.2])

    def test_rejects_exactly_the_step_up_set(self):
        assert reject([0.01, 0.04, 0.03, 0.2], 0.05, "bh").tolist() == [True, False, False, False]
        # every p_(r) <= r * alpha / k: all rejected, though 0.04 > 0.05 / 4
        assert reject([0.04, 0.01, 0.03, 0.02], 0.05, "bh").all()

    def test_step_up_rescues_a_p_value_above_its_own_threshold(self):
        # p_(2) = 0.03 > 2 * 0.05 / 4 = 0.025, but p_(3) = 0.035 <= 0.0375: ranks 1-3 rejected.
        p = [0.2, 0.035, 0.01, 0.03]
        assert reject(p, 0.05, "bh").tolist() == [False, True, True, True]

    def test_classic_ten_hypotheses(self):
        p = [0.001, 0.008, 0.039, 0.041, 0.042, 0.06, 0.074, 0.205, 0.212, 0.216]
        assert reject(p, 0.05, "bh").nonzero()[0].tolist() == [0, 1]
        # alpha 0.2: p_(7) = 0.074 <= 7 * 0.02 but p_(8..10) exceed 0.16, 0.18, 0.2
        assert reject(p, 0.2, "bh").nonzero()[0].tolist() == [0, 1, 2, 3, 4, 5, 6]
        assert reject(p, 0.25, "bh").all()  # p_(10) = 0.216 <= 0.25 rejects everything


class TestOthers:
    def test_bonferroni_multiplies_by_k_and_caps_at_one(self):
        np.testing.assert_allclose(adjust([0.01, 0.3, 0.001], "bonferroni"), [0.03, 0.9, 0.003])
        assert adjust([0.5, 0.6], "bonferroni").tolist() == [1.0, 1.0]
        assert reject([0.01, 0.04, 0.03, 0.2], 0.05, "bonferroni").tolist() == [
            True,
            False,
            False,
            False,
        ]

    def test_none_tests_each_on_its_own(self):
        assert reject([0.01, 0.04, 0.06], 0.05, "none").tolist() == [True, True, False]

    @pytest.mark.parametrize("method", METHODS)
    def test_empty_and_bounds(self, method):
        assert adjust([], method).shape == (0,)
        adjusted = adjust(np.random.default_rng(0).uniform(size=50), method)
        assert np.all((adjusted >= 0) & (adjusted <= 1))


class TestErrors:
    def test_unknown_method_lists_choices(self):
        with pytest.raises(InvalidDetectorConfig, match="bh, bonferroni, none"):
            adjust([0.1], "holm")

    @pytest.mark.parametrize("alpha", [0, 1, -0.1, 1.5, float("nan"), True, "0.05"])
    def test_alpha_outside_open_unit_interval(self, alpha):
        with pytest.raises(InvalidDetectorConfig, match="alpha"):
            reject([0.1], alpha, "bh")

    def test_nan_and_out_of_range_p_values(self):
        with pytest.raises(InvalidValue, match="1 of 3 p-values are NaN"):
            adjust([0.1, float("nan"), 0.2], "bh")
        with pytest.raises(InvalidValue, match=r"\[0, 1\]"):
            adjust([0.1, 1.2], "bonferroni")
        with pytest.raises(InvalidValue, match="1-D"):
            adjust([[0.1, 0.2]], "none")


def test_bh_equals_scipy_on_random_p_values():
    from scipy import stats

    from driftline.drift.multiplicity import bh_adjust

    rng = np.random.default_rng(11)
    for k in (1, 2, 16, 200):
        for _ in range(50):
            p = rng.random(k) ** rng.uniform(0.2, 5)
            p[rng.random(k) < 0.2] = p[0]  # ties
            np.testing.assert_allclose(
                bh_adjust(p), stats.false_discovery_control(p, method="bh"), rtol=1e-12
            )
