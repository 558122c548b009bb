"""The worker's Prometheus metrics: names and units by Prometheus's conventions, counts
that agree with what the stages did, histograms filled a batch at a time."""

from __future__ import annotations

import json
import time
from types import SimpleNamespace

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from driftline.inference import LoadedModel, Router, train_logistic
from driftline.schemas.testing import sample
from driftline.streams.app.metrics import WorkerCollector, metrics_text
from driftline.streams.kafka.feature_consumer import FeatureConsumer
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
    scoring = rig.scoring(router)
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


def test_lag_insert_latency_and_audit_state_are_exported():
    stats = StageRig().stats
    stats.consumer_lag = {("features", 0): 12, ("features", 1): 0}
    stats.insert_latency_s.observe(0.02)
    audit = SimpleNamespace(
        problems={"fraud": 0, "churn": 2},
        last_signed_at={"fraud": int(time.time() * 1000) - 30_000},
    )
    families = scrape(WorkerCollector(stats, audit=audit))
    assert value(families, "driftline_consumer_lag_records", topic="features", partition=0) == 12
    assert value(families, "driftline_clickhouse_insert_seconds_bucket", le="0.025") == 1
    assert value(families, "driftline_audit_chain_intact", model="fraud") == 1
    assert value(families, "driftline_audit_chain_intact", model="churn") == 0
    age = value(families, "driftline_audit_checkpoint_age_seconds", model="fraud")
    assert 29 <= age < 60


def test_the_features_consumer_keeps_the_lag_librdkafka_reports():
    stats = StageRig().stats
    consumer = FeatureConsumer(
        config={},
        topic="features",
        score=lambda messages, batch: None,
        delivery=None,
        stats=stats,
        batch_size=10,
        max_in_flight=1,
    )
    consumer.assignment = {0, 1}
    report = {
        "topics": {
            "features": {
                "partitions": {
                    "0": {"consumer_lag": 40},
                    "1": {"consumer_lag": -1},  # unknown yet
                    "2": {"consumer_lag": 7},  # not ours (any more)
                    "-1": {"consumer_lag": -1},  # librdkafka's internal partition
                }
            }
        }
    }
    consumer._on_statistics(json.dumps(report))
    assert stats.consumer_lag == {("features", 0): 40}
    consumer._on_statistics("not json")  # kept, not raised
    assert stats.consumer_lag == {("features", 0): 40}

    # The outcomes, read the same way in the same worker, keep their own figures.
    outcomes = FeatureConsumer(config={}, topic="outcomes", score=lambda messages, batch: None,
                               delivery=None, stats=stats, batch_size=10, max_in_flight=1,
                               scoring=False)  # fmt: skip
    outcomes.assignment = {1}
    outcomes._on_statistics(json.dumps({"topics": {"outcomes": {"partitions": {
        "1": {"consumer_lag": 3}}}}}))  # fmt: skip
    report["topics"]["features"]["partitions"]["0"]["consumer_lag"] = 41
    consumer._on_statistics(json.dumps(report))
    assert stats.consumer_lag == {("features", 0): 41, ("outcomes", 1): 3}


def test_the_dashboards_quantiles_interpolate_like_histogram_quantile():
    from driftline.streams.app.dashboard import quantile

    bounds = np.array([0.01, 0.1, 1.0])
    assert quantile(bounds, np.zeros(4, dtype=np.int64), 0.5) is None
    # 100 values: 50 in (0, 0.01], 50 in (0.01, 0.1]
    counts = np.array([50, 50, 0, 0])
    assert quantile(bounds, counts, 0.5) == pytest.approx(0.01)
    assert quantile(bounds, counts, 0.99) == pytest.approx(0.01 + 0.09 * 49 / 50)
    assert quantile(bounds, np.array([0, 0, 0, 5]), 0.5) == 1.0  # above the last bound


def test_the_faust_agents_lag_comes_from_their_commits():
    from faust.types import TP

    stats = StageRig().stats
    stats.consumer_lag = {("features", 0): 5}
    monitor = SimpleNamespace(
        tp_end_offsets={TP("outcomes", 0): 120, TP("outcomes", 1): 40, TP("commands", 0): 9},
        tp_committed_offsets={TP("outcomes", 0): 100, TP("outcomes", 1): 40},
    )
    families = scrape(WorkerCollector(stats, faust_monitor=monitor))
    assert value(families, "driftline_consumer_lag_records", topic="outcomes", partition=0) == 20
    assert value(families, "driftline_consumer_lag_records", topic="outcomes", partition=1) == 0
    assert value(families, "driftline_consumer_lag_records", topic="features", partition=0) == 5
    with pytest.raises(AssertionError):  # nothing committed yet: no figure rather than a guess
        value(families, "driftline_consumer_lag_records", topic="commands", partition=0)


def test_split_and_shadow_arms_are_counted_as_the_predictions_say(trained):
    from collections import Counter

    from driftline.inference.routing import Arm, RoutingTable

    def load(version: int) -> LoadedModel:
        return LoadedModel.load(
            trained.onnx_bytes, name="fraud", version=version, expected_digest=trained.digest
        )

    rig = StageRig()
    router = Router()
    router.set_table(
        RoutingTable(
            "fraud",
            (Arm("challenger", load(4), 3000), Arm("champion", load(3), 7000)),
            shadows=(load(5),),
        )
    )
    messages = [
        rig.message(
            "features",
            "FeatureRecord",
            sample("FeatureRecord", record_id=f"r{i}", entity_id=f"e{i}", model="fraud",
                   features=[0.1, 0.2, 0.3, i]) | {"feature_names": None},
        )
        for i in range(200)
    ]  # fmt: skip
    rig.run(rig.scoring(router), messages)
    produced = rig.produced("predictions", "Prediction")
    assert rig.stats.predictions_by == Counter(
        (p["model"], p["version"], p["arm"]) for p in produced
    )
    assert rig.stats.predictions_by[("fraud", 5, "shadow")] == 200
    assert {arm for _, _, arm in rig.stats.predictions_by} == {"challenger", "champion", "shadow"}


@pytest.mark.parametrize(
    "report",
    [
        "not json",
        "[]",
        '{"topics": {"features": 3}}',
        '{"topics": {"features": {"partitions": {"0": 7}}}}',
    ],
)
def test_a_statistics_report_without_a_usable_lag_keeps_the_last(report):
    stats = StageRig().stats
    consumer = FeatureConsumer(
        config={},
        topic="features",
        score=lambda m, b: None,
        delivery=None,
        stats=stats,
        batch_size=10,
        max_in_flight=1,
    )
    stats.consumer_lag = {("features", 0): 40}
    consumer._on_statistics(report)  # never raises: it runs inside the consumer's poll
    assert stats.consumer_lag == {("features", 0): 40}


def test_what_the_outcomes_join_holds_is_exported_only_where_it_runs():
    stats = StageRig().stats
    assert not any(n.startswith("driftline_outcome_join") for n in scrape(WorkerCollector(stats)))
    stats.outcome_join = {
        "pending_rows": 1_200, "waiting_outcomes": 3, "state_records": 9, "state_bytes": 4_096,
    }  # fmt: skip
    families = scrape(WorkerCollector(stats))
    assert value(families, "driftline_outcome_join_pending_predictions") == 1_200
    assert value(families, "driftline_outcome_join_waiting_outcomes") == 3
    assert value(families, "driftline_outcome_join_state_records") == 9
    assert value(families, "driftline_outcome_join_state_bytes") == 4_096
