"""Who may do what to which model: the authority that judges lifecycle commands.

:class:`CommandAuthority` turns a signed :class:`~driftline.lineage.trust.commands.LifecycleCommand`
into the lifecycle event the registry plans for it, or into a
``command_rejected`` event that says which check refused it and why. It never
raises for a refusal and never drops a command: a refused request is audited
like an accepted one. What each actor may do comes from the roles file, a
:class:`~driftline.lineage.trust.roles.Roles` (see :mod:`driftline.lineage.trust.roles` for
its format).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Protocol

from driftline.lineage.events import EventType, LifecycleEvent, new_event, now_ms
from driftline.lineage.exceptions import (
    IllegalTransition,
    LineageError,
    PromotionsFrozen,
    UnknownModel,
    UnknownVersion,
)
from driftline.lineage.trust.commands import ACTIONS, LifecycleCommand
from driftline.lineage.trust.roles import (
    Roles,
)

# Evidence keys the authority sets itself; a command's arguments may not override them.
RESERVED_ARGUMENTS = ("command_id", "key_id", "approved_by")
# An argument holding a JSON object: its keys become structured evidence in the event
# (gate results, test statistics, triggering drift events), signed with the command.
EVIDENCE_ARGUMENT = "evidence"


class PlanningRegistry(Protocol):
    """What the authority needs from the model registry."""

    def plan(
        self,
        action: str,
        name: str,
        version: int | None,
        actor: str,
        *,
        evidence: dict[str, Any] | None = None,
        arguments: dict[str, str] | None = None,
    ) -> LifecycleEvent: ...

    def get(self, name: str, version: int) -> Any: ...  # has .registered_by


class _Refused(Exception):
    """Internal: one check refused the command (never escapes decide())."""

    def __init__(self, check: str, reason: str) -> None:
        super().__init__(reason)
        self.check = check
        self.reason = reason


# Registry errors -> the check name recorded in the command_rejected event.
_REGISTRY_CHECKS: tuple[tuple[type[LineageError], str], ...] = (
    (PromotionsFrozen, "audit_alarm"),
    (IllegalTransition, "illegal_transition"),
    (UnknownModel, "unknown_model"),
    (UnknownVersion, "unknown_version"),
    (LineageError, "invalid_command"),
)


class CommandAuthority:
    """Checks signature, RBAC and four-eyes, then asks the registry to plan the event.

    ``max_age_ms``, when set, also refuses commands issued longer ago (or further
    ahead, clock skew) than that: a replayed old command is not acted on.
    """

    def __init__(
        self,
        roles: Roles,
        *,
        max_age_ms: int | None = None,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self.roles = roles
        self.max_age_ms = max_age_ms
        self._clock = clock

    def decide(self, command: LifecycleCommand, registry: PlanningRegistry) -> LifecycleEvent:
        """The planned lifecycle event, or a ``command_rejected`` event naming the failed check."""
        refusal = self.authorize(command, registry)
        if refusal is not None:
            return refusal
        try:
            return registry.plan(
                command.action,
                command.model,
                command.version,
                command.actor,
                evidence=approval_evidence(command),
                arguments=command.arguments,
            )
        except LineageError as exc:
            refused = _registry_refusal(exc)
            return rejected(command, refused.check, refused.reason, signature_verified=True)

    def authorize(
        self, command: LifecycleCommand, registry: PlanningRegistry
    ) -> LifecycleEvent | None:
        """Every check but the registry's own: None when the command may go ahead, else
        its ``command_rejected`` event. For actions the registry plans elsewhere
        (``register`` needs the artifact, which a command does not carry)."""
        verified = False
        try:
            self._check_actor(command)
            self._check_signature(command)
            verified = True
            self._check_age(command)
            self._check_rbac(command)
            self._check_arguments(command)
            self._check_four_eyes(command, registry)
        except _Refused as refused:
            return rejected(command, refused.check, refused.reason, signature_verified=verified)
        return None

    def _check_actor(self, command: LifecycleCommand) -> None:
        if command.actor not in self.roles.actors:
            raise _Refused(
                "unknown_actor",
                f"actor {command.actor!r} is not in the {self.roles.source}; known actors: "
                f"{', '.join(sorted(self.roles.actors))}",
            )

    def _check_signature(self, command: LifecycleCommand) -> None:
        if not command.is_signed:
            raise _Refused(
                "signature",
                f"command {command.command_id} is unsigned; sign it with the actor's private key "
                "(LifecycleCommand.signed)",
            )
        entry = self.roles.keyring.get(command.key_id or "")
        own = ", ".join(self.roles.keyring.key_ids_of(command.actor)) or "none"
        if entry is None:
            raise _Refused(
                "signature",
                f"key {command.key_id} is not in the {self.roles.source}; "
                f"{command.actor!r} signs with: {own}",
            )
        if entry.actor != command.actor:
            raise _Refused(
                "signature",
                f"key {entry.key_id} belongs to {entry.actor!r}, not to {command.actor!r}; "
                f"a command must be signed with its actor's own key ({own})",
            )
        if not command.verify(entry.public_key):
            raise _Refused(
                "signature",
                f"signature of command {command.command_id} does not verify with key "
                f"{entry.key_id}: the command was altered after signing, or signed by another key",
            )

    def _check_age(self, command: LifecycleCommand) -> None:
        if self.max_age_ms is None:
            return
        age = self._clock() - command.issued_at
        if abs(age) > self.max_age_ms:
            when = f"{age} ms ago" if age > 0 else f"{-age} ms in the future"
            raise _Refused(
                "expired",
                f"command was issued {when}, outside the accepted window of "
                f"{self.max_age_ms} ms; issue a fresh command",
            )

    def _check_rbac(self, command: LifecycleCommand) -> None:
        action, model = command.action, command.model
        if action not in ACTIONS:
            raise _Refused(
                "unknown_action",
                f"action {action!r} is not a lifecycle action; accepted: {', '.join(ACTIONS)}",
            )
        if self.roles.allows(command.actor, action, model):
            return
        roles = ", ".join(self.roles.actors[command.actor].roles)
        allowing = ", ".join(self.roles.roles_allowing(action, model)) or "none"
        raise _Refused(
            "rbac",
            f"{command.actor!r} (roles: {roles}) may not {action} model {model!r}; "
            f"roles that may: {allowing}",
        )

    def _check_arguments(self, command: LifecycleCommand) -> None:
        structured = _structured_evidence(command)
        clash = sorted((set(command.arguments) | set(structured)) & set(RESERVED_ARGUMENTS))
        if clash:
            raise _Refused(
                "arguments",
                f"argument(s) {', '.join(clash)} are reserved: the authority records them itself; "
                "rename them",
            )

    def _check_four_eyes(self, command: LifecycleCommand, registry: PlanningRegistry) -> None:
        if command.action != "promote" or not self.roles.four_eyes:
            return
        if command.version is None:
            raise _Refused(
                "four_eyes",
                f"promote of {command.model!r} names no version, so the four-eyes rule cannot "
                "check who registered it; name the version to promote",
            )
        try:
            registered_by = registry.get(command.model, command.version).registered_by
        except LineageError as exc:
            raise _registry_refusal(exc) from exc
        if registered_by == command.actor:
            raise _Refused(
                "four_eyes",
                f"{command.actor!r} registered {command.model!r} v{command.version} and so "
                "cannot also promote it to champion (four-eyes rule); another approver must",
            )


def _structured_evidence(command: LifecycleCommand) -> dict[str, Any]:
    text = command.arguments.get(EVIDENCE_ARGUMENT)
    if text is None:
        return {}
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise _Refused(
            "arguments", f"argument {EVIDENCE_ARGUMENT!r} is not JSON ({exc}); send a JSON object"
        ) from None
    if not isinstance(value, dict):
        raise _Refused(
            "arguments",
            f"argument {EVIDENCE_ARGUMENT!r} must be a JSON object, got {type(value).__name__}",
        )
    return value


def approval_evidence(command: LifecycleCommand) -> dict[str, Any]:
    """What an accepted command's event records: its arguments (the ``evidence`` argument as
    structured JSON), id, key and approver."""
    plain = {k: v for k, v in command.arguments.items() if k != EVIDENCE_ARGUMENT}
    return {
        **plain,
        **_structured_evidence(command),
        "command_id": command.command_id,
        "key_id": command.key_id,
        "approved_by": command.actor,
    }


def _registry_refusal(exc: LineageError) -> _Refused:
    check = next(name for kind, name in _REGISTRY_CHECKS if isinstance(exc, kind))
    return _Refused(check, str(exc))


def rejected(
    command: LifecycleCommand, check: str, reason: str, *, signature_verified: bool = False
) -> LifecycleEvent:
    """The ``command_rejected`` event recording why ``command`` was refused."""
    evidence: dict[str, Any] = {
        "command_id": command.command_id,
        "action": command.action,
        "check": check,
        "reason": reason,
        "key_id": command.key_id,
        # Before the signature verifies, the actor is only what the command claims.
        "signature_verified": signature_verified,
    }
    if command.arguments:
        evidence["arguments"] = dict(command.arguments)
    return new_event(
        EventType.COMMAND_REJECTED,
        command.model,
        command.version,
        command.actor,
        evidence=evidence,
    )
