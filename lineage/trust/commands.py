"""Signed lifecycle commands: requests from people, CI and the policy to change a model.

A :class:`LifecycleCommand` mirrors the Avro ``driftline.v1.LifecycleCommand``
record field for field. Its signature covers :meth:`~LifecycleCommand.signing_bytes`:
canonical JSON (sorted keys, no whitespace, UTF-8) of every field except the
signature itself, the key id included, so neither the request nor the claim of
who signed it can be changed without breaking the signature.

Commands are requests, not facts: :class:`driftline.lineage.trust.rbac.CommandAuthority`
decides whether one becomes a lifecycle event or a ``command_rejected`` one.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from driftline.lineage.events import now_ms
from driftline.lineage.exceptions import InvalidRecord
from driftline.lineage.registry import lifecycle
from driftline.lineage.trust import keys
from driftline.schemas import records

# Every action a command may ask for; the roles file may name only these (or "*").
# Registration creates a version; "erase" deletes an entity's data where the store is
# (driftline.lineage.audit.erasure); every other action moves one (registry.lifecycle).
ACTIONS: tuple[str, ...] = ("register", *lifecycle.ACTIONS, "erase")

AVRO_FIELDS = (
    "command_id",
    "action",
    "model",
    "version",
    "actor",
    "arguments",
    "issued_at",
    "key_id",
    "signature",
)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class LifecycleCommand:
    """One request to change a model's lifecycle. ``issued_at`` is int milliseconds."""

    command_id: str
    action: str
    model: str
    version: int | None
    actor: str
    arguments: dict[str, str] = field(default_factory=dict)
    issued_at: int = 0
    key_id: str | None = None
    signature: bytes | None = None

    def __post_init__(self) -> None:
        for name in ("command_id", "action", "model", "actor"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise InvalidRecord(
                    f"lifecycle command {name} must be a non-empty string, got {value!r}"
                )
        if self.version is not None and not _is_int(self.version):
            raise InvalidRecord(
                f"lifecycle command version must be an int or None, got {self.version!r}"
            )
        if not _is_int(self.issued_at):
            raise InvalidRecord(
                f"lifecycle command issued_at must be int milliseconds, got {self.issued_at!r}"
            )
        if not isinstance(self.arguments, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in self.arguments.items()
        ):
            raise InvalidRecord(
                f"lifecycle command arguments must map strings to strings (Avro map<string>), "
                f"got {self.arguments!r}; JSON-encode structured values"
            )
        if self.key_id is not None and (not isinstance(self.key_id, str) or not self.key_id):
            raise InvalidRecord(
                f"lifecycle command key_id must be a non-empty string or None, got {self.key_id!r}"
            )
        if self.signature is not None and not isinstance(self.signature, bytes | bytearray):
            raise InvalidRecord(
                "lifecycle command signature must be bytes or None, "
                f"got {type(self.signature).__name__}"
            )
        # Defensive copies: a frozen command must not change because a caller's dict did.
        object.__setattr__(self, "arguments", dict(self.arguments))
        if self.signature is not None:
            object.__setattr__(self, "signature", bytes(self.signature))
        try:
            self.signing_bytes()
        except UnicodeEncodeError as exc:  # a lone surrogate has no UTF-8 (nor Avro) form
            raise InvalidRecord(
                f"lifecycle command {self.command_id!r} holds text that is not valid Unicode: {exc}"
            ) from exc

    @property
    def is_signed(self) -> bool:
        return self.key_id is not None and self.signature is not None

    def to_avro(self) -> records.LifecycleCommand:
        """The Avro record as a dict (``issued_at`` int ms, ``signature`` bytes or None)."""
        return {
            "command_id": self.command_id,
            "action": self.action,
            "model": self.model,
            "version": self.version,
            "actor": self.actor,
            "arguments": dict(self.arguments),
            "issued_at": self.issued_at,
            "key_id": self.key_id,
            "signature": self.signature,
        }

    @classmethod
    def from_avro(cls, record: records.LifecycleCommand | Mapping[str, Any]) -> LifecycleCommand:
        """Build a command from a decoded Avro record (or anything shaped like one)."""
        try:
            return cls(
                command_id=record["command_id"],
                action=record["action"],
                model=record["model"],
                version=record.get("version"),
                actor=record["actor"],
                arguments=dict(record.get("arguments") or {}),
                issued_at=record["issued_at"],
                key_id=record.get("key_id"),
                signature=record.get("signature"),
            )
        except KeyError as exc:
            raise InvalidRecord(
                f"lifecycle command record lacks field {exc.args[0]!r}; fields: {sorted(record)}"
            ) from exc

    def signing_bytes(self) -> bytes:
        """Canonical UTF-8 JSON of every field but ``signature``: what the signature covers."""
        body = self.to_avro()
        del body["signature"]
        return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode(
            "utf-8"
        )

    def signed(self, private_key: Ed25519PrivateKey) -> LifecycleCommand:
        """A copy carrying ``private_key``'s key id and its signature over the command."""
        unsigned = replace(self, key_id=keys.key_id(private_key.public_key()), signature=None)
        return replace(unsigned, signature=keys.sign(private_key, unsigned.signing_bytes()))

    def verify(self, public_key: Ed25519PublicKey) -> bool:
        """True when the command is signed and ``public_key`` made the signature.

        Does not check that ``key_id`` names ``public_key``; the authority does
        that through the key ring, which also knows the key's owner.
        """
        if self.signature is None:
            return False
        return keys.verify(public_key, self.signature, self.signing_bytes())


def new_command(
    action: str,
    model: str,
    version: int | None,
    actor: str,
    arguments: Mapping[str, str] | None = None,
    *,
    issued_at: int | None = None,
) -> LifecycleCommand:
    """A fresh, unsigned command with a uuid4 id, issued now unless ``issued_at`` is given."""
    return LifecycleCommand(
        command_id=str(uuid.uuid4()),
        action=action,
        model=model,
        version=version,
        actor=actor,
        arguments=dict(arguments or {}),
        issued_at=now_ms() if issued_at is None else issued_at,
    )
