"""Online enrichment and the training-serving skew check: what the feature store costs.

On driftline's example Feast repository (SQLite online store, Parquet offline store, all
local), for 2,000-row frames and a 16-feature logistic model, measured in one run:

1. frames throughput of the scoring stage (decode, route, score, encode; no Kafka) on
   full frames, the baseline, and on frames that carry only the entity ids and the four
   request-time features, completed from the online store (one lookup per frame);
   with the served-features sample off and at its default 5%;
2. the online lookup alone, per frame and per row, beside Feast's own online read;
3. the skew checker's cost per sampled row: point-in-time retrieval from the offline
   store and the comparison, for 200 and 2,000 served rows (2,000 is the default
   DRIFTLINE_FEATURES_SKEW_ROWS per check).

Usage: python -m bench.bench_enrichment [CUSTOMERS]   (default 10,000 entities)
"""

from __future__ import annotations

import hashlib
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.arguments import Count, read_counts
from driftline.features.enrichment import EnrichmentPolicy
from driftline.features.example_repo import (
    REQUEST_FEATURES,
    SERVICE,
    entity_ids,
    write_example_repo,
)
from driftline.features.feast_store import FeastFeatureStore
from driftline.features.skew import SkewLimits
from driftline.inference import LoadedModel, SyntheticFeatures
from driftline.inference.frames import Frame, pack_frame, score_frame
from driftline.inference.routing import RoutingTable
from driftline.inference.training import train_logistic_on
from driftline.schemas import default_codec
from driftline.streams.app.worker import tune_gc
from driftline.streams.stages.enrichment import FeatureEnrichment
from driftline.streams.stages.skew_check import ServedRows, SkewChecker
from driftline.streams.stats import WorkerStats

FRAME_ROWS = 2000
FRAMES = 8  # distinct payloads, cycled
SECONDS = 3.0


def build_model(names: list[str]) -> LoadedModel:
    features = SyntheticFeatures(len(names), seed=1)
    x = features.rows(20_000)
    trained = train_logistic_on(x, features.labels(x), seed=1)
    digest = hashlib.sha256(trained.onnx_bytes).hexdigest()
    return LoadedModel.load(trained.onnx_bytes, name="bench", version=1, expected_digest=digest)


def payloads(names: list[str], customers: list[str], columns: list[int], seed: int) -> list:
    """Encoded FeatureFrames of ``FRAME_ROWS`` random customers, with ``columns`` only."""
    codec, rng = default_codec(), np.random.default_rng(seed)
    now = int(time.time() * 1000)
    out = []
    for i in range(FRAMES):
        ids = [customers[k] for k in rng.integers(0, len(customers), FRAME_ROWS)]
        matrix = rng.normal(size=(FRAME_ROWS, len(names))).astype(np.float32)[:, columns]
        frame = pack_frame(
            f"f{seed}-{i}", "bench", ids, [now] * FRAME_ROWS, [names[j] for j in columns], matrix
        )
        out.append(codec.encode("FeatureFrame", frame))
    return out


def stage_rate(table: RoutingTable, frames: list, enrichment: FeatureEnrichment | None) -> float:
    """rows/s of what the scoring stage does per frame, as in streams/stages/scoring.py."""
    codec = default_codec()
    rows, started = 0, time.perf_counter()
    while time.perf_counter() - started < SECONDS:
        for payload in frames:
            frame, skip = Frame.from_avro(codec.decode_as("FeatureFrame", payload)), None
            enriched = None if enrichment is None else enrichment.frame(table, frame)
            if enriched is not None:
                frame, skip = enriched.frame, enriched.skip
            codec.encode_many("PredictionFrame", score_frame(table, frame, skip=skip).parts)
            rows += FRAME_ROWS
        if enrichment is not None:
            enrichment.take_served()  # the stage hands them to the producer per batch
    return rows / (time.perf_counter() - started)


def lookup_cost(store: FeastFeatureStore, customers: list[str], *, through_feast: bool) -> float:
    """Seconds per online lookup of ``FRAME_ROWS`` entities: the direct SQLite read the
    worker uses, or Feast's own ``get_online_features`` (the baseline it replaced)."""
    rng = np.random.default_rng(5)
    picks = [rng.integers(0, len(customers), FRAME_ROWS) for _ in range(4)]
    batches = [[customers[k] for k in pick] for pick in picks]
    ref = store.service(SERVICE)

    def lookup(ids: list[str]) -> None:
        if through_feast:
            store._online_feast(SERVICE, ref, ids)
        else:
            store.online(SERVICE, ids)

    lookup(batches[0])  # warm
    n, started = 0, time.perf_counter()
    while time.perf_counter() - started < SECONDS:
        for ids in batches:
            lookup(ids)
            n += 1
    return (time.perf_counter() - started) / n


def skew_cost(store: FeastFeatureStore, customers: list[str], rows: int, names: list[str]) -> float:
    """Seconds of one check over ``rows`` served rows (offline retrieval and comparison)."""
    rng = np.random.default_rng(rows)
    ids = [customers[k] for k in rng.integers(0, len(customers), rows)]
    online = store.online(SERVICE, ids)
    ref = store.service(SERVICE)
    values = np.column_stack(
        [online.values[:, ref.feature_names.index(n)] for n in names if n in ref.feature_names]
        + [rng.normal(size=(rows, len(REQUEST_FEATURES)))]
    ).astype(np.float32)
    served = ServedRows(
        model="bench",
        version=1,
        arm="champion",
        service=ref.label,
        columns=names,
        entity_ids=ids,
        event_times_ms=np.full(rows, int(time.time() * 1000), np.int64),
        values=values,
    )
    checker = SkewChecker(
        client=None,  # type: ignore[arg-type]  # read_served is not measured
        database="driftline",
        store=store,
        limits=SkewLimits(max_rate=0.01, min_rows=20),
        rows=rows,
        stats=WorkerStats(),
    )
    checker.check([served])  # warm: Feast's first retrieval plans the query
    runs, started = 0, time.perf_counter()
    while time.perf_counter() - started < SECONDS or runs < 3:
        events = checker.check([served])
        runs += 1
    assert not events, f"clean served rows raised skew events: {events}"
    return (time.perf_counter() - started) / runs


def main(argv: list[str] | None = None) -> None:
    customers_n = read_counts("bench.bench_enrichment", __doc__, argv,
                              Count("customers", 10_000, "customers in the feature store"),
                              ).customers  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="bench-enrichment-") as tmp:
        started = time.perf_counter()
        repo = write_example_repo(Path(tmp) / "feast", customers_n)
        print(f"example Feast repository, {customers_n:,} customers: "
              f"{time.perf_counter() - started:.1f}s to apply and materialise")  # fmt: skip
        store = FeastFeatureStore(repo)
        customers = entity_ids(customers_n)
        names = list(SyntheticFeatures(16).feature_names)
        model = build_model(names)
        table = RoutingTable.champion_only(model)
        request_columns = [names.index(n) for n in REQUEST_FEATURES]

        def enrichment(sample_rate: float) -> FeatureEnrichment:
            return FeatureEnrichment(
                store, lambda _n, _v: EnrichmentPolicy(SERVICE), WorkerStats(), sample_rate
            )

        tune_gc()  # as the worker does at start-up: both paths measured under it
        full = payloads(names, customers, list(range(len(names))), seed=1)
        partial = payloads(names, customers, request_columns, seed=2)
        # Alternate the order so neither side always runs on a warmer machine.
        rates: dict[str, list[float]] = {"full": [], "enriched": [], "enriched_sampled": []}
        for _ in range(2):
            rates["full"].append(stage_rate(table, full, None))
            rates["enriched"].append(stage_rate(table, partial, enrichment(0.0)))
            rates["enriched_sampled"].append(stage_rate(table, partial, enrichment(0.05)))
        best = {k: max(v) for k, v in rates.items()}
        lookup_s = lookup_cost(store, customers, through_feast=False)
        feast_s = lookup_cost(store, customers, through_feast=True)

        print(f"\nscoring stage, {FRAME_ROWS:,}-row frames, 16-feature logistic, no Kafka "
              "(best of 2 alternating runs)")  # fmt: skip
        print(f"{'path':<48}{'rows/s':>12}{'vs full':>10}")
        labels = {
            "full": "full frames (baseline)",
            "enriched": "4 request features + 12 from Feast online",
            "enriched_sampled": "  the same, served-features sample at 5%",
        }
        for key, label in labels.items():
            print(f"{label:<48}{best[key]:>12,.0f}{best[key] / best['full']:>9.2f}x")
        print(
            f"\nonline lookup of {FRAME_ROWS:,} entities, direct SQLite read: "
            f"{lookup_s * 1000:.1f} ms ({lookup_s / FRAME_ROWS * 1e6:.1f} us per row)"
        )
        print(f"the same through Feast's get_online_features: {feast_s * 1000:.1f} ms "
              f"({feast_s / FRAME_ROWS * 1e6:.1f} us per row, "
              f"{feast_s / lookup_s:.1f}x)")  # fmt: skip
        extra = 1 / best["enriched"] - 1 / best["full"]
        print(f"enrichment adds {extra * 1e6:.1f} us per row to the stage "
              f"({extra * FRAME_ROWS * 1000:.1f} ms per frame)")  # fmt: skip

        print("\ntraining-serving skew check (offline point-in-time retrieval + comparison)")
        for rows in (200, 2000):
            seconds = skew_cost(store, customers, rows, names)
            print(f"{rows:>6,} served rows: {seconds * 1000:8.1f} ms per check, "
                  f"{seconds / rows * 1e6:8.1f} us per sampled row")  # fmt: skip


if __name__ == "__main__":
    main()
