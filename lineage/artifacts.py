"""Content-addressed artifact store: a file's name is the SHA-256 of its bytes.

Layout: ``<root>/sha256/<first two hex digits>/<digest><suffix>``. Writes go to a
temporary file in the target directory and are moved into place with
``os.replace``, so a reader never sees half a model, and storing the same bytes
twice is a no-op. Reads always re-hash: a model whose bytes changed on disk
after registration is refused, never loaded.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from lineage.exceptions import ArtifactNotFound, DigestMismatch, LineageError

_DIGEST_RE = re.compile(r"^[0-9a-f]{64}$")
_SUFFIX_RE = re.compile(r"^(\.[A-Za-z0-9_-]+)*$")
_CHUNK = 1 << 20


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


class ArtifactStore:
    """A directory of immutable, content-addressed files."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def relpath_for(self, digest: str, suffix: str = ".onnx") -> str:
        """Where the artifact with ``digest`` lives, relative to the root (POSIX form)."""
        _check_digest(digest)
        _check_suffix(suffix)
        return f"sha256/{digest[:2]}/{digest}{suffix}"

    def put_bytes(self, data: bytes, suffix: str = ".onnx") -> Artifact:
        """Store ``data`` under its digest; storing the same bytes again changes nothing."""
        digest = sha256_hex(data)
        relpath = self.relpath_for(digest, suffix)
        target = self.root / relpath
        if not self._intact(target, digest, len(data)):
            self._atomic_write(target, [data])
        return Artifact(digest=digest, relpath=relpath, size=len(data))

    def put_file(self, path: Path, suffix: str | None = None) -> Artifact:
        """Store the file at ``path`` (streamed, not read whole); ``suffix`` defaults to its own."""
        path = Path(path)
        suffix = path.suffix if suffix is None else suffix
        _check_suffix(suffix)
        try:
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
        return Artifact(digest=digest, relpath=relpath, size=size)

    def locate(self, digest_or_relpath: str) -> Path:
        """The absolute path of an artifact given its digest or its relative path."""
        ref = digest_or_relpath
        if is_digest(ref):
            folder = self.root / "sha256" / ref[:2]
            # Every name starts with the digest, whatever the suffix.
            matches = sorted(folder.glob(f"{ref}*")) if folder.is_dir() else []
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

    def read_verified(self, digest_or_relpath: str, expected_digest: str | None = None) -> bytes:
        """Read an artifact and check that it still hashes to ``expected_digest``.

        ``expected_digest`` defaults to the digest in the reference itself (the file
        name is the digest), so passing the registry's digest is only needed when
        the caller wants to be sure the path and the digest agree.
        """
        path = self.locate(digest_or_relpath)
        if expected_digest is None:
            expected_digest = path.name[:64]
        _check_digest(expected_digest)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise LineageError(f"cannot read artifact {path}: {exc}") from exc
        actual = sha256_hex(data)
        if actual != expected_digest:
            raise DigestMismatch(
                f"artifact {path} was altered: expected sha256 {expected_digest}, "
                f"content hashes to {actual}; refusing to load it. Restore the file from "
                "a trusted copy or register the model again"
            )
        return data

    @staticmethod
    def _intact(target: Path, digest: str, size: int) -> bool:
        # An existing file is reused only if it still holds the right bytes;
        # a damaged one is rewritten (the store repairs itself on re-put).
        try:
            if target.stat().st_size != size:
                return False
            hasher = hashlib.sha256()
            with target.open("rb") as fh:
                while chunk := fh.read(_CHUNK):
                    hasher.update(chunk)
        except FileNotFoundError:
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


def _check_digest(digest: str) -> None:
    if not isinstance(digest, str) or not is_digest(digest):
        raise LineageError(
            f"{digest!r} is not a SHA-256 digest; expected 64 lowercase hex characters"
        )


def _check_suffix(suffix: str) -> None:
    if not _SUFFIX_RE.match(suffix):
        raise LineageError(
            f"artifact suffix {suffix!r} is not allowed; use '' or something like '.onnx'"
        )
