"""The governance half of `driftline demo`: gates, a canary on live traffic, drift, rollback.

Live traffic runs in the background the whole time and every prediction gets
its outcome back a moment later (wrong 10% of the time), so the policy sees
real error rates. The story: v2 passes the quality gates, the policy walks its
canary through the steps and promotes it; then a concept drift hurts v2 only
(its outcomes turn wrong 60% of the time), the error detectors fire, and the
policy rolls back to v1. The timeline is read back from the audit log.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from driftline.core.settings import Settings
from driftline.inference import SyntheticFeatures
from driftline.streams.control.store_access import query
from driftline.streams.demo.loadgen import produce_at_rate, synthetic_records
from driftline.streams.kafka.producer import FeatureProducer

DEMO_POLICY = """
[gates]
latency_budget_ms = 50
thresholds = { auc = 0.6 }
max_regression = { auc = 0.02 }

[canary]
steps = [5, 25, 50, 100]
bake_s = 3
min_samples = 150
min_outcomes = 300  # 100 outcomes put a 0.05 error-rate limit within noise
max_error_rate_increase = 0.05
max_latency_p99_ms = 20000  # a demo on a busy laptop: the story here is drift
"""


def write_demo_policy(data_dir: Path) -> Path:
    path = data_dir / "policy.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(DEMO_POLICY)
    return path


def write_holdout(path: Path, seed: int, n_features: int, rows: int = 5_000) -> Path:
    """Rows from the champion's population that no model trained on."""
    generator = SyntheticFeatures(n_features, seed=seed)
    generator.sample(20_000)  # the training rows
    x, y = generator.sample(rows)
    header = ",".join([*generator.feature_names, "label"])
    body = np.column_stack([x, y]).astype(np.float64)
    np.savetxt(path, body, delimiter=",", header=header, comments="", fmt="%.7g")
    return path


@dataclass
class ConceptDrift:
    """The share of wrong outcomes per version, changing at one moment.

    Predictions scored before the moment keep the base rate even when their
    outcomes go out after it: the detectors need the error rate from before.
    """

    base_rate: float = 0.1
    _changes: dict[int, tuple[float, int]] = field(default_factory=dict)

    def inject(self, version: int, wrong_rate: float, *, at_ms: int) -> None:
        self._changes[version] = (wrong_rate, at_ms)

    def wrong_rate(self, version: int, scored_at_ms: int) -> float:
        rate, since = self._changes.get(version, (self.base_rate, 0))
        return rate if scored_at_ms >= since else self.base_rate


class LiveTraffic:
    """Records at ``rate`` and an outcome for every prediction, until stopped."""

    def __init__(
        self, settings: Settings, bootstrap: str, *, model: str, n_features: int, rate: float
    ):
        self._settings = settings
        self._producer = FeatureProducer(settings, bootstrap)
        self._model, self._n_features, self._rate = model, n_features, rate
        self._stop = threading.Event()
        self.concept = ConceptDrift()
        self.sent = 0
        self.labelled_by: Counter[tuple[int, str]] = Counter()  # (version, arm) -> outcomes
        self._threads = [
            threading.Thread(target=self._produce, name="demo-traffic", daemon=True),
            threading.Thread(target=self._label, name="demo-outcomes", daemon=True),
        ]

    def start(self) -> LiveTraffic:
        for thread in self._threads:
            thread.start()
        return self

    def inject_drift(self, version: int, wrong_rate: float) -> None:
        """From now on, ``version``'s predictions get wrong outcomes at ``wrong_rate``."""
        self.concept.inject(version, wrong_rate, at_ms=int(time.time() * 1000))

    def wait_for_outcomes(self, version: int, arm: str, count: int, timeout_s: float) -> None:
        """Block until ``count`` outcomes of ``version`` on ``arm`` have gone out."""
        deadline = time.monotonic() + timeout_s
        while self.labelled_by[(version, arm)] < count:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"only {self.labelled_by[(version, arm)]} of {count} outcomes for "
                    f"v{version} ({arm}) after {timeout_s:.0f}s"
                )
            time.sleep(0.2)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)
        self._producer.close()

    def _records(self) -> Iterator[dict]:
        for record in synthetic_records(
            model=self._model, count=10**9, entities=2_000, seed=21, n_features=self._n_features
        ):
            if self._stop.is_set():
                return
            yield record

    def _produce(self) -> None:
        def counted(n: int) -> None:
            self.sent += n

        produce_at_rate(self._producer, self._records(), rate=self._rate, on_progress=counted)

    def _label(self) -> None:
        db = self._settings.clickhouse.database
        rng = np.random.default_rng(5)
        since, seen = 0, set()
        while not self._stop.is_set():
            time.sleep(0.5)
            _, rows = query(
                self._settings,
                f"SELECT prediction_id, version, arm, score, "
                f"toUnixTimestamp64Milli(scored_at) AS t "
                f"FROM {db}.predictions WHERE t >= {since} ORDER BY t LIMIT 20000",
            )
            for prediction_id, version, arm, score, scored_at in rows:
                if prediction_id in seen:
                    continue
                seen.add(prediction_id)
                wrong = rng.random() < self.concept.wrong_rate(int(version), int(scored_at))
                self._producer.send_outcome(prediction_id, float((score >= 0.5) != wrong))
                self.labelled_by[(int(version), arm)] += 1
                since = max(since, int(scored_at))
            if len(seen) > 200_000:
                seen = set(list(seen)[-50_000:])
            self._producer.poll()


def wait_for_state(
    commands, model: str, version: int, states: set[str], timeout_s: float, on_tick=None
) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        state = commands.registry().get(model, version).state
        if state in states:
            return state
        if on_tick is not None:
            on_tick()
        time.sleep(1.0)
    raise TimeoutError(f"{model} v{version} did not reach {sorted(states)} in {timeout_s:.0f}s")


def _describe(event_type: str, record: dict) -> str:
    evidence, attributes = record.get("evidence") or {}, record.get("attributes") or {}
    if event_type in ("validated", "rejected") and "gates" in evidence:
        gates = evidence["gates"]
        auc = gates.get("comparison", {}).get("auc", {})
        latency = (gates.get("latency") or {}).get("p99_ms")
        verdict = "passed" if gates.get("passed") else "failed"
        candidate, champion = auc.get("candidate", float("nan")), auc.get("champion", float("nan"))
        rows = gates.get("holdout", {}).get("rows")
        return (
            f"quality gates {verdict}: AUC {candidate:.3f} vs champion {champion:.3f}, "
            f"p99 {latency or 0:.2f} ms on {rows} rows"
        )
    if "guardrails" in evidence:
        canary, champion = evidence.get("canary", {}), evidence.get("champion", {})
        action, now = evidence.get("action"), evidence.get("percent_now")
        step = f" to {evidence['next_percent']:g}%" if evidence.get("next_percent") else ""
        guards = ", ".join(
            f"{g['name']} {g['status']}" for g in evidence["guardrails"] if g["status"] != "pass"
        )
        test = evidence.get("test") or {}
        return (
            f"canary at {now:g}%: {action}{step}; {canary.get('n_outcomes')} outcomes, "
            f"error rate {canary.get('error_rate') or 0:.3f} vs champion "
            f"{champion.get('error_rate') or 0:.3f}, mSPRT p={test.get('p_value', 1):.2g}; "
            f"guardrails {guards or 'all pass'}"
        )
    if "drift_events" in evidence:
        first = evidence["drift_events"][0]
        return (
            f"{evidence['reason']}: {first['detector']} on the {first['stream']} stream of "
            f"v{first['version']} ({first['arm']})"
        )
    if event_type == "drift_detected":
        return (
            f"{attributes.get('detector')} on the {attributes.get('stream', '?')} stream, "
            f"arm {attributes.get('arm')}"
        )
    if event_type == "rolled_back":
        restored = attributes.get("restored_champion")
        return f"{evidence.get('reason', '')}; v{restored} is champion again"
    return str(evidence.get("reason", ""))


def print_timeline(settings: Settings, console: Console, model: str, started_ms: int) -> None:
    db = settings.clickhouse.database
    _, rows = query(
        settings,
        f"SELECT toUnixTimestamp64Milli(occurred_at), event_type, version, actor, canonical "
        f"FROM {db}.audit_log WHERE model = '{model}' ORDER BY seq",
    )
    table = Table(title="timeline (from the audit log)")
    for column in ("t", "event", "v", "actor", "why"):
        table.add_column(column)
    drift_shown = 0
    for occurred, event_type, version, actor, canonical in rows:
        if event_type == "drift_detected":
            drift_shown += 1
            if drift_shown > 3:
                continue  # the first few tell the story; `driftline drift` lists them all
        record = json.loads(canonical)
        table.add_row(
            f"{(occurred - started_ms) / 1000:6.1f}s",
            event_type,
            str(version if version is not None else ""),
            actor,
            _describe(event_type, record),
        )
    console.print(table)
