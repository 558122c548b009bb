"""Shared base for the River adapters: validation, counters, snapshots.

Each adapter module subclasses :class:`RiverDetector`, stores its constructor
arguments as given, checks them in :meth:`_check_params`, builds the wrapped
River object in :meth:`_make_river` and explains the latest test in
:meth:`_measure`. Everything learned lives in private attributes set in
:meth:`_reset`, which is also what :meth:`snapshot` serialises.

Snapshots are pickles behind a small header. Unpickling can run code, so they
are only ever restored from driftline's own state topics, never from bytes a
third party could write.

>>> from driftline.drift.page_hinkley import PageHinkley
>>> det = PageHinkley(threshold=5.0)
>>> det.update_many(np.array([0.0] * 50 + [3.0] * 5)).tolist()
[51]
>>> twin = det.clone()
>>> twin.restore(det.snapshot())
>>> (twin.n_seen, twin.drift_detected, twin.params() == det.params())
(55, False, True)
"""

from __future__ import annotations

import inspect
import math
import numbers
import pickle
import struct
import sys
import zlib
from types import ModuleType
from typing import Any, ClassVar

import numpy as np

from driftline.drift.base import Reading
from driftline.drift.exceptions import InvalidDetectorConfig, InvalidValue, SnapshotError

FORMAT_VERSION = 1
_MAGIC = b"DLDRIFT"
# magic, format version, name length; then name, crc32 of the payload, payload
_HEAD = struct.Struct(">7sBB")
_CRC = struct.Struct(">I")


def river_drift() -> ModuleType:
    """River's ``river.drift``, imported when the first detector is built.

    River's drift package imports its example datasets, and through them its stream
    helpers, which import scikit-learn and SQLAlchemy whenever they are installed: more
    than a second and ~100 MB in every worker, for nothing a detector uses. River
    catches those imports' ImportErrors, so both are hidden for this one import, unless
    the process has already loaded them (the demo and the benchmarks train, and keep
    River's helpers).
    """
    if "river.drift" in sys.modules:
        return sys.modules["river.drift"]
    hidden = [name for name in _RIVER_EXTRAS if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment]  # import it -> ImportError
    try:
        import river.drift
    finally:
        for name in hidden:
            del sys.modules[name]
    return river.drift


# Libraries River's stream helpers import when installed, for nothing a detector uses:
# scikit-learn (most of a second, ~100 MB) and SQLAlchemy (iter_sql; ~0.7 s, which a
# worker paid in the middle of its first drift fold, holding the event loop's GIL).
_RIVER_EXTRAS = ("sklearn", "sqlalchemy")


class RiverDetector:
    """One River drift detector behind the :class:`driftline.drift.base.DriftDetector` protocol."""

    name: ClassVar[str]
    binary: ClassVar[bool] = False  # True: the stream is 0/1 errors

    def __init__(self) -> None:
        self._check_params()
        self._reset()

    # -- hooks for subclasses -------------------------------------------------

    def _check_params(self) -> None:
        """Raise InvalidDetectorConfig for a parameter River would refuse or misuse."""

    def _make_river(self) -> Any:
        raise NotImplementedError

    def _measure(self) -> tuple[float, float, float | None, int, dict[str, Any]]:
        """statistic, threshold, p_value, window_size, details of the latest update."""
        raise NotImplementedError

    def _observe(self, x: float) -> None:
        self._river.update(x)

    # -- the protocol ---------------------------------------------------------

    def _reset(self) -> None:
        self._river = self._make_river()
        self._n_seen = 0
        # River restarts from scratch on the value after an alarm; this counts
        # the values its statistics are built on.
        self._run_length = 0
        self._n_drifts = 0
        self._last_drift_index: int | None = None
        self._last_drift_statistic: float | None = None

    def reset(self) -> None:
        """Forget everything learned; parameters stay."""
        self._reset()

    @property
    def drift_detected(self) -> bool:
        return bool(self._river.drift_detected)

    @property
    def n_seen(self) -> int:
        return self._n_seen

    def update(self, x: float) -> RiverDetector:
        """Fold one value in; raises InvalidValue for a non-finite (or non-0/1) value."""
        ok = isinstance(x, numbers.Real | np.bool_) and math.isfinite(x)
        if ok and self.binary:
            ok = x in (0, 1)
        if not ok:
            raise InvalidValue(f"{self.name}: {self._expected()}, got {x!r}")
        self._step(int(x) if self.binary else float(x))
        return self

    def update_many(self, values: np.ndarray) -> np.ndarray:
        """Fold values in, in order; the int64 indices that flagged drift.

        The whole array is checked first, so a bad value leaves the state untouched.
        """
        arr = np.asarray(values)
        if arr.ndim != 1 or arr.dtype.kind not in "biuf":
            raise InvalidValue(
                f"{self.name}: update_many needs a 1-D numeric array, "
                f"got shape {arr.shape} dtype {arr.dtype}"
            )
        good = np.isfinite(arr) if arr.dtype.kind == "f" else np.ones(arr.shape, bool)
        if self.binary:
            good &= (arr == 0) | (arr == 1)
        if not good.all():
            i = int(np.argmin(good))
            raise InvalidValue(
                f"{self.name}: {self._expected()}, got {arr[i].item()!r} at index {i}"
            )
        xs = arr.astype(np.int64 if self.binary else np.float64).tolist()
        flagged = []
        for i, x in enumerate(xs):
            self._step(x)
            if self._river.drift_detected:
                flagged.append(i)
        return np.asarray(flagged, dtype=np.int64)

    def _step(self, x: float) -> None:
        if self._river.drift_detected:
            self._run_length = 0
        self._observe(x)
        self._n_seen += 1
        self._run_length += 1
        if self._river.drift_detected:
            self._n_drifts += 1
            self._last_drift_index = self._n_seen - 1
            self._last_drift_statistic = self._measure()[0]

    def _expected(self) -> str:
        return "expected 0/1 (an error stream)" if self.binary else "expected a finite real"

    def params(self) -> dict[str, Any]:
        """Constructor arguments exactly as given, defaults included."""
        sig = inspect.signature(type(self).__init__)
        return {k: getattr(self, k) for k in sig.parameters if k != "self"}

    def clone(self) -> RiverDetector:
        """A fresh detector with the same parameters and no state."""
        return type(self)(**self.params())

    def reading(self) -> Reading:
        """The numbers behind the latest update: the alarm's, right after one."""
        statistic, threshold, p_value, window_size, details = self._measure()
        details = {
            **details,
            "n_drifts": self._n_drifts,
            "last_drift_index": self._last_drift_index,
            "last_drift_statistic": self._last_drift_statistic,
        }
        return Reading(
            statistic=float(statistic),
            threshold=float(threshold),
            p_value=None if p_value is None else float(p_value),
            window_size=int(window_size),
            n_seen=self._n_seen,
            details=details,
        )

    # -- snapshots ------------------------------------------------------------

    def _state(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if k.startswith("_")}

    def snapshot(self) -> bytes:
        """Header (name, format version, checksum) then a pickle of the learned state."""
        payload = pickle.dumps(
            {"params": self.params(), "state": self._state()}, protocol=pickle.HIGHEST_PROTOCOL
        )
        name = self.name.encode()
        head = _HEAD.pack(_MAGIC, FORMAT_VERSION, len(name)) + name
        return head + _CRC.pack(zlib.crc32(payload)) + payload

    def restore(self, snapshot: bytes) -> None:
        """Replace the learned state with a snapshot's; SnapshotError if it is not ours."""
        data = bytes(snapshot)
        where = f"{self.name}: cannot restore snapshot"
        if len(data) < _HEAD.size or data[:7] != _MAGIC:
            raise SnapshotError(f"{where}: expected header {_MAGIC!r}, found {data[:7]!r}")
        _, version, size = _HEAD.unpack_from(data)
        if version != FORMAT_VERSION:
            raise SnapshotError(f"{where}: expected format {FORMAT_VERSION}, found {version}")
        start = _HEAD.size + size
        found = data[_HEAD.size : start].decode(errors="replace")
        if found != self.name:
            raise SnapshotError(f"{where}: expected detector {self.name!r}, found {found!r}")
        if len(data) < start + _CRC.size:
            raise SnapshotError(
                f"{where}: expected over {start + _CRC.size} bytes, found {len(data)}"
            )
        payload = data[start + _CRC.size :]
        stored, actual = _CRC.unpack_from(data, start)[0], zlib.crc32(payload)
        if stored != actual:
            raise SnapshotError(
                f"{where}: corrupt bytes; expected checksum {stored:#010x}, found {actual:#010x}"
            )
        try:
            content = pickle.loads(payload)
            params, state = content["params"], content["state"]
        except Exception as exc:  # checksum passed, so this is a writer bug; say so
            raise SnapshotError(f"{where}: unreadable payload ({exc!r})") from exc
        if params != self.params():
            raise SnapshotError(f"{where}: expected params {self.params()}, found {params}")
        mine = self._state()
        if set(state) != set(mine) or type(state["_river"]) is not type(mine["_river"]):
            raise SnapshotError(
                f"{where}: expected state keys {sorted(mine)} around a River "
                f"{type(mine['_river']).__name__}, found {sorted(state)}"
            )
        vars(self).update(state)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params().items())
        return f"{type(self).__name__}({args})"


# -- parameter checks shared by the adapters ---------------------------------


def check_int(det: RiverDetector, name: str, minimum: int) -> None:
    """Refuse a non-int (bools included) or one below ``minimum``."""
    value = getattr(det, name)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InvalidDetectorConfig(
            f"{type(det).__name__}: {name}={value!r} is invalid; expected an int >= {minimum}"
        )


def check_real(
    det: RiverDetector, name: str, low: float, high: float, *, low_open: bool, high_open: bool
) -> None:
    """Refuse a non-real or one outside the interval (bounds open or closed as told)."""
    value = getattr(det, name)
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        ok = (low < value if low_open else low <= value) and (
            value < high if high_open else value <= high
        )
    if not ok:
        lo = f"{low} {'<' if low_open else '<='} "
        hi = f" {'<' if high_open else '<='} {high}" if math.isfinite(high) else ""
        raise InvalidDetectorConfig(
            f"{type(det).__name__}: {name}={value!r} is out of range; expected {lo}{name}{hi}"
        )


def check_choice(det: RiverDetector, name: str, choices: tuple[Any, ...]) -> None:
    value = getattr(det, name)
    if isinstance(value, bool) != isinstance(choices[0], bool) or value not in choices:
        raise InvalidDetectorConfig(
            f"{type(det).__name__}: {name}={value!r} is invalid; expected one of {choices}"
        )


def check_confidences(det: RiverDetector) -> None:
    """Hoeffding detectors: the drift test must be at least as strict as the warning one."""
    drift_c, warn_c = det.drift_confidence, det.warning_confidence  # type: ignore[attr-defined]
    if drift_c > warn_c:
        # River accepts it and then flags drift without ever warning first.
        raise InvalidDetectorConfig(
            f"{type(det).__name__}: drift_confidence={drift_c!r} must be <= "
            f"warning_confidence={warn_c!r}"
        )
