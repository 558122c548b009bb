"""HDDM_W: McDiarmid-bound test on an EWMA of the error rate (River's ``drift.binary.HDDMW``)."""

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


def _side(before: Any, after: Any, confidence: float) -> tuple[float, float]:
    """(EWMA change from ``before`` to ``after``, McDiarmid bound) as River's test computes."""
    if not (before.is_init and after.is_init):
        return 0.0, math.inf
    bound = math.sqrt((before.ibc + after.ibc) * math.log(1 / confidence) / 2)
    return after.ewma - before.ewma, bound


class HDDM_W(RiverDetector):  # noqa: N801  (the name used in the literature and the catalog)
    """Flags drift when a weighted error rate rose past a McDiarmid bound since its lowest point.

    Watches a 0/1 error stream (1 = the model was wrong); recent values weigh
    ``lambda_val``.

    ``reading()``: ``statistic`` is the rise of the EWMA error rate after the
    cut point where it was lowest, ``threshold`` the McDiarmid bound at
    ``drift_confidence`` (infinite before there is a cut point); with
    ``two_sided_test`` the side closer to (or further past) its bound is
    reported. ``window_size`` counts the values since the last alarm.

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> errors = np.concatenate([rng.random(1000) < 0.1, rng.random(1000) < 0.5])
    >>> det = HDDM_W()
    >>> det.update_many(errors[:1014]).tolist()
    [1013]
    >>> r = det.reading()
    >>> r.statistic > r.threshold, r.window_size
    (True, 1014)
    """

    name = "hddm_w"
    binary = True

    def __init__(
        self,
        drift_confidence: float = 0.001,
        warning_confidence: float = 0.005,
        lambda_val: float = 0.05,
        two_sided_test: bool = False,
    ) -> None:
        self.drift_confidence = drift_confidence
        self.warning_confidence = warning_confidence
        self.lambda_val = lambda_val
        self.two_sided_test = two_sided_test
        super().__init__()

    def _check_params(self) -> None:
        check_real(self, "drift_confidence", 0, 1, low_open=True, high_open=True)
        check_real(self, "warning_confidence", 0, 1, low_open=True, high_open=True)
        check_confidences(self)
        check_real(self, "lambda_val", 0, 1, low_open=True, high_open=False)
        check_choice(self, "two_sided_test", (False, True))

    def _make_river(self) -> Any:
        return river_drift().binary.HDDMW(
            drift_confidence=self.drift_confidence,
            warning_confidence=self.warning_confidence,
            lambda_val=self.lambda_val,
            two_sided_test=self.two_sided_test,
        )

    def _measure(self) -> tuple[float, float, float | None, int, dict[str, Any]]:
        # River keeps the EWMA samples private; these are the attributes its own
        # test reads (river/drift/binary/hddm_w.py).
        h = self._river
        statistic, threshold = _side(h._s1_incr, h._s2_incr, self.drift_confidence)
        details: dict[str, Any] = {
            "ewma_error_rate": h._total.ewma,
            "warning_detected": bool(h.warning_detected),
        }
        if self.two_sided_test:
            fall, fall_bound = _side(h._s2_decr, h._s1_decr, self.drift_confidence)
            if fall - fall_bound > statistic - threshold:
                statistic, threshold = fall, fall_bound
        return statistic, threshold, None, self._run_length, details
