"""HDDM_A: Hoeffding-bound test on the error rate's mean (River's ``drift.binary.HDDMA``)."""

from __future__ import annotations

import math
from typing import Any

from driftline.drift.river_adapter import (
    RiverDetector,
    check_choice,
    check_confidences,
    check_real,
    river_drift,
)


def _side(cut: Any, total: Any, confidence: float, sign: int) -> tuple[float, float]:
    """(mean change since the cut point, Hoeffding bound) as River's _mean_incr computes."""
    if cut.n == total.n or cut.n == 0:
        return 0.0, math.inf
    m = (total.n - cut.n) / cut.n * (1.0 / total.n)
    bound = math.sqrt(m / 2 * math.log(2.0 / confidence))
    return sign * (total.get() - cut.get()), bound


class HDDM_A(RiverDetector):  # noqa: N801  (the name used in the literature and the catalog)
    """Flags drift when the error rate rose past a Hoeffding bound since its lowest point.

    Watches a 0/1 error stream (1 = the model was wrong).

    ``reading()``: ``statistic`` is the rise of the mean error rate since the
    cut point where it was lowest, ``threshold`` the Hoeffding bound at
    ``drift_confidence`` (infinite before there is a cut point); with
    ``two_sided_test`` the side closer to (or further past) its bound is
    reported. ``window_size`` counts the values since the last alarm.

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> errors = np.concatenate([rng.random(1000) < 0.1, rng.random(1000) < 0.5])
    >>> det = HDDM_A()
    >>> det.update_many(errors[:1014]).tolist()
    [1013]
    >>> r = det.reading()
    >>> r.statistic > r.threshold, r.window_size
    (True, 1014)
    """

    name = "hddm_a"
    binary = True

    def __init__(
        self,
        drift_confidence: float = 0.001,
        warning_confidence: float = 0.005,
        two_sided_test: bool = False,
    ) -> None:
        self.drift_confidence = drift_confidence
        self.warning_confidence = warning_confidence
        self.two_sided_test = two_sided_test
        super().__init__()

    def _check_params(self) -> None:
        check_real(self, "drift_confidence", 0, 1, low_open=True, high_open=True)
        check_real(self, "warning_confidence", 0, 1, low_open=True, high_open=True)
        check_confidences(self)
        check_choice(self, "two_sided_test", (False, True))

    def _make_river(self) -> Any:
        return river_drift().binary.HDDMA(
            drift_confidence=self.drift_confidence,
            warning_confidence=self.warning_confidence,
            two_sided_test=self.two_sided_test,
        )

    def _measure(self) -> tuple[float, float, float | None, int, dict[str, Any]]:
        # River keeps the running means private; these are the attributes its
        # own test reads (river/drift/binary/hddm_a.py).
        h = self._river
        rise, rise_bound = _side(h._x_min, h._z, self.drift_confidence, 1)
        statistic, threshold = rise, rise_bound
        details: dict[str, Any] = {
            "error_rate": h._z.get(),
            "min_error_rate": h._x_min.get(),
            "warning_detected": bool(h.warning_detected),
        }
        if self.two_sided_test:
            fall, fall_bound = _side(h._x_max, h._z, self.drift_confidence, -1)
            details["max_error_rate"] = h._x_max.get()
            if fall - fall_bound > rise - rise_bound:
                statistic, threshold = fall, fall_bound
        return statistic, threshold, None, self._run_length, details
