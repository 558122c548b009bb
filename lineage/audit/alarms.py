"""Audit alarms: the lineage role's verdict that a model's audit trail does not hold.

When the writer's continuous check (:class:`driftline.lineage.audit.verify.TailVerifier`)
finds a problem in a chain, it sends the registry a ``raise_alarm`` command for
that model, signed with the writer's key (the one that signs checkpoints), with
the problems as evidence. The registry, the only writer of lifecycle, checks the
signature against that key and publishes the ``audit_alarm`` event. It folds it
like any event, and while a model has an uncleared alarm its promotions are frozen:
``promote``, ``canary``, ``challenger`` and raising a share with ``traffic``
are refused (:mod:`driftline.lineage.registry.planning`), and the policy loop stops proposing
them. Rollbacks, archives and rejections still go through, so a bad version
can always be taken out of service.

An alarm is cleared by an ``audit_alarm_cleared`` event, which only a signed
``clear_alarm`` command from an actor whose role allows it produces, after
someone has looked at the trail (``driftline audit verify``) and repaired it.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from driftline.lineage.audit.chain import AuditProblem
from driftline.lineage.events import now_ms
from driftline.lineage.registry.alarms import FROZEN_ACTIONS
from driftline.lineage.trust.commands import LifecycleCommand


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
