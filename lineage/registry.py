"""The model registry: an event-sourced projection of the lifecycle topic.

The registry holds no state of its own that is not derived from lifecycle
events: replaying the same events in the same order rebuilds the same
registry. Commands do not mutate it directly; ``plan_*`` checks a command
against the current projection and returns the event to publish, and the
registry changes only when that event comes back through :meth:`apply`.

States and moves (a later issue adds validation, canary and rollback):

- ``registered``: a new version; may be promoted or archived.
- ``champion``: the one version serving traffic; may be archived.
- ``archived``: retired; may be promoted again (a manual rollback).

Promoting a version archives the previous champion, so a model has at most one
champion. The old champion goes to ``archived`` rather than back to
``registered`` so the history reads as "served, then retired".
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from lineage import events as ev
from lineage.events import EventType, LifecycleEvent
from lineage.exceptions import (
    IllegalTransition,
    InvalidRecord,
    UnknownModel,
    UnknownVersion,
)

logger = logging.getLogger(__name__)


class State(StrEnum):
    REGISTERED = "registered"
    CHAMPION = "champion"
    ARCHIVED = "archived"


# Current state -> states a command may move a version to.
TRANSITIONS: dict[str, frozenset[str]] = {
    State.REGISTERED: frozenset({State.CHAMPION, State.ARCHIVED}),
    State.CHAMPION: frozenset({State.ARCHIVED}),
    State.ARCHIVED: frozenset({State.CHAMPION}),
}

# Event type -> the state its version is in afterwards. Other event types
# (validated, rejected, command_rejected, ...) are recorded but move nothing yet.
EVENT_STATE: dict[str, str] = {
    EventType.PROMOTED: State.CHAMPION,
    EventType.ARCHIVED: State.ARCHIVED,
}

# How people say each move (used in error messages).
MOVE_NAMES: dict[str, str] = {State.CHAMPION: "promote", State.ARCHIVED: "archive"}


@dataclass(frozen=True)
class ModelVersion:
    """One registered version of a model, as the lifecycle events describe it."""

    name: str
    version: int
    digest: str
    artifact: str
    input_name: str
    input_shape: tuple[int | str | None, ...]
    feature_names: tuple[str, ...] | None
    metadata_props: dict[str, str]
    state: str
    registered_by: str
    registered_at: int


def version_from_event(event: LifecycleEvent) -> ModelVersion:
    """Parse a ``registered`` event's attributes into a :class:`ModelVersion`."""
    attrs = event.attributes
    where = f"registered event {event.event_id!r} for {event.model!r} v{event.version}"
    if event.version is None or event.version < 1:
        raise InvalidRecord(f"{where}: version must be an int >= 1")
    missing = [k for k in ("digest", "artifact", "input_name", "input_shape") if not attrs.get(k)]
    if missing:
        raise InvalidRecord(f"{where}: attributes lack {missing}; present: {sorted(attrs)}")
    shape = _json_attr(attrs, "input_shape", where)
    if not isinstance(shape, list) or not all(
        d is None or isinstance(d, str) or (isinstance(d, int) and not isinstance(d, bool))
        for d in shape
    ):
        raise InvalidRecord(
            f"{where}: input_shape must be a JSON list of ints/null, got {attrs['input_shape']!r}"
        )
    names = _json_attr(attrs, "feature_names", where) if "feature_names" in attrs else None
    if names is not None and (
        not isinstance(names, list) or not all(isinstance(n, str) for n in names)
    ):
        raise InvalidRecord(
            f"{where}: feature_names must be a JSON list of strings or absent, "
            f"got {attrs['feature_names']!r}"
        )
    props = _json_attr(attrs, "metadata_props", where) if "metadata_props" in attrs else {}
    if not isinstance(props, dict) or not all(isinstance(v, str) for v in props.values()):
        raise InvalidRecord(
            f"{where}: metadata_props must be a JSON object of strings, "
            f"got {attrs['metadata_props']!r}"
        )
    return ModelVersion(
        name=event.model,
        version=event.version,
        digest=attrs["digest"],
        artifact=attrs["artifact"],
        input_name=attrs["input_name"],
        input_shape=tuple(shape),
        feature_names=None if names is None else tuple(names),
        metadata_props=props,
        state=str(State.REGISTERED),
        registered_by=event.actor,
        registered_at=event.occurred_at,
    )


def _json_attr(attrs: Mapping[str, str], key: str, where: str) -> Any:
    try:
        return json.loads(attrs[key])
    except json.JSONDecodeError as exc:
        raise InvalidRecord(f"{where}: attribute {key} is not JSON: {attrs[key]!r}") from exc


MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


def check_model_name(name: str) -> str:
    """Model names end up in topic keys, SQL filters and paths: keep them plain."""
    if not MODEL_NAME.match(name):
        raise InvalidRecord(
            f"model name {name!r} is not valid: use 1-128 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit"
        )
    return name


class ModelRegistry:
    """Models and their versions, folded from lifecycle events."""

    def __init__(self) -> None:
        self._models: dict[str, dict[int, ModelVersion]] = {}
        self._seen: set[str] = set()
        # (event_id, reason) for events that were recorded but changed nothing.
        self.skipped: list[tuple[str, str]] = []

    @classmethod
    def from_events(cls, events: Iterable[LifecycleEvent]) -> ModelRegistry:
        registry = cls()
        for event in events:
            registry.apply(event)
        return registry

    # -- projection -----------------------------------------------------------

    def apply(self, event: LifecycleEvent) -> bool:
        """Fold one event in; returns False when it was a repeat or changed nothing.

        Never raises for an event that does not fit (a replayed log is the
        truth, and a consumer must not stall on it): the event is logged and
        listed in :attr:`skipped`.
        """
        if event.event_id in self._seen:
            return False
        self._seen.add(event.event_id)
        if event.type == EventType.REGISTERED:
            return self._apply_registered(event)
        target = EVENT_STATE.get(event.type)
        if target is None:
            return False
        versions = self._models.get(event.model, {})
        current = versions.get(event.version) if event.version is not None else None
        if current is None:
            return self._skip(event, f"{event.type} for unknown version {event.version}")
        if current.state == target:
            return False
        if target not in TRANSITIONS.get(current.state, frozenset()):
            # The log outranks the rule book: apply it, but make it visible.
            logger.warning(
                "lifecycle event %s moves %s v%s from %s to %s, which the state machine forbids",
                event.event_id,
                event.model,
                event.version,
                current.state,
                target,
            )
        if target == State.CHAMPION:
            for number, other in versions.items():
                if other.state == State.CHAMPION and number != current.version:
                    versions[number] = replace(other, state=str(State.ARCHIVED))
        versions[current.version] = replace(current, state=str(target))
        return True

    def _apply_registered(self, event: LifecycleEvent) -> bool:
        try:
            version = version_from_event(event)
        except InvalidRecord as exc:
            return self._skip(event, str(exc))
        versions = self._models.setdefault(event.model, {})
        if version.version in versions:
            # First registration wins; a second one means two writers planned
            # against the same projection, which per-model ordering prevents.
            return self._skip(event, f"version {version.version} is already registered")
        versions[version.version] = version
        return True

    def _skip(self, event: LifecycleEvent, reason: str) -> bool:
        logger.warning("lifecycle event %s for %s ignored: %s", event.event_id, event.model, reason)
        self.skipped.append((event.event_id, reason))
        return False

    # -- queries --------------------------------------------------------------

    def models(self) -> list[str]:
        return sorted(self._models)

    def versions(self, name: str) -> list[ModelVersion]:
        """All versions of ``name``, oldest first; raises UnknownModel if none."""
        return [v for _, v in sorted(self._require_model(name).items())]

    def get(self, name: str, version: int) -> ModelVersion:
        versions = self._require_model(name)
        try:
            return versions[version]
        except KeyError:
            known = ", ".join(str(v) for v in sorted(versions))
            raise UnknownVersion(
                f"model {name!r} has no version {version!r}; known versions: {known}"
            ) from None

    def champion(self, name: str) -> ModelVersion | None:
        """The serving version, or None if the model is unknown or has no champion."""
        for version in self._models.get(name, {}).values():
            if version.state == State.CHAMPION:
                return version
        return None

    def next_version(self, name: str) -> int:
        """The number the next registration of ``name`` gets (1 for a new model)."""
        return max(self._models.get(name, {}), default=0) + 1

    def find_by_digest(self, name: str, digest: str) -> ModelVersion | None:
        for _, version in sorted(self._models.get(name, {}).items()):
            if version.digest == digest:
                return version
        return None

    def snapshot(self) -> dict[str, tuple[ModelVersion, ...]]:
        """Everything the projection knows, for comparing two registries."""
        return {name: tuple(self.versions(name)) for name in self.models()}

    def _require_model(self, name: str) -> dict[int, ModelVersion]:
        try:
            return self._models[name]
        except KeyError:
            known = ", ".join(self.models()) or "none yet"
            raise UnknownModel(
                f"no model named {name!r} is registered; known models: {known}"
            ) from None

    # -- commands -------------------------------------------------------------

    def plan_register(
        self,
        name: str,
        description_attributes: Mapping[str, str],
        digest: str,
        artifact: str,
        actor: str,
    ) -> LifecycleEvent | ModelVersion:
        """The ``registered`` event for a new version, or the existing version if
        these exact bytes (same digest) are already registered under ``name``."""
        check_model_name(name)
        existing = self.find_by_digest(name, digest)
        if existing is not None:
            return existing
        attributes = dict(description_attributes)
        for key, value in (("digest", digest), ("artifact", artifact)):
            if attributes.get(key, value) != value:
                raise InvalidRecord(
                    f"description attributes say {key}={attributes[key]!r} but the artifact "
                    f"being registered has {key}={value!r}; describe the stored artifact"
                )
            attributes[key] = value
        event = ev.registered(name, self.next_version(name), actor, attributes)
        version_from_event(event)  # refuse now what the projection would skip later
        return event

    def plan_promote(
        self,
        name: str,
        version: int,
        actor: str,
        *,
        evidence: Mapping[str, Any] | None = None,
    ) -> LifecycleEvent:
        """The ``promoted`` event making ``version`` the champion of ``name``."""
        current = self.get(name, version)
        self._check_move(current, State.CHAMPION)
        previous = self.champion(name)
        return ev.promoted(
            name,
            version,
            actor,
            previous_state=current.state,
            previous_champion=None if previous is None else previous.version,
            evidence=evidence,
        )

    @staticmethod
    def _check_move(current: ModelVersion, target: str) -> None:
        allowed = TRANSITIONS.get(current.state, frozenset())
        if target in allowed:
            return
        moves = ", ".join(sorted(MOVE_NAMES[s] for s in allowed)) or "none"
        already = "already " if current.state == target else ""
        raise IllegalTransition(
            f"cannot {MOVE_NAMES[target]} {current.name!r} v{current.version}: it is "
            f"{already}{current.state}; allowed from '{current.state}': {moves}"
        )
