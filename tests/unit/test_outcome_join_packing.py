"""Routed outcomes travel packed: one join-topic message per join partition and batch, cut
below the record limit, every outcome joined exactly once whichever side comes first."""

from __future__ import annotations

import time

import numpy as np
import pytest

from driftline.drift.config import DriftConfig
from driftline.drift.outcomes import Pending
from driftline.drift.packing import pack
from driftline.streams.kafka.limits import HEADROOM_BYTES, TOO_LARGE, MessageLimit
from driftline.streams.stages.outcome_join import (
    MAX_RECORD_BYTES,
    OUTCOME_TAG,
    OUTCOMES_TAG,
    OutcomeJoiner,
    decode_outcomes,
    join_partition,
)
from driftline.streams.testing import Consumed, StageRig

PARTITIONS = 2


def joiner_on(rig: StageRig) -> OutcomeJoiner:
    return OutcomeJoiner(
        config=DriftConfig(),
        wait_ms=60_000,
        max_pending=100_000,
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


def outcome(rig: StageRig, prediction_id: str, value: float):
    record = {
        "prediction_id": prediction_id,
        "entity_id": None,
        "value": value,
        "label": None,
        "event_time": time.time_ns() // 1_000_000,
    }
    return rig.message("outcomes", "Outcome", record, key=prediction_id.encode())


def pending(ids: list[str]) -> list[tuple[str, Pending]]:
    now = time.time_ns() // 1_000_000
    return [(pid, Pending("fraud", 1, "champion", now, np.array([0.9]))) for pid in ids]


def join_all(rig: StageRig, joiner: OutcomeJoiner, messages) -> None:
    for partition in sorted({m.partition for m in messages}):
        rig.run(joiner, [m for m in messages if m.partition == partition])


def publish_pending(rig: StageRig, joiner: OutcomeJoiner, ids: list[str]) -> None:
    rig.run(lambda messages, batch: joiner.publish_pending(pending(ids), batch), [])


@pytest.mark.parametrize("outcomes_first", [True, False])
def test_a_batch_of_outcomes_is_one_message_per_join_partition_and_all_join(outcomes_first):
    rig = StageRig()
    joiner = joiner_on(rig)
    ids = [f"rec-{n}" for n in range(200)]
    if not outcomes_first:
        publish_pending(rig, joiner, ids)
    batch = rig.run(joiner.route, [outcome(rig, pid, 1.0) for pid in ids])
    if outcomes_first:
        publish_pending(rig, joiner, ids)
    on_join = rig.producer.take("join")
    routed = [m for m in on_join if m.value[:1] == OUTCOMES_TAG]
    assert batch.remaining == 0 and rig.dead() == []
    assert len(routed) == PARTITIONS  # not one message an outcome
    for message in routed:
        inside = [rig.codec.decode_as("Outcome", v)["prediction_id"] for v, _ in decode_outcomes(
            message.value[1:])]  # fmt: skip
        assert {join_partition(pid, PARTITIONS) for pid in inside} == {message.partition}

    join_all(rig, joiner, on_join)
    assert rig.stats.outcomes["joined"] == len(ids)
    assert rig.dead() == []


def test_outcomes_over_half_a_record_are_cut_into_several_messages_each_under_the_limit():
    rig = StageRig()
    joiner = joiner_on(rig)
    # Long prediction ids: 300 outcomes of about 3 KB, about 900 KB for two partitions.
    ids = [f"{n}-" + "x" * 3000 for n in range(300)]
    rig.run(joiner.route, [outcome(rig, pid, 0.0) for pid in ids])
    routed = rig.producer.take("join")
    assert len(routed) > PARTITIONS
    assert all(len(m.value) <= MAX_RECORD_BYTES for m in routed)
    carried = [v for m in routed for v, _ in decode_outcomes(m.value[1:])]
    assert len(carried) == len(ids)

    publish_pending(rig, joiner, ids)
    join_all(rig, joiner, routed + rig.producer.take("join"))
    assert rig.stats.outcomes["joined"] == len(ids)


def test_an_outcome_forwarded_alone_before_packing_still_joins():
    """A join topic written by the previous release holds one outcome a message."""
    rig = StageRig()
    joiner = joiner_on(rig)
    publish_pending(rig, joiner, ["rec-1"])
    (pend,) = rig.producer.take("join")
    value = OUTCOME_TAG + bytes(outcome(rig, "rec-1", 1.0).value)
    rig.run(joiner, [pend, Consumed("join", pend.partition, pend.offset + 1, None, value)])
    assert rig.stats.outcomes["joined"] == 1
    assert rig.dead() == []


def test_a_redelivered_packed_message_joins_nothing_twice():
    rig = StageRig()
    joiner = joiner_on(rig)
    ids = [f"rec-{n}" for n in range(20)]
    publish_pending(rig, joiner, ids)
    pend = rig.producer.take("join")
    rig.run(joiner.route, [outcome(rig, pid, 1.0) for pid in ids])
    routed = rig.producer.take("join")
    join_all(rig, joiner, pend + routed)
    join_all(rig, joiner, routed)  # the same offsets again, as after a crash before the ack
    assert rig.stats.outcomes["joined"] == len(ids)
    assert rig.stats.outcomes["duplicate"] == 0


def test_an_outcome_too_large_to_forward_is_a_dead_letter_and_the_rest_still_join():
    rig = StageRig()
    joiner = joiner_on(rig)
    joiner._limit = MessageLimit(max_bytes=HEADROOM_BYTES + 2_000)  # a 2,000-byte join message
    ids = ["rec-1", "big-" + "y" * 3_000, "rec-2"]
    batch = rig.run(joiner.route, [outcome(rig, pid, 1.0) for pid in ids])
    routed = rig.producer.take("join")
    (dead,) = rig.dead()
    assert batch.remaining == 0
    assert dead["reason"] == TOO_LARGE and dead["offset"] == 1
    assert "forwarded to the join" in dead["detail"]
    carried = [rig.codec.decode_as("Outcome", v)["prediction_id"] for m in routed
               for v, _ in decode_outcomes(m.value[1:])]  # fmt: skip
    assert sorted(carried) == ["rec-1", "rec-2"]


def test_outcomes_that_end_as_dead_letters_are_named_by_where_they_came_in():
    """Late and unmatched outcomes of one packed message are dead letters of their own, at
    their outcomes-topic partition and offset (the store keeps one letter per place)."""
    rig = StageRig()
    joiner = joiner_on(rig)
    joiner.wait_ms = 0  # every outcome without a prediction is unmatched at the next expiry
    ids = [f"orphan-{n}" for n in range(5)]
    messages = [outcome(rig, pid, 1.0) for pid in ids]
    rig.run(joiner.route, messages)
    join_all(rig, joiner, rig.producer.take("join"))
    time.sleep(0.01)
    rig.run(lambda _, batch: joiner.expire(batch), [])
    dead = rig.dead()
    assert sorted(d["reason"] for d in dead) == ["outcome_unmatched"] * len(ids)
    places = {(d["source_topic"], d["partition"], d["offset"]) for d in dead}
    assert places == {("outcomes", m.partition, m.offset) for m in messages}


def test_a_corrupt_packed_message_is_a_dead_letter_not_a_crash():
    rig = StageRig()
    joiner = joiner_on(rig)
    no_origins = OUTCOMES_TAG + pack("outcomes", {"0": b"x"})
    rig.run(joiner, [Consumed("join", 0, 0, None, no_origins)])
    (dead,) = rig.dead()
    assert dead["reason"] == "invalid_join_message" and "origins" in dead["detail"]
