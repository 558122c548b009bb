"""Window tests over one stream (a model's inputs, or its scores), decided as one family.

A :class:`WindowStream` feeds rows to the tumbling-window banks (KS and PSI
from one pass of :class:`driftline.drift.grid_bank.GridBank`, or the exact banks) and
turns each completed window into at most one decision per column:

- the window's p-values of every test and every column form **one family**
  under the multiplicity control (Benjamini-Hochberg or Bonferroni over
  ``tests x columns`` hypotheses), so adding PSI to KS does not double the
  false alarms;
- a column is significant in the window when any of its tests is (PSI must
  also reach ``psi_min``);
- one k-of-n debouncer per column turns significant windows into alarm
  episodes: one shift of one feature is one :class:`Fired`, which carries the
  numbers of every test for that column. An episode ends after ``n`` windows
  in which no test comes near significance (adjusted p above ``rearm_alpha``),
  so a shift that hovers around ``alpha`` is not announced again and again.

A stream without a training profile collects its first ``baseline_rows`` rows
as the reference. Positions: callers may say, per row, where it stands in the
stream of records (the decider samples frames, so rows tested and records
seen differ); a window's position is that of its last row.
"""

from __future__ import annotations

import io
import json
from collections import defaultdict
from dataclasses import dataclass, replace

import numpy as np

from driftline.drift.config import DriftConfig
from driftline.drift.debounce import KOfN
from driftline.drift.exceptions import SnapshotError
from driftline.drift.grid_bank import GridBank
from driftline.drift.multiplicity import adjust
from driftline.drift.packing import pack, unpack
from driftline.drift.profile import ReferenceProfile
from driftline.drift.window_tests import KSBank, PSIBank, WindowResult

_BANKS = {"ks": KSBank, "psi": PSIBank}
_NO_TIME = 2**62  # "no rows yet": above any event time in ms


@dataclass(frozen=True)
class Fired:
    """A column that started an alarm episode in one window, with every test's numbers."""

    column: int
    results: tuple[WindowResult, ...]  # one per test, in the configured order, same window
    adjusted: np.ndarray  # [tests] family-adjusted p-values of this column
    significant: np.ndarray  # [tests] bool
    hypotheses: int  # size of the family: tests x columns
    method: str  # multiplicity control applied ("none" for a single hypothesis)
    position: int = 0  # where the window's last row stands in the stream of records

    @property
    def decided_by(self) -> int:
        """Index of the test behind the alarm: the significant one with the smallest
        adjusted p-value (the first configured test on a tie)."""
        candidates = np.where(self.significant, self.adjusted, np.inf)
        return int(np.argmin(candidates))


class _WindowTests:
    """The banks over a stream's columns and one debouncer per column."""

    def __init__(
        self, tests: tuple[str, ...], reference: ReferenceProfile, config: DriftConfig
    ) -> None:
        self.config, self.tests = config, tests
        if "psi" not in tests or GridBank.supports(reference):
            self.banks = [
                GridBank(
                    reference,
                    window=config.window,
                    tests=tests,
                    psi_min=config.psi_min,
                    device=config.device,
                )
            ]
        else:  # PSI bins off the quantile grid: the exact banks, one per test
            self.banks = [
                _BANKS[test](
                    reference,
                    window=config.window,
                    min_effect=config.psi_min if test == "psi" else 0.0,
                    device=config.device,
                )
                for test in tests
            ]
        self.debounce = KOfN(config.k, config.n, reference.n_features)
        # Event times (ms) of the rows of the window being filled, and per column the
        # newest rows of its flagged windows: only newer quiet windows re-arm it.
        self._open = [_NO_TIME, -_NO_TIME]
        self._flagged_until = np.full(reference.n_features, -_NO_TIME, dtype=np.int64)

    def update(self, rows: np.ndarray, times: np.ndarray | None = None) -> list[Fired]:
        """The alarms ``rows`` start; ``times`` (ms, per row) date them, for re-arming."""
        start = self.banks[0].n_seen  # bank rows before these
        by_window: dict[int, dict[str, WindowResult]] = defaultdict(dict)
        for bank in self.banks:
            for result in bank.update(rows):
                by_window[result.window_index][result.test] = result
        fired = []
        closed_at = None  # bank row where the last completed window ends
        for index in sorted(by_window):
            window = tuple(by_window[index][test] for test in self.tests)
            oldest, newest = self._window_times(window[0], start, times)
            closed_at = window[0].first_row + window[0].rows
            p_values = np.concatenate([result.p_value for result in window])
            method = self.config.method if p_values.size > 1 else "none"
            adjusted = adjust(p_values, method).reshape(len(window), -1)
            effect = np.stack([result.effect_ok for result in window])
            significant = (adjusted <= self.config.alpha) & effect
            flags = significant.any(axis=0)
            # Clean enough to re-arm: no test near significance (hysteresis), and rows no
            # older than those that were flagged: when partitions are read out of step,
            # a lagging one's rows from before a shift say nothing about whether it ended.
            quiet = ~((adjusted <= self.config.rearm_alpha) & effect).any(axis=0)
            quiet &= oldest >= self._flagged_until
            self._flagged_until[flags] = np.maximum(self._flagged_until[flags], newest)
            started = self.debounce.update(flags, quiet)
            for j in np.flatnonzero(started):
                fired.append(
                    Fired(
                        int(j),
                        window,
                        adjusted[:, j].copy(),
                        significant[:, j].copy(),
                        p_values.size,
                        method,
                    )
                )
        self._carry(times, start, closed_at)
        return fired

    def _window_times(
        self, window: WindowResult, start: int, times: np.ndarray | None
    ) -> tuple[int, int]:
        """(oldest, newest) event time of a completed window's rows."""
        if times is None:
            return -_NO_TIME, -_NO_TIME  # undated rows: time never holds a re-arm back
        lo = window.first_row - start  # negative: it began in an earlier update
        mine = times[max(lo, 0) : lo + window.rows]
        oldest, newest = int(mine.min()), int(mine.max())
        if lo < 0:
            oldest, newest = min(oldest, self._open[0]), max(newest, self._open[1])
        return oldest, newest

    def _carry(self, times: np.ndarray | None, start: int, closed_at: int | None) -> None:
        """Date the window left open: the rows after the last completed one."""
        if times is None or len(times) == 0:
            return
        if closed_at is None:  # no window completed: these rows join the open one
            tail, kept = times, self._open
        else:
            tail, kept = times[closed_at - start :], [_NO_TIME, -_NO_TIME]
        if len(tail):
            kept = [min(kept[0], int(tail.min())), max(kept[1], int(tail.max()))]
        self._open = kept

    def in_alarm(self) -> list[int]:
        return [int(j) for j in np.flatnonzero(self.debounce.in_episode)]

    def snapshot(self) -> bytes:
        parts = {f"bank{i}": bank.snapshot() for i, bank in enumerate(self.banks)}
        parts["kofn"] = self.debounce.snapshot()
        parts["flagged_until"] = self._flagged_until.astype("<i8").tobytes()
        return pack("window-tests", parts, {"open": self._open})

    def restore(self, blob: bytes) -> None:
        parts, meta = unpack("window-tests", blob)
        if "kofn" not in parts or "flagged_until" not in parts:
            raise SnapshotError("window-tests snapshot from an older format")
        for i, bank in enumerate(self.banks):
            bank.restore(parts[f"bank{i}"])
        self.debounce.restore(parts["kofn"])
        flagged = np.frombuffer(parts["flagged_until"], dtype="<i8")
        if flagged.shape != self._flagged_until.shape:
            raise SnapshotError("window-tests snapshot of another number of columns")
        self._flagged_until = flagged.astype(np.int64)
        self._open = [int(t) for t in meta["open"]]


class _Baseline:
    """Collects the first rows of a stream; becomes a ReferenceProfile when full."""

    def __init__(self, names: tuple[str, ...], rows: int) -> None:
        self.names, self.rows = names, rows
        # float32: features arrive as float32 anyway, and it halves the snapshots.
        self.buffer = np.empty((rows, len(names)), dtype=np.float32)
        self.filled = 0

    def take(self, values: np.ndarray) -> tuple[ReferenceProfile | None, np.ndarray]:
        """Absorb what fits; return (the profile once full, the rows left over)."""
        room = self.rows - self.filled
        head, rest = values[:room], values[room:]
        self.buffer[self.filled : self.filled + len(head)] = head
        self.filled += len(head)
        if self.filled < self.rows:
            return None, rest
        return ReferenceProfile.from_matrix(self.buffer, list(self.names)), rest

    def to_bytes(self) -> bytes:
        out = io.BytesIO()
        np.save(out, self.buffer[: self.filled], allow_pickle=False)
        return out.getvalue()

    def load(self, blob: bytes) -> None:
        values = np.load(io.BytesIO(blob), allow_pickle=False)
        self.filled = len(values)
        self.buffer[: self.filled] = values


class WindowStream:
    """Window tests over one stream, starting from a reference or a serving baseline."""

    def __init__(
        self,
        names: tuple[str, ...],
        reference: ReferenceProfile | None,
        tests: tuple[str, ...],
        config: DriftConfig,
    ) -> None:
        self.names, self.tests, self.config = names, tests, config
        self.reference_source = "training" if reference is not None else "serving_baseline"
        self.baseline = None if reference is not None else _Baseline(names, config.baseline_rows)
        self.reference = reference
        self.window_tests = self._build(reference) if reference is not None else None
        self.seen = 0  # rows tested (and rows of the baseline)
        self._profile_blob: bytes | None = None  # the built baseline as JSON, written once

    @property
    def label(self) -> str:
        """What alarms of this stream name as their detector: ``ks+psi``, ``ks``."""
        return "+".join(self.tests)

    def _build(self, reference: ReferenceProfile) -> _WindowTests:
        return _WindowTests(self.tests, reference, self.config)

    def update(
        self,
        values: np.ndarray,
        positions: np.ndarray | None = None,
        times: np.ndarray | None = None,
    ) -> list[Fired]:
        """Fold rows in, in order; the alarms they start, each with its window's position.

        ``positions[i]`` is where row ``i`` stands in the stream of records (1-based);
        by default rows are records and positions count them. ``times[i]`` is its
        event time (ms): a column re-arms only on quiet rows no older than the ones
        it alarmed on (see :class:`_WindowTests`).
        """
        start = self.seen  # rows before values[0]
        self.seen += len(values)
        if positions is None:
            positions = np.arange(start + 1, self.seen + 1, dtype=np.int64)
        if self.reference is None:
            profile, rest = self.baseline.take(values)
            if profile is None:
                return []
            used = len(values) - len(rest)
            start += used
            positions = positions[used:]
            times = None if times is None else times[used:]
            values = rest
            self.reference = profile
            self.window_tests = self._build(profile)
        # Banks count only rows after the baseline; window ends are 1-based stream rows.
        before = self.baseline.rows if self.baseline is not None else 0
        out = []
        for fired in self.window_tests.update(values, times):
            window = fired.results[0]
            end = before + window.first_row + window.rows
            out.append(replace(fired, position=int(positions[end - 1 - start])))
        return out

    def in_alarm(self) -> list[str]:
        if self.window_tests is None:
            return []
        return [f"{self.label}:{self.names[j]}" for j in self.window_tests.in_alarm()]

    def snapshot(self) -> bytes:
        parts = {"tests": self.window_tests.snapshot()} if self.window_tests is not None else {}
        if self.baseline is not None:
            # Once the baseline is a profile, the profile (a few kB) stands in for its rows.
            if self.reference is None:
                parts["baseline"] = self.baseline.to_bytes()
            else:
                if self._profile_blob is None:
                    self._profile_blob = json.dumps(self.reference.to_dict()).encode()
                parts["baseline"] = self._profile_blob
        meta = {
            "seen": self.seen,
            "built": self.reference is not None,
            "reference": self.reference_source,
            "names": list(self.names),
        }
        return pack("stream", parts, meta)

    def restore(self, blob: bytes) -> None:
        parts, meta = unpack("stream", blob)
        mine = (self.reference_source, list(self.names))
        theirs = (meta.get("reference"), meta.get("names"))
        if theirs != mine:
            raise SnapshotError(
                f"stream snapshot compares {theirs[1]} against {theirs[0]}; this stream "
                f"compares {mine[1]} against {mine[0]}"
            )
        self.seen = meta["seen"]
        if self.baseline is not None:
            if meta["built"]:
                self.baseline.filled = self.baseline.rows
                self._profile_blob = parts["baseline"]
                self.reference = ReferenceProfile.from_dict(json.loads(self._profile_blob))
                self.window_tests = self._build(self.reference)
            else:
                self.baseline.load(parts["baseline"])
        if self.window_tests is not None:
            self.window_tests.restore(parts["tests"])
