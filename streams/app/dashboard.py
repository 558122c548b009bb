"""The live dashboard's data: what the page at ``/driftline/dashboard/`` polls every second.

A sampler turns the worker's counters into a time series once a second (predictions per
second, p50 and p99 produce-to-prediction latency from the histogram's change over the
second). The rest is read as any client would: the router's arms and shares, the
policy's decisions, and, where the worker owns the store, the audit log (who served
when, each canary step's evidence), the drift events and the audit chains' state. The
store is asked at most every two seconds, whoever polls.
"""

from __future__ import annotations

import json
import time
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np

from driftline.streams.stats import Buckets

STATIC = Path(__file__).with_name("dashboard")
SAMPLES = 300  # five minutes at one a second
STORE_EVERY_S = 2.0


def quantile(bounds: np.ndarray, counts: np.ndarray, q: float) -> float | None:
    """The ``q`` quantile of bucketed values, interpolated within its bucket (as
    Prometheus's histogram_quantile does); None for no values."""
    total = int(counts.sum())
    if total == 0:
        return None
    rank = q * total
    cumulative = np.cumsum(counts)
    i = int(np.searchsorted(cumulative, rank, side="left"))
    if i >= len(bounds):  # above the last bound: report the bound
        return float(bounds[-1])
    lower = 0.0 if i == 0 else float(bounds[i - 1])
    below = 0 if i == 0 else int(cumulative[i - 1])
    inside = int(counts[i])
    return lower + (float(bounds[i]) - lower) * ((rank - below) / inside if inside else 1.0)


class DashboardFeed:
    """The page's data for one worker (``runtime``: its WorkerRuntime)."""

    def __init__(self, runtime: Any) -> None:
        self.runtime = runtime
        self.series: deque[dict[str, Any]] = deque(maxlen=SAMPLES)
        self._last: tuple[float, int, np.ndarray] | None = None
        self._store_at = 0.0
        self._store: dict[str, Any] = {}

    def sample(self) -> None:
        """One point of the time series, from the counters' change since the last."""
        stats = self.runtime.stats
        latency: Buckets = stats.latency_s
        now, predicted, counts = time.time(), stats.predictions_out, latency.counts.copy()
        if self._last is not None:
            then, before, counts_before = self._last
            elapsed = max(now - then, 1e-6)
            delta = counts - counts_before
            p50 = quantile(latency.bounds, delta, 0.5)
            p99 = quantile(latency.bounds, delta, 0.99)
            self.series.append(
                {
                    "t": round(now, 3),
                    "predictions_per_s": round((predicted - before) / elapsed, 1),
                    "p50_ms": None if p50 is None else round(p50 * 1000, 1),
                    "p99_ms": None if p99 is None else round(p99 * 1000, 1),
                }
            )
        self._last = (now, predicted, counts)

    async def data(self) -> dict[str, Any]:
        runtime = self.runtime
        stats = runtime.stats
        if runtime.store is not None and time.monotonic() - self._store_at >= STORE_EVERY_S:
            self._store = await runtime.store.call(self._read_store)
            self._store_at = time.monotonic()
        decisions = None
        if runtime.policy_loop is not None:
            decisions = runtime.policy_loop.last
        return {
            "now": time.time(),
            "roles": sorted(runtime.settings.worker.role_set),
            "totals": {
                "records_in": stats.records_in,
                "predictions_out": stats.predictions_out,
                "dead_letters": dict(stats.dead_letters),
            },
            "series": list(self.series),
            "models": runtime.scoring.router.loaded() if runtime.scoring is not None else None,
            "decisions": decisions,
            "audit": self._audit(),
            **self._store,
        }

    def _audit(self) -> dict[str, Any] | None:
        keeper = self.runtime.checkpoints
        if keeper is None:
            return None
        return {
            "intact": {model: problems == 0 for model, problems in keeper.problems.items()},
            "checkpoint_age_s": {
                model: round(time.time() - signed_at / 1000, 1)
                for model, signed_at in keeper.last_signed_at.items()
            },
        }

    def _read_store(self) -> dict[str, Any]:
        """The audit log's recent events (with their evidence) and the drift events."""
        client = self.runtime.store_client
        database = self.runtime.settings.clickhouse.database
        lifecycle = client.query(
            "SELECT toUnixTimestamp64Milli(occurred_at), model, seq, event_type, version, actor, "
            f"canonical FROM {database}.audit_log ORDER BY occurred_at DESC, seq DESC LIMIT 50"
        ).result_rows
        drift = client.query(
            "SELECT toUnixTimestamp64Milli(detected_at), model, version, arm, detector, "
            f"feature, stream, statistic, threshold FROM {database}.drift_unique "
            "ORDER BY detected_at DESC LIMIT 50"
        ).result_rows
        return {
            "lifecycle": [
                {
                    "at": at,
                    "model": model,
                    "seq": seq,
                    "event": event,
                    "version": version,
                    "actor": actor,
                    "evidence": _evidence(canonical),
                }
                for at, model, seq, event, version, actor, canonical in lifecycle
            ],
            "drift": [
                dict(
                    zip(
                        ("at", "model", "version", "arm", "detector", "feature", "stream",
                         "statistic", "threshold"),
                        row,
                        strict=True,
                    )
                )
                for row in drift
            ],
        }  # fmt: skip


def _evidence(canonical: str) -> dict[str, Any]:
    """A lifecycle event's evidence from its canonical JSON in the audit log."""
    try:
        evidence = json.loads(canonical).get("evidence", {})
        return json.loads(evidence) if isinstance(evidence, str) else evidence
    except (ValueError, AttributeError):
        return {}
