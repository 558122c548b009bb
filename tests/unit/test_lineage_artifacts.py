import base64
import hashlib
from pathlib import Path

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from driftline.drift.profile import ReferenceProfile
from driftline.lineage.artifacts.crypto import (
    as_private_key,
    as_public_key,
    generate_encryption_key,
    load_encryption_key,
    sha256_hex,
    signing_message,
)
from driftline.lineage.artifacts.metadata import ArtifactMetadata, InputSchema
from driftline.lineage.artifacts.store import ArtifactStore
from driftline.lineage.exceptions import (
    ArtifactNotFound,
    DecryptionFailed,
    DigestMismatch,
    InvalidKey,
    InvalidRecord,
    LineageError,
    MetadataConflict,
    RegionNotAllowed,
    SignatureInvalid,
    SignatureMissing,
)

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


# --- metadata sidecar -------------------------------------------------------


def _metadata(**overrides) -> ArtifactMetadata:
    rng = np.random.default_rng(3)
    profile = ReferenceProfile.from_matrix(rng.normal(size=(200, 2)).astype(np.float32), ["a", "b"])
    fields = {
        "training_data_fingerprint": "sha256:" + "1" * 64,
        "parameters": {"max_depth": 4, "solver": "lbfgs", "classes": [0, 1]},
        "offline_metrics": {"auc": 0.8765, "log_loss": 0.2},
        "input_schema": InputSchema("float_input", (None, 2), ("a", "b")),
        "reference_profile": profile,
        "created_at": 1_714_564_800_123,
    }
    return ArtifactMetadata(**{**fields, **overrides})


def test_metadata_sidecar_round_trip(store: ArtifactStore) -> None:
    meta = _metadata()
    artifact = store.put_bytes(MODEL, metadata=meta)
    sidecar = store.root / "sha256" / artifact.digest[:2] / f"{artifact.digest}.meta.json"
    assert sidecar.read_bytes() == meta.canonical_json()
    loaded = store.metadata(artifact.digest, expected_sha256=meta.sha256())
    assert loaded == meta
    assert loaded.input_schema == InputSchema("float_input", (None, 2), ("a", "b"))
    assert loaded.profile() == meta.profile() and loaded.profile() is not None
    # Sidecars are not artifacts: the digest still resolves to the model itself.
    assert store.locate(artifact.digest) == store.root / artifact.relpath
    assert store.read_verified(artifact.digest) == MODEL


def test_put_file_stores_metadata(store: ArtifactStore, tmp_path: Path) -> None:
    source = tmp_path / "model.onnx"
    source.write_bytes(MODEL)
    artifact = store.put_file(source, metadata=_metadata())
    assert store.metadata(artifact.digest) == _metadata()


def test_altered_metadata_is_caught_by_its_digest(store: ArtifactStore) -> None:
    meta = _metadata()
    artifact = store.put_bytes(MODEL, metadata=meta)
    sidecar = store.root / "sha256" / artifact.digest[:2] / f"{artifact.digest}.meta.json"
    sidecar.write_bytes(meta.canonical_json().replace(b'"auc":0.8765', b'"auc":0.9999'))
    assert store.metadata(artifact.digest).offline_metrics["auc"] == 0.9999
    with pytest.raises(DigestMismatch, match=meta.sha256()):
        store.metadata(artifact.digest, expected_sha256=meta.sha256())


def test_metadata_is_recorded_once(store: ArtifactStore) -> None:
    artifact = store.put_bytes(MODEL, metadata=_metadata())
    # The same record with a later timestamp keeps the first one.
    store.put_bytes(MODEL, metadata=_metadata(created_at=1_800_000_000_000))
    assert store.metadata(artifact.digest).created_at == 1_714_564_800_123
    with pytest.raises(MetadataConflict, match=artifact.digest):
        store.put_bytes(MODEL, metadata=_metadata(offline_metrics={"auc": 0.5}))


def test_missing_metadata(store: ArtifactStore) -> None:
    artifact = store.put_bytes(MODEL)
    with pytest.raises(ArtifactNotFound, match="no metadata"):
        store.metadata(artifact.digest)


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"offline_metrics": {"auc": float("nan")}}, "not plain JSON"),
        ({"offline_metrics": {"auc": "high"}}, "numbers"),
        ({"parameters": {"f": object()}}, "not plain JSON"),
        ({"training_data_fingerprint": ""}, "fingerprint"),
        ({"input_schema": {"name": "x", "shape": [None, 3], "feature_names": ["a"]}}, "3 feat"),
        ({"reference_profile": {"format": 1}}, "not loadable"),
    ],
)
def test_invalid_metadata(overrides: dict, match: str) -> None:
    with pytest.raises(InvalidRecord, match=match):
        _metadata(**overrides)


@pytest.mark.parametrize("suffix", [".meta.json", ".sig"])
def test_sidecar_suffixes_are_reserved(store: ArtifactStore, suffix: str) -> None:
    with pytest.raises(LineageError, match="sidecars"):
        store.put_bytes(MODEL, suffix=suffix)


# --- signatures -------------------------------------------------------------


@pytest.fixture(scope="module")
def signing_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def _pem(key: Ed25519PrivateKey) -> tuple[bytes, bytes]:
    private = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    public = key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    return private, public


def test_signed_artifact_reads_with_any_key_form(
    store: ArtifactStore, signing_key: Ed25519PrivateKey, tmp_path: Path
) -> None:
    artifact = store.put_bytes(MODEL)
    private_pem, public_pem = _pem(signing_key)
    signature = store.sign_artifact(artifact.digest, private_pem)
    sig_file = store.root / "sha256" / artifact.digest[:2] / f"{artifact.digest}.sig"
    assert sig_file.read_bytes() == signature and len(signature) == 64
    raw = signing_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    key_file = tmp_path / "trusted.pem"
    key_file.write_bytes(public_pem)
    b64_file = tmp_path / "trusted.pub"
    b64_file.write_text(base64.b64encode(raw).decode() + "\n")  # lineage.keys' one-line form
    forms = (signing_key.public_key(), public_pem, public_pem.decode(), raw, key_file, b64_file)
    for key in (*forms, base64.b64encode(raw).decode()):
        assert store.read_verified(artifact.relpath, artifact.digest, public_key=key) == MODEL
    assert store.read_verified(artifact.digest) == MODEL  # no key, no check


def test_wrong_key_or_altered_signature_is_refused(
    store: ArtifactStore, signing_key: Ed25519PrivateKey
) -> None:
    artifact = store.put_bytes(MODEL)
    store.sign_artifact(artifact.digest, signing_key)
    other = Ed25519PrivateKey.generate().public_key()
    with pytest.raises(SignatureInvalid, match=artifact.digest):
        store.read_verified(artifact.digest, public_key=other)
    sig_file = store.root / "sha256" / artifact.digest[:2] / f"{artifact.digest}.sig"
    sig_file.write_bytes(bytes([sig_file.read_bytes()[0] ^ 1]) + sig_file.read_bytes()[1:])
    with pytest.raises(SignatureInvalid):
        store.read_verified(artifact.digest, public_key=signing_key.public_key())


def test_signature_is_checked_before_the_bytes(
    store: ArtifactStore, signing_key: Ed25519PrivateKey
) -> None:
    artifact = store.put_bytes(MODEL)
    (store.root / artifact.relpath).write_bytes(b"tampered")
    # Unsigned and altered: the missing signature is what stops it, before any read.
    with pytest.raises(SignatureMissing, match=artifact.digest):
        store.read_verified(artifact.digest, public_key=signing_key.public_key())
    # A good signature does not excuse altered bytes: both checks must pass.
    store.put_signature(artifact.digest, _sign(signing_key, artifact.digest))
    with pytest.raises(DigestMismatch):
        store.read_verified(artifact.digest, public_key=signing_key.public_key())


def _sign(key: Ed25519PrivateKey, digest: str) -> bytes:
    return key.sign(signing_message(digest))


def test_signature_covers_a_domain_separated_message(
    store: ArtifactStore, signing_key: Ed25519PrivateKey
) -> None:
    artifact = store.put_bytes(MODEL)
    assert signing_message(artifact.digest) == b"driftline.artifact.v1:" + artifact.digest.encode()
    # A signature over the bare digest (something else the key might sign) does not count.
    store.put_signature(artifact.digest, signing_key.sign(artifact.digest.encode()))
    with pytest.raises(SignatureInvalid):
        store.verify_signature(artifact.digest, signing_key.public_key())


def test_store_that_requires_signatures(tmp_path: Path, signing_key: Ed25519PrivateKey) -> None:
    public = signing_key.public_key()
    store = ArtifactStore(tmp_path / "a", public_key=public, require_signature=True)
    artifact = store.put_bytes(MODEL)
    with pytest.raises(SignatureMissing):
        store.read_verified(artifact.digest)
    store.sign_artifact(artifact.digest, signing_key)
    assert store.read_verified(artifact.digest) == MODEL
    keyless = ArtifactStore(tmp_path / "a", require_signature=True)
    with pytest.raises(InvalidKey, match="no public key"):
        keyless.read_verified(artifact.digest)
    assert keyless.read_verified(artifact.digest, public_key=public) == MODEL


def test_put_signature_checks_before_storing(
    store: ArtifactStore, signing_key: Ed25519PrivateKey
) -> None:
    artifact = store.put_bytes(MODEL)
    forged = Ed25519PrivateKey.generate().sign(signing_message(artifact.digest))
    with pytest.raises(SignatureInvalid):
        store.put_signature(artifact.digest, forged, public_key=signing_key.public_key())
    with pytest.raises(SignatureMissing):
        store.verify_signature(artifact.digest, signing_key.public_key())


def test_sign_refuses_missing_or_altered_artifacts(
    store: ArtifactStore, signing_key: Ed25519PrivateKey
) -> None:
    with pytest.raises(ArtifactNotFound):
        store.sign_artifact("b" * 64, signing_key)
    artifact = store.put_bytes(MODEL)
    (store.root / artifact.relpath).write_bytes(b"tampered")
    with pytest.raises(DigestMismatch):
        store.sign_artifact(artifact.digest, signing_key)


def test_bad_keys_are_named(tmp_path: Path) -> None:
    x25519 = X25519PrivateKey.generate().private_bytes(
        Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()
    )
    with pytest.raises(InvalidKey, match="X25519PrivateKey"):
        as_private_key(x25519)
    with pytest.raises(InvalidKey, match="not a PEM, base64 or raw Ed25519 public key"):
        as_public_key(b"\x00" * 31)
    with pytest.raises(InvalidKey, match="absent.pem"):
        as_public_key(tmp_path / "absent.pem")
    raw = Ed25519PrivateKey.generate().private_bytes(
        Encoding.Raw, PrivateFormat.Raw, NoEncryption()
    )
    assert isinstance(as_private_key(raw), Ed25519PrivateKey)


# --- encryption at rest -----------------------------------------------------


@pytest.fixture
def key() -> bytes:
    return base64.b64decode(generate_encryption_key())


def test_encrypted_round_trip_keeps_the_plaintext_digest(tmp_path: Path, key: bytes) -> None:
    store = ArtifactStore(tmp_path / "a", encryption_key=key)
    artifact = store.put_bytes(MODEL, metadata=_metadata())
    assert artifact.digest == sha256_hex(MODEL) and artifact.size == len(MODEL)
    stored = (store.root / artifact.relpath).read_bytes()
    assert len(stored) == len(MODEL) + 12 + 16 and MODEL[:64] not in stored
    assert store.read_verified(artifact.digest, artifact.digest) == MODEL
    sidecar = store.root / "sha256" / artifact.digest[:2] / f"{artifact.digest}.meta.json"
    assert b"training_data_fingerprint" not in sidecar.read_bytes()
    assert store.metadata(artifact.digest, expected_sha256=_metadata().sha256()) == _metadata()
    # Same key, new instance: still readable; re-put does not rewrite.
    again = ArtifactStore(tmp_path / "a", encryption_key=key)
    assert again.put_bytes(MODEL) == artifact
    assert (store.root / artifact.relpath).read_bytes() == stored


def test_encrypted_put_file(tmp_path: Path, key: bytes) -> None:
    source = tmp_path / "model.onnx"
    source.write_bytes(MODEL)
    store = ArtifactStore(tmp_path / "a", encryption_key=key)
    artifact = store.put_file(source)
    assert artifact.digest == sha256_hex(MODEL)
    assert store.read_verified(artifact.relpath) == MODEL


def test_wrong_key_names_the_artifact(tmp_path: Path, key: bytes) -> None:
    artifact = ArtifactStore(tmp_path / "a", encryption_key=key).put_bytes(MODEL)
    wrong = ArtifactStore(tmp_path / "a", encryption_key=bytes(32))
    with pytest.raises(DecryptionFailed, match="wrong encryption key") as err:
        wrong.read_verified(artifact.digest)
    assert artifact.digest in str(err.value) and artifact.relpath in str(err.value)
    # A plaintext store sees ciphertext that does not hash to the digest.
    with pytest.raises(DigestMismatch):
        ArtifactStore(tmp_path / "a").read_verified(artifact.digest)


def test_altered_ciphertext_is_refused(tmp_path: Path, key: bytes) -> None:
    store = ArtifactStore(tmp_path / "a", encryption_key=key)
    artifact = store.put_bytes(MODEL)
    path = store.root / artifact.relpath
    blob = bytearray(path.read_bytes())
    blob[40] ^= 0x01
    path.write_bytes(bytes(blob))
    with pytest.raises(DecryptionFailed, match=artifact.digest):
        store.read_verified(artifact.digest)
    store.put_bytes(MODEL)  # re-put repairs it
    assert store.read_verified(artifact.digest) == MODEL


def test_load_encryption_key(tmp_path: Path, key: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    text = base64.b64encode(key).decode()
    monkeypatch.setenv("DRIFTLINE_ARTIFACT_KEY", text)
    assert load_encryption_key() == key
    key_file = tmp_path / "key.b64"
    key_file.write_text(text + "\n")
    assert load_encryption_key(key_file) == key
    monkeypatch.setenv("DRIFTLINE_ARTIFACT_KEY", base64.b64encode(b"short").decode())
    with pytest.raises(InvalidKey, match=r"DRIFTLINE_ARTIFACT_KEY decodes to 5 bytes"):
        load_encryption_key()
    monkeypatch.setenv("DRIFTLINE_ARTIFACT_KEY", "not base64!!")
    with pytest.raises(InvalidKey, match="not valid base64") as err:
        load_encryption_key()
    assert "not base64!!" not in str(err.value)  # never echo key material
    monkeypatch.delenv("DRIFTLINE_ARTIFACT_KEY")
    with pytest.raises(InvalidKey, match=r"set \$DRIFTLINE_ARTIFACT_KEY"):
        load_encryption_key()
    assert load_encryption_key(required=False) is None
    with pytest.raises(InvalidKey, match="missing.b64"):
        load_encryption_key(tmp_path / "missing.b64")


def test_encryption_key_must_be_32_bytes(tmp_path: Path) -> None:
    with pytest.raises(InvalidKey, match="32 bytes"):
        ArtifactStore(tmp_path, encryption_key=b"k" * 16)


# --- regions ----------------------------------------------------------------


def test_store_outside_the_allowed_regions_refuses_writes(
    tmp_path: Path, signing_key: Ed25519PrivateKey
) -> None:
    allowed = frozenset({"eu-west-1", "eu-central-1"})
    store = ArtifactStore(tmp_path / "us", region="us-east-1", allowed_regions=allowed)
    with pytest.raises(RegionNotAllowed) as err:
        store.put_bytes(MODEL)
    message = str(err.value)
    assert "'us-east-1'" in message and "['eu-central-1', 'eu-west-1']" in message
    source = tmp_path / "model.onnx"
    source.write_bytes(MODEL)
    with pytest.raises(RegionNotAllowed):
        store.put_file(source)
    with pytest.raises(RegionNotAllowed):
        store.sign_artifact(sha256_hex(MODEL), signing_key)
    assert not store.root.exists()  # nothing was written
    unknown = ArtifactStore(tmp_path / "x", allowed_regions=allowed)
    with pytest.raises(RegionNotAllowed, match="None"):
        unknown.put_bytes(MODEL)


def test_store_inside_the_allowed_regions(tmp_path: Path) -> None:
    store = ArtifactStore(
        tmp_path / "eu", region="eu-west-1", allowed_regions=frozenset({"eu-west-1"})
    )
    assert store.read_verified(store.put_bytes(MODEL).digest) == MODEL
    anywhere = ArtifactStore(tmp_path / "any", region="ap-south-1")
    assert anywhere.put_bytes(MODEL).digest == sha256_hex(MODEL)


def test_allowed_regions_must_be_a_set(tmp_path: Path) -> None:
    with pytest.raises(LineageError, match="set of region names"):
        ArtifactStore(tmp_path, region="eu-west-1", allowed_regions="eu-west-1")
