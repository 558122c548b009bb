"""Online enrichment: complete the rows a producer sent with the feature store's values.

A record or frame may carry only its entity ids and request-time features. Before
scoring, the worker asks the store for the rest, once per batch or frame (never once per
row), and builds the matrix in the model's column order: a column the producer sent is
taken from the request, every other column from the store.

What happens to a row the store cannot complete is the model's rule, stated at
registration and counted, never silent:

- ``dead_letter``: the row goes to the dead-letter topic (``feature_missing`` when its
  entity is not in the store, ``feature_store_unavailable`` when the store is down);
- ``defaults``: the row is scored with the rule's default values for the missing
  features (0.0 unless given), and counted as defaulted;
- ``retry``: the lookup is tried again, ``retries`` more times with a doubling pause,
  and a row still incomplete after that is dead-lettered as under ``dead_letter``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np

from driftline.features.exceptions import FeatureStoreError, FeatureStoreUnavailable
from driftline.features.store import FeatureServiceRef, FeatureStore

FEATURE_MISSING = "feature_missing"
FEATURE_STORE_UNAVAILABLE = "feature_store_unavailable"
FEATURES_UNSERVED = "feature_names_mismatch"


class MissingRule(StrEnum):
    DEAD_LETTER = "dead_letter"
    DEFAULTS = "defaults"
    RETRY = "retry"


@dataclass(frozen=True)
class EnrichmentPolicy:
    """What a model version asks of the feature store; stored in its registered metadata."""

    service: str
    version: str | None = None  # the service's version at registration
    rule: MissingRule = MissingRule.DEAD_LETTER
    defaults: Mapping[str, float] = field(default_factory=dict)
    retries: int = 2
    backoff_s: float = 0.05

    def __post_init__(self) -> None:
        object.__setattr__(self, "rule", MissingRule(self.rule))
        if self.retries < 0 or self.backoff_s < 0:
            raise ValueError(
                f"retries and backoff_s must not be negative, got {self.retries}, {self.backoff_s}"
            )

    def as_metadata(self) -> dict[str, object]:
        return {
            "service": self.service,
            "version": self.version,
            "missing_rule": self.rule.value,
            "defaults": dict(self.defaults),
            "retries": self.retries,
            "backoff_s": self.backoff_s,
        }

    @classmethod
    def from_metadata(cls, data: Mapping[str, object]) -> EnrichmentPolicy:
        return cls(
            service=str(data["service"]),
            version=data.get("version"),  # type: ignore[arg-type]
            rule=MissingRule(str(data.get("missing_rule", MissingRule.DEAD_LETTER))),
            defaults={str(k): float(v) for k, v in dict(data.get("defaults") or {}).items()},
            retries=int(data.get("retries", 2)),  # type: ignore[arg-type]
            backoff_s=float(data.get("backoff_s", 0.05)),  # type: ignore[arg-type]
        )


@dataclass
class Enriched:
    """The completed matrix, which rows to score, and why the others may not be."""

    matrix: np.ndarray  # float32 [n, len(columns)]
    ok: np.ndarray  # bool [n]
    reasons: dict[int, tuple[str, str]]  # row -> (dead-letter reason, detail)
    service: FeatureServiceRef | None
    looked_up: int = 0
    missing: int = 0
    defaulted: int = 0
    retries: int = 0
    unavailable: bool = False
    version_changed: bool = False  # the service's definition differs from registration


class Enricher:
    """Completes rows for one model version's policy against one store."""

    def __init__(
        self,
        store: FeatureStore | None,
        policy: EnrichmentPolicy,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.store = store
        self.policy = policy
        self._sleep = sleep

    def enrich(
        self,
        columns: Sequence[str],
        entity_ids: Sequence[str],
        request_names: Sequence[str],
        request_values: np.ndarray,
    ) -> Enriched:
        """Rows in ``columns`` order for ``entity_ids``, given the request's own columns."""
        n = len(entity_ids)
        request = {name: j for j, name in enumerate(request_names)}
        wanted = [name for name in columns if name not in request]
        matrix = np.empty((n, len(columns)), np.float32)
        for j, name in enumerate(columns):
            if name in request:
                matrix[:, j] = request_values[:, request[name]]
        if not wanted:  # the producer sent every column: nothing to look up
            return Enriched(matrix, np.ones(n, bool), {}, None)
        try:
            ref, values, found, retries = self._lookup(entity_ids)
        except FeatureStoreUnavailable as exc:
            return self._unavailable(matrix, columns, wanted, entity_ids, str(exc))
        served = {name: j for j, name in enumerate(ref.feature_names)}
        unserved = [name for name in wanted if name not in served]
        if unserved:
            detail = (
                f"columns {unserved} are neither in the record nor served by {ref.label}; "
                "send them, or add them to the feature service"
            )
            return Enriched(
                matrix, np.zeros(n, bool), dict.fromkeys(range(n), (FEATURES_UNSERVED, detail)), ref
            )
        picks = [served[name] for name in wanted]
        looked = values[:, picks]
        complete = ~np.isnan(looked).any(axis=1)
        result = Enriched(matrix, complete.copy(), {}, ref, looked_up=n, retries=retries)
        result.version_changed = self.policy.version not in (None, ref.version)
        result.missing = int(n - complete.sum())
        if result.missing and self.policy.rule is MissingRule.DEFAULTS:
            fill = np.array([self.policy.defaults.get(name, 0.0) for name in wanted], np.float32)
            looked = np.where(np.isnan(looked), fill, looked)
            result.defaulted, result.ok[:] = result.missing, True
        else:
            for row in np.flatnonzero(~complete).tolist():
                absent = [wanted[j] for j in np.flatnonzero(np.isnan(looked[row])).tolist()]
                result.reasons[row] = (
                    FEATURE_MISSING,
                    f"entity {entity_ids[row]!r} has no value for {absent} in {ref.label} "
                    f"(rule {self.policy.rule.value})",
                )
        for k, name in enumerate(wanted):
            matrix[:, columns.index(name)] = looked[:, k]
        return result

    def _lookup(self, entity_ids: Sequence[str]):
        if self.store is None:
            raise FeatureStoreUnavailable(
                f"model needs feature service {self.policy.service!r} but this worker has no "
                "feature store: set DRIFTLINE_FEATURES_REPO to the Feast repository"
            )
        attempts = 1 + (self.policy.retries if self.policy.rule is MissingRule.RETRY else 0)
        pause = self.policy.backoff_s
        for attempt in range(attempts):
            last = attempt == attempts - 1
            try:
                ref = self.store.service(self.policy.service)
                online = self.store.online(self.policy.service, entity_ids)
            except FeatureStoreUnavailable:
                if last:
                    raise
            except FeatureStoreError as exc:  # a missing service is not worth retrying
                raise FeatureStoreUnavailable(str(exc)) from exc
            else:
                if online.found.all() or last:
                    return ref, online.values, online.found, attempt
            self._sleep(pause)
            pause *= 2
        raise AssertionError("unreachable")  # pragma: no cover

    def _unavailable(self, matrix, columns, wanted, entity_ids, error: str) -> Enriched:
        n = len(entity_ids)
        if self.policy.rule is MissingRule.DEFAULTS:
            for name in wanted:
                matrix[:, list(columns).index(name)] = self.policy.defaults.get(name, 0.0)
            return Enriched(matrix, np.ones(n, bool), {}, None, defaulted=n, unavailable=True)
        detail = f"{error} (rule {self.policy.rule.value})"
        reasons = dict.fromkeys(range(n), (FEATURE_STORE_UNAVAILABLE, detail))
        return Enriched(matrix, np.zeros(n, bool), reasons, None, unavailable=True)
