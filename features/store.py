"""What driftline needs from a feature store, as one small protocol.

The worker, the dataset builder, the skew checker and erasure talk to this, never to
Feast itself: ``feast_store.FeastFeatureStore`` is the one implementation shipped, and
tests may pass any other object with the same methods.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import pyarrow as pa


@dataclass(frozen=True)
class FeatureViewRef:
    """A feature view as a model was served or trained with: its name and the content
    hash of its definition (Feast has no version numbers; the hash changes when the
    view's schema, source or entities change, and not when it is merely re-applied)."""

    name: str
    version: str


@dataclass(frozen=True)
class FeatureServiceRef:
    """A feature service, resolved: the features it serves, in order, and its version
    (a hash over its views' versions and its feature list)."""

    name: str
    version: str
    entity_key: str
    feature_names: tuple[str, ...]
    views: tuple[FeatureViewRef, ...]

    @property
    def label(self) -> str:
        """How predictions and lineage name it: ``name@version``."""
        return f"{self.name}@{self.version}"

    def as_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "version": self.version,
            "entity_key": self.entity_key,
            "features": list(self.feature_names),
            "views": [{"name": v.name, "version": v.version} for v in self.views],
        }


@dataclass(frozen=True)
class OnlineFeatures:
    """One batched online lookup: row ``i`` belongs to the ``i``-th entity asked for.

    ``values`` is float32 with NaN where the store had no value; ``found`` is true for
    an entity that had every feature of the service.
    """

    feature_names: tuple[str, ...]
    values: np.ndarray
    found: np.ndarray


class FeatureStore(Protocol):
    """A feature store as driftline uses it."""

    def service(self, name: str) -> FeatureServiceRef:
        """Resolve a feature service; raises ``FeatureServiceNotFound``."""
        ...

    def online(self, service: str, entity_ids: Sequence[str]) -> OnlineFeatures:
        """Every feature of ``service`` for each entity, in one call; raises
        ``FeatureStoreUnavailable`` when the store cannot answer."""
        ...

    def historical(self, service: str, entities: pa.Table) -> pa.Table:
        """Point-in-time values: for each row of ``entities`` (``entity_id``,
        ``event_timestamp``), the feature values as they were at that time."""
        ...

    def erase_online(self, entity_ids: Sequence[str]) -> int:
        """Delete these entities' rows from the online store; returns rows deleted."""
        ...

    def locations(self) -> dict[str, str]:
        """Where its data lives (online store, offline store, registry), for residency."""
        ...
