"""Content-addressed artifact store: a file's name is the SHA-256 of its bytes.

Long on purpose: reading, writing, verifying and region placement share one layout.

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

The metadata record lives in :mod:`driftline.lineage.artifacts.metadata`, the digest, signature and
encryption helpers in :mod:`driftline.lineage.artifacts.crypto`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from driftline.lineage.artifacts.crypto import (
    SEAL_OVERHEAD,
    as_private_key,
    as_public_key,
    check_digest,
    is_digest,
    new_cipher,
    seal,
    sha256_hex,
    signing_message,
    unseal,
    verify_artifact_signature,
)
from driftline.lineage.artifacts.metadata import ArtifactMetadata
from driftline.lineage.exceptions import (
    ArtifactNotFound,
    DecryptionFailed,
    DigestMismatch,
    InvalidKey,
    InvalidRecord,
    LineageError,
    MetadataConflict,
    RegionNotAllowed,
    SignatureMissing,
)

_SUFFIX_RE = re.compile(r"^(\.[A-Za-z0-9_-]+)*$")
_CHUNK = 1 << 20
META_SUFFIX = ".meta.json"
SIG_SUFFIX = ".sig"
_SIDECARS = (META_SUFFIX, SIG_SUFFIX)


@dataclass(frozen=True)
class Artifact:
    """A stored artifact: its digest, its path relative to the store root, its size."""

    digest: str
    relpath: str
    size: int


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
        self._aead: AESGCM | None = None if encryption_key is None else new_cipher(encryption_key)

    @property
    def encrypted(self) -> bool:
        return self._aead is not None

    def relpath_for(self, digest: str, suffix: str = ".onnx") -> str:
        """Where the artifact with ``digest`` lives, relative to the root (POSIX form)."""
        check_digest(digest)
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
        check_digest(expected_digest)
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
        check_digest(digest)
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
        check_digest(digest)
        self._check_region("store an artifact signature")
        self.locate(digest)
        if public_key is not None:
            verify_artifact_signature(digest, signature, as_public_key(public_key))
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
        verify_artifact_signature(digest, signature, key)

    def _sidecar(self, digest: str, suffix: str) -> Path:
        check_digest(digest)
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
        return data if self._aead is None else seal(self._aead, data, digest, kind)

    def _unseal(self, blob: bytes, digest: str, kind: str, path: Path) -> bytes:
        return blob if self._aead is None else unseal(self._aead, blob, digest, kind, path)

    def _intact(self, target: Path, digest: str, size: int) -> bool:
        # An existing file is reused only if it still holds the right bytes;
        # a damaged one is rewritten (the store repairs itself on re-put).
        try:
            if self._aead is not None:
                blob = target.read_bytes()
                if len(blob) != size + SEAL_OVERHEAD:
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


def _check_suffix(suffix: str) -> None:
    if not _SUFFIX_RE.match(suffix) or suffix.endswith(_SIDECARS):
        raise LineageError(
            f"artifact suffix {suffix!r} is not allowed; use '' or something like '.onnx' "
            f"(not {' or '.join(_SIDECARS)}, which name sidecars)"
        )
