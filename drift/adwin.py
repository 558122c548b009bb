"""ADWIN: adaptive windowing over a real-valued stream (River's ``drift.ADWIN``)."""

from __future__ import annotations

from typing import Any

from driftline.drift.river_adapter import RiverDetector, check_int, check_real, river_drift


class ADWIN(RiverDetector):
    """Flags drift when two sub-windows of the adaptive window have different means.

    River checks for a cut only every ``clock`` values, so alarms land on
    multiples of ``clock`` (counted since the last alarm). After an alarm River
    starts over from an empty window, not from the kept sub-window.

    ``reading()`` right after an alarm: ``statistic`` is ``|mean(dropped) -
    mean(kept)|``, the shift between the part ADWIN cut off and the part it
    kept; ``window_size`` the window the cut was made in. River does not expose
    its cut bound, so ``threshold`` is the significance ``delta``. Between
    alarms ``statistic`` is 0 and ``window_size`` the current width.

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> stream = np.concatenate([rng.normal(0, 1, 1000), rng.normal(1, 1, 1000)])
    >>> det = ADWIN()
    >>> det.update_many(stream[:1056]).tolist()
    [1055]
    >>> r = det.reading()
    >>> round(r.statistic, 3), r.window_size, r.details["width"]
    (0.743, 1056, 80)
    """

    name = "adwin"

    def __init__(
        self,
        delta: float = 0.002,
        clock: int = 32,
        max_buckets: int = 5,
        min_window_length: int = 5,
        grace_period: int = 10,
    ) -> None:
        self.delta = delta
        self.clock = clock
        self.max_buckets = max_buckets
        self.min_window_length = min_window_length
        self.grace_period = grace_period
        super().__init__()

    def _check_params(self) -> None:
        check_real(self, "delta", 0, 1, low_open=True, high_open=True)
        check_int(self, "clock", 1)
        check_int(self, "max_buckets", 1)
        check_int(self, "min_window_length", 1)
        check_int(self, "grace_period", 0)

    def _make_river(self) -> Any:
        return river_drift().ADWIN(
            delta=self.delta,
            clock=self.clock,
            max_buckets=self.max_buckets,
            min_window_length=self.min_window_length,
            grace_period=self.grace_period,
        )

    def _reset(self) -> None:
        super()._reset()
        # The window the latest value was tested in, so an alarm's cut can be
        # measured: River only exposes the window left after the cut.
        self._tested_width = 0
        self._tested_total = 0.0

    def _observe(self, x: float) -> None:
        river = self._river
        if river.drift_detected:  # River empties the window on this update
            self._tested_width, self._tested_total = 1, x
        else:
            self._tested_width, self._tested_total = int(river.width) + 1, river.total + x
        river.update(x)

    def _measure(self) -> tuple[float, float, float | None, int, dict[str, Any]]:
        river = self._river
        width = int(river.width)
        details: dict[str, Any] = {
            "width": width,
            "estimation": river.estimation,
            "variance": river.variance / width if width else 0.0,
        }
        if not river.drift_detected:
            return 0.0, self.delta, None, width, details
        dropped = self._tested_width - width
        mean_dropped = (self._tested_total - river.total) / dropped
        shift = abs(mean_dropped - river.estimation)
        details.update(dropped=dropped, mean_dropped=mean_dropped)
        return shift, self.delta, None, self._tested_width, details
