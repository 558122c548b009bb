"""The one protocol every drift detector implements.

A detector watches one stream of numbers (a feature, a score, a 0/1 error
stream) and says when its distribution has changed. Constructor arguments are
the configuration and are stored as given, so :meth:`params` can be written
into a DriftEvent and the audit log exactly; learned state is private and reset
in one place. State round-trips through :meth:`snapshot` / :meth:`restore`, so
a worker that restarts resumes where it was.

Two kinds implement it:

- single-stream detectors (River adapters: ADWIN, PageHinkley, KSWIN, DDM,
  EDDM, HDDM_A, HDDM_W), which see one value at a time;
- the vectorised window bank (:mod:`driftline.drift.window_tests`), which sees many
  features at once and has its own batch API; it shares ``params``,
  ``snapshot``/``restore`` and ``reset`` with this protocol.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np


@dataclass(frozen=True)
class Reading:
    """What a detector can say about its latest alarm, for the DriftEvent.

    ``statistic`` and ``threshold`` are in the detector's own units (for ADWIN
    the difference of sub-window means and the cut bound, for KSWIN the KS
    statistic and the critical value...). ``p_value`` is None for detectors
    that compute none. ``window_size`` is how many observations the statistic
    was computed on; ``n_seen`` how many the detector has seen since reset.
    ``details`` holds detector-specific numbers (JSON-able).
    """

    statistic: float
    threshold: float
    p_value: float | None
    window_size: int
    n_seen: int
    details: Mapping[str, Any] = field(default_factory=dict)


@runtime_checkable
class DriftDetector(Protocol):
    """One stream in, a drift flag out."""

    name: str  # short stable id written into DriftEvents: "adwin", "page_hinkley", ...

    @property
    def drift_detected(self) -> bool:
        """True when the latest update flagged drift."""
        ...

    @property
    def n_seen(self) -> int:
        """Values seen since construction or the last :meth:`reset`."""
        ...

    def update(self, x: float) -> DriftDetector:
        """Fold one value in; returns self so calls chain."""
        ...

    def update_many(self, values: np.ndarray) -> np.ndarray:
        """Fold values in, in order; return the indices (into ``values``) that flagged drift."""
        ...

    def params(self) -> dict[str, Any]:
        """Constructor arguments exactly as given (JSON-able)."""
        ...

    def reading(self) -> Reading:
        """The statistic, threshold and window behind the latest flag (or current state)."""
        ...

    def snapshot(self) -> bytes:
        """Opaque bytes that :meth:`restore` turns back into this exact state."""
        ...

    def restore(self, snapshot: bytes) -> None:
        """Replace the learned state with a snapshot's; refuses another detector's."""
        ...

    def reset(self) -> None:
        """Forget everything learned; parameters stay."""
        ...
