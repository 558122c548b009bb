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
import uuid
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from driftline.features.enrichment import Enriched, Enricher, EnrichmentPolicy
from driftline.features.store import FeatureStore
from driftline.inference.columns import PackedStrings
from driftline.inference.frames import Frame, pack_frame
from driftline.inference.routing import RoutingTable, entity_buckets
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

    def __init__(
        self,
        store: FeatureStore | None,
        policy_of: PolicyOf,
        stats: WorkerStats,
        served_sample_rate: float = 0.0,
    ):
        self._store = store
        self._policy_of = policy_of
        self._stats = stats
        # Completed rows kept for the skew check: (FeatureFrame record, feature service label).
        self.served_sample_rate = served_sample_rate
        self.served: list[tuple[dict, str]] = []
        self._served_by: tuple[int, str] = (0, "champion")
        self._enrichers: dict[tuple[str, int], Enricher] = {}  # a version's policy never changes

    def _enricher(self, table: RoutingTable) -> tuple[Enricher, tuple[str, ...]] | None:
        arm = table.champion or (table.served[0].model if table.served else None)
        if arm is None:
            return None
        self._served_by = (
            arm.version,
            "champion" if arm is table.champion else table.served[0].name,
        )
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
            if label is not None:
                self._sample(
                    records[indices[0]]["model"], label, columns, ids,
                    [records[i]["event_time"] for i in indices], result.matrix, result.ok,
                )  # fmt: skip
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
        if label is not None:
            self._sample(
                frame.model, label, columns, frame.entity_ids, frame.event_times,
                result.matrix, result.ok,
            )  # fmt: skip
        return EnrichedFrame(completed, skip, result.reasons, label)

    def _sample(self, model, label, columns, ids, event_times, matrix, ok) -> None:
        """Keep the completed rows of sampled entities (all of an entity's rows or none,
        the same on every worker) as one FeatureFrame for the served-features topic."""
        if self.served_sample_rate <= 0:
            return
        ids = ids if isinstance(ids, PackedStrings) else PackedStrings.from_strings(list(ids))
        keep = ok & (entity_buckets(ids, "served") < round(self.served_sample_rate * 10_000))
        rows = np.flatnonzero(keep)
        if not len(rows):
            return
        times = np.asarray(event_times, dtype=np.int64)[rows]
        version, arm = self._served_by
        frame_id = served_frame_id(version, arm)
        record = pack_frame(
            frame_id, model, ids.take(rows).to_list(), times.tolist(), columns, matrix[rows]
        )
        self.served.append((record, label))

    def take_served(self) -> list[tuple[dict, str]]:
        served, self.served = self.served, []
        return served

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


def served_frame_id(version: int, arm: str) -> str:
    """``served:<version>:<arm>:<uuid>``: which version and arm the rows were served for
    (the skew check's DriftEvents name them); rows get ``<frame id>:<row>`` as ids."""
    return f"served:{version}:{arm}:{uuid.uuid4().hex}"


def parse_served_id(record_id: str) -> tuple[int, str] | None:
    """The version and arm of a served row's id; None for an id of another shape."""
    parts = record_id.split(":")
    if len(parts) != 5 or parts[0] != "served" or not parts[1].isdigit():
        return None
    return int(parts[1]), parts[2]


def _request_matrix(records: Sequence[dict], indices: list[int], width: int) -> np.ndarray | None:
    rows = [records[i]["features"] for i in indices]
    if any(len(row) != width for row in rows):
        return None
    return np.asarray(rows, dtype=np.float32).reshape(len(rows), width)
