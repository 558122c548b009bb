"""In-process counters a worker exposes on its HTTP API and as Prometheus metrics.

Everything here is updated once per batch (a histogram takes a batch's values in one
NumPy call), so keeping the figures costs the hot path nothing per record but a tuple
count; ``/metrics`` reads them only when scraped (``driftline.streams.app.metrics``).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

import numpy as np

_LABELS = itemgetter("model", "version", "arm")
_LATENCY = itemgetter("latency_ms")

# Produce-to-prediction latency, seconds: from the record's Kafka timestamp to its score.
LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# One ClickHouse insert, seconds (a flush of a sink, retries not included).
INSERT_BUCKETS_S = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# Records per scoring batch.
BATCH_BUCKETS = (1, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10000)


class Buckets:
    """A histogram's bucket counts and sum, filled a batch of values at a time.

    ``counts[i]`` holds the values ``<= bounds[i]`` that no smaller bound holds (the
    last slot: above every bound); Prometheus's cumulative ``le`` buckets add them up.
    """

    def __init__(self, bounds: Iterable[float]) -> None:
        self.bounds = np.asarray(tuple(bounds), dtype=np.float64)
        self.counts = np.zeros(len(self.bounds) + 1, dtype=np.int64)
        self.sum = 0.0

    def observe_many(self, values: np.ndarray) -> None:
        if len(values):
            slots = np.searchsorted(self.bounds, values, side="left")
            self.counts += np.bincount(slots, minlength=len(self.counts))
            self.sum += float(values.sum())

    def observe(self, value: float) -> None:
        self.counts[int(np.searchsorted(self.bounds, value, side="left"))] += 1
        self.sum += value

    def cumulative(self) -> list[tuple[str, int]]:
        """``(le, count)`` pairs as Prometheus writes them, ``+Inf`` last."""
        running = np.cumsum(self.counts).tolist()
        labels = [_le(bound) for bound in self.bounds.tolist()] + ["+Inf"]
        return list(zip(labels, running, strict=True))


def _le(bound: float) -> str:
    return str(int(bound)) if float(bound).is_integer() else repr(bound)


@dataclass
class WorkerStats:
    started_at: float = field(default_factory=time.time)
    records_in: int = 0
    predictions_out: int = 0
    batches: int = 0
    dead_letters: Counter = field(default_factory=Counter)
    rows_stored: Counter = field(default_factory=Counter)
    models_refused: list[dict] = field(default_factory=list)
    store_failures: int = 0
    shadow_rejected: int = 0  # rows a shadow could not score that a served arm did
    timing: Counter = field(default_factory=Counter)  # seconds spent, by stage
    first_batch_at: float | None = None
    last_batch_at: float | None = None
    first_batch_size: int = 0
    first_batch_predictions: int = 0
    drift_events: int = 0  # DriftEvents published by this worker's drift decider
    drift_redelivered: int = 0  # records and outcomes the decider had already counted
    drift_summary_bytes: int = 0  # parts sent to the deciders (inputs and errors)
    drift_snapshot_bytes: int = 0
    drift_restored: dict = field(default_factory=dict)  # monitor -> {source: next offset}
    outcomes: Counter = field(default_factory=Counter)  # joined, late, unmatched, ...
    # What the outcomes join holds: pending_rows, waiting_outcomes, state_records, state_bytes
    outcome_join: dict = field(default_factory=dict)
    policy_actions: int = 0  # signed commands the policy role published
    policy_actions_unsigned: int = 0  # actions not taken: no key for the policy actor
    predictions_by: Counter = field(default_factory=Counter)  # (model, version, arm) -> n
    latency_s: Buckets = field(default_factory=lambda: Buckets(LATENCY_BUCKETS_S))
    batch_sizes: Buckets = field(default_factory=lambda: Buckets(BATCH_BUCKETS))
    drift_alarms: Counter = field(default_factory=Counter)  # (model, arm, detector, feature)
    policy_decisions: Counter = field(default_factory=Counter)  # decision -> signed commands
    insert_latency_s: Buckets = field(default_factory=lambda: Buckets(INSERT_BUCKETS_S))
    consumer_lag: dict = field(default_factory=dict)  # (topic, partition) -> records behind
    # Online enrichment: lookups, rows, missing, defaulted, retries, unavailable, version_changed
    enrichment: Counter = field(default_factory=Counter)
    skew: Counter = field(default_factory=Counter)  # checks, rows_compared, events, store_errors
    skew_last: dict = field(default_factory=dict)  # model -> feature -> skew rate, last check

    def batch_done(self, records: int, predictions: int) -> None:
        now = time.time()
        if self.first_batch_at is None:
            self.first_batch_at, self.first_batch_size = now, records
            self.first_batch_predictions = predictions
        self.last_batch_at = now
        self.records_in += records
        self.predictions_out += predictions
        self.batches += 1
        self.batch_sizes.observe(records)

    def predicted(
        self,
        predictions: list[Mapping[str, Any]],
        arm_counts: Iterable[tuple[tuple[str, int, str], int]] | None = None,
    ) -> None:
        """Count a batch's Prediction records by model, version and arm (``arm_counts``
        when the scorer knows them, one entry per arm), and their latency."""
        if not predictions:
            return
        if arm_counts is not None:
            for labels, n in arm_counts:
                self.predictions_by[labels] += n
        else:  # itemgetter and Counter's update run in C: no Python frame per record
            self.predictions_by.update(map(_LABELS, predictions))
        latencies = np.fromiter(map(_LATENCY, predictions), np.float64, len(predictions))
        self.latency_s.observe_many(latencies / 1000.0)

    def predicted_frame(self, parts: list[Mapping[str, Any]]) -> None:
        """Count a scored frame's rows by model, version and arm (one part per arm)."""
        for part in parts:
            self.predictions_by[(part["model"], part["version"], part["arm"])] += part["n_rows"]

    def as_dict(self) -> dict:
        return {
            "uptime_s": round(time.time() - self.started_at, 3),
            "records_in": self.records_in,
            "predictions_out": self.predictions_out,
            "batches": self.batches,
            "dead_letters": dict(self.dead_letters),
            "rows_stored": dict(self.rows_stored),
            "models_refused": self.models_refused[-20:],
            "store_failures": self.store_failures,
            "shadow_rejected": self.shadow_rejected,
            "timing_s": {stage: round(seconds, 3) for stage, seconds in self.timing.items()},
            "first_batch_at": self.first_batch_at,
            "last_batch_at": self.last_batch_at,
            "first_batch_size": self.first_batch_size,
            "first_batch_predictions": self.first_batch_predictions,
            "drift_events": self.drift_events,
            "drift_redelivered": self.drift_redelivered,
            "drift_summary_bytes": self.drift_summary_bytes,
            "drift_snapshot_bytes": self.drift_snapshot_bytes,
            "drift_restored": dict(self.drift_restored),
            "outcomes": dict(self.outcomes),
            "outcome_join": dict(self.outcome_join),
            "policy_actions": self.policy_actions,
            "policy_actions_unsigned": self.policy_actions_unsigned,
            "enrichment": dict(self.enrichment),
            "skew": dict(self.skew) | {"last": dict(self.skew_last)},
        }
