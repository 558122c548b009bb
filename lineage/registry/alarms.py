"""A model's open audit alarm, folded from lifecycle events, and what it freezes.

An ``audit_alarm`` event (raised by the lineage writer, see
:mod:`driftline.lineage.audit.alarms`) holds a model's promotions until an
``audit_alarm_cleared`` event: while it is open, ``promote``, ``canary``,
``challenger`` and raising a share with ``traffic`` are refused
(:mod:`driftline.lineage.registry.planning`). Rollbacks, archives and rejections
still go through, so a bad version can always be taken out of service.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from driftline.lineage.events import EventType, LifecycleEvent

# Actions an alarm freezes: each gives a version more of the traffic.
FROZEN_ACTIONS = frozenset({"promote", "canary", "challenger", "traffic"})


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
