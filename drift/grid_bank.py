"""KS and PSI over all features from one pass: window counts on the reference's quantile grid.

The streaming monitors use this bank; :class:`driftline.drift.window_tests.KSBank` and
``PSIBank`` are the exact reference implementations it is tested against.

Each row is binned once per feature into the ``q + 1`` cells the reference
quantiles cut the line into (bin ``i`` holds ``Q[i-1] <= x < Q[i]``), and a
window keeps only those counts, never the rows. From them:

- **KS**: ``D = max_i |#(x < Q[i]) / m - F_ref(Q[i]-)|``, the sup of the
  window-vs-training CDF gap over the reference knots (left limits; the
  training CDF is piecewise linear through the quantiles). Between knots the
  gap can be larger by at most the level spacing (0.01 with 101 quantiles),
  so D is conservative by at most that much;
- **PSI**: the fine cells summed into the profile's equal-mass bins (whose
  edges are reference quantiles too), exactly as ``PSIBank`` bins.

Binning avoids a search per value: each feature's range between its first and
last knot is cut into ``cells`` equal cells, and a lookup table gives the bin
of every cell no knot falls in; values in the few cells that hold a knot are
placed with a search. Everything is vectorised over rows and features at once,
on NumPy or CuPy.

>>> import numpy as np
>>> from driftline.drift.profile import ReferenceProfile
>>> x = np.random.default_rng(1).normal(size=(20000, 2))
>>> bank = GridBank(ReferenceProfile.from_matrix(x, ["a", "b"]), window=1000)
>>> shifted = np.random.default_rng(2).normal(size=(1000, 2)) + [0.0, 1.0]
>>> ks, psi = bank.update(shifted)
>>> [bool(p < 1e-6) for p in ks.p_value], [bool(p < 1e-6) for p in psi.p_value]
([False, True], [False, True])
"""

from __future__ import annotations

from typing import Any

import numpy as np

from driftline.drift.exceptions import InvalidDetectorConfig, SnapshotError
from driftline.drift.packing import pack, unpack
from driftline.drift.profile import ReferenceProfile
from driftline.drift.window_tests import (
    DEVICES,
    MIN_WINDOW,
    WindowResult,
    _array_module,
    _host,
    _real,
    _sorted_rows,
    check_rows,
    ks_p_values,
    psi_p_values,
)

FORMAT = 2
TESTS = ("ks", "psi")
CELLS = 2048


class GridBank:
    name = "grid"

    def __init__(
        self,
        reference: ReferenceProfile,
        *,
        window: int = 1000,
        tests: tuple[str, ...] = TESTS,
        psi_min: float = 0.1,
        epsilon: float = 1e-4,
        device: str = "cpu",
    ) -> None:
        if not isinstance(window, int) or isinstance(window, bool) or window < MIN_WINDOW:
            raise InvalidDetectorConfig(f"window={window!r}: need an integer >= {MIN_WINDOW}")
        if not tests or any(t not in TESTS for t in tests):
            raise InvalidDetectorConfig(f"tests={tests!r}: choose one or both of {TESTS}")
        if not _real(psi_min) or psi_min < 0:
            raise InvalidDetectorConfig(f"psi_min={psi_min!r}: need a finite number >= 0")
        if not _real(epsilon) or not 0 < epsilon < 0.1:
            raise InvalidDetectorConfig(f"epsilon={epsilon!r}: need 0 < epsilon < 0.1")
        if device not in DEVICES:
            raise InvalidDetectorConfig(f"device={device!r} is not one of {', '.join(DEVICES)}")
        self.reference, self.window, self.tests = reference, window, tuple(tests)
        self.psi_min, self.epsilon, self.device = psi_min, epsilon, device
        xp = self._xp = _array_module(device)
        knots = _sorted_rows(reference.quantiles, "quantiles")
        k, q = knots.shape
        self._q = q
        self._knots = knots
        # F_ref(Q[i]-): on a run of equal knots the left limit is the run's first level.
        first_of_run = np.maximum.accumulate(
            np.where(np.diff(knots, axis=1, prepend=-np.inf) > 0, np.arange(q), 0), axis=1
        )
        self._left_level = xp.asarray(reference.levels[first_of_run])
        self._build_lookup(knots)
        self._build_psi(knots)
        if "psi" in self.tests and not self._psi_aligned:
            raise InvalidDetectorConfig(
                f"the profile's {reference.counts.shape[1]} PSI bins do not fall on its "
                f"{q} quantile levels; use driftline.drift.window_tests.PSIBank, or profile with "
                "n_quantiles - 1 a multiple of n_bins (the defaults, 101 and 10, are)"
            )
        self.reset()

    @staticmethod
    def supports(reference: ReferenceProfile) -> bool:
        """Whether PSI can be read off the quantile grid of this profile."""
        q, b = reference.quantiles.shape[1], reference.counts.shape[1]
        return b >= 2 and (q - 1) % b == 0

    # -- set-up --------------------------------------------------------------------

    def _build_lookup(self, knots: np.ndarray) -> None:
        """Per cell: the bin at its lower end, and the one knot inside it (if exactly one)."""
        k, q = knots.shape
        low, high = knots[:, 0], knots[:, -1]
        width = np.where(high > low, (high - low) / CELLS, 1.0)
        # Cell c (1..CELLS) spans [low + (c-1) w, low + c w); 0 is below low, CELLS+1 above.
        edges = low[:, None] + width[:, None] * np.arange(CELLS + 1)
        start = np.array([np.searchsorted(knots[j], edges[j, :-1], "left") for j in range(k)])
        end = np.array([np.searchsorted(knots[j], edges[j, 1:], "left") for j in range(k)])
        inside = end - start  # knots in [cell low, cell high)
        base = np.empty((k, CELLS + 2), dtype=np.int64)
        base[:, 0], base[:, -1] = 0, q
        base[:, 1:-1] = np.where(inside <= 1, start, -1)  # -1: several knots, search
        knot = np.full((k, CELLS + 2), np.inf)
        one = inside == 1
        knot[:, 1:-1][one] = knots[np.nonzero(one)[0], start[one]]
        base[high <= low, 1:-1] = -1  # a constant feature: always search
        # Each cell's entry is the count index, within a window, of the bin at its lower
        # end: (feature j, bin i) at j (q + 1) + i, so one gather gives what bincount
        # needs. Cells that hold one knot are marked -2 (about 5% of values fall in one:
        # only those are compared with it); -1 marks cells that need a search.
        self._key_offset = np.arange(k, dtype=np.int64) * (q + 1)
        keyed = np.where(base >= 0, base + self._key_offset[:, None], -1)
        self._cell_key = keyed.ravel().copy()  # the keys of the marked cells, for the compare
        keyed[:, 1:-1][one & (base[:, 1:-1] >= 0)] = -2
        xp = self._xp
        self._low, self._inv_width = xp.asarray(low), xp.asarray(1.0 / width)
        self._base = xp.asarray(keyed.ravel().astype(np.int32))
        self._cell_knot = xp.asarray(knot.ravel())
        self._cell_base = xp.asarray(self._cell_key.astype(np.int32))
        self._cell_offset = xp.asarray(np.arange(k, dtype=np.int32) * (CELLS + 2))

    def _build_psi(self, knots: np.ndarray) -> None:
        counts = self.reference.counts
        k, q = knots.shape
        b = counts.shape[1]
        # The profile's PSI edges are its quantiles at levels j/b. When those levels are
        # on the quantile grid (101 levels and 10 bins are), fine bins sum into PSI bins.
        levels = self.reference.levels
        edge_levels = np.linspace(0.0, 1.0, b + 1)[1:-1]
        at = np.clip(np.searchsorted(levels, edge_levels - 1e-9), 0, q - 1)
        self._psi_aligned = bool(np.all(np.abs(levels[at] - edge_levels) < 1e-9))
        # Fine bin i (i knots <= x) is at or above edge knot e when i > e.
        coarse = np.searchsorted(at + 1, np.arange(q + 1), "right")
        onehot = np.zeros((q + 1, b))
        onehot[np.arange(q + 1), coarse] = 1.0
        self._to_psi = self._xp.asarray(onehot)
        self._psi_share = self._xp.asarray(
            np.where(counts == 0, self.epsilon, counts / self.reference.n)
        )
        self._psi_dof = np.maximum((counts > 0).sum(axis=1) - 1, 1)

    # -- state ---------------------------------------------------------------------

    @property
    def feature_names(self) -> tuple[str, ...]:
        return self.reference.feature_names

    @property
    def n_seen(self) -> int:
        return self._windows * self.window + self._fill

    def params(self) -> dict[str, Any]:
        return {
            "window": self.window,
            "tests": list(self.tests),
            "psi_min": self.psi_min,
            "epsilon": self.epsilon,
            "device": self.device,
            "cells": CELLS,
        }

    def reset(self) -> None:
        k = self.reference.n_features
        self._counts = self._xp.zeros((k, self._q + 1), dtype=self._xp.int64)
        self._fill, self._windows = 0, 0

    def snapshot(self) -> bytes:
        # Written after every batch the drift decider folds: raw little-endian counts behind
        # a JSON header (driftline.drift.packing), not .npz, whose zip costs ten times as much.
        header = {
            "test": self.name,
            "format": FORMAT,
            "feature_names": list(self.feature_names),
            "window": self.window,
            "windows": self._windows,
            "fill": self._fill,
        }
        counts = np.ascontiguousarray(_host(self._counts), dtype="<i8")
        return pack("grid-bank", {"counts": counts.tobytes()}, header)

    def restore(self, snapshot: bytes) -> None:
        try:
            parts, header = unpack("grid-bank", snapshot)
            counts = np.frombuffer(parts["counts"], dtype="<i8").astype(np.int64)
        except (SnapshotError, KeyError, ValueError) as exc:
            raise SnapshotError(f"not a grid bank snapshot: {exc}") from exc
        mine = (self.name, FORMAT, list(self.feature_names), self.window)
        theirs = (header.get("test"), header.get("format"))
        theirs += (header.get("feature_names"), header.get("window"))
        if theirs != mine or counts.size != len(self.feature_names) * (self._q + 1):
            raise SnapshotError(f"snapshot is for {theirs}; this bank is {mine}")
        counts = counts.reshape(len(self.feature_names), self._q + 1)
        self._counts = self._xp.asarray(counts)
        self._fill, self._windows = int(header["fill"]), int(header["windows"])

    # -- the work ------------------------------------------------------------------

    def update(self, rows: Any) -> list[WindowResult]:
        """Fold rows ``[n, k]`` in; per completed window one result per test, in order."""
        xp = self._xp
        # float32 rows stay float32: every step below promotes them to float64 exactly.
        x = check_rows(xp, rows, self.feature_names, self.device, float32=True)
        n, k = x.shape
        if n == 0:
            return []
        keys = self._bin(x)  # [n, k]: (feature, bin) index within a window
        # Window of each row, counted from the current (partial) window.
        size = k * (self._q + 1)
        n_windows = (self._fill + n - 1) // self.window + 1
        if n_windows > 1:
            wide = xp.int64 if n_windows * size >= 2**31 else xp.int32
            window_of = (xp.arange(n, dtype=wide) + self._fill) // self.window
            keys = keys.astype(wide, copy=False) + (window_of * size)[:, None]
        counts = xp.bincount(keys.ravel(), minlength=n_windows * size)
        counts = counts.reshape(n_windows, k, self._q + 1)
        counts[0] += self._counts
        complete = (self._fill + n) // self.window
        self._fill = (self._fill + n) % self.window
        self._counts = counts[complete] if complete < n_windows else xp.zeros_like(self._counts)
        if complete == 0:
            return []
        first, self._windows = self._windows, self._windows + complete
        return self._results(counts[:complete], first)

    def _bin(self, x: Any) -> Any:
        """Fine bin (number of knots <= value) of every value, as its count's index within
        a window (feature j, bin i at ``j (q + 1) + i``), int32 ``[n, k]``."""
        xp = self._xp
        cell = x - self._low
        cell *= self._inv_width
        cell += 1.0
        xp.clip(cell, 0, CELLS + 1, out=cell)  # before the cast: huge values stay in range
        cell = cell.astype(xp.int32)
        cell += self._cell_offset
        keys = xp.take(self._base, cell)  # flat take: several times faster than x[index]
        # The cell holds one knot: at or above it is one bin up. Flat indices, not boolean
        # masks, which NumPy indexes ten times slower.
        flat = keys.reshape(-1)
        marked = xp.flatnonzero(flat == -2)
        if len(marked):
            at = xp.take(cell.reshape(-1), marked)
            above = xp.take(x.reshape(-1), marked) >= xp.take(self._cell_knot, at)
            xp.put(flat, marked, xp.take(self._cell_base, at) + above)
        unresolved = keys < 0
        if bool(unresolved.any()):
            rows, cols = xp.nonzero(unresolved)
            host_cols, host_values = _host(cols), _host(x[rows, cols])
            found = np.empty(len(host_cols), dtype=np.int64)
            for j in np.unique(host_cols):
                mine = host_cols == j
                found[mine] = np.searchsorted(self._knots[j], host_values[mine], "right")
            found += self._key_offset[host_cols]
            keys[rows, cols] = xp.asarray(found.astype(np.int32))
        return keys

    def _results(self, counts: Any, first: int) -> list[WindowResult]:
        xp, m, n = self._xp, self.window, self.reference.n
        by_test = {}
        if "ks" in self.tests:
            below = xp.cumsum(counts, axis=-1)[..., : self._q] / m  # #(x < Q[i]) / m
            statistic = _host(xp.abs(below - self._left_level).max(axis=-1))
            by_test["ks"] = (statistic, ks_p_values(statistic, m, n), 0.0)
        if "psi" in self.tests:
            coarse = counts.astype(xp.float64) @ self._to_psi
            share = xp.where(coarse == 0, self.epsilon, coarse / m)
            ref = self._psi_share
            statistic = _host(((share - ref) * xp.log(share / ref)).sum(axis=-1))
            p_value = psi_p_values(statistic, m, n, self._psi_dof)
            by_test["psi"] = (statistic, p_value, float(self.psi_min))
        results = []
        for w in range(counts.shape[0]):
            for test, (statistic, p_value, floor) in by_test.items():
                results.append(
                    WindowResult(
                        test=test,
                        window_index=first + w,
                        first_row=(first + w) * m,
                        rows=m,
                        reference_n=n,
                        feature_names=self.feature_names,
                        statistic=statistic[w],
                        p_value=p_value[w],
                        threshold=floor,
                        effect_ok=statistic[w] >= floor,
                    )
                )
        return results
