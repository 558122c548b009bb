"""In-process counters a worker exposes on its HTTP API."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field


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
    policy_actions: int = 0  # signed commands the policy role published
    policy_actions_unsigned: int = 0  # actions not taken: no key for the policy actor

    def batch_done(self, records: int, predictions: int) -> None:
        now = time.time()
        if self.first_batch_at is None:
            self.first_batch_at, self.first_batch_size = now, records
            self.first_batch_predictions = predictions
        self.last_batch_at = now
        self.records_in += records
        self.predictions_out += predictions
        self.batches += 1

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
            "policy_actions": self.policy_actions,
            "policy_actions_unsigned": self.policy_actions_unsigned,
        }
