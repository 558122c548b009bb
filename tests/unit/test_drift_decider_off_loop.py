"""The decide-drift agent folds off the event loop, and nothing about its output changes.

Folding a large batch into the window tests takes tens of milliseconds; on the event
loop it held up the scoring agents of the same worker. ``process_async`` folds on the
decider's own thread, one batch at a time, and a rebalance or a status read waits for
the batch in flight instead of seeing it half done.
"""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

from driftline.drift.config import DriftConfig
from driftline.drift.monitor import MonitorKey
from driftline.drift.summary import ErrorPart, encode_parts
from driftline.streams.stages.drift_decider import DriftDecider
from driftline.streams.testing import StageRig

KEY = MonitorKey("fraud", 1, "champion")
GARBAGE = b"\x00not a summary"


def _decider(rig: StageRig) -> DriftDecider:
    return rig.drift_decider(DriftConfig(error_detectors=("hddm_a",)))


def _summaries(rig: StageRig) -> list:
    """Errors that shift from none to all (an alarm), one message sent twice, and garbage."""
    errors = np.r_[np.zeros(1_000, np.int8), np.ones(300, np.int8)]
    first = encode_parts([ErrorPart(KEY, "outcome-join/0", np.arange(1_300), errors)])
    return [
        rig.raw("summaries", first, key=b"fraud", partition=1),
        rig.raw("summaries", first, key=b"fraud", partition=1),  # redelivered: skipped
        rig.raw("summaries", GARBAGE, key=b"fraud", partition=1),
    ]


def _timeless(events: list[dict]) -> list[dict]:
    return [{k: v for k, v in event.items() if k != "detected_at"} for event in events]


def _run_async(rig: StageRig, decider: DriftDecider, messages: list) -> None:
    async def run() -> None:
        batch = rig.delivery.batch()
        await decider.process_async(messages, batch)
        rig.producer.flush()
        assert batch.remaining == 0 and not batch.failed

    asyncio.run(run())


def test_folding_off_the_loop_gives_what_folding_on_it_gives() -> None:
    on_loop, off_loop = StageRig(), StageRig()
    sync_decider, async_decider = _decider(on_loop), _decider(off_loop)
    on_loop.run(sync_decider.process, _summaries(on_loop))
    _run_async(off_loop, async_decider, _summaries(off_loop))
    try:
        drift = _timeless(off_loop.produced("drift", "DriftEvent"))
        assert [e["detector"] for e in drift] == ["hddm_a"]
        assert drift == _timeless(on_loop.produced("drift", "DriftEvent"))
        dead = [d["reason"] for d in off_loop.dead()]
        assert dead == [d["reason"] for d in on_loop.dead()] == ["invalid_drift_summary"]
        assert async_decider.table == sync_decider.table and len(async_decider.table) == 1
        assert off_loop.stats.drift_redelivered == on_loop.stats.drift_redelivered == 1_300
        assert async_decider.status() == sync_decider.status()
    finally:
        async_decider.close()
        sync_decider.close()


def test_the_event_loop_runs_while_a_batch_is_folded() -> None:
    """The fold waits for the loop to run something: on the loop it could never finish."""
    rig = StageRig()
    decider = _decider(rig)
    loop_ran = threading.Event()
    fold = decider.decider.fold_all

    def fold_once_the_loop_has_run(parts):
        if not loop_ran.wait(timeout=10):
            raise AssertionError("the event loop did not run while the batch was folded")
        return fold(parts)

    decider.decider.fold_all = fold_once_the_loop_has_run

    async def run() -> None:
        batch = rig.delivery.batch()
        folding = asyncio.ensure_future(decider.process_async(_summaries(rig), batch))
        await asyncio.sleep(0.01)
        loop_ran.set()
        await folding

    try:
        asyncio.run(run())
        rig.producer.flush()
        assert len(rig.produced("drift", "DriftEvent")) == 1
    finally:
        decider.close()


@pytest.mark.parametrize("reader", ["rebalance", "status"])
def test_a_rebalance_or_a_status_read_waits_for_the_batch_in_flight(reader) -> None:
    rig = StageRig()
    decider = _decider(rig)
    release = threading.Event()
    fold = decider.decider.fold_all
    order: list[str] = []

    def held_fold(parts):
        release.wait(timeout=10)
        alarms = fold(parts)
        order.append("folded")
        return alarms

    decider.decider.fold_all = held_fold

    async def read() -> None:
        if reader == "rebalance":
            await decider.partitions_changed_async()
            order.append("forgot")
        else:
            status = await decider.status_async()
            order.append(f"status of {len(status['monitors'])}")

    async def run() -> None:
        batch = rig.delivery.batch()
        folding = asyncio.ensure_future(decider.process_async(_summaries(rig), batch))
        await asyncio.sleep(0.01)  # the fold is in flight, held
        reading = asyncio.ensure_future(read())
        await asyncio.sleep(0.05)
        assert order == []  # the reader waits for the fold
        release.set()
        await asyncio.gather(folding, reading)

    try:
        asyncio.run(run())
        rig.producer.flush()
        # The batch's monitor record was written before it was forgotten, so nothing the
        # batch counted is lost when the monitor comes back from the table.
        assert len(decider.table) == 1
        assert order == ["folded", "forgot" if reader == "rebalance" else "status of 1"]
    finally:
        decider.close()
