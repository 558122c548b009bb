"""Pending parts as bytes: single records travel as columns, frames as parts, in order.

Every single record scored with the outcomes join on crosses the join topic and the
join's changelog as a one-row pending part. Version 2 writes those as columns; version 1
(one part each, with a JSON head) must still be read, from changelogs written before and
from the join topic during an upgrade.
"""

from __future__ import annotations

import numpy as np
import pytest

from driftline.drift.exceptions import InvalidValue, SnapshotError
from driftline.drift.outcomes import (
    DELTA_KIND,
    PENDING_KIND,
    OutcomeJoin,
    Pending,
    decode_pending,
    encode_pending,
    pack_entries,
    unpack_entries,
)
from driftline.drift.packing import pack, unpack


def _single(score: float, *, version: int = 1, arm: str = "champion", at: int = 5) -> Pending:
    return Pending("m", version, arm, at, np.array([score]))


def _entries() -> list[tuple[str, Pending]]:
    frame = Pending("m", 1, "champion", 1_000, np.array([0.9, 0.2, 0.7]), np.array([0, 2, 4]))
    frame.labelled[1] = True
    labelled = _single(0.4, at=7)
    labelled.labelled[0] = True
    return [
        ("r1", _single(0.3)),
        ("pf", frame),
        ("r2", _single(0.8, version=2, arm="challenger", at=6)),
        ("r3", labelled),
        ("r4", _single(0.55).decide(0.5)),
    ]


def _described(entries: list[tuple[str, Pending]]) -> list[tuple]:
    return [
        (
            key,
            p.model,
            p.version,
            p.arm,
            p.scored_at,
            np.asarray(p.scores, np.float32).tolist(),  # float32 on the wire, as before
            None if p.rows is None else p.rows.tolist(),
            p.labelled.tolist(),
            p.decided,
        )
        for key, p in entries
    ]


def _version_1(entries: list[tuple[str, Pending]]) -> bytes:
    """The join-topic message as driftline wrote it before the columns."""
    parts = {str(i): part.to_bytes() for i, (_, part) in enumerate(entries)}
    return pack("pending", parts, {"keys": [key for key, _ in entries]})


def test_a_mixed_batch_round_trips_in_order() -> None:
    entries = _entries()
    back = decode_pending(encode_pending(entries))
    assert _described(back) == _described(entries)
    single = back[0][1]
    assert single.rows is None and single.index_of(0) == 0 and single.index_of(1) is None


def test_the_columns_are_smaller_than_one_part_a_record() -> None:
    singles = [(f"record-{i}", _single(i / 1_000)) for i in range(1_000)]
    assert len(encode_pending(singles)) < len(_version_1(singles)) / 2


def test_decide_at_decides_the_scores_and_keeps_the_decisions() -> None:
    entries = _entries()
    back = dict(decode_pending(encode_pending(entries, decide_at=0.5)))
    assert [back[k].scores.tolist() for k in ("r1", "r2", "r3", "r4")] == [
        [0.0],
        [1.0],
        [0.0],
        [1.0],
    ]
    assert all(back[k].decided for k in ("r1", "r2", "r3", "r4"))
    assert back["r3"].labelled.tolist() == [True]
    # Frame parts are decided by the caller, part by part; their scores are left alone.
    assert not back["pf"].decided and back["pf"].scores.tolist() == pytest.approx([0.9, 0.2, 0.7])


def test_a_decided_single_joins_as_its_scores_did() -> None:
    scored = OutcomeJoin(wait_ms=10_000, max_pending=100)
    decided = OutcomeJoin(wait_ms=10_000, max_pending=100)
    for i, score in enumerate([0.2, 0.7, 0.5, 0.49]):
        scored.add_pending(f"r{i}", _single(score), now_ms=1_000)
    for key, part in decode_pending(
        encode_pending(
            [(f"r{i}", _single(s)) for i, s in enumerate([0.2, 0.7, 0.5, 0.49])], decide_at=0.5
        )  # fmt: skip
    ):
        decided.add_pending(key, part, now_ms=1_000)
    for join in (scored, decided):
        errors = [join.add_outcome(f"r{i}", 1.0, 1_100, 1_100).error for i in range(4)]
        assert errors == [1, 0, 0, 1]


def test_version_1_messages_and_deltas_are_still_read() -> None:
    entries = _entries()
    assert _described(decode_pending(_version_1(entries))) == _described(entries)
    old_delta = pack(
        "outcome-delta",
        {str(i): part.to_bytes() for i, (_, part) in enumerate(entries)},
        {"created_ms": 1_234, "keys": [k for k, _ in entries], "labelled": ["r1"],
         "waiting": [], "resolved": []},
    )  # fmt: skip
    join = OutcomeJoin(wait_ms=10_000, max_pending=100)
    assert join.apply_delta(old_delta) == 1_234
    assert join.pending["r1"][0].labelled.tolist() == [True]
    assert join.pending["pf"][0].rows.tolist() == [0, 2, 4]


def test_a_delta_round_trips_through_the_columns() -> None:
    join = OutcomeJoin(wait_ms=10_000, max_pending=100)
    for key, part in _entries():
        join.add_pending(key, part, now_ms=1_000)
    join.add_outcome("r2", 1.0, 1_050, 1_050)  # labels r2
    delta = join.take_delta(now_ms=1_100)
    assert unpack(DELTA_KIND, delta)[1]["created_ms"] == 1_100
    restored = OutcomeJoin(wait_ms=10_000, max_pending=100)
    assert restored.apply_delta(delta) == 1_100
    assert restored.apply_delta(delta) == 1_100  # replayed twice: the same state
    assert list(restored.pending) == list(join.pending)
    assert restored.held() == join.held()
    assert restored.pending["r2"][0].labelled.tolist() == [True]
    # The restored rows take their outcomes as the original join's do.
    assert restored.add_outcome("r2", 1.0, 1_200, 1_200) is None  # already labelled
    assert restored.add_outcome("r1", 0.0, 1_200, 1_200).error == 0


@pytest.mark.parametrize(
    "damage",
    ["short flags", "head out of range", "keys without kinds", "not a number array"],
)
def test_columns_that_do_not_add_up_are_refused(damage) -> None:
    parts, meta = pack_entries(_entries())
    if damage == "short flags":
        parts["f"] = parts["f"][:-1]
    elif damage == "head out of range":
        meta["heads"] = meta["heads"][:1]
    elif damage == "keys without kinds":
        meta["keys"] = [*meta["keys"], "extra"]
    else:
        parts["t"] = parts["t"][:-3]
    with pytest.raises(InvalidValue):
        unpack_entries(parts, meta)


def test_another_kind_is_refused_by_name() -> None:
    blob = pack("drift-monitor", {}, {})
    with pytest.raises(SnapshotError, match=f"{PENDING_KIND} or pending"):
        decode_pending(blob)
