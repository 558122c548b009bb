"""K-of-N debouncing of per-window flags into alarm episodes, for many streams at once.

One noisy window should not page anyone, and a feature that stays drifted
should page once, not every window. For each stream (feature) :class:`KOfN`
keeps its last ``n`` window outcomes; an alarm starts when at least ``k`` of
them are flagged, and the stream then stays in its episode (silent) until it
has seen ``n`` consecutive clean windows, when it re-arms. What counts as
clean can be stricter than "not flagged" (hysteresis, see :meth:`KOfN.update`).

>>> debounce = KOfN(k=2, n=3, n_streams=1)
>>> [bool(debounce.update([flag])[0]) for flag in [1, 0, 1, 1, 0, 0, 0, 1, 1]]
[False, False, True, False, False, False, False, False, True]
"""

from __future__ import annotations

from typing import Any

import numpy as np

from driftline.drift.exceptions import InvalidDetectorConfig, InvalidValue, SnapshotError
from driftline.drift.packing import pack, unpack

FORMAT = 2
MAX_N = 64
_NAME = "k_of_n"


class KOfN:
    """Per-stream ``k``-of-last-``n`` alarm starts with re-arming after ``n`` clean windows."""

    name = _NAME

    def __init__(self, k: int, n: int, n_streams: int) -> None:
        for label, value, low in (("n", n, 1), ("k", k, 1), ("n_streams", n_streams, 1)):
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise InvalidDetectorConfig(f"{label}={value!r} is out of range: need an int >= 1")
        if not k <= n <= MAX_N:
            raise InvalidDetectorConfig(
                f"k={k!r}, n={n!r} are out of range: need 1 <= k <= n <= {MAX_N}"
            )
        self.k = k
        self.n = n
        self.n_streams = n_streams
        self.reset()

    @property
    def in_episode(self) -> np.ndarray:
        """Bool ``[n_streams]``: streams that alarmed and have not yet re-armed (a copy)."""
        return self._in_episode.copy()

    @property
    def n_seen(self) -> int:
        """Windows folded in since construction or the last reset."""
        return self._n_seen

    def params(self) -> dict[str, Any]:
        return {"k": self.k, "n": self.n, "n_streams": self.n_streams}

    def reset(self) -> None:
        """Forget all history: every stream clean and armed."""
        # Ring buffer of the last n outcomes; slots not yet written count as clean.
        self._history = np.zeros((self.n, self.n_streams), dtype=bool)
        self._in_episode = np.zeros(self.n_streams, dtype=bool)
        self._clean_run = np.zeros(self.n_streams, dtype=np.int64)
        self._n_seen = 0

    def update(self, flags: Any, quiet: Any = None) -> np.ndarray:
        """Fold one window's flags ``[n_streams]`` in; True where an alarm episode starts now.

        ``quiet`` (default: not flagged) says which windows count as clean for
        re-arming. Passing a stricter test than the flag's gives hysteresis: a
        stream that hovers near the threshold stays in its episode instead of
        re-arming and alarming again.
        """
        flags = self._check(flags)
        quiet = ~flags if quiet is None else self._check(quiet) & ~flags
        self._history[self._n_seen % self.n] = flags
        self._n_seen += 1
        self._clean_run = np.where(quiet, np.minimum(self._clean_run + 1, self.n), 0)
        # n clean windows in a row also empty the ring, so a re-armed stream
        # needs k fresh flags before it can alarm again.
        self._in_episode &= self._clean_run < self.n
        start = ~self._in_episode & (self._history.sum(axis=0) >= self.k)
        self._in_episode |= start
        return start

    def snapshot(self) -> bytes:
        """Ring buffer, episodes and counters as raw arrays behind a JSON header."""
        header = {"detector": _NAME, "format": FORMAT, **self.params(), "n_seen": self._n_seen}
        arrays = {
            "history": self._history.astype(np.uint8).tobytes(),
            "in_episode": self._in_episode.astype(np.uint8).tobytes(),
            "clean_run": self._clean_run.astype("<i8").tobytes(),
        }
        return pack(_NAME, arrays, header)

    def restore(self, snapshot: bytes) -> None:
        """Resume from :meth:`snapshot` bytes taken with the same ``n`` and ``n_streams``."""
        try:
            parts, header = unpack(_NAME, snapshot)
            detector, fmt = header["detector"], header["format"]
            n, n_streams, n_seen = header["n"], header["n_streams"], int(header["n_seen"])
            arrays = {
                "history": np.frombuffer(parts["history"], np.uint8).reshape(-1, n_streams),
                "in_episode": np.frombuffer(parts["in_episode"], np.uint8),
                "clean_run": np.frombuffer(parts["clean_run"], "<i8"),
            }
        except (SnapshotError, KeyError, TypeError, ValueError) as exc:
            raise SnapshotError(f"not a {_NAME} snapshot: {exc}") from exc
        if detector != _NAME or fmt != FORMAT:
            raise SnapshotError(
                f"snapshot is of {detector!r} format {fmt!r}, not {_NAME!r} {FORMAT}"
            )
        if (n, n_streams) != (self.n, self.n_streams):
            raise SnapshotError(
                f"snapshot has n={n}, n_streams={n_streams}; this debouncer has n={self.n}, "
                f"n_streams={self.n_streams}"
            )
        shapes = {"history": (n, n_streams), "in_episode": (n_streams,), "clean_run": (n_streams,)}
        if n_seen < 0 or any(arrays[name].shape != shapes[name] for name in _STATE):
            raise SnapshotError(f"corrupt {_NAME} snapshot: state arrays have the wrong shapes")
        self._history = arrays["history"].astype(bool)
        self._in_episode = arrays["in_episode"].astype(bool)
        self._clean_run = np.clip(arrays["clean_run"].astype(np.int64), 0, n)
        self._n_seen = n_seen

    def _check(self, flags: Any) -> np.ndarray:
        array = np.asarray(flags)
        if array.shape != (self.n_streams,):
            raise InvalidValue(
                f"flags must have shape ({self.n_streams},), one per stream; got {array.shape}"
            )
        if array.dtype != bool:
            if array.dtype.kind not in "iuf" or not np.isin(array, (0, 1)).all():
                raise InvalidValue(f"flags must be booleans (or 0/1), got dtype {array.dtype}")
            array = array.astype(bool)
        return array


_STATE = ("history", "in_episode", "clean_run")
