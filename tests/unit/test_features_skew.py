"""Training-serving skew: the same row, served and offline, feature by feature."""

from __future__ import annotations

import numpy as np
import pytest

from driftline.features.skew import SkewLimits, compare, over_limit
from driftline.streams.stages.enrichment import parse_served_id, served_frame_id

NAMES = ("f00", "f01", "f02", "f03")
LIMITS = SkewLimits(max_rate=0.01, min_rows=20)


def _offline(n: int = 200) -> np.ndarray:
    return np.random.default_rng(0).normal(size=(n, len(NAMES))).astype(np.float32)


def _flagged(served, offline) -> list[str]:
    return [f.feature for f in over_limit(compare(served, offline, NAMES, LIMITS), LIMITS)]


def test_identical_rows_flag_nothing():
    offline = _offline()
    assert _flagged(offline.copy(), offline) == []


def test_a_unit_change_names_its_feature_and_its_size():
    offline = _offline()
    served = offline.copy()
    served[:, 2] *= 100.0
    report = {f.feature: f for f in compare(served, offline, NAMES, LIMITS)}
    assert _flagged(served, offline) == ["f02"]
    assert report["f02"].rate == 1.0 and report["f02"].mean_abs_diff > 10
    assert report["f00"].skewed == 0


def test_swapped_columns_name_both():
    offline = _offline()
    served = offline[:, [0, 2, 1, 3]]
    assert _flagged(served, offline) == ["f01", "f02"]


def test_a_stale_feature_is_flagged_when_enough_rows_differ():
    offline = _offline()
    served = offline.copy()
    served[:100, 3] = _offline()[:100, 3] + 0.5  # yesterday's values for half the entities
    assert _flagged(served, offline) == ["f03"]


def test_rows_without_an_offline_value_are_counted_not_compared():
    offline = _offline(30)
    offline[:15, 0] = np.nan
    served = offline.copy()
    served[:15, 0] = 9.0
    report = compare(served, offline, NAMES, LIMITS)[0]
    assert (report.compared, report.no_offline_value, report.skewed) == (15, 15, 0)
    assert _flagged(served, offline) == []  # 15 compared rows are below min_rows


def test_float32_rounding_is_not_skew():
    offline = _offline().astype(np.float64)
    served = offline.astype(np.float32)  # what the served float32 matrix holds
    assert _flagged(served, offline) == []


def test_served_ids_carry_the_version_and_arm():
    frame_id = served_frame_id(7, "canary")
    assert parse_served_id(f"{frame_id}:12") == (7, "canary")
    assert parse_served_id("frame-1:3") is None
    assert parse_served_id("served:x:canary:abc:1") is None


def test_limits_are_checked():
    with pytest.raises(ValueError):
        SkewLimits(max_rate=1.5)
