"""The outcomes join: every outcome ends joined, late, unmatched or duplicate; state round-trips."""

from __future__ import annotations

import numpy as np
import pytest

from drift.exceptions import InvalidValue
from drift.outcomes import OutcomeJoin, Pending, join_key, parts_from_bytes, parts_to_bytes

WAIT = 10_000


def _join(**kwargs) -> OutcomeJoin:
    return OutcomeJoin(wait_ms=WAIT, max_pending=kwargs.pop("max_pending", 1_000), **kwargs)


def _frame_parts(scored_at: int = 1_000) -> tuple[Pending, Pending]:
    # Rows 0, 2, 4 on the champion, rows 1, 3 on the challenger of one frame.
    champion = Pending(
        "m", 1, "champion", scored_at, np.array([0.9, 0.2, 0.7]), np.array([0, 2, 4])
    )
    challenger = Pending("m", 2, "challenger", scored_at, np.array([0.6, 0.1]), np.array([1, 3]))
    return champion, challenger


class TestJoinKey:
    def test_frame_rows_and_records(self):
        assert join_key("pf1:7") == ("pf1", 7)
        assert join_key("abc") == ("abc", None)

    def test_row_must_be_a_number(self):
        with pytest.raises(InvalidValue, match="row number"):
            join_key("pf1:x")


class TestJoin:
    def test_outcome_joins_the_arm_that_served_the_row(self):
        join = _join()
        champion, challenger = _frame_parts()
        join.add_pending("pf", champion, now_ms=1_000)
        join.add_pending("pf", challenger, now_ms=1_000)
        got = join.add_outcome("pf:3", 1.0, event_time=2_000, now_ms=2_000)
        assert (got.arm, got.version, got.score, got.error) == ("challenger", 2, 0.1, 1)
        right = join.add_outcome("pf:4", 1.0, event_time=2_000, now_ms=2_000)
        assert (right.arm, right.score, right.error) == ("champion", 0.7, 0)
        assert join.counts == {"joined": 2}

    def test_outcome_before_its_prediction_waits_then_joins(self):
        join = _join()
        assert join.add_outcome("pf:1", 0.0, event_time=900, now_ms=900) is None
        champion, challenger = _frame_parts()
        assert join.add_pending("pf", champion, now_ms=1_000) == []  # row 1 is not the champion's
        joined = join.add_pending("pf", challenger, now_ms=1_000)
        assert [(j.prediction_id, j.error) for j in joined] == [("pf:1", 1)]
        assert join.waiting == {}

    def test_late_outcome_is_reported_not_joined(self):
        join = _join()
        join.add_pending("r1", Pending("m", 1, "champion", 1_000, np.array([0.8])), now_ms=1_000)
        assert join.add_outcome("r1", 1.0, event_time=1_000 + WAIT + 1, now_ms=0, source=5) is None
        late, unmatched = join.take_reports()
        assert [(r.prediction_id, r.source) for r in late] == [("r1", 5)] and unmatched == []
        assert join.counts == {"late": 1}

    def test_duplicate_outcome_counted_once(self):
        join = _join()
        join.add_pending("r1", Pending("m", 1, "champion", 1_000, np.array([0.8])), now_ms=1_000)
        assert join.add_outcome("r1", 1.0, 1_500, 1_500) is not None
        assert join.add_outcome("r1", 0.0, 1_600, 1_600) is None
        assert join.counts == {"joined": 1, "duplicate": 1}

    def test_unmatched_outcomes_reported_after_the_wait(self):
        join = _join()
        join.add_outcome("nobody", 1.0, 100, now_ms=100, source=3)
        join.expire(now_ms=100 + WAIT)  # not yet
        assert join.take_reports() == ([], [])
        join.expire(now_ms=101 + WAIT)
        late, unmatched = join.take_reports()
        assert [(r.prediction_id, r.value, r.source) for r in unmatched] == [("nobody", 1.0, 3)]
        assert join.counts == {"unmatched": 1} and join.waiting == {}

    def test_pending_expire_after_the_wait_and_oldest_evicted_beyond_the_cap(self):
        join = _join(max_pending=4)
        champion, challenger = _frame_parts(scored_at=0)
        join.add_pending("old", champion, now_ms=0)  # 3 rows
        join.add_pending("new", Pending("m", 1, "champion", 50, np.array([0.5, 0.5])), now_ms=50)
        assert list(join.pending) == ["new"] and join.counts["evicted"] == 3
        join.expire(now_ms=50 + WAIT + 1)
        assert not join.pending and join.counts["expired_rows"] == 2

    def test_redelivered_part_does_not_reset_labels(self):
        join = _join()
        champion, _ = _frame_parts()
        join.add_pending("pf", champion, now_ms=1_000)
        join.add_outcome("pf:0", 1.0, 1_100, 1_100)
        again, _ = _frame_parts()
        join.add_pending("pf", again, now_ms=1_200)
        join.add_outcome("pf:0", 1.0, 1_300, 1_300)
        assert join.counts == {"joined": 1, "duplicate": 1}


class TestState:
    def test_dirty_keys_round_trip_through_bytes(self):
        join = _join()
        champion, challenger = _frame_parts()
        join.add_pending("pf", champion, now_ms=1_000)
        join.add_pending("pf", challenger, now_ms=1_000)
        join.add_outcome("pf:2", 0.0, 1_100, 1_100)
        join.add_outcome("other:0", 1.0, 1_100, 1_100, source=9)
        dirty = join.take_dirty()
        assert set(dirty) == {"pf", "other"} and join.take_dirty() == {}

        restored = _join()
        for key, (pending, waiting) in dirty.items():
            restored.load(key, pending, waiting)
        restored.order_pending()
        # The labelled row stays labelled; the waiting outcome is still waiting.
        assert restored.add_outcome("pf:2", 0.0, 1_200, 1_200) is None
        assert restored.counts == {"duplicate": 1}
        assert restored.waiting["other"][0][0] == "other:0"

    def test_parts_bytes_round_trip(self):
        champion, challenger = _frame_parts()
        champion.labelled[1] = True
        back = parts_from_bytes(parts_to_bytes([champion, challenger]))
        assert [(p.arm, p.version, p.scored_at) for p in back] == [
            ("champion", 1, 1_000),
            ("challenger", 2, 1_000),
        ]
        np.testing.assert_array_equal(back[0].rows, [0, 2, 4])
        np.testing.assert_array_equal(back[0].labelled, [False, True, False])
        np.testing.assert_array_equal(back[1].scores, [0.6, 0.1])
        single = Pending("m", 1, "champion", 5, np.array([0.3]))
        (again,) = parts_from_bytes(parts_to_bytes([single]))
        assert again.rows is None and again.index_of(0) == 0 and again.index_of(1) is None
