"""Batch checks against a model's input signature."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from driftline.inference import (
    FEATURE_COUNT_MISMATCH,
    FEATURE_NAMES_MISMATCH,
    NON_FINITE,
    InputSignature,
    check_batch,
)

NAMES = ("a", "b", "c", "d")
SIG = InputSignature("features", 4, NAMES, model_name="fraud", model_version=2)
SIG_NO_NAMES = InputSignature("features", 4, None)


def row(values, names=None):
    return {"record_id": "r", "features": values, "feature_names": names}


def good(i: int) -> list[float]:
    return [float(i), i + 0.5, -float(i), 1.0]


def test_all_good_rows_become_one_matrix():
    rows = [row(good(i)) for i in range(5)]
    checked = check_batch(SIG, rows)
    assert checked.accepted == [0, 1, 2, 3, 4]
    assert checked.rejected == []
    assert checked.matrix.dtype == np.float32 and checked.matrix.flags.c_contiguous
    np.testing.assert_array_equal(checked.matrix, np.array([good(i) for i in range(5)], np.float32))


def test_empty_batch():
    checked = check_batch(SIG, [])
    assert checked.matrix.shape == (0, 4) and checked.accepted == [] and checked.rejected == []


def test_wrong_count_is_rejected_with_a_readable_detail():
    rows = [row(good(0)), row([1.0, 2.0, 3.0]), row(good(2)), row(good(3) + [9.0])]
    checked = check_batch(SIG, rows)
    assert checked.accepted == [0, 2]
    assert [(r.index, r.reason) for r in checked.rejected] == [
        (1, FEATURE_COUNT_MISMATCH),
        (3, FEATURE_COUNT_MISMATCH),
    ]
    assert checked.rejected[0].detail == "expected 4 features for model 'fraud' v2, got 3"
    np.testing.assert_array_equal(checked.matrix, np.array([good(0), good(2)], np.float32))


@pytest.mark.parametrize("bad_value", [math.nan, math.inf, -math.inf, 1e39])
def test_non_finite_values_are_rejected(bad_value):
    rows = [row(good(0)), row([1.0, 2.0, bad_value, 4.0]), row(good(2))]
    checked = check_batch(SIG, rows)
    assert checked.accepted == [0, 2]
    (rejection,) = checked.rejected
    assert (rejection.index, rejection.reason) == (1, NON_FINITE)
    assert "feature 'c' (index 2)" in rejection.detail
    assert repr(bad_value) in rejection.detail
    np.testing.assert_array_equal(checked.matrix, np.array([good(0), good(2)], np.float32))


def test_wrong_names_are_rejected_and_right_names_pass():
    rows = [
        row(good(0), list(NAMES)),
        row(good(1), ["a", "b", "x", "d"]),
        row(good(2)),
        row(good(3), ["a", "b", "c"]),
        row(good(4), NAMES),  # a tuple compares equal too
    ]
    checked = check_batch(SIG, rows)
    assert checked.accepted == [0, 2, 4]
    assert [(r.index, r.reason) for r in checked.rejected] == [
        (1, FEATURE_NAMES_MISMATCH),
        (3, FEATURE_NAMES_MISMATCH),
    ]
    assert "position 2 is 'x', expected 'c'" in checked.rejected[0].detail
    assert "got 3 names, expected 4" in checked.rejected[1].detail


def test_names_are_only_checked_for_length_when_the_model_has_none():
    rows = [row(good(0), ["p", "q", "r", "s"]), row(good(1), ["p", "q"])]
    checked = check_batch(SIG_NO_NAMES, rows)
    assert checked.accepted == [0]
    assert checked.rejected[0].reason == FEATURE_NAMES_MISMATCH
    assert "2 feature names for 4 values" in checked.rejected[0].detail
    assert "this model" in check_batch(SIG_NO_NAMES, [row([1.0])]).rejected[0].detail


def test_one_rejection_per_row_first_failure_wins():
    # Wrong count *and* NaN *and* wrong names: reported once, as the count.
    checked = check_batch(SIG, [row([math.nan], ["z"])])
    assert [(r.index, r.reason) for r in checked.rejected] == [(0, FEATURE_COUNT_MISMATCH)]
    checked = check_batch(SIG, [row([math.nan, 1.0, 2.0, 3.0], ["z", "b", "c", "d"])])
    assert [(r.index, r.reason) for r in checked.rejected] == [(0, FEATURE_NAMES_MISMATCH)]


def test_good_rows_around_bad_ones_keep_their_indices():
    rows = [
        row(good(0)),
        row([1.0]),
        row(good(2)),
        row([math.nan, 0.0, 0.0, 0.0]),
        row(good(4)),
        row(good(5), ["w", "x", "y", "z"]),
        row(good(6)),
    ]
    checked = check_batch(SIG, rows)
    assert checked.accepted == [0, 2, 4, 6]
    assert [r.index for r in checked.rejected] == [1, 3, 5]
    assert [r.reason for r in checked.rejected] == [
        FEATURE_COUNT_MISMATCH,
        NON_FINITE,
        FEATURE_NAMES_MISMATCH,
    ]
    for position, index in enumerate(checked.accepted):
        np.testing.assert_array_equal(checked.matrix[position], np.float32(good(index)))


def test_non_numbers_are_rejected_not_raised():
    rows = [row(good(0)), row([1.0, "x", 2.0, 3.0]), row([None, 1.0, 2.0, 3.0]), row(good(3))]
    checked = check_batch(SIG, rows)
    assert checked.accepted == [0, 3]
    assert [(r.index, r.reason) for r in checked.rejected] == [(1, NON_FINITE), (2, NON_FINITE)]
    assert "not all numbers" in checked.rejected[0].detail


def test_objects_with_attributes_work_too():
    rows = [SimpleNamespace(features=good(0), feature_names=None), SimpleNamespace(features=[1.0])]
    checked = check_batch(SIG, rows)
    assert checked.accepted == [0]
    assert checked.rejected[0].reason == FEATURE_COUNT_MISMATCH


def test_numpy_rows_are_accepted():
    rows = [row(np.arange(4, dtype=np.float64)), row(np.arange(4, dtype=np.float32))]
    np.testing.assert_array_equal(
        check_batch(SIG, rows).matrix, np.tile(np.arange(4, dtype=np.float32), (2, 1))
    )


# One generated row: (kind, features, names).
_finite = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False, width=32)
_row_kinds = st.one_of(
    st.lists(_finite, min_size=4, max_size=4).map(lambda v: ("good", v, None)),
    st.lists(_finite, min_size=4, max_size=4).map(lambda v: ("good", v, list(NAMES))),
    st.lists(_finite, max_size=7)
    .filter(lambda v: len(v) != 4)
    .map(lambda v: (FEATURE_COUNT_MISMATCH, v, None)),
    st.tuples(st.lists(_finite, min_size=4, max_size=4), st.integers(0, 3)).flatmap(
        lambda t: st.sampled_from([math.nan, math.inf, -math.inf]).map(
            lambda bad: (NON_FINITE, t[0][: t[1]] + [bad] + t[0][t[1] + 1 :], None)
        )
    ),
    st.lists(_finite, min_size=4, max_size=4).map(
        lambda v: (FEATURE_NAMES_MISMATCH, v, ["a", "b", "d", "c"])
    ),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(_row_kinds, max_size=30))
def test_every_row_is_accepted_or_rejected_exactly_once(generated):
    rows = [row(features, names) for _, features, names in generated]
    checked = check_batch(SIG, rows)
    expected_accepted = [i for i, (kind, _, _) in enumerate(generated) if kind == "good"]
    assert checked.accepted == expected_accepted
    assert [(r.index, r.reason) for r in checked.rejected] == [
        (i, kind) for i, (kind, _, _) in enumerate(generated) if kind != "good"
    ]
    assert checked.matrix.shape == (len(expected_accepted), 4)
    expected = np.array([generated[i][1] for i in expected_accepted], np.float32).reshape(-1, 4)
    np.testing.assert_array_equal(checked.matrix, expected)
