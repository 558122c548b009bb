"""EDDM: early drift detection from the distance between errors (River's ``drift.binary.EDDM``)."""

from __future__ import annotations

from typing import Any

from driftline.drift.exceptions import InvalidDetectorConfig
from driftline.drift.river_adapter import RiverDetector, check_int, check_real, river_drift


class EDDM(RiverDetector):
    """Flags drift when errors come markedly closer together than they did at best.

    Watches a 0/1 error stream (1 = the model was wrong). With ``d`` the mean
    distance between errors and ``sd`` its standard deviation, the level is
    ``(d + 2 sd) / max(d + 2 sd)``; it only changes on errors.

    ``reading()``: ``statistic`` is that level (1.0 until it is defined) and
    ``threshold`` is ``beta``; note EDDM flags when the statistic falls
    *below* the threshold. ``window_size`` counts the values since the last
    alarm. Nothing is tested before ``warm_start`` values and errors.

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> errors = np.concatenate([rng.random(1000) < 0.1, rng.random(1000) < 0.5])
    >>> det = EDDM(alpha=0.9, beta=0.8)
    >>> det.update_many(errors[:1085]).tolist()
    [1084]
    >>> r = det.reading()
    >>> r.statistic < r.threshold, r.window_size
    (True, 1085)
    """

    name = "eddm"
    binary = True

    def __init__(self, warm_start: int = 30, alpha: float = 0.95, beta: float = 0.9) -> None:
        self.warm_start = warm_start
        self.alpha = alpha
        self.beta = beta
        super().__init__()

    def _check_params(self) -> None:
        check_int(self, "warm_start", 0)
        check_real(self, "alpha", 0, 1, low_open=True, high_open=True)
        check_real(self, "beta", 0, 1, low_open=True, high_open=True)
        if self.beta > self.alpha:
            raise InvalidDetectorConfig(
                f"EDDM: beta={self.beta!r} must be <= alpha={self.alpha!r} "
                "(the drift level sits below the warning level)"
            )

    def _make_river(self) -> Any:
        return river_drift().binary.EDDM(
            warm_start=self.warm_start, alpha=self.alpha, beta=self.beta
        )

    def _measure(self) -> tuple[float, float, float | None, int, dict[str, Any]]:
        # River keeps the distance statistics private; these are the attributes
        # its own test reads (river/drift/binary/eddm.py).
        eddm = self._river
        distances = eddm._error_distances
        mean = distances.mean.get()
        spread = distances.get() ** 0.5
        best = eddm._p2s_prime_max
        level = (mean + 2 * spread) / best if best > 0 and eddm._n_errors > 1 else 1.0
        details = {
            "mean_distance": mean,
            "std_distance": spread,
            "best_level": max(best, 0.0),
            "n_errors": eddm._n_errors,
            "warning_detected": bool(eddm.warning_detected),
        }
        return level, self.beta, None, self._run_length, details
