"""Audit alarms: the lineage role's verdict that a model's audit trail does not hold.

When the writer's continuous check (:class:`lineage.audit_verify.TailVerifier`)
finds a problem in a chain, it publishes an ``audit_alarm`` lifecycle event for
that model, with the problems as evidence. The registry folds it like any
event, and while a model has an uncleared alarm its promotions are frozen:
``promote``, ``canary``, ``challenger`` and raising a share with ``traffic``
are refused (:mod:`lineage.planning`), and the policy loop stops proposing
them. Rollbacks, archives and rejections still go through, so a bad version
can always be taken out of service.

An alarm is cleared by an ``audit_alarm_cleared`` event, which only a signed
``clear_alarm`` command from an actor whose role allows it produces, after
someone has looked at the trail (``driftline audit verify``) and repaired it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from lineage.audit import AuditProblem
from lineage.events import EventType, LifecycleEvent, new_event, now_ms

# Actions an alarm freezes: each gives a version more of the traffic.
FROZEN_ACTIONS = frozenset({"promote", "canary", "challenger", "traffic"})
_ALARM_NAMESPACE = uuid.UUID("5f0f3a52-8d3c-4a57-9c39-4d1f0b6f3a11")


@dataclass(frozen=True)
class Alarm:
    """The uncleared alarm holding a model's promotions."""

    event_id: str
    occurred_at: int
    problems: tuple[dict[str, Any], ...]

    def describe(self) -> str:
        first = self.problems[0] if self.problems else {}
        return (
            f"audit alarm {self.event_id} ({first.get('kind', '?')} at seq "
            f"{first.get('seq', '?')}: {first.get('detail', '')})"
        )


def alarm_event(
    model: str, problems: Iterable[AuditProblem], actor: str, *, occurred_at: int | None = None
) -> LifecycleEvent:
    """The ``audit_alarm`` event for ``model``'s problems.

    Its id is derived from the first problem, so the same problem found again (next
    round, after a restart) is the same event, which the audit log and the registry
    keep once.
    """
    problems = sorted(problems, key=lambda p: (p.seq, p.kind))
    if not problems:
        raise ValueError(f"an audit alarm for {model!r} needs at least one problem")
    first = problems[0]
    event = new_event(
        EventType.AUDIT_ALARM,
        model,
        None,
        actor,
        evidence={
            "problems": [{"seq": p.seq, "kind": p.kind, "detail": p.detail} for p in problems[:20]],
            "problem_count": len(problems),
            "freezes": sorted(FROZEN_ACTIONS),
        },
        occurred_at=now_ms() if occurred_at is None else occurred_at,
    )
    key = f"{model}|{first.seq}|{first.kind}"
    return _with_id(event, str(uuid.uuid5(_ALARM_NAMESPACE, key)))


def _with_id(event: LifecycleEvent, event_id: str) -> LifecycleEvent:
    body = event.to_avro() | {"event_id": event_id}
    return LifecycleEvent.from_avro(body)


class AlarmBook:
    """model -> its uncleared audit alarm, folded from lifecycle events."""

    def __init__(self) -> None:
        self._open: dict[str, Alarm] = {}

    def apply(self, event: LifecycleEvent) -> bool:
        """Fold an ``audit_alarm`` or ``audit_alarm_cleared`` event; False for any other."""
        if event.type == EventType.AUDIT_ALARM:
            problems = event.evidence.get("problems")
            self._open[event.model] = Alarm(
                event.event_id,
                event.occurred_at,
                tuple(p for p in problems if isinstance(p, Mapping))
                if isinstance(problems, list)
                else (),
            )
            return True
        if event.type == EventType.AUDIT_ALARM_CLEARED:
            self._open.pop(event.model, None)
            return True
        return False

    def get(self, model: str) -> Alarm | None:
        return self._open.get(model)
