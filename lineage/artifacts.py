"""Content-addressed artifact store: a file's name is the SHA-256 of its bytes.

Layout: ``<root>/sha256/<first two hex digits>/<digest><suffix>``, with optional
sidecars next to it: ``<digest>.meta.json`` (:class:`ArtifactMetadata`) and
``<digest>.sig`` (a raw 64-byte Ed25519 signature). Writes go to a temporary
file in the target directory and are moved into place with ``os.replace``, so a
reader never sees half a model, and storing the same bytes twice is a no-op.
Reads always re-hash (and check the signature when a public key is given)
before returning anything: a model whose bytes changed on disk after
registration is refused, never loaded.

With an encryption key, the artifact and its metadata are stored as
``nonce || AES-256-GCM(ciphertext + tag)``; the digest is still over the
plaintext, so it identifies the model whether or not the store encrypts. The
GCM associated data binds each file to its digest and kind, so swapping
encrypted files around fails decryption.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature, InvalidTag, UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.serialization import load_pem_private_key, load_pem_public_key

from lineage.events import now_ms
from lineage.exceptions import (
    ArtifactNotFound,
    DecryptionFailed,
    DigestMismatch,
    InvalidKey,
    InvalidProfile,
    InvalidRecord,
    LineageError,
    MetadataConflict,
    RegionNotAllowed,
    SignatureInvalid,
    SignatureMissing,
)
from lineage.profile import ReferenceProfile

_DIGEST_RE = re.compile(r"^[0-9a-f]{64}$")
_SUFFIX_RE = re.compile(r"^(\.[A-Za-z0-9_-]+)*$")
_CHUNK = 1 << 20
META_SUFFIX = ".meta.json"
SIG_SUFFIX = ".sig"
_SIDECARS = (META_SUFFIX, SIG_SUFFIX)
_NONCE = 12
_TAG = 16
KEY_ENV_VAR = "DRIFTLINE_ARTIFACT_KEY"
# Domain separation: an artifact signature can never be replayed as the
# signature of anything else signed with the same key (e.g. a command).
_SIGNING_PREFIX = b"driftline.artifact.v1:"


def sha256_hex(data: bytes) -> str:
    """Hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def is_digest(value: str) -> bool:
    """True for a 64-character lowercase hex SHA-256 digest."""
    return bool(_DIGEST_RE.match(value))


@dataclass(frozen=True)
class Artifact:
    """A stored artifact: its digest, its path relative to the store root, its size."""

    digest: str
    relpath: str
    size: int


@dataclass(frozen=True)
class InputSchema:
    """The model's input: tensor name, shape (None or a name for dynamic dims), features."""

    name: str
    shape: tuple[int | str | None, ...]
    feature_names: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise InvalidRecord(f"input name must be a non-empty string, got {self.name!r}")
        shape = tuple(self.shape)
        if not all(d is None or isinstance(d, str) or (type(d) is int and d >= 0) for d in shape):
            raise InvalidRecord(f"input shape dims must be ints >= 0, names or None: {shape!r}")
        names = self.feature_names
        if names is not None:
            names = tuple(names)
            if not all(isinstance(n, str) for n in names):
                raise InvalidRecord(f"feature names must be strings, got {names!r}")
            if shape and type(shape[-1]) is int and shape[-1] != len(names):
                raise InvalidRecord(
                    f"input shape {shape!r} has {shape[-1]} features but {len(names)} feature "
                    "names were given; pass one name per feature"
                )
        object.__setattr__(self, "shape", shape)
        object.__setattr__(self, "feature_names", names)


@dataclass(frozen=True, kw_only=True)
class ArtifactMetadata:
    """What a model artifact was trained on and how it scored offline (JSON sidecar)."""

    training_data_fingerprint: str
    parameters: dict[str, Any]
    offline_metrics: dict[str, float]
    input_schema: InputSchema
    reference_profile: dict[str, Any] | None = None
    created_at: int = field(default_factory=now_ms)

    def __post_init__(self) -> None:
        fingerprint = self.training_data_fingerprint
        if not isinstance(fingerprint, str) or not fingerprint:
            raise InvalidRecord(f"training_data_fingerprint must be non-empty, got {fingerprint!r}")
        if not isinstance(self.created_at, int) or isinstance(self.created_at, bool):
            raise InvalidRecord(f"created_at must be int milliseconds, got {self.created_at!r}")
        schema = self.input_schema
        if isinstance(schema, Mapping):
            try:
                schema = InputSchema(**schema)
            except TypeError as exc:
                raise InvalidRecord(f"input_schema has the wrong fields: {exc}") from exc
        if not isinstance(schema, InputSchema):
            raise InvalidRecord(f"input_schema must be an InputSchema, got {schema!r}")
        metrics = self.offline_metrics
        if not isinstance(metrics, Mapping) or not all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in metrics.values()
        ):
            raise InvalidRecord(
                f"offline_metrics must map names to numbers, got {metrics!r}; put other "
                "values in parameters"
            )
        profile = self.reference_profile
        if isinstance(profile, ReferenceProfile):
            profile = profile.to_dict()
        elif profile is not None:
            try:
                ReferenceProfile.from_dict(profile)  # refuse a profile nobody could load
            except InvalidProfile as exc:
                raise InvalidRecord(f"reference_profile is not loadable: {exc}") from exc
        object.__setattr__(self, "input_schema", schema)
        # Defensive deep copies that also prove the values are plain, finite JSON.
        for name, value in (
            ("parameters", self.parameters),
            ("offline_metrics", metrics),
            ("reference_profile", profile),
        ):
            try:
                copy = json.loads(_canonical(value))
            except (TypeError, ValueError) as exc:
                raise InvalidRecord(
                    f"artifact metadata {name} is not plain JSON ({exc}); use str/int/float/"
                    "bool/None, lists and string-keyed dicts, and no NaN or infinity"
                ) from exc
            if name != "reference_profile" and not isinstance(copy, dict):
                raise InvalidRecord(f"artifact metadata {name} must be a JSON object")
            object.__setattr__(self, name, copy)

    def profile(self) -> ReferenceProfile | None:
        """The training reference profile, if one was recorded."""
        if self.reference_profile is None:
            return None
        return ReferenceProfile.from_dict(self.reference_profile)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": 1,
            "training_data_fingerprint": self.training_data_fingerprint,
            "parameters": self.parameters,
            "offline_metrics": self.offline_metrics,
            "input_schema": {
                "name": self.input_schema.name,
                "shape": list(self.input_schema.shape),
                "feature_names": (
                    None
                    if self.input_schema.feature_names is None
                    else list(self.input_schema.feature_names)
                ),
            },
            "reference_profile": self.reference_profile,
            "created_at": self.created_at,
        }

    @classmethod
    def from_dict(cls, body: Mapping[str, Any]) -> ArtifactMetadata:
        if not isinstance(body, Mapping) or body.get("format") != 1:
            raise InvalidRecord("artifact metadata is not a format-1 JSON object")
        try:
            return cls(**{k: v for k, v in body.items() if k != "format"})
        except TypeError as exc:
            raise InvalidRecord(f"artifact metadata has the wrong fields: {exc}") from exc

    def canonical_json(self) -> bytes:
        """Deterministic UTF-8 JSON: what the sidecar holds and :meth:`sha256` hashes."""
        return _canonical(self.to_dict()).encode("utf-8")

    def sha256(self) -> str:
        """Digest to record (e.g. in the ``registered`` event) so the sidecar is tamper-evident."""
        return sha256_hex(self.canonical_json())


def signing_message(digest: str) -> bytes:
    """The bytes an artifact signature covers: a fixed prefix and the hex digest."""
    _check_digest(digest)
    return _SIGNING_PREFIX + digest.encode("ascii")


def as_private_key(key: Ed25519PrivateKey | bytes | str | Path) -> Ed25519PrivateKey:
    """An Ed25519 private key from a key object, raw 32 bytes, base64 of them, PEM or a file.

    Encrypted PEM files: load them with ``lineage.keys.load_private_key`` and pass the key.
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
    """An Ed25519 public key from a key object, raw 32 bytes, base64 of them, PEM or a file."""
    if isinstance(key, Ed25519PublicKey):
        return key
    data, source = _key_material(key)
    try:
        loaded = (
            Ed25519PublicKey.from_public_bytes(data)
            if len(data) == 32
            else load_pem_public_key(data)
        )
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise InvalidKey(f"{source} is not a PEM, base64 or raw Ed25519 public key") from exc
    if not isinstance(loaded, Ed25519PublicKey):
        raise InvalidKey(f"{source} holds a {type(loaded).__name__}; an Ed25519 key is needed")
    return loaded


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


class ArtifactStore:
    """A directory of immutable, content-addressed files, optionally signed and encrypted.

    ``region``/``allowed_regions``: writes are refused unless the store's region
    is allowed (None allows any). ``public_key``: default key that
    :meth:`read_verified` checks signatures with; ``require_signature``: refuse
    reads that are not signature-checked.
    """

    def __init__(
        self,
        root: Path,
        *,
        encryption_key: bytes | None = None,
        region: str | None = None,
        allowed_regions: Iterable[str] | None = None,
        public_key: Ed25519PublicKey | bytes | str | Path | None = None,
        require_signature: bool = False,
    ) -> None:
        self.root = Path(root)
        self.region = region
        regions = None
        if allowed_regions is not None and not isinstance(allowed_regions, str):
            regions = frozenset(allowed_regions)
        if (allowed_regions is not None and regions is None) or not all(
            isinstance(r, str) for r in regions or ()
        ):
            raise LineageError(
                f"allowed_regions must be a set of region names, got {allowed_regions!r}"
            )
        self.allowed_regions = regions
        self.public_key = None if public_key is None else as_public_key(public_key)
        self.require_signature = require_signature
        self._aead: AESGCM | None = None
        if encryption_key is not None:
            if not isinstance(encryption_key, bytes | bytearray) or len(encryption_key) != 32:
                size = len(encryption_key) if isinstance(encryption_key, bytes | bytearray) else 0
                raise InvalidKey(
                    f"artifact encryption key must be 32 bytes (AES-256), got {size}; "
                    "load it with load_encryption_key"
                )
            self._aead = AESGCM(bytes(encryption_key))

    @property
    def encrypted(self) -> bool:
        return self._aead is not None

    def relpath_for(self, digest: str, suffix: str = ".onnx") -> str:
        """Where the artifact with ``digest`` lives, relative to the root (POSIX form)."""
        _check_digest(digest)
        _check_suffix(suffix)
        return f"sha256/{digest[:2]}/{digest}{suffix}"

    def put_bytes(
        self, data: bytes, suffix: str = ".onnx", *, metadata: ArtifactMetadata | None = None
    ) -> Artifact:
        """Store ``data`` under its digest; storing the same bytes again changes nothing."""
        self._check_region("store an artifact")
        digest = sha256_hex(data)
        relpath = self.relpath_for(digest, suffix)
        target = self.root / relpath
        if not self._intact(target, digest, len(data)):
            self._atomic_write(target, [self._seal(data, digest, "artifact")])
        if metadata is not None:
            self._put_metadata(digest, metadata)
        return Artifact(digest=digest, relpath=relpath, size=len(data))

    def put_file(
        self, path: Path, suffix: str | None = None, *, metadata: ArtifactMetadata | None = None
    ) -> Artifact:
        """Store the file at ``path``; ``suffix`` defaults to its own.

        Streamed when the store is plaintext; read whole to encrypt (AES-GCM is one-shot).
        """
        self._check_region("store an artifact")
        path = Path(path)
        suffix = path.suffix if suffix is None else suffix
        _check_suffix(suffix)
        try:
            if self._aead is not None:
                return self.put_bytes(path.read_bytes(), suffix, metadata=metadata)
            hasher = hashlib.sha256()
            size = 0
            with path.open("rb") as fh:
                while chunk := fh.read(_CHUNK):
                    hasher.update(chunk)
                    size += len(chunk)
        except FileNotFoundError as exc:
            raise ArtifactNotFound(f"cannot store {path}: no such file") from exc
        except OSError as exc:
            raise LineageError(f"cannot read {path} to store it: {exc}") from exc
        digest = hasher.hexdigest()
        relpath = self.relpath_for(digest, suffix)
        target = self.root / relpath
        if not self._intact(target, digest, size):
            # Copy the file as it was hashed; if it changed meanwhile the
            # re-check below catches it rather than storing a misnamed file.
            with path.open("rb") as fh:
                self._atomic_write(target, iter(lambda: fh.read(_CHUNK), b""))
            if not self._intact(target, digest, size):
                target.unlink(missing_ok=True)
                raise DigestMismatch(
                    f"{path} changed while it was being stored (expected sha256 {digest}); "
                    "store it again once nothing is writing to it"
                )
        if metadata is not None:
            self._put_metadata(digest, metadata)
        return Artifact(digest=digest, relpath=relpath, size=size)

    def locate(self, digest_or_relpath: str) -> Path:
        """The absolute path of an artifact given its digest or its relative path."""
        ref = digest_or_relpath
        if is_digest(ref):
            folder = self.root / "sha256" / ref[:2]
            # Every name starts with the digest, whatever the suffix; sidecars are not artifacts.
            matches = (
                sorted(p for p in folder.glob(f"{ref}*") if not p.name.endswith(_SIDECARS))
                if folder.is_dir()
                else []
            )
            if not matches:
                raise ArtifactNotFound(
                    f"no artifact with sha256 {ref} in {self.root}; register the model again "
                    "or restore the artifact store"
                )
            return matches[0]
        root = self.root.resolve()
        path = (root / ref).resolve()
        if not path.is_relative_to(root):
            raise LineageError(f"artifact path {ref!r} points outside the store root {root}")
        if not path.is_file():
            raise ArtifactNotFound(
                f"artifact {ref!r} does not exist under {self.root}; register the model again "
                "or restore the artifact store"
            )
        return path

    def read_verified(
        self,
        digest_or_relpath: str,
        expected_digest: str | None = None,
        *,
        public_key: Ed25519PublicKey | bytes | str | Path | None = None,
    ) -> bytes:
        """Read an artifact, decrypt it, and check it hashes to ``expected_digest``.

        ``expected_digest`` defaults to the digest in the reference itself (the file
        name is the digest). With ``public_key`` (or the store's), the signature
        over the expected digest is checked first; no bytes are returned unless
        every check passes.
        """
        path = self.locate(digest_or_relpath)
        if expected_digest is None:
            expected_digest = path.name[:64]
        _check_digest(expected_digest)
        if public_key is not None or self.public_key is not None or self.require_signature:
            self.verify_signature(expected_digest, public_key)
        return self._read_checked(path, expected_digest)

    def metadata(self, digest: str, *, expected_sha256: str | None = None) -> ArtifactMetadata:
        """The metadata stored with an artifact; ``expected_sha256`` pins its exact content."""
        path = self._sidecar(digest, META_SUFFIX)
        try:
            blob = path.read_bytes()
        except FileNotFoundError as exc:
            raise ArtifactNotFound(
                f"artifact sha256 {digest} has no metadata in {self.root}; store it with "
                "put_bytes(..., metadata=...)"
            ) from exc
        except OSError as exc:
            raise LineageError(f"cannot read artifact metadata {path}: {exc}") from exc
        text = self._unseal(blob, digest, "metadata", path)
        if expected_sha256 is not None and sha256_hex(text) != expected_sha256:
            raise DigestMismatch(
                f"metadata {path} was altered: expected sha256 {expected_sha256}, content "
                f"hashes to {sha256_hex(text)}; restore it from a trusted copy"
            )
        try:
            body = json.loads(text)
        except (UnicodeDecodeError, ValueError) as exc:
            raise InvalidRecord(f"artifact metadata {path} is not JSON: {exc}") from exc
        return ArtifactMetadata.from_dict(body)

    def sign_artifact(
        self, digest: str, private_key: Ed25519PrivateKey | bytes | str | Path
    ) -> bytes:
        """Sign a stored, intact artifact's digest; the signature is kept as ``<digest>.sig``."""
        _check_digest(digest)
        self._check_region("store an artifact signature")
        key = as_private_key(private_key)
        self._read_checked(self.locate(digest), digest)  # vouch only for bytes that are there
        signature = key.sign(signing_message(digest))
        self.put_signature(digest, signature, public_key=key.public_key())
        return signature

    def put_signature(
        self,
        digest: str,
        signature: bytes,
        *,
        public_key: Ed25519PublicKey | bytes | str | Path | None = None,
    ) -> None:
        """Store a signature made elsewhere (e.g. by CI), checked first if a key is given."""
        _check_digest(digest)
        self._check_region("store an artifact signature")
        self.locate(digest)
        if public_key is not None:
            _verify(digest, signature, as_public_key(public_key))
        self._atomic_write(self._sidecar(digest, SIG_SUFFIX), [bytes(signature)])

    def verify_signature(
        self, digest: str, public_key: Ed25519PublicKey | bytes | str | Path | None = None
    ) -> None:
        """Raise unless ``<digest>.sig`` verifies under ``public_key`` (or the store's key)."""
        key = self.public_key if public_key is None else as_public_key(public_key)
        if key is None:
            raise InvalidKey(
                f"artifact store {self.root} requires signed artifacts but no public key was "
                f"given to check sha256 {digest}; pass public_key or configure the store's"
            )
        path = self._sidecar(digest, SIG_SUFFIX)
        try:
            signature = path.read_bytes()
        except FileNotFoundError as exc:
            raise SignatureMissing(
                f"artifact sha256 {digest} is not signed (no {path}); refusing to load it. "
                "Sign it with sign_artifact once it is approved"
            ) from exc
        except OSError as exc:
            raise LineageError(f"cannot read signature {path}: {exc}") from exc
        _verify(digest, signature, key)

    def _sidecar(self, digest: str, suffix: str) -> Path:
        _check_digest(digest)
        return self.root / "sha256" / digest[:2] / f"{digest}{suffix}"

    def _put_metadata(self, digest: str, metadata: ArtifactMetadata) -> None:
        if not isinstance(metadata, ArtifactMetadata):
            raise InvalidRecord(f"metadata must be an ArtifactMetadata, got {type(metadata)}")
        try:
            existing = self.metadata(digest)
        except (ArtifactNotFound, DecryptionFailed, InvalidRecord):
            existing = None  # absent or damaged: (re)write it
        if existing is not None:
            # Re-registering the same bytes keeps the first record; only created_at may differ.
            old, new = existing.to_dict(), metadata.to_dict()
            old.pop("created_at"), new.pop("created_at")
            if old != new:
                raise MetadataConflict(
                    f"artifact sha256 {digest} already has different metadata (created_at "
                    f"{existing.created_at}); the same bytes cannot have two training records"
                )
            return
        sealed = self._seal(metadata.canonical_json(), digest, "metadata")
        self._atomic_write(self._sidecar(digest, META_SUFFIX), [sealed])

    def _read_checked(self, path: Path, expected_digest: str) -> bytes:
        try:
            blob = path.read_bytes()
        except OSError as exc:
            raise LineageError(f"cannot read artifact {path}: {exc}") from exc
        name_digest = path.name[:64] if is_digest(path.name[:64]) else expected_digest
        data = self._unseal(blob, name_digest, "artifact", path)
        actual = sha256_hex(data)
        if actual != expected_digest:
            raise DigestMismatch(
                f"artifact {path} was altered: expected sha256 {expected_digest}, "
                f"content hashes to {actual}; refusing to load it. Restore the file from "
                "a trusted copy or register the model again"
            )
        return data

    def _check_region(self, action: str) -> None:
        if self.allowed_regions is not None and self.region not in self.allowed_regions:
            raise RegionNotAllowed(
                f"cannot {action}: artifact store {self.root} is in region {self.region!r}, "
                f"which is not in the allowed regions {sorted(self.allowed_regions)}; use a "
                "store in an allowed region or change the data-residency policy"
            )

    def _seal(self, data: bytes, digest: str, kind: str) -> bytes:
        if self._aead is None:
            return data
        nonce = os.urandom(_NONCE)
        return nonce + self._aead.encrypt(nonce, data, f"driftline:{kind}:{digest}".encode())

    def _unseal(self, blob: bytes, digest: str, kind: str, path: Path) -> bytes:
        if self._aead is None:
            return blob
        try:
            if len(blob) < _NONCE + _TAG:
                raise InvalidTag
            aad = f"driftline:{kind}:{digest}".encode()
            return self._aead.decrypt(blob[:_NONCE], blob[_NONCE:], aad)
        except InvalidTag as exc:
            raise DecryptionFailed(
                f"cannot decrypt {kind} {path} (sha256 {digest}): wrong encryption key, the "
                "file was stored unencrypted, or it was altered; check the store's key or "
                "restore the file from a trusted copy"
            ) from exc

    def _intact(self, target: Path, digest: str, size: int) -> bool:
        # An existing file is reused only if it still holds the right bytes;
        # a damaged one is rewritten (the store repairs itself on re-put).
        try:
            if self._aead is not None:
                blob = target.read_bytes()
                if len(blob) != size + _NONCE + _TAG:
                    return False
                return sha256_hex(self._unseal(blob, digest, "artifact", target)) == digest
            if target.stat().st_size != size:
                return False
            hasher = hashlib.sha256()
            with target.open("rb") as fh:
                while chunk := fh.read(_CHUNK):
                    hasher.update(chunk)
        except (FileNotFoundError, DecryptionFailed):
            return False
        return hasher.hexdigest() == digest

    @staticmethod
    def _atomic_write(target: Path, chunks) -> None:
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=target.parent)
        except OSError as exc:
            raise LineageError(f"cannot write artifact under {target.parent}: {exc}") from exc
        try:
            with os.fdopen(fd, "wb") as fh:
                for chunk in chunks:
                    fh.write(chunk)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, target)
        except OSError as exc:
            Path(tmp).unlink(missing_ok=True)
            raise LineageError(f"cannot write artifact {target}: {exc}") from exc
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def _verify(digest: str, signature: bytes, key: Ed25519PublicKey) -> None:
    try:
        key.verify(bytes(signature), signing_message(digest))
    except InvalidSignature as exc:
        raise SignatureInvalid(
            f"signature of artifact sha256 {digest} does not verify with the trusted public "
            "key; refusing to load it. Re-sign it with the right key or restore the .sig file"
        ) from exc


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


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)


def _check_digest(digest: str) -> None:
    if not isinstance(digest, str) or not is_digest(digest):
        raise LineageError(
            f"{digest!r} is not a SHA-256 digest; expected 64 lowercase hex characters"
        )


def _check_suffix(suffix: str) -> None:
    if not _SUFFIX_RE.match(suffix) or suffix.endswith(_SIDECARS):
        raise LineageError(
            f"artifact suffix {suffix!r} is not allowed; use '' or something like '.onnx' "
            f"(not {' or '.join(_SIDECARS)}, which name sidecars)"
        )
