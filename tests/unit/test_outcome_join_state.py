"""The outcomes join's changelogged table stays bounded: a state record is dropped once
every prediction it holds has left, and the outcomes it holds that still wait are carried
forward, so a restart rebuilds the same state (nothing joined twice, nothing lost)."""

from __future__ import annotations

import time

from driftline.drift.config import DriftConfig
from driftline.streams.stages.outcome_join import OutcomeJoiner
from driftline.streams.testing import StageRig
from tests.unit.test_outcome_join_packing import PARTITIONS, join_all, outcome, publish_pending


def joiner_on(rig: StageRig, table: dict | None = None, max_pending: int = 3) -> OutcomeJoiner:
    joiner = OutcomeJoiner(
        config=DriftConfig(),
        wait_ms=60_000,
        max_pending=max_pending,
        partitions=PARTITIONS,
        codec=rig.codec,
        delivery=rig.delivery,
        dead_letters=rig.dead_letters,
        join_topic="join",
        summaries_topic="summaries",
        state_topic="state",
        state_producer=rig.producer,
        stats=rig.stats,
    )
    if table is not None:
        joiner.table = dict(table)  # a restart: the state comes back from the changelog
    return joiner


def score(rig: StageRig, joiner: OutcomeJoiner, ids: list[str]) -> list:
    """Predictions published and joined, one batch each, a few ms apart (state records are
    told apart by the time they were written)."""
    messages = []
    for pid in ids:
        publish_pending(rig, joiner, [pid])
        sent = rig.producer.take("join")
        join_all(rig, joiner, sent)
        messages += sent
        time.sleep(0.003)
    return messages


def route_and_join(rig: StageRig, joiner: OutcomeJoiner, ids: list[str]) -> None:
    rig.run(joiner.route, [outcome(rig, pid, 1.0) for pid in ids])
    join_all(rig, joiner, rig.producer.take("join"))
    time.sleep(0.003)


def expire(rig: StageRig, joiner: OutcomeJoiner) -> None:
    rig.run(lambda _, batch: joiner.expire(batch), [])
    joiner.note_state()


def carry_keys(joiner: OutcomeJoiner) -> list[bytes]:
    return sorted(k for k in joiner.table if k.count(b"|") == 3)


def restarted(
    rig: StageRig, joiner: OutcomeJoiner, replay: list, max_pending: int = 3
) -> OutcomeJoiner:
    """A new joiner on the old one's table, its state rebuilt by a redelivered message on
    each join partition (already processed: it changes nothing)."""
    again = joiner_on(rig, joiner.table, max_pending)
    for partition in range(PARTITIONS):
        old = [m for m in replay if m.partition == partition][:1]
        rig.run(again, old)
    expire(rig, again)
    return again


def test_records_whose_predictions_all_left_are_dropped():
    rig = StageRig()
    joiner = joiner_on(rig)
    score(rig, joiner, [f"rec-{n}" for n in range(40)])
    before = len(joiner.table)
    expire(rig, joiner)
    # At most max_pending (3) predictions pending per partition, one record each, and the
    # next offset of each partition: nothing else is live.
    assert before >= 40
    assert len(joiner.table) <= PARTITIONS * (3 + 1)
    assert rig.stats.outcome_join["pending_rows"] <= PARTITIONS * 3
    assert rig.stats.outcome_join["state_records"] == len(joiner.table)
    assert rig.stats.outcome_join["state_bytes"] > 0


def test_a_waiting_outcome_is_carried_past_the_drop_and_joins_once_after_a_restart():
    rig = StageRig()
    joiner = joiner_on(rig)
    route_and_join(rig, joiner, ["early-0", "early-1"])  # outcomes before their predictions
    replay = score(rig, joiner, [f"rec-{n}" for n in range(40)])
    expire(rig, joiner)
    assert carry_keys(joiner), "the waiting outcomes' records were dropped without a carry"
    assert rig.stats.outcome_join["waiting_outcomes"] == 2

    again = restarted(rig, joiner, replay)
    assert rig.stats.outcome_join["waiting_outcomes"] == 2  # each exactly once
    score(rig, again, ["early-0", "early-1"])
    assert rig.stats.outcomes["joined"] == 2
    assert rig.dead() == []


def test_the_carry_is_rewritten_not_duplicated_and_forgets_what_was_resolved():
    rig = StageRig()
    joiner = joiner_on(rig)
    route_and_join(rig, joiner, ["early-0", "early-1"])
    replay = score(rig, joiner, [f"rec-{n}" for n in range(40)])
    expire(rig, joiner)
    first = carry_keys(joiner)
    replay += score(rig, joiner, [f"more-{n}" for n in range(10)])
    expire(rig, joiner)
    assert len(carry_keys(joiner)) == len(first)
    assert rig.stats.outcome_join["waiting_outcomes"] == 2

    replay += score(rig, joiner, ["early-0", "early-1"])  # both resolved
    expire(rig, joiner)
    assert carry_keys(joiner) == []
    restarted(rig, joiner, replay)
    assert rig.stats.outcome_join["waiting_outcomes"] == 0  # not resurrected
    assert rig.stats.outcomes["joined"] == 2


def test_a_restart_after_compaction_rebuilds_the_same_state():
    rig = StageRig()
    joiner = joiner_on(rig, max_pending=5)
    route_and_join(rig, joiner, [f"early-{n}" for n in range(7)])
    replay = score(rig, joiner, [f"rec-{n}" for n in range(30)])
    route_and_join(rig, joiner, ["rec-29", "rec-28", "nobody"])
    expire(rig, joiner)
    held = dict(rig.stats.outcome_join)

    restarted(rig, joiner, replay, max_pending=5)
    rebuilt = rig.stats.outcome_join
    assert rebuilt["pending_rows"] == held["pending_rows"]
    assert rebuilt["waiting_outcomes"] == held["waiting_outcomes"] == 8
    # The two joined rows stay labelled after the restart: a redelivery is a duplicate.
    again = joiner_on(rig, joiner.table, max_pending=5)
    route_and_join(rig, again, ["rec-29"])
    assert rig.stats.outcomes["duplicate"] == 1
