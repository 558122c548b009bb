"""Digests, signatures and encryption for the artifact store.

An artifact is named by the hex SHA-256 of its plaintext. Its signature is an
Ed25519 signature over :func:`signing_message` (a fixed prefix and the digest).
Encrypted stores hold ``nonce || AES-256-GCM(ciphertext + tag)``, with the GCM
associated data binding each file to its digest and kind, so swapping encrypted
files around fails decryption.

Keys arrive in many forms (objects, raw bytes, base64, PEM, files); text and PEM
public keys are parsed by :func:`driftline.lineage.trust.keys.parse_public_key`, the one public
key parser, and this module only adds raw bytes and key files around it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
from pathlib import Path

from cryptography.exceptions import InvalidSignature, InvalidTag, UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from driftline.lineage.exceptions import (
    DecryptionFailed,
    InvalidKey,
    LineageError,
    SignatureInvalid,
)
from driftline.lineage.trust import keys

_DIGEST_RE = re.compile(r"^[0-9a-f]{64}$")
_NONCE = 12
_TAG = 16
# Bytes an encrypted file holds beyond its plaintext.
SEAL_OVERHEAD = _NONCE + _TAG
KEY_ENV_VAR = "DRIFTLINE_ARTIFACT_KEY"
# Domain separation: an artifact signature can never be replayed as the
# signature of anything else signed with the same key (e.g. a command).
_SIGNING_PREFIX = b"driftline.artifact.v1:"


# -- digests ------------------------------------------------------------------


def sha256_hex(data: bytes) -> str:
    """Hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def is_digest(value: str) -> bool:
    """True for a 64-character lowercase hex SHA-256 digest."""
    return bool(_DIGEST_RE.match(value))


def check_digest(digest: str) -> None:
    """Raise LineageError unless ``digest`` is a lowercase hex SHA-256 digest."""
    if not isinstance(digest, str) or not is_digest(digest):
        raise LineageError(
            f"{digest!r} is not a SHA-256 digest; expected 64 lowercase hex characters"
        )


# -- signatures ---------------------------------------------------------------


def signing_message(digest: str) -> bytes:
    """The bytes an artifact signature covers: a fixed prefix and the hex digest."""
    check_digest(digest)
    return _SIGNING_PREFIX + digest.encode("ascii")


def verify_artifact_signature(digest: str, signature: bytes, key: Ed25519PublicKey) -> None:
    """Raise SignatureInvalid unless ``signature`` is ``key``'s signature of ``digest``."""
    try:
        key.verify(bytes(signature), signing_message(digest))
    except InvalidSignature as exc:
        raise SignatureInvalid(
            f"signature of artifact sha256 {digest} does not verify with the trusted public "
            "key; refusing to load it. Re-sign it with the right key or restore the .sig file"
        ) from exc


def as_private_key(key: Ed25519PrivateKey | bytes | str | Path) -> Ed25519PrivateKey:
    """An Ed25519 private key from a key object, raw 32 bytes, base64 of them, PEM or a file.

    Encrypted PEM files: load them with ``driftline.lineage.trust.keys.load_private_key``, and pass
    the key.
    """
    if isinstance(key, Ed25519PrivateKey):
        return key
    data, source = _key_material(key)
    try:
        loaded = (
            Ed25519PrivateKey.from_private_bytes(data)
            if len(data) == 32
            else load_pem_private_key(data, password=None)
        )
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise InvalidKey(f"{source} is not an unencrypted PEM or raw Ed25519 private key") from exc
    if not isinstance(loaded, Ed25519PrivateKey):
        raise InvalidKey(f"{source} holds a {type(loaded).__name__}; an Ed25519 key is needed")
    return loaded


def as_public_key(key: Ed25519PublicKey | bytes | str | Path) -> Ed25519PublicKey:
    """An Ed25519 public key from a key object, raw 32 bytes, base64 of them, PEM or a file.

    PEM is parsed by :func:`driftline.lineage.trust.keys.parse_public_key`; raw bytes and files
    (which the roles-file parser never sees) are handled here.
    """
    if isinstance(key, Ed25519PublicKey):
        return key
    data, source = _key_material(key)
    if len(data) == 32:  # raw bytes, or what base64 text or a base64 file decoded to
        try:
            return Ed25519PublicKey.from_public_bytes(data)
        except ValueError as exc:
            raise InvalidKey(f"{source} is not a PEM, base64 or raw Ed25519 public key") from exc
    if not data.lstrip().startswith(b"-----BEGIN"):
        raise InvalidKey(f"{source} is not a PEM, base64 or raw Ed25519 public key")
    return keys.parse_public_key(data, source=source)


def _key_material(key: bytes | str | Path) -> tuple[bytes, str]:
    # Returns PEM bytes or the raw 32 key bytes. A str is PEM or base64 text if it
    # looks like one, else a path; files may hold PEM, raw bytes or one base64 line.
    if isinstance(key, bytes | bytearray):
        data, source = bytes(key), "the given key bytes"
    elif isinstance(key, str) and (key.lstrip().startswith("-----BEGIN") or _b64_key(key)):
        data, source = key.encode("ascii"), "the given key text"
    elif isinstance(key, str | Path):
        try:
            data, source = Path(key).read_bytes(), f"key file {key}"
        except OSError as exc:
            raise InvalidKey(f"cannot read key file {key}: {exc}") from exc
    else:
        raise InvalidKey(f"expected an Ed25519 key, bytes, PEM text or a path, got {type(key)}")
    if len(data) != 32 and not data.lstrip().startswith(b"-----BEGIN"):
        data = _b64_key(data) or data
    return data, source


def _b64_key(text: str | bytes) -> bytes | None:
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw if len(raw) == 32 else None


# -- encryption at rest -------------------------------------------------------


def load_encryption_key(
    path: Path | None = None, env_var: str = KEY_ENV_VAR, *, required: bool = True
) -> bytes | None:
    """The AES-256 key (base64 of 32 bytes) from ``path``, else from ``$env_var``.

    Returns None only when ``required`` is False and neither is set. Error
    messages name where the key came from, never the key itself.
    """
    if path is not None:
        source = f"key file {path}"
        try:
            text = Path(path).read_text(encoding="ascii")
        except (OSError, UnicodeDecodeError) as exc:
            raise InvalidKey(f"cannot read artifact encryption {source}: {exc}") from exc
    else:
        source = f"${env_var}"
        text = os.environ.get(env_var, "")
        if not text.strip():
            if not required:
                return None
            raise InvalidKey(
                f"no artifact encryption key: set {source} to base64 of 32 random bytes "
                "(see generate_encryption_key) or pass a key file"
            )
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except binascii.Error as exc:
        raise InvalidKey(f"artifact encryption key in {source} is not valid base64") from exc
    if len(key) != 32:
        raise InvalidKey(
            f"artifact encryption key in {source} decodes to {len(key)} bytes; AES-256-GCM "
            "needs exactly 32 (generate one with generate_encryption_key)"
        )
    return key


def generate_encryption_key() -> str:
    """A fresh random AES-256 key, base64-encoded (the form load_encryption_key reads)."""
    return base64.b64encode(os.urandom(32)).decode("ascii")


def new_cipher(encryption_key: bytes) -> AESGCM:
    """The AES-256-GCM cipher for a 32-byte key; raises InvalidKey for any other key."""
    if not isinstance(encryption_key, bytes | bytearray) or len(encryption_key) != 32:
        size = len(encryption_key) if isinstance(encryption_key, bytes | bytearray) else 0
        raise InvalidKey(
            f"artifact encryption key must be 32 bytes (AES-256), got {size}; "
            "load it with load_encryption_key"
        )
    return AESGCM(bytes(encryption_key))


def seal(aead: AESGCM, data: bytes, digest: str, kind: str) -> bytes:
    """``nonce || ciphertext+tag`` of ``data``, bound to its digest and kind."""
    nonce = os.urandom(_NONCE)
    return nonce + aead.encrypt(nonce, data, f"driftline:{kind}:{digest}".encode())


def unseal(aead: AESGCM, blob: bytes, digest: str, kind: str, path: Path) -> bytes:
    """The plaintext of a sealed ``blob``; raises DecryptionFailed naming ``path``."""
    try:
        if len(blob) < SEAL_OVERHEAD:
            raise InvalidTag
        aad = f"driftline:{kind}:{digest}".encode()
        return aead.decrypt(blob[:_NONCE], blob[_NONCE:], aad)
    except InvalidTag as exc:
        raise DecryptionFailed(
            f"cannot decrypt {kind} {path} (sha256 {digest}): wrong encryption key, the "
            "file was stored unencrypted, or it was altered; check the store's key or "
            "restore the file from a trusted copy"
        ) from exc
