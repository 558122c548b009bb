"""The roles file: who may do what to which model, loaded and validated.

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

:class:`Roles` is the validated file; :func:`write_example_roles` writes one
for demos and tests. :mod:`driftline.lineage.trust.rbac` judges commands against it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from driftline.lineage.exceptions import LineageError
from driftline.lineage.trust import keys
from driftline.lineage.trust.commands import ACTIONS

ANY_ACTION = "*"
# Model-name characters, plus fnmatch's *, ? and [...] / [!...] classes.
_PATTERN = re.compile(r"^(?:[A-Za-z0-9_.*?-]|\[!?[A-Za-z0-9_.-]+\])+$")
_TOP_KEYS = ("four_eyes", "actors", "roles")
_ACTOR_KEYS = ("roles", "key", "keys")
_ROLE_KEYS = ("allow",)
_RULE_KEYS = ("actions", "models")


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
class Roles:
    """A validated roles file: actors, roles, keys and the four-eyes switch."""

    source: str
    four_eyes: bool
    actors: Mapping[str, Actor]
    roles: Mapping[str, Role]
    keyring: keys.KeyRing

    @classmethod
    def load(cls, path: Path) -> Roles:
        """Read and validate a roles file; every error names the file and the bad entry."""
        path = Path(path)
        return cls.from_dict(keys.read_toml(path), source=f"roles file {path}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "roles") -> Roles:
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
            f"{source}: missing or empty [{key}] table; see driftline.lineage.trust.roles "
            "for the format"
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


# Roles write_example_roles() defines: action list and model patterns per role.
EXAMPLE_ROLES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "data-scientist": (("register", "validate", "shadow", "challenger", "canary"), ("*",)),
    "approver": (("promote", "rollback", "archive", "reject", "traffic", "clear_alarm"), ("*",)),
    "ci": (("register", "validate", "reject"), ("*",)),
    "policy": (
        ("validate", "reject", "canary", "traffic", "promote", "rollback", "archive"),
        ("*",),
    ),
    # Erasure of a person's data (`driftline data erase`): no other role may.
    "data-protection": (("erase",), ("*",)),
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
    Roles.load(path)  # what we write must load; fail here, not in the demo
    return path
