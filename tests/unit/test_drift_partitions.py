"""Drift is decided per model version and arm, not per partition: 1, 4 and 12 partitions agree.

Broker-free, over the real scoring-side stage and decider agent
(:class:`driftline.streams.testing.DriftLoop`). The same seeded stream of frames is
spread over 1, 4 or 12 features partitions by frame id, and scored in
batches of 16 frames (8,000 records).

Tolerance: the alarms must agree in count, detector and feature. Positions
count records in the order the decider receives them, which differs between
partitionings only within a scoring batch (a batch's parts arrive partition by
partition), so positions may differ by one batch of records plus one window of
tested records: 8,000 + 1,000 x ``sample_every``.
"""

from __future__ import annotations

import json
import zlib

import numpy as np
import pytest

from driftline.drift.config import DriftConfig
from driftline.drift.profile import ReferenceProfile
from driftline.streams.testing import Consumed, DriftLoop

K, FRAME, BATCH = 16, 500, 16
NAMES = [f"f{i:02d}" for i in range(K)]
PARTITIONS = (1, 4, 12)


@pytest.fixture(scope="module")
def reference() -> ReferenceProfile:
    return ReferenceProfile.from_matrix(np.random.default_rng(0).normal(size=(20_000, K)), NAMES)


def _frames(n: int, shift_at: int, partitions: int, seed: int = 1):
    x = np.random.default_rng(seed).standard_normal((n, K)).astype(np.float32)
    x[shift_at:, 3] += 0.5  # a 0.5-sigma shift of one feature
    scores = 1 / (1 + np.exp(-x[:, 0]))  # scores do not move: only the input alarm
    out = []
    for i, lo in enumerate(range(0, n, FRAME)):
        frame_id = f"frame-{i}"
        partition = zlib.crc32(frame_id.encode()) % partitions
        out.append((partition, frame_id, "m", x[lo : lo + FRAME], scores[lo : lo + FRAME]))
    return out


def _run(loop: DriftLoop, frames) -> list[dict]:
    for lo in range(0, len(frames), BATCH):
        loop.score(frames[lo : lo + BATCH])
    return loop.events


def _alarms(events: list[dict]) -> list[tuple[str, str, str | None, int]]:
    return [
        (
            json.loads(e["evidence"])["stream"],
            e["detector"],
            e["feature"],
            json.loads(e["evidence"])["position"],
        )
        for e in events
    ]


@pytest.mark.parametrize(("every", "n", "shift_at"), [(1, 120_000, 60_000), (16, 480_000, 240_000)])
def test_one_shift_is_one_alarm_after_the_same_records_on_1_4_12_partitions(
    reference, every, n, shift_at
):
    config = DriftConfig(sample_every=every)
    found = {}
    for partitions in PARTITIONS:
        loop = DriftLoop(config, lambda model, version: reference)
        found[partitions] = _alarms(_run(loop, _frames(n, shift_at, partitions)))
    tolerance = BATCH * FRAME + config.window * every
    for partitions, alarms in found.items():
        assert [a[:3] for a in alarms] == [("input", "ks+psi", "f03")], (partitions, alarms)
        delay = alarms[0][3] - shift_at
        # Two windows of tested rows after the shift (k=2 of n=3), give or take the tolerance.
        assert -BATCH * FRAME < delay <= 2 * config.window * every + tolerance
        assert abs(alarms[0][3] - found[1][0][3]) <= tolerance, found


def test_partitions_read_out_of_step_still_give_one_alarm(reference):
    # Catching up on a backlog, one partition runs far ahead: its rows from after the shift
    # reach the decider before the other's rows from before it. Those older rows must not
    # end the episode (and start a second one when their own shift comes).
    n, shift_at = 160_000, 60_000
    frames = [f + (i,) for i, f in enumerate(_frames(n, shift_at, 2))]  # event time: index
    ahead = [f for f in frames if f[0] == 0]
    behind = [f for f in frames if f[0] == 1]
    lead = 2 * len(ahead) // 3  # partition 0 is 2/3 through when partition 1 starts
    loop = DriftLoop(DriftConfig(sample_every=1), lambda model, version: reference)
    order = ahead[:lead] + [f for pair in zip(ahead[lead:], behind, strict=False) for f in pair]
    order += behind[len(ahead) - lead :]
    _run(loop, order)
    alarms = _alarms(loop.events)
    assert [a[:3] for a in alarms] == [("input", "ks+psi", "f03")], alarms


def test_redelivery_and_a_restarted_decider_count_nothing_twice(reference):
    frames = _frames(120_000, 60_000, 4)
    straight = DriftLoop(DriftConfig(sample_every=1), lambda model, version: reference)
    want = _alarms(_run(straight, frames))

    loop = DriftLoop(DriftConfig(sample_every=1), lambda model, version: reference)
    first, rest = frames[: 7 * BATCH], frames[7 * BATCH :]
    _run(loop, first)
    # A scoring worker crashed before committing its last batch: it is read and scored again,
    # with the same offsets, and the summaries of an earlier batch are redelivered too.
    last = first[-BATCH:]
    for partition in {f[0] for f in last}:
        loop.rewind(partition, sum(1 for f in first[:-BATCH] if f[0] == partition))
    loop.score(last)
    loop.decide(loop.last_summaries)
    loop.restart_decider()  # and the decider's worker restarts from its state table
    _run(loop, rest)
    assert _alarms(loop.events) == want
    watched = loop.decider.decider.watched
    assert sum(w.records for w in watched.values()) == 120_000
    assert loop.stats.drift_redelivered == 2 * BATCH * FRAME
    assert loop.stats.drift_restored  # the monitor came back from its record


@pytest.mark.parametrize("partitions", PARTITIONS)
def test_outcomes_from_every_join_partition_raise_one_error_alarm(partitions):
    rng = np.random.default_rng(7)
    n, change = 8_000, 4_000
    wrong = rng.random(n) < np.r_[np.full(change, 0.1), np.full(n - change, 0.5)]
    predictions = [(f"p{i}", "m", 0.9, 0.0 if wrong[i] else 1.0) for i in range(n)]
    loop = DriftLoop(DriftConfig(), lambda model, version: None, join_partitions=partitions)
    for lo in range(0, n, 500):
        loop.join(predictions[lo : lo + 500])
    alarms = _alarms(loop.events)
    assert [a[:2] for a in alarms] == [("error", "adwin+hddm_a")], alarms
    assert change < alarms[0][3] <= change + 500
    assert loop.stats.outcomes["joined"] == n


def test_a_corrupt_summary_is_dead_lettered(reference):
    loop = DriftLoop(DriftConfig(), lambda model, version: reference)
    loop.decide([Consumed("drift-summaries", 0, 0, b"m", b"not a summary")])
    dead = loop.producer.take("deadletter")
    assert len(dead) == 1 and loop.stats.dead_letters == {"invalid_drift_summary": 1}
