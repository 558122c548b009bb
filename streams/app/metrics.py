"""Prometheus metrics at ``/metrics`` on the worker's web port.

A custom collector reads the worker's counters (:class:`~driftline.streams.stats.WorkerStats`)
and the router only when Prometheus scrapes, so the hot path pays nothing for them but
the per-batch counting it already does. Names follow Prometheus's conventions: base
units in the name (``_seconds``), ``_total`` on counters (the client library adds it),
labels for the dimensions.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector, CollectorRegistry

from driftline.streams.stats import Buckets, WorkerStats

# What Prometheus's text format says it is; aiohttp takes the charset separately.
CONTENT_TYPE = "text/plain; version=0.0.4"


class WorkerCollector(Collector):
    """The worker's figures as metric families, read at scrape time."""

    def __init__(
        self,
        stats: WorkerStats,
        router: Any = None,
        roles: frozenset = frozenset(),
        audit: Any = None,
        faust_monitor: Any = None,
    ) -> None:
        self.stats = stats
        self.faust_monitor = faust_monitor  # faust's Monitor: the agents' offsets per partition
        self.router = router  # driftline.inference.Router of an inference worker, else None
        self.roles = roles
        self.audit = audit  # the lineage role's CheckpointKeeper, else None

    def collect(self) -> Iterator[Metric]:
        stats = self.stats
        yield _counter(
            "driftline_records_consumed", "Feature records and frames consumed by scoring", [],
            [((), stats.records_in)],
        )  # fmt: skip
        yield _counter(
            "driftline_predictions",
            "Predictions published, by model, version and arm (frame rows count one each)",
            ["model", "version", "arm"],
            [((m, str(v), a), n) for (m, v, a), n in sorted(stats.predictions_by.items())],
        )
        yield _histogram(
            "driftline_prediction_latency_seconds",
            "From a feature record's Kafka timestamp to its prediction",
            stats.latency_s,
        )
        yield _histogram(
            "driftline_scoring_batch_records", "Records per scoring batch", stats.batch_sizes
        )
        yield _counter(
            "driftline_dead_letters", "Messages set aside as dead letters, by reason", ["reason"],
            [((reason,), n) for reason, n in sorted(stats.dead_letters.items())],
        )  # fmt: skip
        yield _counter(
            "driftline_drift_alarms",
            "Drift events this worker's decider raised, by model, arm, detector and feature",
            ["model", "arm", "detector", "feature"],
            [(key, n) for key, n in sorted(stats.drift_alarms.items())],
        )
        yield _counter(
            "driftline_policy_decisions",
            "Signed commands the policy sent, by decision (a traffic command to 0% is a pause)",
            ["decision"],
            [((action,), n) for action, n in sorted(stats.policy_decisions.items())],
        )
        yield _counter(
            "driftline_outcomes", "Outcomes met by the join, by what became of them", ["result"],
            [((result,), n) for result, n in sorted(stats.outcomes.items())],
        )  # fmt: skip
        yield _counter(
            "driftline_enrichment",
            "Online feature-store enrichment: lookups, rows looked up, rows missing, defaulted, "
            "retries, lookups the store could not answer, lookups of a changed service",
            ["event"],
            [((event,), n) for event, n in sorted(stats.enrichment.items())],
        )
        yield _counter(
            "driftline_rows_stored", "Rows written to ClickHouse, by table", ["table"],
            [((table,), n) for table, n in sorted(stats.rows_stored.items())],
        )  # fmt: skip
        yield _counter(
            "driftline_clickhouse_insert_failures",
            "ClickHouse inserts that failed (and were retried before any offset was committed)",
            [],
            [((), stats.store_failures)],
        )
        yield _histogram(
            "driftline_clickhouse_insert_seconds",
            "One ClickHouse insert (a sink's flush), retries not included",
            stats.insert_latency_s,
        )
        lag = GaugeMetricFamily(
            "driftline_consumer_lag_records",
            "Records behind the end of each partition this worker consumes: the features "
            "consumer's from librdkafka's statistics, the Faust agents' from their commits",
            labels=["topic", "partition"],
        )
        for (topic, partition), behind in sorted(self._lag().items()):
            lag.add_metric([topic, str(partition)], behind)
        yield lag
        yield from self._outcome_join()
        yield from self._served()
        yield from self._audit()
        uptime = GaugeMetricFamily(
            "driftline_worker_uptime_seconds", "Seconds since the worker started", labels=["roles"]
        )
        uptime.add_metric([",".join(sorted(self.roles))], time.time() - stats.started_at)
        yield uptime

    def _outcome_join(self) -> Iterator[Metric]:
        held = self.stats.outcome_join
        if not held:
            return  # no outcomes join runs here
        for name, key, documentation in (
            ("pending_predictions", "pending_rows", "Predictions waiting for their outcome"),
            ("waiting_outcomes", "waiting_outcomes", "Outcomes waiting for their prediction"),
            ("state_records", "state_records", "Records in the join's changelogged table"),
            ("state_bytes", "state_bytes", "Bytes in the join's changelogged table"),
        ):
            gauge = GaugeMetricFamily(f"driftline_outcome_join_{name}", documentation)
            gauge.add_metric([], held.get(key, 0))
            yield gauge

    def _lag(self) -> dict[tuple[str, int], int]:
        lag = dict(self.stats.consumer_lag)
        monitor = self.faust_monitor
        if monitor is not None:
            committed = dict(monitor.tp_committed_offsets or {})
            for tp, end in dict(monitor.tp_end_offsets or {}).items():
                if tp in committed and (tp.topic, tp.partition) not in lag:
                    lag[(tp.topic, tp.partition)] = max(0, int(end) - int(committed[tp]))
        return lag

    def _served(self) -> Iterator[Metric]:
        """What each model serves: an info metric per loaded version, and each arm's share."""
        if self.router is None:
            return
        info = GaugeMetricFamily(
            "driftline_model_info",
            "A version this worker serves (1), with its arm and artifact digest",
            labels=["model", "version", "arm", "digest"],
        )
        share = GaugeMetricFamily(
            "driftline_arm_traffic_ratio",
            "Each served arm's share of a model's traffic (shadows: 0)",
            labels=["model", "version", "arm", "experiment_id"],
        )
        for model, served in self.router.loaded().items():
            experiment = served.get("experiment_id") or ""
            for arm in served["arms"]:
                version = str(arm["version"])
                digest = served["digest"] if arm["arm"] == "champion" else ""
                info.add_metric([model, version, arm["arm"], digest or ""], 1.0)
                share.add_metric([model, version, arm["arm"], experiment], arm["traffic_bp"] / 1e4)
        yield info
        yield share

    def _audit(self) -> Iterator[Metric]:
        """Each chain's state after the lineage role's last checkpoint round."""
        if self.audit is None:
            return
        intact = GaugeMetricFamily(
            "driftline_audit_chain_intact",
            "1 while the model's audit chain verifies, 0 once a round found a problem",
            labels=["model"],
        )
        for model, problems in sorted(self.audit.problems.items()):
            intact.add_metric([model], 0.0 if problems else 1.0)
        age = GaugeMetricFamily(
            "driftline_audit_checkpoint_age_seconds",
            "Seconds since the model's newest signed checkpoint",
            labels=["model"],
        )
        now_ms = time.time() * 1000
        for model, signed_at in sorted(self.audit.last_signed_at.items()):
            age.add_metric([model], max(0.0, (now_ms - signed_at) / 1000))
        yield intact
        yield age


def _counter(name: str, documentation: str, labels: list[str], samples) -> CounterMetricFamily:
    family = CounterMetricFamily(name, documentation, labels=labels)
    for values, count in samples:
        family.add_metric(list(values), count)
    return family


def _histogram(name: str, documentation: str, buckets: Buckets) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, documentation)
    family.add_metric([], buckets.cumulative(), sum_value=buckets.sum)
    return family


def metrics_text(collector: WorkerCollector) -> bytes:
    """One scrape, in Prometheus's text format."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return generate_latest(registry)
