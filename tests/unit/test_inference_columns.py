"""Packed frame columns: exact round trips, row selection and the routing hash."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from driftline.inference.columns import PackedStrings, pack_times, unpack_times
from driftline.inference.routing import bucket_of, entity_buckets

ids = st.lists(st.text(max_size=12), max_size=40)


@given(ids)
def test_strings_round_trip_through_the_avro_buffers(values) -> None:
    packed = PackedStrings.from_strings(values)
    back = PackedStrings.from_buffers(len(values), packed.offsets_bytes(), packed.data_bytes(), "t")
    assert back.to_list() == values
    assert back.lengths.tolist() == [len(v.encode()) for v in values]


@given(ids, st.data())
def test_take_selects_the_same_strings_as_indexing_a_list(values, data) -> None:
    rows = np.array(
        data.draw(st.lists(st.integers(0, max(len(values) - 1, 0)), max_size=30)) if values else [],
        dtype=np.int64,
    )
    assert PackedStrings.from_strings(values).take(rows).to_list() == [values[r] for r in rows]


@given(st.lists(ids, max_size=4))
def test_concat_equals_packing_the_joined_list(groups) -> None:
    joined = PackedStrings.concat([PackedStrings.from_strings(g) for g in groups])
    assert joined.to_list() == [v for g in groups for v in g]


@given(st.lists(st.text(min_size=1, max_size=20).filter(lambda s: "\x00" not in s), max_size=40))
def test_packed_ids_hash_to_the_reference_buckets(values) -> None:
    packed = entity_buckets(PackedStrings.from_strings(values), "exp-1")
    assert packed.tolist() == [bucket_of(v, "exp-1") for v in values]
    assert packed.tolist() == entity_buckets(values, "exp-1").tolist()


def test_packed_ids_may_hold_nul_and_still_hash_by_their_bytes() -> None:
    values = ["a\x00b", "a", "\x00"]
    assert entity_buckets(PackedStrings.from_strings(values), "s").tolist() == [
        bucket_of(v, "s") for v in values
    ]


def test_non_strings_are_refused_by_name() -> None:
    with pytest.raises(TypeError, match="entity ids must be strings, got 7"):
        PackedStrings.from_strings(["a", 7])


@pytest.mark.parametrize(
    ("n", "offsets", "data", "message"),
    [
        (1, [0, 1], b"ab", "rise from 0 to 2"),
        (1, [1, 2], b"ab", "rise from 0 to 2"),
        (1, [0, 2, 1], b"a", "4 \\* \\(n_rows \\+ 1\\)"),
        (1, [0, 1], b"\xff", "not UTF-8"),
        (2, [0, 1, 2], "é".encode(), "inside a UTF-8 character"),
    ],
)
def test_bad_buffers_are_refused_saying_what_is_wrong(n, offsets, data, message) -> None:
    raw = np.asarray(offsets, dtype="<i4").tobytes()
    with pytest.raises(ValueError, match=message):
        PackedStrings.from_buffers(n, raw, data, "frame 'f'")


def test_times_round_trip_and_a_wrong_size_is_refused() -> None:
    times = [1_700_000_000_000, -1, 0]
    assert unpack_times(pack_times(times), 3, "f").tolist() == times
    with pytest.raises(ValueError, match="expected 24"):
        unpack_times(pack_times(times)[:-1], 3, "f")
