"""Which event times a worker accepts: not before the epoch, not too far past its clock.

An event time is the producer's claim of when a row was observed. Latency,
outcome windows and time-partitioned tables all subtract it from "now", so an
impossible one (int64 max, a negative number, seconds sent as microseconds)
would poison every figure it touches. Such rows go to the dead-letter topic
as ``invalid_event_time`` with the bound they broke.

Rows are checked in bulk: one comparison per batch, per-row text only for the
rows that fail.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

INVALID_EVENT_TIME = "invalid_event_time"


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True)
class EventTimeBounds:
    """Event times in ``[0, now + max_ahead_ms]`` epoch milliseconds are accepted."""

    max_ahead_ms: int = 86_400_000

    def latest(self, now_ms: int | None = None) -> int:
        return (_wall_ms() if now_ms is None else now_ms) + self.max_ahead_ms

    def bad_rows(self, event_times: np.ndarray, now_ms: int | None = None) -> np.ndarray:
        """Indices of the rows whose event time is out of bounds (int64 array in, sorted out)."""
        times = np.asarray(event_times, dtype=np.int64)
        return np.flatnonzero((times < 0) | (times > self.latest(now_ms)))

    def bad_records(self, records: Sequence[dict], now_ms: int | None = None) -> list[int]:
        """Indices of decoded records (dicts with ``event_time``) that are out of bounds."""
        latest = self.latest(now_ms)
        return [i for i, r in enumerate(records) if not 0 <= r["event_time"] <= latest]

    def detail(self, value: int, now_ms: int | None = None) -> str:
        latest = self.latest(now_ms)
        if value < 0:
            why = "is before 1970-01-01"
        else:
            why = f"is more than {self.max_ahead_ms / 1000:g} s past the worker's clock ({latest})"
        return (
            f"event_time {value} {why}: event times are epoch milliseconds UTC; raise "
            "DRIFTLINE_WORKER_EVENT_TIME_MAX_AHEAD_S if producers' clocks run ahead"
        )


DEFAULT_BOUNDS = EventTimeBounds()
