"""No stage leaves reference cycles behind a batch.

Workers tune the garbage collector for throughput (``tune_gc``: a young generation of
50,000 objects, full collections rare), so memory held by a cycle comes back late or
never: one closure per drift-state record that named itself to re-send kept its record
and its batch alive, and a scoring worker grew by ~0.6 MiB/s. Each stage here runs its
batches with the collector off; whatever a collection then finds, and driftline made, is
a cycle it left.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
import pytest

from driftline.drift.config import DriftConfig
from driftline.drift.monitor import MonitorKey
from driftline.drift.summary import ErrorPart, encode_parts
from driftline.inference import LoadedModel, Router, train_logistic
from driftline.lineage.audit.chain import AuditLogWriter
from driftline.lineage.store.clickhouse import create_tables
from driftline.lineage.store.sinks import PredictionSink
from driftline.streams.kafka.delivery import BatchDelivery
from driftline.streams.stages.drift_decider import DriftDecider
from driftline.streams.stages.drift_reduce import DriftStage
from driftline.streams.testing import StageRig
from tests.unit.test_lineage_audit import event
from tests.unit.test_lineage_sinks import prediction
from tests.unit.test_outcome_join_packing import joiner_on, outcome, pending
from tests.unit.test_stages import GARBAGE, _features


def _made_by_driftline(thing: object) -> bool:
    if isinstance(thing, BatchDelivery):
        return True
    module = getattr(thing, "__module__", None) or type(thing).__module__ or ""
    return module.startswith("driftline")


@contextmanager
def cycles_left() -> Iterator[list]:
    """The driftline objects that only a garbage collection frees, from the block's work."""
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    found: list = []
    try:
        yield found
        gc.collect()
        found += [thing for thing in gc.garbage if _made_by_driftline(thing)]
    finally:
        gc.garbage.clear()
        gc.set_debug(0)
        gc.enable()


def _describe(found: list) -> str:
    return ", ".join(sorted({type(t).__qualname__ + ":" + getattr(t, "__qualname__", "")
                             for t in found}))  # fmt: skip


def _decider(rig: StageRig) -> DriftDecider:
    return rig.drift_decider(DriftConfig(error_detectors=("adwin",)))


def _error_summaries(rig: StageRig, start: int, n: int) -> list:
    """Errors of join offsets ``start..start+n-1`` (offsets seen before are skipped)."""
    key = MonitorKey("fraud", 1, "champion")
    offsets = np.arange(start, start + n, dtype=np.int64)
    errors = (np.arange(n) % 7 == 0).astype(np.int8)
    value = encode_parts([ErrorPart(key, "outcome-join/0", offsets, errors)])
    return [rig.raw("summaries", value, key=b"fraud"), rig.raw("summaries", GARBAGE)]


@pytest.fixture(scope="module")
def router() -> Router:
    trained = train_logistic(n_features=4, n_samples=400, seed=1)
    router = Router()
    router.set_champion(
        LoadedModel.load(trained.onnx_bytes, name="fraud", version=1,
                         expected_digest=trained.digest)
    )  # fmt: skip
    return router


def _scoring(rig: StageRig, router: Router, *, drift: bool = False) -> Callable[[], None]:
    stage = rig.scoring(router)
    if drift:  # with what the scoring side sends the deciders and the join
        config = DriftConfig()
        stage.drift = DriftStage(
            config=config,
            delivery=rig.delivery,
            summaries_topic="summaries",
            partitions=2,
            stats=rig.stats,
        )
        stage.outcomes = joiner_on(rig)

    def batches() -> None:
        for _ in range(3):
            messages = [_features(rig, i, [0.1 * i, 1.0, -0.5, 2.0]) for i in range(20)]
            messages += [rig.raw("features", GARBAGE), _features(rig, 99, [1.0, 2.0])]
            rig.run(stage, messages)
            assert rig.producer.take("predictions")
            if drift:
                assert rig.producer.take("summaries") and rig.producer.take("join")

    return batches


def _scoring_with_drift(rig: StageRig, router: Router) -> Callable[[], None]:
    return _scoring(rig, router, drift=True)


def _drift_decider(rig: StageRig, _router: Router) -> Callable[[], None]:
    decider = _decider(rig)
    sent = [0]

    def batches() -> None:
        for _ in range(3):
            rig.run(decider, _error_summaries(rig, sent[0], 500))
            sent[0] += 500
        assert rig.producer.take("drift-state"), "no state record written: nothing tested"

    return batches


def _outcome_join(rig: StageRig, _router: Router) -> Callable[[], None]:
    joiner = joiner_on(rig)

    def batches() -> None:
        ids = [f"rec-{n}" for n in range(50)]
        routed = [outcome(rig, pid, 1.0) for pid in ids] + [rig.raw("outcomes", GARBAGE)]
        rig.run(joiner.route, routed)
        rig.run(lambda _, batch: joiner.publish_pending(pending(ids), batch), [])
        on_join = rig.producer.take("join")
        for partition in sorted({m.partition for m in on_join}):
            rig.run(joiner, [m for m in on_join if m.partition == partition])
        time.sleep(0.002)
        rig.run(lambda _, batch: joiner.expire(batch), [])
        joiner.note_state()

    return batches


@pytest.mark.parametrize(
    "stage",
    [_scoring, _scoring_with_drift, _drift_decider, _outcome_join],
    ids=["scoring", "scoring-with-drift", "drift-decider", "outcome-join"],
)
def test_a_stage_leaves_no_reference_cycle(stage: Callable, router: Router):
    rig = StageRig()
    batches = stage(rig, router)  # the stage itself lives as long as the worker
    batches()  # once before: what is built lazily on first use is not a batch's
    with cycles_left() as found:
        batches()
    assert not found, f"reference cycles left by the stage: {_describe(found)}"


@contextmanager
def garbage() -> Iterator[list]:
    """Everything, whoever made it, that only a garbage collection frees."""
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    found: list = []
    try:
        yield found
        gc.collect()
        found += gc.garbage
    finally:
        gc.garbage.clear()
        gc.set_debug(0)
        gc.enable()


def _rows_held(found: list, marker: str) -> int:
    """Values carrying ``marker`` inside the garbage's lists, columns or rows."""
    lists = [thing for thing in found if isinstance(thing, list)]
    held = [v for values in lists for v in values if isinstance(v, str) and marker in v]
    held += [v for values in lists for row in values if isinstance(row, list | tuple)
             for v in row if isinstance(v, str) and marker in v]  # fmt: skip
    return len(held)


def test_a_stored_batch_is_not_kept_alive_by_the_clients_insert_context(
    chdb_client, fresh_database
):
    """clickhouse-connect's InsertContext is a reference cycle holding what it inserted;
    the rows themselves must be freed when the insert returns."""
    create_tables(chdb_client, fresh_database)
    sink = PredictionSink(chdb_client, fresh_database)
    audit = AuditLogWriter(chdb_client, fresh_database)
    with garbage() as found:
        for i in range(200):
            sink.add(prediction(i, prediction_id=f"cycle-{i}"))
        assert sink.flush() == 200
        assert audit.write([(event(f"cycle-model-{i}", 1), "lifecycle", 0, i) for i in range(3)])
    assert _rows_held(found, "cycle-") == 0
