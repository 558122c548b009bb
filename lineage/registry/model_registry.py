"""The model registry: an event-sourced projection of the lifecycle topic.

The registry holds no state of its own that is not derived from lifecycle
events: replaying the same events in the same order rebuilds the same
registry, its history and its aliases. Commands do not mutate it directly;
:meth:`ModelRegistry.plan` (from :mod:`driftline.lineage.registry.planning`) checks a command
against the current projection and returns the event to publish, and the
registry changes only when that event comes back through
:meth:`ModelRegistry.apply`.

The state machine (states, legal moves, aliases) lives in
:mod:`driftline.lineage.registry.lifecycle`;
its :data:`~driftline.lineage.registry.lifecycle.TRANSITIONS` is the one table both the planner and
the projection read. ``registered -> champion`` stays legal so a model can be
served before any validation exists (the walking skeleton's demo does exactly
that); the history still shows the version went straight from ``registered`` to
``champion``, and later gates can refuse it. The one way out of ``archived`` is a
rollback, which returns the champion that the current one replaced.

``champion``, ``challenger`` and ``canary`` are also aliases: per-model
pointers to one version each. A version holds an alias exactly while it is in
the state of that name. Moving an alias to a new version archives the version
that held it (promoting archives the old champion, so a model has at most one
champion and the history reads "served, then retired"), and a version leaving
``challenger`` or ``canary`` for ``champion`` gives up its old alias.

Time travel: every applied event leaves a :class:`HistoryEntry` with the
aliases after it. :meth:`ModelRegistry.aliases_at` answers "which version held
each alias at time T" from the events' ``occurred_at``. Events take effect in
log order, so an event can never take effect before one logged ahead of it: the
answer is the aliases after the longest run of the model's log whose events all
occurred at or before T (with monotonic clocks, simply the last event at or
before T). That way the registry never reports a state the log never passed
through.
"""

from __future__ import annotations

import bisect
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from driftline.lineage.events import EventType, LifecycleEvent
from driftline.lineage.exceptions import InvalidRecord, UnknownModel, UnknownVersion
from driftline.lineage.registry.alarms import Alarm, AlarmBook
from driftline.lineage.registry.lifecycle import (
    ALIASES,
    EVENT_STATE,
    TRANSITIONS,
    HistoryEntry,
    State,
)
from driftline.lineage.registry.planning import CommandPlanner
from driftline.lineage.registry.traffic import TrafficBook, TrafficSplit
from driftline.lineage.registry.versions import (
    ModelVersion,
    version_from_event,
)

logger = logging.getLogger(__name__)


@dataclass
class _Model:
    versions: dict[int, ModelVersion] = field(default_factory=dict)
    aliases: dict[str, int] = field(default_factory=dict)
    # champion version -> the champion it replaced (None: there was none); rollback reads it.
    replaced: dict[int, int | None] = field(default_factory=dict)
    history: list[HistoryEntry] = field(default_factory=list)
    # Running max of occurred_at over the history, so aliases_at can bisect.
    clock: list[int] = field(default_factory=list)


class ModelRegistry:
    """Models, their versions, aliases and history, folded from lifecycle events."""

    def __init__(self) -> None:
        self._models: dict[str, _Model] = {}
        # Commands some event already answers: a redelivered command is not decided twice.
        self._answered: set[str] = set()
        self._seen: set[str] = set()
        self._traffic = TrafficBook()
        self._alarms = AlarmBook()  # audit alarms freeze a model's promotions
        # (event_id, reason) for events that were recorded but changed nothing.
        self.skipped: list[tuple[str, str]] = []
        self._planner = CommandPlanner(self)

    @classmethod
    def from_events(cls, events: Iterable[LifecycleEvent]) -> ModelRegistry:
        registry = cls()
        for event in events:
            registry.apply(event)
        return registry

    # -- planning: what a command would publish (see planning.py) -------------

    def plan(
        self, action: str, name: str, version: int | None, actor: str, **options: Any
    ) -> LifecycleEvent:
        """The event that carries out ``action`` on ``name``; raises what the registry
        refuses. ``options``: ``evidence`` and ``arguments`` (see :meth:`CommandPlanner.plan`)."""
        return self._planner.plan(action, name, version, actor, **options)

    def plan_register(
        self,
        name: str,
        description_attributes: Mapping[str, str],
        digest: str,
        artifact: str,
        actor: str,
    ) -> LifecycleEvent | ModelVersion:
        """The ``registered`` event for a new version, or the version these bytes already are."""
        return self._planner.plan_register(name, description_attributes, digest, artifact, actor)

    def plan_promote(
        self, name: str, version: int, actor: str, *, evidence: Mapping[str, Any] | None = None
    ) -> LifecycleEvent:
        """The ``promoted`` event making ``version`` the champion of ``name``."""
        return self._planner.plan("promote", name, version, actor, evidence=evidence)

    # -- projection -----------------------------------------------------------

    def apply(self, event: LifecycleEvent) -> bool:
        """Fold one event in; returns True when it moved a version or an alias.

        A repeat (same event_id) changes nothing. Events that move nothing by
        design (``command_rejected``, unknown types) are recorded in the
        history and return False. Never raises for an event that does not fit
        (a replayed log is the truth, and a consumer must not stall on it): the
        event is logged and listed in :attr:`skipped`. A move the state machine
        forbids is applied anyway, with a warning: the log outranks the rule book.
        """
        if event.event_id in self._seen:
            return False
        self._seen.add(event.event_id)
        command_id = event.evidence.get("command_id")
        if isinstance(command_id, str):
            self._answered.add(command_id)
        if event.type == EventType.REGISTERED:
            return self._apply_registered(event)
        if event.type == EventType.ROLLED_BACK:
            return self._apply_rollback(event)
        if event.type == EventType.TRAFFIC_CHANGED:
            return self._apply_traffic(event)
        self._alarms.apply(event)  # audit alarms and their clearing: history, and a freeze
        target = EVENT_STATE.get(event.type)
        if target is None:
            # command_rejected and types from newer producers: history, not state.
            model = self._models.setdefault(event.model, _Model())
            current = model.versions.get(event.version) if event.version is not None else None
            state = None if current is None else current.state
            self._record(event, model, state, state)
            return False
        model = self._models.get(event.model)
        current = None
        if model is not None and event.version is not None:
            current = model.versions.get(event.version)
        if model is None or current is None:
            return self._skip(event, f"{event.type} for unknown version {event.version}")
        if current.state == target:
            return self._skip(event, f"{event.model} v{current.version} is already {target}")
        if target not in TRANSITIONS[current.state]:
            logger.warning(
                "lifecycle event %s moves %s v%s from %s to %s, which the state machine forbids",
                event.event_id,
                event.model,
                event.version,
                current.state,
                target,
            )
        before = model.aliases.get(State.CHAMPION)
        also = self._move(model, current.version, target)
        if target == State.CHAMPION:
            model.replaced[current.version] = before
        if target in (State.CHALLENGER, State.CANARY):
            self._traffic.set(event.model, current.version, event.attributes)
        if not any(v.state in (State.CHALLENGER, State.CANARY) for v in model.versions.values()):
            self._traffic.forget_experiment(event.model)
        self._record(event, model, current.state, target, also)
        return True

    def _apply_traffic(self, event: LifecycleEvent) -> bool:
        model = self._models.get(event.model)
        current = None
        if model is not None and event.version is not None:
            current = model.versions.get(event.version)
        if model is None or current is None:
            return self._skip(event, f"traffic_changed for unknown version {event.version}")
        if current.state not in (State.CHALLENGER, State.CANARY):
            return self._skip(
                event, f"traffic_changed but {event.model} v{current.version} is {current.state}"
            )
        self._traffic.set(event.model, current.version, event.attributes)
        self._record(event, model, current.state, current.state)
        return True

    def _apply_registered(self, event: LifecycleEvent) -> bool:
        try:
            version = version_from_event(event)
        except InvalidRecord as exc:
            return self._skip(event, str(exc))
        model = self._models.setdefault(event.model, _Model())
        if version.version in model.versions:
            # First registration wins; a second one means two writers planned
            # against the same projection, which per-model ordering prevents.
            return self._skip(event, f"version {version.version} is already registered")
        model.versions[version.version] = version
        self._record(event, model, None, State.REGISTERED)
        return True

    def _apply_rollback(self, event: LifecycleEvent) -> bool:
        model = self._models.get(event.model)
        champion = None if model is None else model.aliases.get(State.CHAMPION)
        if model is None or champion is None:
            return self._skip(event, f"rolled_back but {event.model} has no champion")
        if event.version is not None and event.version != champion:
            return self._skip(
                event, f"rolled_back names v{event.version} but the champion is v{champion}"
            )
        restored = _int_attr(event.attributes.get("restored_champion"))
        if restored is None:
            restored = model.replaced.get(champion)
        if restored is None or restored not in model.versions or restored == champion:
            return self._skip(event, f"rolled_back but v{champion} replaced no earlier champion")
        was = model.versions[restored].state
        if was != State.ARCHIVED:
            logger.warning(
                "lifecycle event %s restores %s v%s from %s, not from archived",
                event.event_id,
                event.model,
                restored,
                was,
            )
        self._set_state(model, champion, State.ARCHIVED)
        self._move(model, restored, State.CHAMPION)
        also = ((restored, was, str(State.CHAMPION)),)
        self._record(event, model, State.CHAMPION, State.ARCHIVED, also)
        return True

    def _move(self, model: _Model, number: int, target: str) -> tuple[tuple[int, str, str], ...]:
        """Put version ``number`` in ``target``, moving aliases; returns other versions moved."""
        also: tuple[tuple[int, str, str], ...] = ()
        holder = model.aliases.get(target)
        # Challengers share traffic (A/B/n), so a new one displaces nobody.
        if holder is not None and holder != number and target != State.CHALLENGER:
            also = (self._set_state(model, holder, State.ARCHIVED),)
        self._set_state(model, number, target)
        if target in ALIASES:
            model.aliases[str(target)] = number
        return also

    @staticmethod
    def _set_state(model: _Model, number: int, target: str) -> tuple[int, str, str]:
        current = model.versions[number]
        model.versions[number] = replace(current, state=str(target))
        for alias in [a for a, v in model.aliases.items() if v == number and a != target]:
            del model.aliases[alias]
            # Another version still in the alias's state (a second challenger) takes it.
            others = [n for n, v in model.versions.items() if v.state == alias]
            if others:
                model.aliases[alias] = max(others)
        return (number, current.state, str(target))

    @staticmethod
    def _record(
        event: LifecycleEvent,
        model: _Model,
        from_state: str | None,
        to_state: str | None,
        also: tuple[tuple[int, str, str], ...] = (),
    ) -> None:
        model.history.append(
            HistoryEntry(
                event_id=event.event_id,
                occurred_at=event.occurred_at,
                event_type=event.type,
                version=event.version,
                actor=event.actor,
                from_state=None if from_state is None else str(from_state),
                to_state=None if to_state is None else str(to_state),
                aliases=dict(sorted(model.aliases.items())),
                evidence=event.evidence,
                also_moved=also,
            )
        )
        model.clock.append(max(model.clock[-1:] + [event.occurred_at]))

    def _skip(self, event: LifecycleEvent, reason: str) -> bool:
        logger.warning("lifecycle event %s for %s ignored: %s", event.event_id, event.model, reason)
        self.skipped.append((event.event_id, reason))
        return False

    # -- queries --------------------------------------------------------------

    def answered(self, command_id: str) -> bool:
        """Whether an event in the log already answers this command."""
        return command_id in self._answered

    def models(self) -> list[str]:
        """Names of models with at least one registered version, sorted."""
        return sorted(name for name, model in self._models.items() if model.versions)

    def versions(self, name: str) -> list[ModelVersion]:
        """All versions of ``name``, oldest first; raises UnknownModel if none."""
        return [v for _, v in sorted(self._require_model(name).versions.items())]

    def get(self, name: str, version: int) -> ModelVersion:
        versions = self._require_model(name).versions
        try:
            return versions[version]
        except KeyError:
            known = ", ".join(str(v) for v in sorted(versions))
            raise UnknownVersion(
                f"model {name!r} has no version {version!r}; known versions: {known}"
            ) from None

    def aliases(self, name: str) -> dict[str, int]:
        """Current aliases of ``name`` (alias -> version); raises UnknownModel if none."""
        return dict(sorted(self._require_model(name).aliases.items()))

    def by_alias(self, name: str, alias: str) -> ModelVersion | None:
        """The version holding ``alias``, or None if the model is unknown or the alias unset."""
        model = self._models.get(name)
        number = None if model is None else model.aliases.get(alias)
        return None if number is None else model.versions[number]

    def traffic(self, name: str) -> TrafficSplit:
        """The traffic split of ``name``: served arms with their shares, and shadows."""
        model = self._models.get(name)
        states = {} if model is None else {n: v.state for n, v in model.versions.items()}
        return self._traffic.split(name, states)

    def champion(self, name: str) -> ModelVersion | None:
        """The serving version, or None if the model is unknown or has no champion."""
        return self.by_alias(name, State.CHAMPION)

    def history(self, name: str) -> list[HistoryEntry]:
        """Every event applied to ``name``, in log order."""
        return list(self._require_history(name).history)

    def aliases_at(self, name: str, time_ms: int) -> dict[str, int]:
        """Which version held each alias at ``time_ms`` (see the module docstring)."""
        model = self._require_history(name)
        n = bisect.bisect_right(model.clock, time_ms)
        return {} if n == 0 else dict(model.history[n - 1].aliases)

    def next_version(self, name: str) -> int:
        """The number the next registration of ``name`` gets (1 for a new model)."""
        model = self._models.get(name)
        return max(model.versions if model else (), default=0) + 1

    def find_by_digest(self, name: str, digest: str) -> ModelVersion | None:
        model = self._models.get(name)
        for _, version in sorted(model.versions.items() if model else ()):
            if version.digest == digest:
                return version
        return None

    def alarm(self, name: str) -> Alarm | None:
        """The uncleared audit alarm freezing ``name``'s promotions, if any."""
        return self._alarms.get(name)

    def replaced_champion(self, name: str, champion: int) -> int | None:
        """The champion that ``champion`` replaced when promoted (None: there was none)."""
        return self._require_model(name).replaced.get(champion)

    def snapshot(self) -> dict[str, tuple[ModelVersion, ...]]:
        """Every version the projection knows, for comparing two registries."""
        return {name: tuple(self.versions(name)) for name in self.models()}

    def _require_model(self, name: str) -> _Model:
        model = self._models.get(name)
        if model is None or not model.versions:
            known = ", ".join(self.models()) or "none yet"
            raise UnknownModel(f"no model named {name!r} is registered; known models: {known}")
        return model

    def _require_history(self, name: str) -> _Model:
        # Rejected commands for a model never registered still have a history.
        model = self._models.get(name)
        return model if model is not None and model.history else self._require_model(name)


def _int_attr(value: str | None) -> int | None:
    try:
        return None if value is None else int(value)
    except ValueError:
        return None
