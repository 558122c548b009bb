"""Audit alarms: the lineage role's verdict that a model's audit trail does not hold.

When the writer's continuous check (:class:`driftline.lineage.audit_verify.TailVerifier`)
finds a problem in a chain, it sends the registry a ``raise_alarm`` command for
that model, signed with the writer's key (the one that signs checkpoints), with
the problems as evidence. The registry, the only writer of lifecycle, checks the
signature against that key and publishes the ``audit_alarm`` event. It folds it
like any event, and while a model has an uncleared alarm its promotions are frozen:
``promote``, ``canary``, ``challenger`` and raising a share with ``traffic``
are refused (:mod:`driftline.lineage.planning`), and the policy loop stops proposing
them. Rollbacks, archives and rejections still go through, so a bad version
can always be taken out of service.

An alarm is cleared by an ``audit_alarm_cleared`` event, which only a signed
``clear_alarm`` command from an actor whose role allows it produces, after
someone has looked at the trail (``driftline audit verify``) and repaired it.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from driftline.lineage.audit import AuditProblem
from driftline.lineage.commands import LifecycleCommand
from driftline.lineage.events import EventType, LifecycleEvent, now_ms

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


def alarm_evidence(problems: Iterable[AuditProblem], *, verified_seq: int) -> dict[str, Any]:
    """What an alarm carries: the problems past ``verified_seq`` (the last head that
    verified), the first 20 of them in full."""
    problems = sorted(problems, key=lambda p: (p.seq, p.kind))
    if not problems:
        raise ValueError("an audit alarm needs at least one problem")
    return {
        "problems": [{"seq": p.seq, "kind": p.kind, "detail": p.detail} for p in problems[:20]],
        "problem_count": len(problems),
        "verified_seq": verified_seq,
        "freezes": sorted(FROZEN_ACTIONS),
    }


def alarm_command(
    model: str,
    problems: Iterable[AuditProblem],
    writer: str,
    private_key: Ed25519PrivateKey,
    *,
    verified_seq: int,
) -> LifecycleCommand:
    """The signed ``raise_alarm`` command the lineage writer sends the registry, which
    alone writes lifecycle (and, on a secured cluster, alone may). Its id follows from
    the break, so a writer that restarts and finds the same break again asks once: the
    registry skips a command it has already answered."""
    key = alarm_key(model, verified_seq)
    return LifecycleCommand(
        command_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"driftline:audit-alarm:{writer}:{key}")),
        action="raise_alarm",
        model=model,
        version=None,
        actor=writer,
        arguments={
            "evidence": json.dumps(
                alarm_evidence(problems, verified_seq=verified_seq), sort_keys=True
            )
        },
        issued_at=now_ms(),
    ).signed(private_key)


def alarm_key(model: str, verified_seq: int) -> str:
    """Alarms with the same key are one break: the chain stops verifying after this seq."""
    return f"{model}|{verified_seq}"


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
