"""The scoring stage's online enrichment: records and frames completed from the feature store.

A model version registered with ``--feature-service`` carries an enrichment policy in its
metadata (``driftline.features.enrichment``). Before a batch is routed, the records of
such a model that do not send every column of its signature are completed with one
online lookup per set of request columns in the batch (usually one), and a frame with one
lookup for its rows. Rows the store cannot complete follow the policy's rule; the stage
dead-letters what the rule refuses, with the reason and the entity named.

Every arm of a model is enriched with the policy of the version that serves most of it
(the champion, else the first served arm): arms registered with different services would
need one lookup each, which this does not do.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from driftline.features.enrichment import Enriched, Enricher, EnrichmentPolicy
from driftline.features.store import FeatureStore
from driftline.inference.frames import Frame
from driftline.inference.routing import RoutingTable
from driftline.streams.stats import WorkerStats

PolicyOf = Callable[[str, int], EnrichmentPolicy | None]


@dataclass
class EnrichedRecords:
    records: list[dict]  # the records to score, completed
    kept: list[int]  # their indices in the input
    refused: list[tuple[int, str, str]]  # (index, reason, detail)
    labels: dict[str, str]  # record_id -> feature service label


@dataclass
class EnrichedFrame:
    frame: Frame
    skip: np.ndarray | None  # rows not to score
    reasons: dict[int, tuple[str, str]]
    label: str | None


class FeatureEnrichment:
    """Finds a model's policy and runs its enricher on records and frames."""

    def __init__(self, store: FeatureStore | None, policy_of: PolicyOf, stats: WorkerStats):
        self._store = store
        self._policy_of = policy_of
        self._stats = stats
        self._enrichers: dict[tuple[str, int], Enricher] = {}  # a version's policy never changes

    def _enricher(self, table: RoutingTable) -> tuple[Enricher, tuple[str, ...]] | None:
        arm = table.champion or (table.served[0].model if table.served else None)
        if arm is None:
            return None
        policy = self._policy_of(arm.name, arm.version)
        if policy is None:
            return None
        key = (arm.name, arm.version)
        enricher = self._enrichers.get(key)
        if enricher is None:
            enricher = self._enrichers[key] = Enricher(self._store, policy)
        return enricher, tuple(arm.signature.column_names)

    def records(self, table: RoutingTable, records: Sequence[dict]) -> EnrichedRecords | None:
        """Complete the records that need it; None when the model has no feature service."""
        found = self._enricher(table)
        if found is None:
            return None
        enricher, columns = found
        groups: dict[tuple[str, ...], list[int]] = defaultdict(list)
        for index, record in enumerate(records):
            names = tuple(record.get("feature_names") or ())
            if names != columns:
                groups[names].append(index)
        if not groups:
            return None
        out = list(records)
        refused: list[tuple[int, str, str]] = []
        labels: dict[str, str] = {}
        for names, indices in groups.items():
            values = _request_matrix(records, indices, len(names))
            if values is None:  # ragged: the signature check will name each bad record
                continue
            ids = [records[i]["entity_id"] for i in indices]
            result = enricher.enrich(columns, ids, names, values)
            self._count(result)
            label = result.service.label if result.service is not None else None
            for row, i in enumerate(indices):
                if not result.ok[row]:
                    reason, detail = result.reasons[row]
                    refused.append((i, reason, detail))
                    continue
                out[i] = dict(
                    records[i],
                    features=result.matrix[row].tolist(),
                    feature_names=list(columns),
                )
                if label is not None:
                    labels[records[i]["record_id"]] = label
        gone = {i for i, _, _ in refused}
        kept = [i for i in range(len(records)) if i not in gone]
        return EnrichedRecords([out[i] for i in kept], kept, refused, labels)

    def frame(self, table: RoutingTable, frame: Frame) -> EnrichedFrame | None:
        """Complete a frame's matrix; None when it needs nothing from the store."""
        found = self._enricher(table)
        if found is None:
            return None
        enricher, columns = found
        if tuple(frame.feature_names) == columns:
            return None
        result = enricher.enrich(
            columns, frame.entity_ids.to_list(), frame.feature_names, frame.matrix
        )
        self._count(result)
        completed = dataclasses.replace(frame, feature_names=list(columns), matrix=result.matrix)
        skip = None if result.ok.all() else ~result.ok
        label = result.service.label if result.service is not None else None
        return EnrichedFrame(completed, skip, result.reasons, label)

    def _count(self, result: Enriched) -> None:
        self._stats.enrichment.update(
            {
                "lookups": 1 if result.looked_up else 0,
                "rows": result.looked_up,
                "missing": result.missing,
                "defaulted": result.defaulted,
                "retries": result.retries,
                "unavailable": 1 if result.unavailable else 0,
                "version_changed": 1 if result.version_changed else 0,
            }
        )


def _request_matrix(records: Sequence[dict], indices: list[int], width: int) -> np.ndarray | None:
    rows = [records[i]["features"] for i in indices]
    if any(len(row) != width for row in rows):
        return None
    return np.asarray(rows, dtype=np.float32).reshape(len(rows), width)
