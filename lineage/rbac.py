"""Who may do what to which model: the roles file, and the authority that judges commands.

The roles file (TOML) names every actor with their roles and public key(s),
and every role with the actions it allows on which models (fnmatch patterns)::

    four_eyes = true   # whoever registered a version cannot promote it to champion
    [actors]
    alice = { roles = ["data-scientist"], key = "<base64 Ed25519 public key>" }
    bob = { roles = ["approver"], key = "..." }
    [roles.data-scientist]
    allow = [{ actions = ["register", "validate", "challenger", "canary"], models = ["*"] }]
    [roles.approver]
    allow = [{ actions = ["promote", "rollback", "archive", "reject"], models = ["fraud*"] }]

:class:`CommandAuthority` turns a signed :class:`~lineage.commands.LifecycleCommand`
into the lifecycle event the registry plans for it, or into a
``command_rejected`` event that says which check refused it and why. It never
raises for a refusal and never drops a command: a refused request is audited
like an accepted one.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any, Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from lineage import keys
from lineage.commands import ACTIONS, LifecycleCommand
from lineage.events import EventType, LifecycleEvent, new_event, now_ms
from lineage.exceptions import IllegalTransition, LineageError, UnknownModel, UnknownVersion

ANY_ACTION = "*"
# Model-name characters, plus fnmatch's *, ? and [...] / [!...] classes.
_PATTERN = re.compile(r"^(?:[A-Za-z0-9_.*?-]|\[!?[A-Za-z0-9_.-]+\])+$")
_TOP_KEYS = ("four_eyes", "actors", "roles")
_ACTOR_KEYS = ("roles", "key", "keys")
_ROLE_KEYS = ("allow",)
_RULE_KEYS = ("actions", "models")
# Evidence keys the authority sets itself; a command's arguments may not override them.
RESERVED_ARGUMENTS = ("command_id", "key_id", "approved_by")


@dataclass(frozen=True)
class Rule:
    """One ``allow`` entry: these actions on models matching any of these patterns."""

    actions: frozenset[str]
    models: tuple[str, ...]

    def matches(self, action: str, model: str) -> bool:
        if ANY_ACTION not in self.actions and action not in self.actions:
            return False
        return any(fnmatchcase(model, pattern) for pattern in self.models)


@dataclass(frozen=True)
class Role:
    name: str
    rules: tuple[Rule, ...]

    def allows(self, action: str, model: str) -> bool:
        return any(rule.matches(action, model) for rule in self.rules)


@dataclass(frozen=True)
class Actor:
    name: str
    roles: tuple[str, ...]


@dataclass(frozen=True)
class Policy:
    """A validated roles file: actors, roles, keys and the four-eyes switch."""

    source: str
    four_eyes: bool
    actors: Mapping[str, Actor]
    roles: Mapping[str, Role]
    keyring: keys.KeyRing

    @classmethod
    def load(cls, path: Path) -> Policy:
        """Read and validate a roles file; every error names the file and the bad entry."""
        path = Path(path)
        return cls.from_dict(keys.read_toml(path), source=f"roles file {path}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "roles") -> Policy:
        """Validate an already-parsed roles document (``source`` labels error messages)."""
        _check_keys(data, _TOP_KEYS, source)
        four_eyes = data.get("four_eyes", True)  # safe default: separation of duties on
        if not isinstance(four_eyes, bool):
            raise LineageError(f"{source}: four_eyes must be true or false, got {four_eyes!r}")
        roles = _parse_roles(_table(data, "roles", source), source)
        actor_table = _table(data, "actors", source)
        actors = {}
        for name, spec in actor_table.items():
            where = f"{source}: actor {name!r}"
            keys.check_actor_name(name)
            if not isinstance(spec, Mapping):
                raise LineageError(f'{where} must be a table like {{ roles = [...], key = "..." }}')
            _check_keys(spec, _ACTOR_KEYS, where)
            actors[name] = Actor(name, _actor_roles(spec, roles, where))
        keyring = keys.KeyRing.from_actor_table(actor_table, source)
        return cls(source, four_eyes, actors, roles, keyring)

    def roles_allowing(self, action: str, model: str) -> list[str]:
        return sorted(name for name, role in self.roles.items() if role.allows(action, model))

    def allows(self, actor: str, action: str, model: str) -> bool:
        """True when one of ``actor``'s roles allows ``action`` on ``model``."""
        known = self.actors.get(actor)
        if known is None:
            return False
        return any(self.roles[r].allows(action, model) for r in known.roles)


def _check_keys(table: Mapping[str, Any], accepted: Sequence[str], where: str) -> None:
    unknown = sorted(set(table) - set(accepted))
    if unknown:
        raise LineageError(
            f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; "
            f"accepted: {', '.join(accepted)}"
        )


def _table(data: Mapping[str, Any], key: str, source: str) -> Mapping[str, Any]:
    value = data.get(key)
    if not isinstance(value, Mapping) or not value:
        raise LineageError(
            f"{source}: missing or empty [{key}] table; see lineage.rbac for the format"
        )
    return value


def _string_list(value: Any, where: str, what: str) -> list[str]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise LineageError(f"{where}: {what} must be a non-empty list of strings, got {value!r}")
    return value


def _parse_roles(table: Mapping[str, Any], source: str) -> dict[str, Role]:
    roles = {}
    for name, spec in table.items():
        where = f"{source}: role {name!r}"
        if not isinstance(spec, Mapping):
            raise LineageError(f"{where} must be a table with allow = [{{ actions, models }}]")
        _check_keys(spec, _ROLE_KEYS, where)
        allow = spec.get("allow")
        if not isinstance(allow, list) or not allow:
            raise LineageError(
                f"{where}: missing allow = [{{ actions = [...], models = [...] }}] "
                "(a non-empty list)"
            )
        roles[name] = Role(
            name, tuple(_parse_rule(r, f"{where} allow[{i}]") for i, r in enumerate(allow))
        )
    return roles


def _parse_rule(spec: Any, where: str) -> Rule:
    if not isinstance(spec, Mapping):
        raise LineageError(
            f"{where} must be a table {{ actions = [...], models = [...] }}, got {spec!r}"
        )
    _check_keys(spec, _RULE_KEYS, where)
    for key in _RULE_KEYS:
        if key not in spec:
            raise LineageError(f"{where}: missing {key} = [...]")
    actions = _string_list(spec["actions"], where, "actions")
    unknown = [a for a in actions if a != ANY_ACTION and a not in ACTIONS]
    if unknown:
        raise LineageError(
            f"{where}: unknown action(s) {', '.join(map(repr, unknown))}; accepted: "
            f"{', '.join(ACTIONS)}, or {ANY_ACTION!r} for all"
        )
    models = _string_list(spec["models"], where, "models")
    for pattern in models:
        if not _PATTERN.match(pattern):
            raise LineageError(
                f"{where}: model pattern {pattern!r} is not valid: use model-name characters "
                "(letters, digits, '_', '.', '-') with fnmatch's *, ? and [...], e.g. 'fraud*'"
            )
    return Rule(frozenset(actions), tuple(models))


def _actor_roles(spec: Mapping[str, Any], roles: Mapping[str, Role], where: str) -> tuple[str, ...]:
    if "roles" not in spec:
        raise LineageError(f"{where}: missing roles = [...]; defined roles: {', '.join(roles)}")
    names = _string_list(spec["roles"], where, "roles")
    undefined = [r for r in names if r not in roles]
    if undefined:
        raise LineageError(
            f"{where}: undefined role(s) {', '.join(map(repr, undefined))}; "
            f"defined roles: {', '.join(roles)}"
        )
    return tuple(names)


# -- deciding commands --------------------------------------------------------


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
        policy: Policy,
        *,
        max_age_ms: int | None = None,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self.policy = policy
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
        if command.actor not in self.policy.actors:
            raise _Refused(
                "unknown_actor",
                f"actor {command.actor!r} is not in the {self.policy.source}; known actors: "
                f"{', '.join(sorted(self.policy.actors))}",
            )

    def _check_signature(self, command: LifecycleCommand) -> None:
        if not command.is_signed:
            raise _Refused(
                "signature",
                f"command {command.command_id} is unsigned; sign it with the actor's private key "
                "(LifecycleCommand.signed)",
            )
        entry = self.policy.keyring.get(command.key_id or "")
        own = ", ".join(self.policy.keyring.key_ids_of(command.actor)) or "none"
        if entry is None:
            raise _Refused(
                "signature",
                f"key {command.key_id} is not in the {self.policy.source}; "
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
        if self.policy.allows(command.actor, action, model):
            return
        roles = ", ".join(self.policy.actors[command.actor].roles)
        allowing = ", ".join(self.policy.roles_allowing(action, model)) or "none"
        raise _Refused(
            "rbac",
            f"{command.actor!r} (roles: {roles}) may not {action} model {model!r}; "
            f"roles that may: {allowing}",
        )

    def _check_arguments(self, command: LifecycleCommand) -> None:
        clash = sorted(set(command.arguments) & set(RESERVED_ARGUMENTS))
        if clash:
            raise _Refused(
                "arguments",
                f"argument(s) {', '.join(clash)} are reserved: the authority records them itself; "
                "rename them",
            )

    def _check_four_eyes(self, command: LifecycleCommand, registry: PlanningRegistry) -> None:
        if command.action != "promote" or not self.policy.four_eyes:
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


def approval_evidence(command: LifecycleCommand) -> dict[str, Any]:
    """What an accepted command's event records: its arguments, id, key and approver."""
    return {
        **command.arguments,
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


# -- bootstrapping ------------------------------------------------------------

# Roles write_example_roles() defines: action list and model patterns per role.
EXAMPLE_ROLES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "data-scientist": (("register", "validate", "challenger", "canary"), ("*",)),
    "approver": (("promote", "rollback", "archive", "reject"), ("*",)),
    "ci": (("register", "validate", "reject"), ("*",)),
    "policy": (("canary", "promote", "rollback", "archive"), ("*",)),
}


def write_example_roles(
    path: Path,
    actors: Mapping[str, Ed25519PublicKey | str],
    roles: Mapping[str, Sequence[str]] | None = None,
    *,
    four_eyes: bool = True,
) -> Path:
    """Write a roles file for demos and tests with the :data:`EXAMPLE_ROLES`.

    Each actor gets the roles listed for it in ``roles``; otherwise the role of
    the same name if there is one (``ci``, ``policy``, ``approver``), else
    ``data-scientist``. Keys are objects, base64 or PEM text.
    """
    q = json.dumps  # a JSON string (ASCII, escaped) is a valid TOML basic string
    lines = [
        "# driftline roles file: who may do what to which model.",
        f"four_eyes = {'true' if four_eyes else 'false'}",
        "",
        "[actors]",
    ]
    for actor, key in actors.items():
        keys.check_actor_name(actor)
        if not isinstance(key, Ed25519PublicKey):
            key = keys.parse_public_key(key, source=f"key of {actor!r}")
        default = [actor] if actor in EXAMPLE_ROLES else ["data-scientist"]
        given = list((roles or {}).get(actor, default))
        role_list = ", ".join(q(r) for r in given)
        lines.append(
            f"{q(actor)} = {{ roles = [{role_list}], key = {q(keys.public_key_to_base64(key))} }}"
        )
    for name, (actions, models) in EXAMPLE_ROLES.items():
        action_list = ", ".join(q(a) for a in actions)
        model_list = ", ".join(q(m) for m in models)
        lines += ["", f"[roles.{q(name)}]"]
        lines.append(f"allow = [{{ actions = [{action_list}], models = [{model_list}] }}]")
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    except OSError as exc:
        raise LineageError(f"cannot write roles file {path}: {exc}") from exc
    Policy.load(path)  # what we write must load; fail here, not in the demo
    return path
