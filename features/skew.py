"""Training-serving skew: the features a model saw against the offline store's values.

For a sample of served rows, the scoring worker logs the completed feature values it
scored with (``served_features`` in ClickHouse). The check asks the offline store for the
same entities at the same event times (point in time, as a training dataset would be
built) and compares feature by feature. A row is skewed on a feature when the two values
differ beyond ``SkewLimits.rtol``/``atol``; a feature is reported when more than
``max_rate`` of its compared rows are. Drift tests ask whether two distributions differ;
this asks whether the same row has the same value, so it catches a unit change, a stale
online store or a swapped column on the first rows, long before a distribution moves.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

DETECTOR = "training_serving_skew"


@dataclass(frozen=True)
class SkewLimits:
    rtol: float = 1e-4
    atol: float = 1e-6
    max_rate: float = 0.01  # share of a feature's compared rows that may differ
    min_rows: int = 20  # fewer compared rows decide nothing

    def __post_init__(self) -> None:
        if not 0 <= self.max_rate < 1 or self.min_rows < 1 or self.rtol < 0 or self.atol < 0:
            raise ValueError(f"skew limits out of range: {self}")


@dataclass(frozen=True)
class FeatureSkew:
    feature: str
    compared: int  # rows with an offline value
    skewed: int
    rate: float
    mean_abs_diff: float  # over the skewed rows
    max_abs_diff: float
    served_mean: float
    offline_mean: float
    no_offline_value: int  # rows the offline store had nothing for at that time

    def as_evidence(self) -> dict[str, float | int | str]:
        return {k: (round(v, 9) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def compare(
    served: np.ndarray, offline: np.ndarray, names: Sequence[str], limits: SkewLimits
) -> list[FeatureSkew]:
    """Per feature, how often and by how much served values differ from offline ones.

    ``served`` and ``offline`` are ``[rows, features]`` in ``names`` order; NaN in
    ``offline`` means the store had no value at that time (not compared, counted).
    """
    served = np.asarray(served, np.float64)
    offline = np.asarray(offline, np.float64)
    if served.shape != offline.shape or served.shape[1] != len(names):
        raise ValueError(
            f"served {served.shape} and offline {offline.shape} must match {len(names)} names"
        )
    report = []
    for j, name in enumerate(names):
        known = ~np.isnan(offline[:, j])
        s, o = served[known, j], offline[known, j]
        differs = ~np.isclose(s, o, rtol=limits.rtol, atol=limits.atol, equal_nan=False)
        gaps = np.abs(s - o)[differs]
        report.append(
            FeatureSkew(
                feature=name,
                compared=int(known.sum()),
                skewed=int(differs.sum()),
                rate=float(differs.mean()) if len(s) else 0.0,
                mean_abs_diff=float(gaps.mean()) if len(gaps) else 0.0,
                max_abs_diff=float(gaps.max()) if len(gaps) else 0.0,
                served_mean=float(s.mean()) if len(s) else float("nan"),
                offline_mean=float(o.mean()) if len(o) else float("nan"),
                no_offline_value=int((~known).sum()),
            )
        )
    return report


def over_limit(report: Sequence[FeatureSkew], limits: SkewLimits) -> list[FeatureSkew]:
    """The features whose skew rate passes the limit on enough compared rows."""
    return [f for f in report if f.compared >= limits.min_rows and f.rate > limits.max_rate]
