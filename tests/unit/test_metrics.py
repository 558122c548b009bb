"""The worker's Prometheus metrics: names and units by Prometheus's conventions, counts
that agree with what the stages did, histograms filled a batch at a time."""

from __future__ import annotations

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from driftline.inference import LoadedModel, Router, train_logistic
from driftline.schemas.testing import sample
from driftline.streams.app.metrics import WorkerCollector, metrics_text
from driftline.streams.stages.scoring import ScoringPipeline
from driftline.streams.stats import Buckets
from driftline.streams.testing import StageRig


def scrape(collector: WorkerCollector) -> dict[str, list]:
    """family name -> [(sample name, labels, value)]"""
    text = metrics_text(collector).decode()
    return {
        family.name: [(s.name, s.labels, s.value) for s in family.samples]
        for family in text_string_to_metric_families(text)
    }


def value(families, sample_name: str, **labels) -> float:
    for family in families.values():
        for name, got, v in family:
            if name == sample_name and all(got.get(k) == str(w) for k, w in labels.items()):
                return v
    raise AssertionError(f"no sample {sample_name} {labels}")


def test_buckets_match_prometheus_le_semantics():
    buckets = Buckets((0.01, 0.1, 1.0))
    buckets.observe_many(np.array([0.005, 0.01, 0.05, 0.1, 0.5, 2.0, 3.0]))
    buckets.observe(0.1)
    assert buckets.cumulative() == [("0.01", 2), ("0.1", 5), ("1", 6), ("+Inf", 8)]
    assert buckets.sum == pytest.approx(5.765)


@pytest.fixture(scope="module")
def trained():
    return train_logistic(n_features=4, n_samples=300, seed=2)


def test_a_scored_batch_shows_in_the_metrics(trained):
    rig = StageRig()
    router = Router()
    router.set_champion(
        LoadedModel.load(
            trained.onnx_bytes, name="fraud", version=3, expected_digest=trained.digest
        )
    )
    scoring = ScoringPipeline(
        codec=rig.codec,
        router=router,
        delivery=rig.delivery,
        dead_letters=rig.dead_letters,
        predictions_topic="predictions",
        stats=rig.stats,
    )
    good = [
        rig.message(
            "features",
            "FeatureRecord",
            sample("FeatureRecord", record_id=f"r{i}", model="fraud", features=[0.1, 0.2, 0.3, i])
            | {"feature_names": None},
        )
        for i in range(6)
    ]
    rig.run(scoring, [*good, rig.raw("features", b"\x00\x00\x00\x00\x09nope")])
    families = scrape(WorkerCollector(rig.stats, router=router, roles=frozenset({"inference"})))

    assert value(families, "driftline_records_consumed_total") == 7
    predicted = value(
        families, "driftline_predictions_total", model="fraud", version=3, arm="champion"
    )
    assert predicted == 6 == len(rig.produced("predictions", "Prediction"))
    (reason,) = rig.stats.dead_letters
    assert value(families, "driftline_dead_letters_total", reason=reason) == 1
    assert value(families, "driftline_prediction_latency_seconds_count") == 6
    assert value(families, "driftline_scoring_batch_records_count") == 1
    assert value(families, "driftline_scoring_batch_records_bucket", le=10) == 1
    assert value(families, "driftline_model_info", model="fraud", version=3, arm="champion") == 1
    assert value(families, "driftline_arm_traffic_ratio", model="fraud", arm="champion") == 1.0


def test_conventions_counters_end_in_total_and_units_are_base_units():
    families = scrape(WorkerCollector(StageRig().stats))
    for name, samples in families.items():
        assert name.startswith("driftline_")
        assert not any(unit in name for unit in ("_ms", "_millis", "_minutes", "_bytes_kb"))
        for sample_name, _, _ in samples:
            if sample_name.endswith("_created"):
                continue
            assert sample_name.startswith(name)
    kinds = {f.name: f.type for f in text_string_to_metric_families(
        metrics_text(WorkerCollector(StageRig().stats)).decode()
    )}  # fmt: skip
    assert kinds["driftline_dead_letters"] == "counter"
    assert kinds["driftline_prediction_latency_seconds"] == "histogram"
