"""KSWIN: Kolmogorov-Smirnov test over a sliding window (River's ``drift.KSWIN``)."""

from __future__ import annotations

import functools
import random
import warnings
from typing import Any

from scipy import stats

from driftline.drift.exceptions import InvalidDetectorConfig
from driftline.drift.river_adapter import RiverDetector, check_int, check_real, river_drift

# River also requires the KS statistic to exceed this before it flags.
_MIN_STATISTIC = 0.1


def _ks(a: list[float], b: list[float]) -> Any:
    # Same call as River's, so the p-values agree bit for bit.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)
        return stats.ks_2samp(a, b, method="auto")


@functools.lru_cache(maxsize=64)
def critical_statistic(alpha: float, stat_size: int) -> float | None:
    """Smallest KS statistic KSWIN flags at, or None when none can reach ``alpha``.

    With two samples of ``stat_size`` the statistic is k / stat_size and the
    p-value depends on k alone; shifted ranges realise each k exactly.
    """
    base = list(range(stat_size))
    for k in range(1, stat_size + 1):
        if k / stat_size > _MIN_STATISTIC and _ks(base, [v + k for v in base]).pvalue <= alpha:
            return k / stat_size
    return None


class KSWIN(RiverDetector):
    """Flags drift when the newest ``stat_size`` values and a random sample of older ones differ.

    ``seed`` drives that sampling; it is a required int (default 0) so that a
    replay of the same stream raises the same alarms. River reseeds after every
    alarm and starts over from an empty window.

    ``reading()``: ``statistic`` is the KS statistic of the latest test and
    ``p_value`` its p-value (both 0/None until the window is full);
    ``threshold`` is the smallest statistic that flags (p-value <= ``alpha``
    and statistic > 0.1); ``window_size`` is ``window_size``.

    >>> import numpy as np
    >>> rng = np.random.default_rng(2)
    >>> stream = np.concatenate([rng.normal(0, 1, 1000), rng.normal(1, 1, 1000)])
    >>> det = KSWIN(alpha=0.0001)
    >>> det.update_many(stream[:1051]).tolist()
    [1050]
    >>> r = det.reading()
    >>> r.statistic >= r.threshold, r.p_value <= 0.0001
    (True, True)
    """

    name = "kswin"

    def __init__(
        self, alpha: float = 0.005, window_size: int = 100, stat_size: int = 30, seed: int = 0
    ) -> None:
        self.alpha = alpha
        self.window_size = window_size
        self.stat_size = stat_size
        self.seed = seed
        super().__init__()

    def _check_params(self) -> None:
        check_real(self, "alpha", 0, 1, low_open=True, high_open=True)
        check_int(self, "stat_size", 1)
        # River samples stat_size values from the window_size - stat_size oldest
        # ones and only fails at the first full window when there are too few.
        check_int(self, "window_size", 2 * self.stat_size)
        check_int(self, "seed", 0)
        if critical_statistic(self.alpha, self.stat_size) is None:
            raise InvalidDetectorConfig(
                f"KSWIN: alpha={self.alpha!r} can never be reached with "
                f"stat_size={self.stat_size!r}; raise alpha or stat_size"
            )

    def _make_river(self) -> Any:
        return river_drift().KSWIN(
            alpha=self.alpha, window_size=self.window_size, stat_size=self.stat_size, seed=self.seed
        )

    def _reset(self) -> None:
        super()._reset()
        # Window and sampler state before the latest test: River keeps only the
        # p-value, so the statistic is recomputed from these when asked for.
        self._test_input: tuple[tuple[float, ...], Any, float] | None = None

    def _observe(self, x: float) -> None:
        river = self._river
        testing = not river.drift_detected and len(river.window) >= self.window_size - 1
        # River's sampler is private (``_rng``); it is the only way to know the sample.
        self._test_input = (tuple(river.window), river._rng.getstate(), x) if testing else None
        river.update(x)

    def _statistic(self) -> float:
        if self._test_input is None:
            return 0.0
        window, rng_state, x = self._test_input
        values = [*window, x][-self.window_size :]
        rng = random.Random()
        rng.setstate(rng_state)
        picks = rng.sample(range(self.window_size - self.stat_size), self.stat_size)
        return float(_ks([values[i] for i in picks], values[-self.stat_size :]).statistic)

    def _measure(self) -> tuple[float, float, float | None, int, dict[str, Any]]:
        tested = self._test_input is not None
        p_value = float(self._river.p_value) if tested else None
        threshold = critical_statistic(self.alpha, self.stat_size)
        details = {"alpha": self.alpha, "filled": len(self._river.window)}
        return self._statistic(), threshold, p_value, self.window_size, details
