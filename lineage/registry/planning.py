"""Commands checked against the registry's projection: the event each one publishes.

:class:`CommandPlanner` reads the registry through :class:`RegistryView`, its read-only
queries, and nothing else. Planning never changes the registry: the planned event takes
effect when it comes back from the lifecycle topic through ``ModelRegistry.apply``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from driftline.lineage import events as ev
from driftline.lineage.events import EventType, LifecycleEvent
from driftline.lineage.exceptions import IllegalTransition, InvalidRecord, PromotionsFrozen
from driftline.lineage.registry.alarms import FROZEN_ACTIONS, Alarm
from driftline.lineage.registry.lifecycle import ACTIONS, MOVES, State, check_move
from driftline.lineage.registry.traffic import TrafficSplit, plan_attributes
from driftline.lineage.registry.versions import ModelVersion, check_model_name, version_from_event


class RegistryView(Protocol):
    """The queries a plan is checked against (a :class:`ModelRegistry` answers them)."""

    def versions(self, name: str) -> list[ModelVersion]: ...
    def get(self, name: str, version: int) -> ModelVersion: ...
    def by_alias(self, name: str, alias: str) -> ModelVersion | None: ...
    def champion(self, name: str) -> ModelVersion | None: ...
    def traffic(self, name: str) -> TrafficSplit: ...
    def find_by_digest(self, name: str, digest: str) -> ModelVersion | None: ...
    def next_version(self, name: str) -> int: ...
    def replaced_champion(self, name: str, champion: int) -> int | None: ...
    def alarm(self, name: str) -> Alarm | None: ...


class CommandPlanner:
    """The event a command would publish, checked against a registry's current state."""

    def __init__(self, registry: RegistryView) -> None:
        self._registry = registry

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
        existing = self._registry.find_by_digest(name, digest)
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
        event = ev.registered(name, self._registry.next_version(name), actor, attributes)
        version_from_event(event)  # refuse now what the projection would skip later
        return event

    def plan(
        self,
        action: str,
        name: str,
        version: int | None,
        actor: str,
        *,
        evidence: Mapping[str, Any] | None = None,
        arguments: Mapping[str, str] | None = None,
    ) -> LifecycleEvent:
        """The event that carries out ``action`` (one of :data:`ACTIONS`) on ``name``.

        ``version`` is the version to move; for ``rollback`` it may be None (the
        champion is rolled back). Raises UnknownModel, UnknownVersion or
        IllegalTransition (also for an unknown action or a missing version).
        The event's ``previous_state``/``state`` are its version's before and after.
        """
        if action not in ACTIONS:
            raise IllegalTransition(
                f"unknown lifecycle action {action!r} for {name}; use one of: {', '.join(ACTIONS)}"
            )
        if action == "rollback":
            return self._plan_rollback(name, version, actor, evidence)
        if action == "raise_alarm":
            return self._plan_raise_alarm(name, actor, evidence)
        if action == "clear_alarm":
            return self._plan_clear_alarm(name, actor, evidence)
        if version is None:
            self._registry.versions(name)  # UnknownModel first, for a model never registered
            raise IllegalTransition(
                f"cannot {action} {name}: no version given; say which version to {action}"
            )
        current = self._registry.get(name, version)
        if action == "traffic":
            return self._plan_traffic(current, actor, evidence, arguments or {})
        if action in FROZEN_ACTIONS:
            self._refuse_if_frozen(action, name, version)
        event_type, target = MOVES[action]
        check_move(action, current, target)
        attributes = {}
        holder = self._registry.by_alias(name, target)
        if holder is not None and target != State.CHALLENGER:
            attributes[f"previous_{target}"] = str(holder.version)
        if target in (State.CHALLENGER, State.CANARY):
            attributes |= plan_attributes(
                action, name, version, arguments or {}, self._registry.traffic(name)
            )
        return ev.new_event(
            event_type,
            name,
            version,
            actor,
            state=target,
            previous_state=current.state,
            attributes=attributes,
            evidence=evidence,
        )

    def _plan_traffic(
        self,
        current: ModelVersion,
        actor: str,
        evidence: Mapping[str, Any] | None,
        arguments: Mapping[str, str],
    ) -> LifecycleEvent:
        name, version = current.name, current.version
        if current.state not in (State.CHALLENGER, State.CANARY):
            raise IllegalTransition(
                f"cannot traffic {name} v{version}: {name} v{version} is {current.state}; "
                "only a challenger's or canary's share can change (promote moves the champion)"
            )
        split = self._registry.traffic(name)
        attributes = plan_attributes("traffic", name, version, arguments, split)
        if int(attributes["traffic_bp"]) > split.share(version):
            self._refuse_if_frozen("traffic", name, version)  # lowering a share stays allowed
        attributes["previous_traffic_bp"] = str(split.share(version))
        return ev.new_event(
            EventType.TRAFFIC_CHANGED,
            name,
            version,
            actor,
            state=current.state,
            previous_state=current.state,
            attributes=attributes,
            evidence=evidence,
        )

    def _plan_rollback(
        self, name: str, version: int | None, actor: str, evidence: Mapping[str, Any] | None
    ) -> LifecycleEvent:
        self._registry.versions(name)  # UnknownModel for a model never registered
        holder = self._registry.champion(name)
        champion = None if holder is None else holder.version
        if version is not None and version != champion:
            state = self._registry.get(name, version).state
            raise IllegalTransition(
                f"cannot rollback {name} v{version}: {name} v{version} is {state}, not the "
                "champion; rollback acts on the champion, so give no version"
            )
        if champion is None:
            raise IllegalTransition(
                f"cannot rollback {name}: {name} has no champion to roll back; promote a version"
            )
        restored = self._registry.replaced_champion(name, champion)
        if restored is None:
            raise IllegalTransition(
                f"cannot rollback {name}: champion v{champion} replaced no earlier champion, "
                "so there is nothing to return to; promote another version instead"
            )
        return ev.new_event(
            EventType.ROLLED_BACK,
            name,
            champion,
            actor,
            state=State.ARCHIVED,
            previous_state=State.CHAMPION,
            attributes={"restored_champion": str(restored)},
            evidence={"reason": "manual rollback"} | dict(evidence or {}),
        )

    def _refuse_if_frozen(self, action: str, name: str, version: int | None) -> None:
        alarm = self._registry.alarm(name)
        if alarm is not None:
            raise PromotionsFrozen(
                f"cannot {action} {name} v{version}: promotions of {name} are frozen by "
                f"{alarm.describe()}; rollback, archive and reject still work. Verify the "
                f"trail (`driftline audit verify --model {name}`), repair it, then clear "
                f"the alarm (`driftline audit clear {name}`)"
            )

    def _plan_raise_alarm(
        self, name: str, actor: str, evidence: Mapping[str, Any] | None
    ) -> LifecycleEvent:
        # Evidence is what the lineage writer found (driftline.lineage.audit.alarms.alarm_evidence);
        # the model need not be registered: a forged row can name any model.
        problems = (evidence or {}).get("problems")
        if not isinstance(problems, list) or not problems:
            raise InvalidRecord(
                f"cannot raise_alarm {name}: the command's evidence names no problems; "
                "send the audit problems found as evidence.problems"
            )
        return ev.new_event(EventType.AUDIT_ALARM, name, None, actor, evidence=evidence)

    def _plan_clear_alarm(
        self, name: str, actor: str, evidence: Mapping[str, Any] | None
    ) -> LifecycleEvent:
        alarm = self._registry.alarm(name)
        if alarm is None:
            raise IllegalTransition(f"cannot clear_alarm {name}: {name} has no audit alarm")
        return ev.new_event(
            EventType.AUDIT_ALARM_CLEARED,
            name,
            None,
            actor,
            evidence={"alarm_event_id": alarm.event_id} | dict(evidence or {}),
        )
