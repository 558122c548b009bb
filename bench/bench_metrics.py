"""What the Prometheus metrics cost the scoring stage: throughput with and without them.

The scoring stage (``driftline.streams.stages.scoring``) scores batches of single feature
records through ``driftline.streams.testing.StageRig``: no broker, so the figure is the
stage's own CPU, where any per-record cost would show most. "without" replaces the
per-batch metric updates (predictions by model/version/arm, the latency and batch-size
histograms) with no-ops; a scrape costs nothing until Prometheus asks. Runs alternate,
and the best of each is compared (target: with >= 97% of without).

Usage: python -m bench.bench_metrics [RECORDS] [BATCH] [ROUNDS]
"""

from __future__ import annotations

import time

import numpy as np

from bench.arguments import Count, read_counts
from driftline.inference import LoadedModel, Router, train_logistic
from driftline.streams.stats import WorkerStats
from driftline.streams.testing import StageRig

N_FEATURES = 16


def _messages(rig: StageRig, n: int) -> list:
    rng = np.random.default_rng(7)
    now = time.time_ns() // 1_000_000
    return [
        rig.message(
            "features",
            "FeatureRecord",
            {
                "record_id": f"r-{i}",
                "entity_id": f"e-{i % 997}",
                "model": "bench",
                "features": rng.normal(size=N_FEATURES).tolist(),
                "feature_names": None,
                "event_time": now,
            },
        )
        for i in range(n)
    ]


def run(with_metrics: bool, messages: list, batch: int, model: LoadedModel) -> float:
    rig = StageRig()
    router = Router()
    router.set_champion(model)
    if not with_metrics:
        rig.stats.predicted = lambda predictions, arm_counts=None: None  # type: ignore[method-assign]
        rig.stats.batch_done = _counts_only(rig.stats)  # type: ignore[method-assign]
    stage = rig.scoring(router)
    started = time.perf_counter()
    for i in range(0, len(messages), batch):
        rig.run(stage, messages[i : i + batch])
        rig.producer.take("predictions")
    elapsed = time.perf_counter() - started
    assert rig.stats.predictions_out == len(messages)
    return len(messages) / elapsed


def _counts_only(stats: WorkerStats):
    def batch_done(records: int, predictions: int) -> None:
        stats.records_in += records
        stats.predictions_out += predictions
        stats.batches += 1

    return batch_done


def main(argv: list[str] | None = None) -> None:
    args = read_counts("bench.bench_metrics", __doc__, argv,
                       Count("records", 50_000, "records scored per round"),
                       Count("batch", 1_000, "records per batch"),
                       Count("rounds", 5, "rounds with and without metrics"))  # fmt: skip
    n, batch, rounds = args.records, args.batch, args.rounds
    trained = train_logistic(n_features=N_FEATURES, n_samples=2_000, seed=0)
    model = LoadedModel.load(
        trained.onnx_bytes, name="bench", version=1, expected_digest=trained.digest
    )
    messages = _messages(StageRig(), n)
    best = {True: 0.0, False: 0.0}
    for _ in range(rounds):
        for with_metrics in (False, True):
            best[with_metrics] = max(best[with_metrics], run(with_metrics, messages, batch, model))
    print(f"scoring stage, {n:,} single records in batches of {batch:,}, best of {rounds}:")
    print(f"  without metrics  {best[False]:>10,.0f} records/s")
    print(f"  with metrics     {best[True]:>10,.0f} records/s")
    print(f"  with / without   {best[True] / best[False]:.3f}  (target >= 0.97)")


if __name__ == "__main__":
    main()
