import hashlib
from pathlib import Path

import pytest

from lineage.artifacts import ArtifactStore, sha256_hex
from lineage.exceptions import ArtifactNotFound, DigestMismatch, LineageError

MODEL = b"\x08\x07fake-onnx-bytes" * 100


@pytest.fixture
def store(tmp_path: Path) -> ArtifactStore:
    return ArtifactStore(tmp_path / "artifacts")


def test_put_bytes_is_content_addressed(store: ArtifactStore) -> None:
    artifact = store.put_bytes(MODEL)
    digest = hashlib.sha256(MODEL).hexdigest()
    assert artifact.digest == digest == sha256_hex(MODEL)
    assert artifact.relpath == f"sha256/{digest[:2]}/{digest}.onnx"
    assert artifact.size == len(MODEL)
    assert (store.root / artifact.relpath).read_bytes() == MODEL


def test_put_is_idempotent_and_leaves_no_temp_files(store: ArtifactStore) -> None:
    first = store.put_bytes(MODEL)
    mtime = (store.root / first.relpath).stat().st_mtime_ns
    second = store.put_bytes(MODEL)
    assert first == second
    assert (store.root / first.relpath).stat().st_mtime_ns == mtime  # not rewritten
    files = [p for p in store.root.rglob("*") if p.is_file()]
    assert files == [store.root / first.relpath]


def test_put_file_matches_put_bytes(store: ArtifactStore, tmp_path: Path) -> None:
    source = tmp_path / "model.onnx"
    source.write_bytes(MODEL)
    assert store.put_file(source) == store.put_bytes(MODEL)
    other = store.put_file(source, suffix=".bin")
    assert other.relpath.endswith(".bin") and other.digest == sha256_hex(MODEL)


def test_put_file_missing_source(store: ArtifactStore, tmp_path: Path) -> None:
    with pytest.raises(ArtifactNotFound, match="no such file"):
        store.put_file(tmp_path / "absent.onnx")


def test_read_verified_by_digest_and_relpath(store: ArtifactStore) -> None:
    artifact = store.put_bytes(MODEL)
    assert store.read_verified(artifact.digest, artifact.digest) == MODEL
    assert store.read_verified(artifact.relpath, artifact.digest) == MODEL
    assert store.read_verified(artifact.relpath) == MODEL


def test_tampered_artifact_is_refused(store: ArtifactStore) -> None:
    artifact = store.put_bytes(MODEL)
    path = store.root / artifact.relpath
    tampered = MODEL[:-1] + b"\x00"
    path.write_bytes(tampered)
    with pytest.raises(DigestMismatch) as err:
        store.read_verified(artifact.relpath, artifact.digest)
    message = str(err.value)
    assert artifact.digest in message
    assert sha256_hex(tampered) in message
    assert str(path) in message


def test_expected_digest_must_match_the_file(store: ArtifactStore) -> None:
    a = store.put_bytes(MODEL)
    b = store.put_bytes(b"another model")
    with pytest.raises(DigestMismatch, match=b.digest):
        store.read_verified(a.relpath, b.digest)


def test_put_repairs_a_damaged_copy(store: ArtifactStore) -> None:
    artifact = store.put_bytes(MODEL)
    (store.root / artifact.relpath).write_bytes(b"garbage")
    store.put_bytes(MODEL)
    assert store.read_verified(artifact.digest) == MODEL


def test_missing_artifact(store: ArtifactStore) -> None:
    with pytest.raises(ArtifactNotFound, match="a" * 64):
        store.read_verified("a" * 64)
    with pytest.raises(ArtifactNotFound, match="nope.onnx"):
        store.read_verified("sha256/aa/nope.onnx")


def test_relpath_outside_root_is_refused(store: ArtifactStore, tmp_path: Path) -> None:
    (tmp_path / "secret.onnx").write_bytes(MODEL)
    store.root.mkdir(parents=True)
    with pytest.raises(LineageError, match="outside the store root"):
        store.read_verified("../secret.onnx", sha256_hex(MODEL))


@pytest.mark.parametrize("suffix", ["onnx", "../x", ".on/nx"])
def test_bad_suffix(store: ArtifactStore, suffix: str) -> None:
    with pytest.raises(LineageError, match="suffix"):
        store.put_bytes(MODEL, suffix=suffix)


def test_bad_expected_digest(store: ArtifactStore) -> None:
    artifact = store.put_bytes(MODEL)
    with pytest.raises(LineageError, match="not a SHA-256 digest"):
        store.read_verified(artifact.relpath, "abc")
