"""Every single-stream detector by its stable name, and a checked way to build one.

>>> det = make_detector("page_hinkley", {"threshold": 20.0})
>>> det
PageHinkley(min_instances=30, delta=0.005, threshold=20.0, alpha=0.9999, mode='both')
>>> sorted(BINARY_DETECTORS)
['ddm', 'eddm', 'hddm_a', 'hddm_w']
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from driftline.drift.adwin import ADWIN
from driftline.drift.ddm import DDM
from driftline.drift.eddm import EDDM
from driftline.drift.exceptions import InvalidDetectorConfig
from driftline.drift.hddm_a import HDDM_A
from driftline.drift.hddm_w import HDDM_W
from driftline.drift.kswin import KSWIN
from driftline.drift.page_hinkley import PageHinkley
from driftline.drift.river_adapter import RiverDetector

DETECTORS: dict[str, type[RiverDetector]] = {
    cls.name: cls for cls in (ADWIN, PageHinkley, KSWIN, DDM, EDDM, HDDM_A, HDDM_W)
}

# Names of the detectors that watch 0/1 error streams rather than raw values.
BINARY_DETECTORS: frozenset[str] = frozenset(n for n, cls in DETECTORS.items() if cls.binary)


def make_detector(name: str, params: Mapping[str, Any] | None = None) -> RiverDetector:
    """Build detector ``name`` from ``params``; InvalidDetectorConfig names what is wrong."""
    cls = DETECTORS.get(name)
    if cls is None:
        raise InvalidDetectorConfig(
            f"unknown detector {name!r}; known detectors: {', '.join(sorted(DETECTORS))}"
        )
    params = dict(params or {})
    accepted = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    unknown = sorted(str(k) for k in params if k not in accepted)
    if unknown:
        raise InvalidDetectorConfig(
            f"{name}: unknown parameter(s) {', '.join(unknown)}; accepted: {', '.join(accepted)}"
        )
    return cls(**params)
