"""Ed25519 signing keys for lifecycle commands, and the key ring that maps key ids to actors.

A key is identified by :func:`key_id`: the first 16 hex digits of the SHA-256 of
its raw 32 public bytes, short enough to read in an audit row and stable across
encodings (base64 or PEM of the same key give the same id). Private keys live in
PEM files readable by their owner only (mode 0600); public keys travel as raw
base64 (one line, what the roles file holds) or PEM.

The :class:`KeyRing` answers "which actor owns this key id?". A key belongs to
exactly one actor: a key shared by two actors would make every signature
ambiguous, so the ring refuses it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import os
import re
import stat
import tempfile
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from driftline.lineage.exceptions import InvalidKey, LineageError

logger = logging.getLogger(__name__)

# Actor names become file names (<actor>.key / <actor>.pub) and audit values.
ACTOR_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,127}$")
PRIVATE_SUFFIX = ".key"
PUBLIC_SUFFIX = ".pub"
_RAW_PUBLIC_LEN = 32


def check_actor_name(actor: str) -> str:
    """Actor names end up in file names and audit rows: keep them plain."""
    if not isinstance(actor, str) or not ACTOR_NAME.match(actor):
        raise LineageError(
            f"actor name {actor!r} is not valid: use 1-128 letters, digits, '_', '.', '@' or '-', "
            "starting with a letter or digit"
        )
    return actor


@dataclass(frozen=True)
class KeyPair:
    """An actor's Ed25519 key pair."""

    actor: str
    private_key: Ed25519PrivateKey

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self.private_key.public_key()

    @property
    def key_id(self) -> str:
        return key_id(self.public_key)


def generate_key(actor: str) -> KeyPair:
    """A fresh Ed25519 key pair for ``actor``."""
    return KeyPair(check_actor_name(actor), Ed25519PrivateKey.generate())


# -- identity and signatures --------------------------------------------------


def public_bytes(public_key: Ed25519PublicKey) -> bytes:
    """The raw 32 bytes of an Ed25519 public key."""
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(public_key: Ed25519PublicKey) -> str:
    """First 16 hex digits of sha256(raw public key bytes)."""
    return hashlib.sha256(public_bytes(public_key)).hexdigest()[:16]


def sign(private_key: Ed25519PrivateKey, data: bytes) -> bytes:
    """The 64-byte Ed25519 signature of ``data``."""
    return private_key.sign(data)


def verify(public_key: Ed25519PublicKey, signature: bytes, data: bytes) -> bool:
    """True when ``signature`` is ``public_key``'s signature of ``data``; never raises."""
    try:
        public_key.verify(bytes(signature), data)
    except (InvalidSignature, TypeError, ValueError):
        return False
    return True


# -- public key encodings -----------------------------------------------------


def public_key_to_base64(public_key: Ed25519PublicKey) -> str:
    """Raw public key as standard base64 (44 characters): the roles file's ``key`` value."""
    return base64.b64encode(public_bytes(public_key)).decode("ascii")


def public_key_to_pem(public_key: Ed25519PublicKey) -> str:
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")


def parse_public_key(text: str | bytes, source: str = "public key") -> Ed25519PublicKey:
    """Read a public key given as raw base64 or as PEM (SubjectPublicKeyInfo)."""
    data = text.encode("ascii", "replace") if isinstance(text, str) else bytes(text)
    data = data.strip()
    if data.startswith(b"-----BEGIN"):
        try:
            key = serialization.load_pem_public_key(data)
        except (ValueError, UnsupportedAlgorithm) as exc:
            raise InvalidKey(f"{source} is not a readable PEM public key: {exc}") from exc
        if not isinstance(key, Ed25519PublicKey):
            raise InvalidKey(
                f"{source} is a {type(key).__name__}; driftline signs commands and artifacts "
                "with Ed25519: make a key pair with driftline.lineage.trust.keys.generate_key()"
            )
        return key
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidKey(
            f"{source} is neither PEM nor base64 ({exc}); expected the 44-character base64 "
            "of a raw Ed25519 public key or a '-----BEGIN PUBLIC KEY-----' block"
        ) from exc
    if len(raw) != _RAW_PUBLIC_LEN:
        raise InvalidKey(
            f"{source} decodes to {len(raw)} bytes; a raw Ed25519 public key is "
            f"{_RAW_PUBLIC_LEN} bytes (44 base64 characters)"
        )
    return Ed25519PublicKey.from_public_bytes(raw)


# -- files --------------------------------------------------------------------


def _atomic_write(path: Path, data: bytes, mode: int) -> None:
    # Written in the target directory with its final mode from the start, then
    # moved into place: a private key is never briefly world-readable.
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_private_key(
    path: Path, private_key: Ed25519PrivateKey, password: bytes | None = None
) -> Path:
    """Write ``private_key`` as PKCS#8 PEM with mode 0600 (encrypted when ``password`` is set)."""
    path = Path(path)
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password)
        if password
        else serialization.NoEncryption()
    )
    pem = private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )
    try:
        _atomic_write(path, pem, 0o600)
    except OSError as exc:
        raise InvalidKey(f"cannot write private key {path}: {exc}") from exc
    return path


def load_private_key(path: Path, password: bytes | None = None) -> Ed25519PrivateKey:
    """Read an Ed25519 private key PEM; warns when group or others can read the file."""
    path = Path(path)
    try:
        data = path.read_bytes()
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError as exc:
        raise InvalidKey(f"cannot read private key {path}: {exc}") from exc
    if mode & 0o077:
        # A warning, not a refusal: mounted secrets (Kubernetes defaultMode 0644)
        # are often wider than 0600 and are protected by the mount instead.
        logger.warning("private key %s has mode %o; run `chmod 600 %s`", path, mode, path)
    try:
        key = serialization.load_pem_private_key(data, password=password)
    except TypeError as exc:  # password given for a clear key, or missing for an encrypted one
        raise InvalidKey(f"cannot read private key {path}: {exc}") from exc
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise InvalidKey(
            f"cannot read private key {path}: not a PEM private key or wrong password ({exc})"
        ) from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise InvalidKey(
            f"private key {path} is a {type(key).__name__}; driftline signs commands with Ed25519"
        )
    return key


def save_public_key(path: Path, public_key: Ed25519PublicKey, *, pem: bool = False) -> Path:
    """Write ``public_key`` as one line of raw base64 (default) or as PEM, mode 0644."""
    path = Path(path)
    text = public_key_to_pem(public_key) if pem else public_key_to_base64(public_key) + "\n"
    try:
        _atomic_write(path, text.encode("ascii"), 0o644)
    except OSError as exc:
        raise InvalidKey(f"cannot write public key {path}: {exc}") from exc
    return path


def load_public_key(path: Path) -> Ed25519PublicKey:
    """Read a public key file holding raw base64 or PEM."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InvalidKey(f"cannot read public key {path}: {exc}") from exc
    return parse_public_key(data, source=f"public key file {path}")


def save_keypair(directory: Path, keypair: KeyPair) -> tuple[Path, Path]:
    """Write ``<actor>.key`` (0600) and ``<actor>.pub`` (base64) into ``directory``."""
    directory = Path(directory)
    private = save_private_key(directory / f"{keypair.actor}{PRIVATE_SUFFIX}", keypair.private_key)
    public = save_public_key(directory / f"{keypair.actor}{PUBLIC_SUFFIX}", keypair.public_key)
    return private, public


def load_keypair(directory: Path, actor: str, password: bytes | None = None) -> KeyPair:
    """Read ``<actor>.key`` from ``directory``."""
    path = Path(directory) / f"{check_actor_name(actor)}{PRIVATE_SUFFIX}"
    return KeyPair(actor, load_private_key(path, password))


# -- key ring -----------------------------------------------------------------


@dataclass(frozen=True)
class KeyEntry:
    """One known public key and the actor it belongs to."""

    key_id: str
    actor: str
    public_key: Ed25519PublicKey


class KeyRing(Mapping[str, KeyEntry]):
    """key id -> (actor, public key). Read-only once built."""

    def __init__(self) -> None:
        self._entries: dict[str, KeyEntry] = {}

    def __getitem__(self, kid: str) -> KeyEntry:
        return self._entries[kid]

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"KeyRing({', '.join(f'{k}={e.actor}' for k, e in self._entries.items())})"

    def key_ids_of(self, actor: str) -> list[str]:
        """The ids of every key ``actor`` owns (several during a key rotation)."""
        return sorted(k for k, e in self._entries.items() if e.actor == actor)

    def _add(self, actor: str, public_key: Ed25519PublicKey, source: str) -> None:
        kid = key_id(public_key)
        other = self._entries.get(kid)
        if other is not None and other.actor != actor:
            raise InvalidKey(
                f"{source}: key {kid} is given to both {other.actor!r} and {actor!r}; "
                "every actor needs a key of its own, or a signature names nobody"
            )
        self._entries[kid] = KeyEntry(kid, actor, public_key)

    @classmethod
    def from_keys(
        cls, actors: Mapping[str, Ed25519PublicKey | str], source: str = "keys"
    ) -> KeyRing:
        """A ring from ``{actor: public key}`` (key objects, base64 or PEM text)."""
        ring = cls()
        for actor, key in actors.items():
            check_actor_name(actor)
            if not isinstance(key, Ed25519PublicKey):
                key = parse_public_key(key, source=f"{source}: key of {actor!r}")
            ring._add(actor, key, source)
        return ring

    @classmethod
    def from_directory(cls, directory: Path) -> KeyRing:
        """Every ``<actor>.pub`` file in ``directory`` (other files, private keys included,
        are ignored)."""
        directory = Path(directory)
        if not directory.is_dir():
            raise LineageError(f"key directory {directory} does not exist or is not a directory")
        ring = cls()
        for path in sorted(directory.glob(f"*{PUBLIC_SUFFIX}")):
            actor = check_actor_name(path.name[: -len(PUBLIC_SUFFIX)])
            ring._add(actor, load_public_key(path), f"key directory {directory}")
        if not ring:
            raise LineageError(
                f"key directory {directory} holds no *{PUBLIC_SUFFIX} files; write one per actor "
                "with save_keypair() or save_public_key()"
            )
        return ring

    @classmethod
    def from_actor_table(cls, actors: Mapping[str, Any], source: str) -> KeyRing:
        """A ring from a roles file's ``[actors]`` table: each actor has ``key = "<base64>"``
        and/or ``keys = ["<base64>", ...]`` (several while a key is rotated)."""
        ring = cls()
        for actor, spec in actors.items():
            where = f"{source}: actor {actor!r}"
            check_actor_name(actor)
            if not isinstance(spec, Mapping):
                raise LineageError(f'{where} must be a table like {{ roles = [...], key = "..." }}')
            for label, text in actor_key_texts(spec, where):
                ring._add(actor, parse_public_key(text, source=f"{where} {label}"), source)
        return ring

    @classmethod
    def from_roles_file(cls, path: Path) -> KeyRing:
        """The keys of every actor in a roles file (see :mod:`driftline.lineage.trust.roles`)."""
        path = Path(path)
        data = read_toml(path)
        actors = data.get("actors")
        if not isinstance(actors, Mapping) or not actors:
            raise LineageError(f"roles file {path} has no [actors] table; add one actor per line")
        return cls.from_actor_table(actors, f"roles file {path}")


def actor_key_texts(spec: Mapping[str, Any], where: str) -> list[tuple[str, str]]:
    """``(label, text)`` of every key an actor table entry lists under ``key`` and ``keys``."""
    texts: list[tuple[str, str]] = []
    if "key" in spec:
        if not isinstance(spec["key"], str) or not spec["key"].strip():
            raise InvalidKey(f"{where}: key must be a base64 or PEM string, got {spec['key']!r}")
        texts.append(("key", spec["key"]))
    if "keys" in spec:
        keys = spec["keys"]
        if not isinstance(keys, list) or not all(isinstance(k, str) and k.strip() for k in keys):
            raise InvalidKey(f"{where}: keys must be a list of base64 strings, got {keys!r}")
        texts.extend((f"keys[{i}]", k) for i, k in enumerate(keys))
    if not texts:
        raise InvalidKey(
            f'{where} has no key: add key = "<base64 Ed25519 public key>" '
            "(public_key_to_base64() or the actor's .pub file)"
        )
    return texts


def read_toml(path: Path) -> dict[str, Any]:
    """Parse a TOML file, naming the file in every error."""
    try:
        with Path(path).open("rb") as fh:
            return tomllib.load(fh)
    except OSError as exc:
        raise LineageError(f"cannot read {path}: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise LineageError(f"{path} is not valid TOML: {exc}") from exc
