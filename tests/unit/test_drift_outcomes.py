"""The outcomes join: every outcome ends joined, late, unmatched or duplicate; state round-trips."""

from __future__ import annotations

import numpy as np
import pytest

from driftline.drift.exceptions import InvalidValue
from driftline.drift.outcomes import OutcomeJoin, Pending, decode_pending, encode_pending, join_key

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
    def test_replaying_the_deltas_rebuilds_the_state(self):
        join = _join()
        champion, challenger = _frame_parts()
        join.add_pending("pf", champion, now_ms=1_000)
        join.add_pending("pf", challenger, now_ms=1_000)
        join.add_outcome("pf:2", 0.0, 1_100, 1_100)
        first = join.take_delta(now_ms=1_100)
        join.add_outcome("other:0", 1.0, 1_200, 1_200, source=9)
        join.add_outcome("late:0", 1.0, 1_200, 1_200, source=10)
        join.add_pending("late", Pending("m", 1, "champion", 1_250, np.array([0.4])), 1_250)
        second = join.take_delta(now_ms=1_300)
        assert join.take_delta(now_ms=1_400) is None  # nothing changed since

        restored = _join()
        assert [restored.apply_delta(d) for d in (first, second)] == [1_100, 1_300]
        # The labelled rows stay labelled; the matched waiting outcome is gone; one still waits.
        assert restored.add_outcome("pf:2", 0.0, 1_500, 1_500) is None
        assert restored.add_outcome("late:0", 1.0, 1_500, 1_500) is None
        assert restored.counts == {"duplicate": 2}
        assert list(restored.waiting) == ["other"]
        assert restored.add_outcome("pf:1", 1.0, 1_500, 1_500).error == 0

    def test_replaying_a_delta_twice_changes_nothing(self):
        join = _join()
        champion, _ = _frame_parts()
        join.add_pending("pf", champion, now_ms=1_000)
        join.add_outcome("pf:0", 1.0, 1_100, 1_100)
        delta = join.take_delta(now_ms=1_100)
        restored = _join()
        restored.apply_delta(delta)
        restored.apply_delta(delta)
        assert len(restored.pending["pf"]) == 1 and restored.pending["pf"][0].labelled[0]

    def test_pending_message_round_trip(self):
        champion, challenger = _frame_parts()
        champion.labelled[1] = True
        single = Pending("m", 1, "champion", 5, np.array([0.3]))
        back = decode_pending(encode_pending([("pf", champion), ("pf", challenger), ("r", single)]))
        assert [(key, p.arm, p.version, p.scored_at) for key, p in back] == [
            ("pf", "champion", 1, 1_000),
            ("pf", "challenger", 2, 1_000),
            ("r", "champion", 1, 5),
        ]
        np.testing.assert_array_equal(back[0][1].rows, [0, 2, 4])
        np.testing.assert_array_equal(back[0][1].labelled, [False, True, False])
        np.testing.assert_allclose(back[1][1].scores, [0.6, 0.1], rtol=1e-7)  # sent as float32
        again = back[2][1]
        assert again.rows is None and again.index_of(0) == 0 and again.index_of(1) is None

    def test_decided_parts_travel_as_bits_and_join_alike(self):
        champion, _ = _frame_parts()
        decided = champion.decide(0.5)
        assert decided.scores.tolist() == [1.0, 0.0, 1.0] and decided.decided
        (_, back), *_ = decode_pending(encode_pending([("pf", decided)]))
        assert back.decided and back.scores.tolist() == [1.0, 0.0, 1.0]
        assert len(encode_pending([("pf", decided)])) < len(encode_pending([("pf", champion)]))
        # A decision of 1 is "positive" whatever the join's threshold; errors come out the same.
        plain, bits = _join(decision_threshold=0.8), _join(decision_threshold=0.8)
        plain.add_pending("pf", champion, now_ms=1_000)
        bits.add_pending("pf", champion.decide(0.8), now_ms=1_000)
        for join in (plain, bits):
            assert [join.add_outcome(f"pf:{r}", 1.0, 1_100, 1_100).error for r in (0, 2, 4)] == [
                0,
                1,
                1,
            ]

    def test_parts_written_with_float64_scores_still_decode(self):
        part = Pending("m", 1, "champion", 5, np.array([0.3, 0.7]), np.array([1, 4]))
        head = b'["m", 1, "champion", 5, 2, true]'  # before float32 scores: no width tag
        body = part.scores.astype("<f8").tobytes() + part.rows.astype("<i4").tobytes()
        body += np.packbits([True, False]).tobytes()
        blob = len(head).to_bytes(4, "big") + head + len(body).to_bytes(4, "big") + body
        back, end = Pending.from_bytes(blob)
        assert end == len(blob) and back.scores.tolist() == [0.3, 0.7]
        assert back.rows.tolist() == [1, 4] and back.labelled.tolist() == [True, False]
