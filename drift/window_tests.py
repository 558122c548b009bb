"""Tumbling-window two-sample tests (KS, PSI) over every feature at once.

Long on purpose: the KS and PSI banks share their windowing, reference handling and
snapshots, and read best side by side.

A bank buffers serving rows ``[n, k]`` into windows of ``window`` rows and, for
each completed window, compares all ``k`` feature columns against the training
:class:`~driftline.drift.profile.ReferenceProfile` in a handful of 2-D array calls (a
stable argsort, cumulative sums, gathers), never a Python loop over rows or
features. The same code runs on NumPy (``device="cpu"``) and CuPy
(``device="cuda"``); only the ``k`` statistics per window come back to the
host, where SciPy turns them into p-values.

KS approximation: the training CDF is the piecewise-linear curve through
``(quantiles[j], levels)``, vertical where quantiles repeat (ties, discrete
features), 0 below the training minimum and 1 above the maximum. It is off the
training ECDF by at most the level spacing ``1 / (q - 1)`` (0.01 with the
default 101 quantiles, less in smooth regions), which bounds the error in D.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> profile = ReferenceProfile.from_matrix(rng.normal(size=(5000, 2)), ["a", "b"])
>>> bank = KSBank(profile, window=500)
>>> shifted = rng.normal(size=(1000, 2)) + [0.0, 1.0]
>>> [r.window_index for r in bank.update(shifted)]
[0, 1]
>>> bool(bank.update(shifted)[0].p_value[1] < 1e-6), bank.n_seen
(True, 2000)
"""

from __future__ import annotations

import importlib
import io
import json
import math
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np
from scipy import special

from driftline.drift.exceptions import InvalidDetectorConfig, InvalidValue, SnapshotError
from driftline.drift.profile import ReferenceProfile

FORMAT = 1
DEVICES = ("cpu", "cuda")
MIN_WINDOW = 20
# Windows scored per kernel call: bounds temporary memory on huge updates.
_CHUNK_WINDOWS = 64
_FIX = "install the GPU extra (pip install 'driftline[gpu]') or use device='cpu'"


@dataclass(frozen=True)
class WindowResult:
    """One completed window's test over all features; arrays are host NumPy ``[k]``."""

    test: str
    window_index: int
    first_row: int
    rows: int
    reference_n: int
    feature_names: tuple[str, ...]
    statistic: np.ndarray
    p_value: np.ndarray
    threshold: float
    effect_ok: np.ndarray


def _import_cupy() -> ModuleType | None:
    try:
        return importlib.import_module("cupy")
    except Exception:  # ImportError, or CUDA libraries that fail to load
        return None


def _array_module(device: str) -> ModuleType:
    if device == "cpu":
        return np
    cupy = _import_cupy()
    if cupy is None:
        raise InvalidDetectorConfig(f"device='cuda' needs CuPy, which is not installed; {_FIX}")
    try:
        count = int(cupy.cuda.runtime.getDeviceCount())
    except Exception:
        count = 0
    if count < 1:
        raise InvalidDetectorConfig(f"device='cuda' but CuPy sees no CUDA device; {_FIX}")
    return cupy


def _host(array: Any) -> np.ndarray:
    return array.get() if hasattr(array, "get") else np.asarray(array)


def _knots_before(xp: ModuleType, x: Any, knots: Any, *, ties_first: str) -> tuple[Any, Any]:
    """Per row, ``x`` sorted and how many ``knots`` precede each value (a batched searchsorted).

    ``x`` is ``[..., m]``, ``knots`` ``[..., q]`` sorted. With ``ties_first="x"``
    the count is of knots ``< value`` (searchsorted left), with ``"knots"`` of
    knots ``<= value`` (right): the stable sort keeps the stacking order on ties.
    """
    m, q = x.shape[-1], knots.shape[-1]
    knots = xp.broadcast_to(knots, x.shape[:-1] + (q,))
    x_first = ties_first == "x"
    z = xp.concatenate([x, knots] if x_first else [knots, x], axis=-1)
    # CuPy's sorts are always stable and refuse numpy's ``kind`` names.
    order = xp.argsort(z, axis=-1, kind="stable") if xp is np else xp.argsort(z, axis=-1)
    is_x = order < m if x_first else order >= q
    before = xp.cumsum(~is_x, axis=-1, dtype=xp.int64)
    ordered = xp.take_along_axis(z, order, axis=-1)
    return ordered[is_x].reshape(x.shape), before[is_x].reshape(x.shape)


class _WindowBank:
    """Buffering, validation and snapshots shared by :class:`KSBank` and :class:`PSIBank`."""

    name = ""

    def __init__(
        self, reference: ReferenceProfile, *, window: int, min_effect: float, device: str
    ) -> None:
        if not isinstance(reference, ReferenceProfile):
            raise InvalidDetectorConfig(
                f"reference must be a ReferenceProfile, got {type(reference).__name__}"
            )
        if not isinstance(window, int) or isinstance(window, bool) or window < MIN_WINDOW:
            raise InvalidDetectorConfig(
                f"window={window!r} is out of range: need an integer >= {MIN_WINDOW} rows"
            )
        if not _real(min_effect) or not min_effect >= 0:
            raise InvalidDetectorConfig(
                f"min_effect={min_effect!r} is out of range: need a finite number >= 0"
            )
        if device not in DEVICES:
            raise InvalidDetectorConfig(f"device={device!r} is not one of {', '.join(DEVICES)}")
        self.reference = reference
        self.window = window
        self.min_effect = min_effect
        self.device = device
        self._xp = _array_module(device)
        self.reset()

    @property
    def feature_names(self) -> tuple[str, ...]:
        return self.reference.feature_names

    @property
    def n_seen(self) -> int:
        """Rows folded in since construction or the last reset."""
        return self._windows * self.window + self._fill

    def params(self) -> dict[str, Any]:
        """Constructor arguments as given, less the reference (the artifact names it)."""
        return {"window": self.window, "min_effect": self.min_effect, "device": self.device}

    def reset(self) -> None:
        """Forget the partial window and counters; parameters and reference stay."""
        k = self.reference.n_features
        self._buffer = self._xp.empty((self.window, k), dtype=self._xp.float64)
        self._fill = 0
        self._windows = 0

    def update(self, rows: Any) -> list[WindowResult]:
        """Fold rows ``[n, k]`` in; one result per window they complete, in order."""
        x = self._check(rows)
        head = min(self.window - self._fill, x.shape[0])
        self._buffer[self._fill : self._fill + head] = x[:head]
        if self._fill + head < self.window:
            self._fill += head
            return []
        full = (x.shape[0] - head) // self.window
        tail = head + full * self.window
        k = x.shape[1]
        # [w, k, m]: one row per (window, feature), the layout the kernels sort along.
        stacked = self._xp.concatenate(
            [self._buffer[None], x[head:tail].reshape(full, self.window, k)]
        ).transpose(0, 2, 1)
        statistic = np.concatenate(
            [
                _host(self._statistic(stacked[i : i + _CHUNK_WINDOWS]))
                for i in range(0, full + 1, _CHUNK_WINDOWS)
            ]
        )
        self._fill = x.shape[0] - tail
        self._buffer[: self._fill] = x[tail:]
        p_value = self._p_values(statistic)
        first = self._windows
        self._windows += full + 1
        return [self._result(first + i, statistic[i], p_value[i]) for i in range(full + 1)]

    def snapshot(self) -> bytes:
        """The partial window and counters (NumPy ``.npz`` bytes with a JSON header)."""
        header = {
            "test": self.name,
            "format": FORMAT,
            "feature_names": list(self.feature_names),
            "window": self.window,
            "windows": self._windows,
            "fill": self._fill,
        }
        out = io.BytesIO()
        np.savez(out, header=np.array(json.dumps(header)), buffer=_host(self._buffer[: self._fill]))
        return out.getvalue()

    def restore(self, snapshot: bytes) -> None:
        """Resume from :meth:`snapshot` bytes of the same test, features and window."""
        try:
            with np.load(io.BytesIO(snapshot), allow_pickle=False) as data:
                header = json.loads(str(data["header"]))
                buffer = np.asarray(data["buffer"], dtype=np.float64)
            test, fmt = header["test"], header["format"]
            names, window = tuple(header["feature_names"]), header["window"]
            windows, fill = int(header["windows"]), int(header["fill"])
        except Exception as exc:  # zip, npy, JSON and key errors all mean "not ours"
            raise SnapshotError(f"not a {self.name} window bank snapshot: {exc}") from exc
        if test != self.name or fmt != FORMAT:
            raise SnapshotError(
                f"snapshot is of test {test!r} format {fmt!r}; this bank is {self.name!r} "
                f"format {FORMAT}"
            )
        if names != self.feature_names or window != self.window:
            raise SnapshotError(
                f"snapshot is for features {list(names)} with window {window}; this bank has "
                f"{list(self.feature_names)} with window {self.window}"
            )
        if not (0 <= fill < window and windows >= 0 and buffer.shape == (fill, len(names))):
            raise SnapshotError(f"corrupt {self.name} snapshot: inconsistent buffer and counters")
        self.reset()
        self._buffer[:fill] = self._xp.asarray(buffer)
        self._fill, self._windows = fill, windows

    def _check(self, rows: Any) -> Any:
        return check_rows(self._xp, rows, self.feature_names, self.device)

    def _result(self, index: int, statistic: np.ndarray, p_value: np.ndarray) -> WindowResult:
        return WindowResult(
            test=self.name,
            window_index=index,
            first_row=index * self.window,
            rows=self.window,
            reference_n=self.reference.n,
            feature_names=self.feature_names,
            statistic=statistic,
            p_value=p_value,
            threshold=float(self.min_effect),
            effect_ok=statistic >= self.min_effect,
        )

    def _statistic(self, x: Any) -> Any:  # x [w, k, m] -> [w, k]
        raise NotImplementedError

    def _p_values(self, statistic: np.ndarray) -> np.ndarray:
        raise NotImplementedError


def check_rows(
    xp: ModuleType, rows: Any, names: tuple[str, ...], device: str, *, float32: bool = False
) -> Any:
    """``rows`` as a finite float64 ``[n, len(names)]`` array of ``xp``, or InvalidValue.

    ``float32=True`` keeps float32 rows as they are (no copy): for callers whose
    arithmetic promotes them to float64 anyway, exactly.
    """
    k = len(names)
    keep = float32 and getattr(rows, "dtype", None) == xp.float32
    try:
        x = xp.asarray(rows) if keep else xp.asarray(rows, dtype=xp.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidValue(
            f"rows must be a numeric [n, {k}] array on device {device!r}: {exc}"
        ) from exc
    if x.ndim != 2 or x.shape[1] != k:
        got = x.shape[1] if x.ndim == 2 else f"shape {tuple(x.shape)}"
        raise InvalidValue(
            f"rows have {got} feature columns; the reference profile has {k} features "
            f"({list(names)})"
        )
    if bool(xp.isfinite(x).all()):  # the common case, in one pass
        return x
    bad = int((~xp.isfinite(x).all(axis=1)).sum())
    if bad:
        raise InvalidValue(
            f"{bad} of {x.shape[0]} rows have NaN or infinite values; drop them before "
            "update (see driftline.inference.device.finite_rows)"
        )
    return x


def ks_p_values(statistic: np.ndarray, m: int, n: int) -> np.ndarray:
    """Two-sample KS p-values for D on windows of ``m`` rows against ``n`` reference rows."""
    # Not scipy.stats.kstwo.sf: it costs 0.1-7 ms per value at n_eff 1e3-1e4
    # (more than the whole window kernel). The corrected limit is within ~3%
    # (relative) of kstwo for p <= 0.1 from n_eff = 20 on, and fully vectorised.
    root = math.sqrt(m * n / (m + n))
    return special.kolmogorov((root + 0.12 + 0.11 / root) * statistic)


def psi_p_values(statistic: np.ndarray, m: int, n: int, dof: np.ndarray) -> np.ndarray:
    """PSI p-values from the asymptotic null ``PSI / (1/m + 1/n) ~ chi2(dof)``."""
    # special.chdtrc is chi2.sf without scipy.stats' per-call dispatch (~100 us).
    return special.chdtrc(dof, statistic / (1 / m + 1 / n))


def _real(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _sorted_rows(values: np.ndarray, what: str) -> np.ndarray:
    if not np.isfinite(values).all() or np.any(np.diff(values, axis=1) < 0):
        raise InvalidDetectorConfig(f"reference profile {what} must be finite and non-decreasing")
    return values


class KSBank(_WindowBank):
    """Two-sample Kolmogorov-Smirnov D of each feature's window against the training CDF.

    p-values use the Kolmogorov limit at the effective size ``n_eff = m n / (m + n)``
    with Stephens' finite-size correction (as in Numerical Recipes' ``kstwo``):
    ``scipy.special.kolmogorov((sqrt(n_eff) + 0.12 + 0.11 / sqrt(n_eff)) * D)``.

    >>> import numpy as np
    >>> x = np.random.default_rng(1).uniform(size=(4000, 1))
    >>> bank = KSBank(ReferenceProfile.from_matrix(x, ["u"]), window=100)
    >>> result = bank.update(np.linspace(0.5, 1.0, 100)[:, None])[0]
    >>> round(float(result.statistic[0]), 2), bool(result.p_value[0] < 1e-10)
    (0.5, True)
    """

    name = "ks"

    def __init__(
        self,
        reference: ReferenceProfile,
        *,
        window: int = 1000,
        min_effect: float = 0.0,
        device: str = "cpu",
    ) -> None:
        super().__init__(reference, window=window, min_effect=min_effect, device=device)
        quantiles = _sorted_rows(reference.quantiles, "quantiles")
        k, q = quantiles.shape
        # On a run of equal knots the CDF is vertical; its (right-continuous) value
        # there is the level of the run's last knot.
        is_last = np.ones((k, q), dtype=bool)
        is_last[:, :-1] = quantiles[:, 1:] != quantiles[:, :-1]
        last = np.minimum.accumulate(np.where(is_last, np.arange(q), q)[:, ::-1], axis=1)[:, ::-1]
        xp = self._xp
        self._knots = xp.asarray(quantiles)
        self._flat_knots = xp.asarray(quantiles.ravel())
        self._flat_right = xp.asarray(reference.levels[last].ravel())
        self._levels = xp.asarray(reference.levels)
        self._offset = xp.asarray(np.arange(k)[:, None] * q)  # row starts in the flat arrays

    def _statistic(self, x: Any) -> Any:
        # sup |F_w - F| needs only window points: between two of them F_w is flat
        # and F non-decreasing, so F_w - F peaks at a point (right values) and
        # F - F_w just before the next one (left limits); knots add no candidate.
        xp, m, q = self._xp, x.shape[-1], self._knots.shape[1]
        xs, lo = _knots_before(xp, x, self._knots, ties_first="x")  # lo = #knots < x
        hi, prev = xp.minimum(lo, q - 1), xp.maximum(lo - 1, 0)
        q_hi = self._flat_knots[hi + self._offset]
        q_prev = self._flat_knots[prev + self._offset]
        span = q_hi - q_prev  # > 0 wherever the interpolation is used
        t = (xs - q_prev) / xp.where(span > 0, span, 1.0)
        left = self._levels[prev] + t * (self._levels[hi] - self._levels[prev])
        left = xp.where(lo == 0, 0.0, xp.where(lo == q, 1.0, left))
        right = xp.where((lo < q) & (xs == q_hi), self._flat_right[hi + self._offset], left)
        # With ties in the window only the last (first) of a run gives the true
        # right (left) ECDF value; the others give smaller candidates.
        i = xp.arange(m, dtype=xp.float64)
        d_plus = ((i + 1) / m - right).max(axis=-1)
        d_minus = (left - i / m).max(axis=-1)
        return xp.maximum(xp.maximum(d_plus, d_minus), 0.0)

    def _p_values(self, statistic: np.ndarray) -> np.ndarray:
        return ks_p_values(statistic, self.window, self.reference.n)


class PSIBank(_WindowBank):
    """Population stability index of each feature's window over the profile's equal-mass bins.

    ``PSI = sum_b (p_w - p_r) ln(p_w / p_r)``; empty bins get share ``epsilon``
    (shares are not renormalised). Values outside the outer edges count in the
    outer bins. p-values use the asymptotic null ``PSI / (1/m + 1/n) ~ chi2(b - 1)``
    with ``b`` the bins the reference populates (repeated edges leave bins empty).

    >>> import numpy as np
    >>> x = np.random.default_rng(2).normal(size=(10000, 1))
    >>> bank = PSIBank(ReferenceProfile.from_matrix(x, ["z"]), window=1000)
    >>> result = bank.update(x[:1000] + 1.0)[0]
    >>> bool(result.effect_ok[0]), bool(result.p_value[0] < 1e-10)
    (True, True)
    """

    name = "psi"

    def __init__(
        self,
        reference: ReferenceProfile,
        *,
        window: int = 1000,
        min_effect: float = 0.1,
        epsilon: float = 1e-4,
        device: str = "cpu",
    ) -> None:
        super().__init__(reference, window=window, min_effect=min_effect, device=device)
        if not _real(epsilon) or not 0 < epsilon < 0.1:
            raise InvalidDetectorConfig(
                f"epsilon={epsilon!r} is out of range: need 0 < epsilon < 0.1"
            )
        counts = reference.counts
        if counts.shape[1] < 2:
            raise InvalidDetectorConfig("PSI needs a reference profile with >= 2 bins (n_bins)")
        self.epsilon = epsilon
        edges = _sorted_rows(reference.bin_edges, "bin edges")
        xp = self._xp
        self._edges = xp.asarray(edges[:, 1:-1])
        self._reference_share = xp.asarray(np.where(counts == 0, epsilon, counts / reference.n))
        self._dof = np.maximum((counts > 0).sum(axis=1) - 1, 1)

    def params(self) -> dict[str, Any]:
        return {**super().params(), "epsilon": self.epsilon}

    def _statistic(self, x: Any) -> Any:
        xp = self._xp
        w, k, m = x.shape
        b = self._reference_share.shape[1]
        # Bin j holds edge[j] <= v < edge[j+1] (driftline.drift.profile's rule): the bin
        # index is the number of interior edges <= v.
        _, bins = _knots_before(xp, x, self._edges, ties_first="knots")
        bins = bins + xp.arange(w * k).reshape(w, k, 1) * b
        counts = xp.bincount(bins.ravel(), minlength=w * k * b).reshape(w, k, b)
        share = xp.where(counts == 0, self.epsilon, counts / m)
        ref = self._reference_share
        return ((share - ref) * xp.log(share / ref)).sum(axis=-1)

    def _p_values(self, statistic: np.ndarray) -> np.ndarray:
        return psi_p_values(statistic, self.window, self.reference.n, self._dof)
