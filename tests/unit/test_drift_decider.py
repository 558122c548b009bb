"""The decider: parts from any partition fold once, into one monitor, and survive a restart."""

from __future__ import annotations

import numpy as np
import pytest

from driftline.drift.config import DriftConfig
from driftline.drift.decider import Decider
from driftline.drift.exceptions import InvalidValue, SnapshotError
from driftline.drift.monitor import MonitorKey
from driftline.drift.profile import ReferenceProfile
from driftline.drift.summary import (
    ErrorPart,
    InputPart,
    chunks,
    decode_parts,
    encode_parts,
    merge_order,
    sample_rows,
    split,
    split_errors,
)

NAMES = tuple(f"f{i:02d}" for i in range(16))
KEY = MonitorKey("m", 1, "champion")


@pytest.fixture(scope="module")
def reference() -> ReferenceProfile:
    rng = np.random.default_rng(0)
    return ReferenceProfile.from_matrix(rng.normal(size=(20_000, 16)), list(NAMES))


def _rows(n: int, shift_at: int | None = None, seed: int = 1) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, 16)).astype(np.float32)
    if shift_at is not None:
        x[shift_at:, 3] += 0.5
    return x


def _frames(x: np.ndarray, source: str, start: int, frame: int = 500, every: int = 1):
    """One part per frame of ``frame`` rows, offsets from ``start``, ``every``-th rows kept;
    ``source`` is ``<topic>/<partition>``."""
    topic, partition = source.split("/")
    parts = []
    for i, lo in enumerate(range(0, len(x), frame)):
        rows = x[lo : lo + frame]
        keep = sample_rows(f"frame-{start + i}", len(rows), every)
        index = np.arange(len(rows), dtype=np.int32)[keep]
        parts.append(
            InputPart(
                KEY,
                topic,
                NAMES,
                np.array([int(partition)], dtype=np.int32),
                np.array([start + i]),
                np.array([start + i]),  # event time: one ms a frame
                np.array([len(rows)], dtype=np.int32),
                np.array([len(index)], dtype=np.int32),
                index,
                rows[keep],
                (1 / (1 + np.exp(-rows[keep, 0]))).astype(np.float32),
            )
        )
    return parts


def _fold(decider: Decider, parts) -> list:
    return [alarm for part in parts for alarm in decider.fold(part)]


class TestMarks:
    def test_a_part_that_comes_again_is_not_counted_again(self, reference):
        decider = Decider(DriftConfig(), lambda model, version: reference)
        parts = _frames(_rows(6_000), "features/0", 0)
        _fold(decider, parts)
        _fold(decider, parts[3:])  # a redelivered batch
        watched = decider.watched[KEY]
        assert watched.records == 6_000 and watched.monitor.inputs.seen == 6_000
        assert decider.skipped == 9 * 500 and watched.marks == {"features/0": 12}

    def test_a_part_half_folded_before_folds_its_new_messages_only(self, reference):
        decider = Decider(DriftConfig(), lambda model, version: reference)
        x = _rows(2_000)
        first, second = split(_merge(_frames(x, "features/2", 10)), 2 * 500 * 72 + 100)
        assert (first.offsets.tolist(), second.offsets.tolist()) == ([10, 11], [12, 13])
        decider.fold(first)
        whole = _merge(_frames(x, "features/2", 10))
        decider.fold(whole)
        assert decider.watched[KEY].records == 2_000 and decider.skipped == 1_000

    def test_sources_have_their_own_marks(self, reference):
        decider = Decider(DriftConfig(), lambda model, version: reference)
        _fold(decider, _frames(_rows(1_000), "features/0", 0))
        _fold(decider, _frames(_rows(1_000, seed=2), "features/1", 0))  # offset 0 again
        assert decider.watched[KEY].records == 2_000
        assert decider.watched[KEY].marks == {"features/0": 2, "features/1": 2}


class TestOneMonitorForEveryPartition:
    def test_a_shift_seen_on_two_partitions_is_one_alarm(self, reference):
        decider = Decider(DriftConfig(), lambda model, version: reference)
        x = _rows(40_000, shift_at=20_000)
        alarms = []
        # Two partitions, alternating 4,000-record batches: the monitor sees both.
        for i, lo in enumerate(range(0, 40_000, 4_000)):
            alarms += _fold(decider, _frames(x[lo : lo + 4_000], f"features/{i % 2}", lo // 500))
        inputs = [a for a in alarms if a.stream == "input"]
        assert [(a.detector, a.feature, a.position) for a in inputs] == [("ks+psi", "f03", 22_000)]

    def test_sampled_frames_count_records_in_positions(self, reference):
        decider = Decider(DriftConfig(sample_every=8), lambda model, version: reference)
        x = _rows(320_000, shift_at=160_000)
        alarms = _fold(decider, _frames(x, "features/0", 0, frame=2_000, every=8))
        inputs = [a for a in alarms if a.stream == "input"]
        assert [(a.detector, a.feature) for a in inputs] == [("ks+psi", "f03")]
        # Two windows of 1,000 tested rows after the shift: about 16,000 records.
        assert 160_000 + 12_000 < inputs[0].position <= 160_000 + 20_000
        assert decider.watched[KEY].monitor.inputs.seen == 40_000

    def test_errors_from_many_join_partitions_are_one_stream(self):
        config = DriftConfig(error_detectors=("adwin", "hddm_a"))
        decider = Decider(config, lambda model, version: None)
        rng = np.random.default_rng(5)
        errors = (rng.random(8_000) < np.r_[np.full(4_000, 0.1), np.full(4_000, 0.5)]).astype(int)
        alarms = []
        for lo in range(0, 8_000, 400):  # 4 join partitions, 100 outcomes each per batch
            for p in range(4):
                chunk = errors[lo + 100 * p : lo + 100 * (p + 1)]
                offsets = np.arange(lo // 4, lo // 4 + 100)
                alarms += decider.fold(ErrorPart(KEY, f"outcome-join/{p}", offsets, chunk))
        assert len(alarms) == 1 and 4_000 < alarms[0].position < 4_400
        assert decider.watched[KEY].monitor.outcomes_seen == 8_000


class TestRestart:
    def test_records_restore_every_monitor_where_it_was(self, reference):
        x = _rows(40_000, shift_at=20_000)
        parts = _frames(x, "features/0", 0)
        straight = Decider(DriftConfig(), lambda model, version: reference)
        want = _fold(straight, parts)

        table: dict[MonitorKey, bytes] = {}
        first = Decider(DriftConfig(), lambda model, version: reference, table.get)
        got = _fold(first, parts[:30])
        for key in first.take_touched():
            table[key] = first.record(key)
        # A new decider (a restarted worker) gets the record, and the batch again.
        resumed = Decider(DriftConfig(), lambda model, version: reference, table.get)
        got += _fold(resumed, parts[25:])
        assert [(a.stream, a.feature, a.position) for a in got] == [
            (a.stream, a.feature, a.position) for a in want
        ]
        assert resumed.restored == {KEY.label(): {"features/0": 30}}
        assert resumed.skipped == 5 * 500

    def test_a_record_of_another_monitor_is_refused(self, reference):
        first = Decider(DriftConfig(), lambda model, version: reference)
        _fold(first, _frames(_rows(500), "features/0", 0))
        other = MonitorKey("m", 2, "champion")
        resumed = Decider(DriftConfig(), lambda model, version: reference, lambda key: (
            first.record(KEY) if key == other else None
        ))  # fmt: skip
        part = _frames(_rows(500), "features/0", 0)[0]
        with pytest.raises(SnapshotError, match="not m/v2/champion"):
            resumed.fold(InputPart(other, *[getattr(part, f) for f in _FIELDS[1:]]))


class TestSummaries:
    def test_round_trip_and_checks(self, reference):
        x = _rows(1_200)
        parts = [_merge(_frames(x, "features/1", 7, frame=400, every=3))]
        parts.append(ErrorPart(KEY, "outcome-join/3", np.array([1, 1, 5]), np.array([1, 0, 1])))
        back = decode_parts(encode_parts(parts))
        assert back[0].source == "features" and back[0].offsets.tolist() == [7, 8, 9]
        assert back[0].partitions.tolist() == [1, 1, 1]
        np.testing.assert_array_equal(back[0].rows, parts[0].rows)
        assert back[1].errors.tolist() == [1, 0, 1]
        with pytest.raises(InvalidValue, match="offsets must increase"):
            InputPart(*[getattr(parts[0], f) for f in _FIELDS[:4]], np.array([9, 8, 7]),
                      *[getattr(parts[0], f) for f in _FIELDS[5:]])  # fmt: skip
        with pytest.raises(InvalidValue, match="0 or 1"):
            ErrorPart(KEY, "j", np.array([1]), np.array([2]))
        with pytest.raises(SnapshotError):
            decode_parts(b"garbage")

    def test_pieces_never_cut_a_message(self):
        offsets = np.repeat(np.arange(10), 30)  # 10 join messages of 30 outcomes each
        part = ErrorPart(KEY, "outcome-join/0", offsets, np.zeros(300, dtype=np.int8))
        pieces = split_errors(part, 9 * 100)
        assert sum(len(p.errors) for p in pieces) == 300
        for a, b in zip(pieces, pieces[1:], strict=False):
            assert a.offsets[-1] < b.offsets[0]
        assert [len(group) for group in chunks(pieces, 2 * (9 * 90 + 200))] == [2, 2]

    def test_sampling_is_a_function_of_the_frame(self):
        first = sample_rows("frame-9", 2_000, 8)
        assert first == sample_rows("frame-9", 2_000, 8) and first.step == 8
        assert sample_rows("frame-9", 2_000, 1) == slice(0, 2_000, 1)
        # A huge frame is thinned further so that its rows fit in one message.
        assert sample_rows("frame-9", 100_000, 8, max_rows=5_000).step == 20


_FIELDS = ("key", "source", "feature_names", "partitions", "offsets", "times", "records")
_FIELDS += ("taken", "index", "rows")
_FIELDS += ("scores",)


def _merge(parts: list[InputPart]) -> InputPart:
    def cat(name):
        return np.concatenate([getattr(p, name) for p in parts])

    head = parts[0]
    return InputPart(head.key, head.source, head.feature_names, *map(cat, _FIELDS[3:]))


class TestMergeOrder:
    def test_partitions_interleave_by_event_time_and_keep_their_offset_order(self):
        partitions = np.array([0, 0, 0, 1, 1])
        offsets = np.array([10, 11, 12, 3, 4])
        times = np.array([100, 90, 300, 150, 250])  # partition 0 goes back in time once
        # 11 stays after 10 (merged at 100, its running maximum), 3 and 4 fit in between.
        assert merge_order(partitions, offsets, times).tolist() == [0, 1, 3, 4, 2]
