"""Page-Hinkley: CUSUM of deviations from the running mean (River's ``drift.PageHinkley``)."""

from __future__ import annotations

from typing import Any

from driftline.drift.river_adapter import (
    RiverDetector,
    check_choice,
    check_int,
    check_real,
    river_drift,
)


class PageHinkley(RiverDetector):
    """Flags drift when the cumulative deviation from the running mean exceeds ``threshold``.

    ``reading()``: ``statistic`` is the Page-Hinkley statistic (cumulative sum
    minus its running extreme) of the monitored direction(s), the larger one
    for ``mode="both"``; ``threshold`` is ``threshold`` (lambda); alarms need
    ``statistic > threshold`` and at least ``min_instances`` values since the
    last alarm. ``window_size`` counts the values since the last alarm.

    >>> det = PageHinkley(threshold=5.0)
    >>> det.update_many([0.0] * 50 + [1.0] * 6).tolist()
    [55]
    >>> r = det.reading()
    >>> round(r.statistic, 3), r.threshold, r.window_size
    (5.582, 5.0, 56)
    """

    name = "page_hinkley"

    def __init__(
        self,
        min_instances: int = 30,
        delta: float = 0.005,
        threshold: float = 50.0,
        alpha: float = 1 - 0.0001,
        mode: str = "both",
    ) -> None:
        self.min_instances = min_instances
        self.delta = delta
        self.threshold = threshold
        self.alpha = alpha
        self.mode = mode
        super().__init__()

    def _check_params(self) -> None:
        check_int(self, "min_instances", 1)
        check_real(self, "delta", 0, float("inf"), low_open=False, high_open=True)
        check_real(self, "threshold", 0, float("inf"), low_open=True, high_open=True)
        check_real(self, "alpha", 0, 1, low_open=True, high_open=False)
        check_choice(self, "mode", ("up", "down", "both"))

    def _make_river(self) -> Any:
        return river_drift().PageHinkley(
            min_instances=self.min_instances,
            delta=self.delta,
            threshold=self.threshold,
            alpha=self.alpha,
            mode=self.mode,
        )

    def _measure(self) -> tuple[float, float, float | None, int, dict[str, Any]]:
        # River keeps the cumulative sums private; these are the attributes its
        # own test reads (river/drift/page_hinkley.py).
        ph = self._river
        if self._run_length == 0:
            up = down = 0.0
        else:
            up = ph._sum_increase - ph._min_increase
            down = ph._max_decrease - ph._sum_decrease
        statistic = {"up": up, "down": down, "both": max(up, down)}[self.mode]
        details = {"test_increase": up, "test_decrease": down, "mean": ph._x_mean.get()}
        return statistic, self.threshold, None, self._run_length, details
