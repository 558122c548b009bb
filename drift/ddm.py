"""DDM: the drift detection method on an error stream (River's ``drift.binary.DDM``)."""

from __future__ import annotations

import math
from typing import Any

from driftline.drift.exceptions import InvalidDetectorConfig
from driftline.drift.river_adapter import RiverDetector, check_int, check_real, river_drift


class DDM(RiverDetector):
    """Flags drift when the error rate climbs ``drift_threshold`` deviations above its best.

    Watches a 0/1 error stream (1 = the model was wrong). With ``p`` the error
    rate since the last alarm and ``s = sqrt(p (1 - p) / n)``:

    ``reading()``: ``statistic`` is ``p + s``; ``threshold`` is ``p_min +
    drift_threshold * s_min`` (infinite until more than ``warm_start`` values
    have been seen); ``window_size`` counts the values since the last alarm;
    ``details`` has the warning level and flag.

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> errors = np.concatenate([rng.random(1000) < 0.1, rng.random(1000) < 0.5])
    >>> det = DDM()
    >>> det.update_many(errors[:1035]).tolist()
    [1034]
    >>> r = det.reading()
    >>> r.statistic > r.threshold, r.window_size
    (True, 1035)
    """

    name = "ddm"
    binary = True

    def __init__(
        self, warm_start: int = 30, warning_threshold: float = 2.0, drift_threshold: float = 3.0
    ) -> None:
        self.warm_start = warm_start
        self.warning_threshold = warning_threshold
        self.drift_threshold = drift_threshold
        super().__init__()

    def _check_params(self) -> None:
        check_int(self, "warm_start", 0)
        inf = float("inf")
        check_real(self, "warning_threshold", 0, inf, low_open=True, high_open=True)
        check_real(self, "drift_threshold", 0, inf, low_open=True, high_open=True)
        if self.warning_threshold > self.drift_threshold:
            # River would accept it, and then never warn before an alarm.
            raise InvalidDetectorConfig(
                f"DDM: warning_threshold={self.warning_threshold!r} must be <= "
                f"drift_threshold={self.drift_threshold!r}"
            )

    def _make_river(self) -> Any:
        return river_drift().binary.DDM(
            warm_start=self.warm_start,
            warning_threshold=self.warning_threshold,
            drift_threshold=self.drift_threshold,
        )

    def _measure(self) -> tuple[float, float, float | None, int, dict[str, Any]]:
        # River keeps the running error rate and its minimum private; these are
        # the attributes its own test reads (river/drift/binary/ddm.py).
        ddm = self._river
        n = ddm._p.n
        p = ddm._p.get()
        s = math.sqrt(p * (1 - p) / n) if n else 0.0
        if ddm._p_min is None:
            warning = threshold = math.inf
        else:
            threshold = ddm._p_min + self.drift_threshold * ddm._s_min
            warning = ddm._p_min + self.warning_threshold * ddm._s_min
        details = {
            "error_rate": p,
            "warning_level": warning,
            "warning_detected": bool(ddm.warning_detected),
        }
        return p + s, threshold, None, self._run_length, details
