"""The lineage role's training-serving skew check (see ``driftline.features.skew``).

On a timer it reads the served rows stored since the last check (at most ``rows`` per
model, feature service and column set), asks the feature store's offline side for the
same entities at the same event times, and publishes a ``training_serving_skew``
DriftEvent for each feature whose skew rate passes the limit. A feature alarms once per
episode: it re-arms after a check finds it within the limit again.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from driftline.features.exceptions import FeatureStoreError
from driftline.features.skew import DETECTOR, SkewLimits, compare, over_limit
from driftline.features.store import FeatureStore
from driftline.lineage.store.clickhouse import SERVED_FEATURES, ClickHouseClient, table
from driftline.streams.stages.enrichment import parse_served_id
from driftline.streams.stats import WorkerStats

log = logging.getLogger(__name__)


@dataclass
class ServedRows:
    model: str
    version: int  # the version and arm the rows were served for
    arm: str
    service: str  # name@version
    columns: list[str]
    entity_ids: list[str]
    event_times_ms: np.ndarray
    values: np.ndarray  # float32 [rows, columns]


class SkewChecker:
    def __init__(
        self,
        *,
        client: ClickHouseClient,
        database: str,
        store: FeatureStore,
        limits: SkewLimits,
        rows: int,
        stats: WorkerStats,
    ) -> None:
        self._client = client
        self._table = table(database, SERVED_FEATURES)
        self._store = store
        self._limits = limits
        self._rows = rows
        self._stats = stats
        self._since_ms = 0  # served rows recorded after this are not checked yet
        self._alarmed: set[tuple[str, str, str]] = set()  # (model, service name, feature)

    def read_served(self) -> list[ServedRows]:
        """The served rows recorded since the last check (runs where the store is)."""
        result = self._client.query(
            f"SELECT model, feature_service, feature_names, record_id, entity_id, "
            f"toUnixTimestamp64Milli(event_time), features, toUnixTimestamp64Milli(recorded_at) "
            f"FROM {self._table} FINAL "
            "WHERE recorded_at > fromUnixTimestamp64Milli({since:Int64}) "
            "AND feature_service IS NOT NULL "
            "ORDER BY recorded_at LIMIT {rows:UInt32} BY model, feature_service, feature_names",
            parameters={"since": self._since_ms, "rows": self._rows},
        ).result_rows
        groups: dict[tuple, list] = defaultdict(list)
        for model, service, names, record_id, entity, event_ms, features, recorded_ms in result:
            self._since_ms = max(self._since_ms, recorded_ms)
            served_by = parse_served_id(record_id)
            if served_by is not None:
                groups[(model, *served_by, service, names)].append((entity, event_ms, features))
        return [
            ServedRows(
                model,
                version,
                arm,
                service,
                names.split(","),
                [r[0] for r in rows],
                np.array([r[1] for r in rows], np.int64),
                np.array([r[2] for r in rows], np.float32),
            )
            for (model, version, arm, service, names), rows in groups.items()
        ]

    def check(self, served: list[ServedRows]) -> list[dict]:
        """DriftEvents (Avro dicts) for the features over the limit; runs off the event loop."""
        events = []
        for group in served:
            try:
                events += self._check_group(group)
            except FeatureStoreError as exc:
                self._stats.skew["store_errors"] += 1
                log.warning("skew check of %s (%s) skipped: %s", group.model, group.service, exc)
        return events

    def _check_group(self, group: ServedRows) -> list[dict]:
        name = group.service.split("@")[0]
        ref = self._store.service(name)
        columns = [c for c in group.columns if c in ref.feature_names]  # request-time ones: none
        entities = pa.table(
            {
                "entity_id": pa.array(group.entity_ids, pa.string()),
                "event_timestamp": pa.array(group.event_times_ms, pa.timestamp("ms", "UTC")),
            }
        )
        offline_table = self._store.historical(name, entities)
        offline = np.column_stack(
            [offline_table.column(c).to_numpy(zero_copy_only=False) for c in columns]
        ).astype(np.float64)
        served = group.values[:, [group.columns.index(c) for c in columns]]
        report = compare(served, offline, columns, self._limits)
        self._stats.skew["checks"] += 1
        self._stats.skew["rows_compared"] += len(group.entity_ids)
        self._stats.skew_last[group.model] = {f.feature: round(f.rate, 6) for f in report}
        over = {f.feature for f in over_limit(report, self._limits)}
        events = []
        for feature in report:
            key = (group.model, name, feature.feature)
            if feature.feature not in over:
                if feature.compared >= self._limits.min_rows:
                    self._alarmed.discard(key)  # within the limit again: re-armed
                continue
            if key in self._alarmed:
                continue
            self._alarmed.add(key)
            events.append(self._event(group, ref.label, feature))
        self._stats.skew["events"] += len(events)
        return events

    def _event(self, group: ServedRows, current: str, feature) -> dict:
        evidence = feature.as_evidence() | {
            "stream": "input",
            "served_with": group.service,
            "offline_service": current,
            "rtol": self._limits.rtol,
            "atol": self._limits.atol,
            "min_rows": self._limits.min_rows,
        }
        return {
            "event_id": str(uuid.uuid4()),
            "model": group.model,
            "version": group.version,
            "arm": group.arm,
            "detector": DETECTOR,
            "feature": feature.feature,
            "statistic": feature.rate,
            "threshold": self._limits.max_rate,
            "p_value": None,
            "window_size": feature.compared,
            "evidence": json.dumps(evidence, sort_keys=True),
            "detected_at": int(time.time() * 1000),
        }
