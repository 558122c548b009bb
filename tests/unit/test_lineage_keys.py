import base64
import hashlib
import logging
import stat

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import given
from hypothesis import strategies as st

from driftline.lineage.exceptions import InvalidKey, LineageError
from driftline.lineage.trust import keys

ALICE = keys.generate_key("alice")
BOB = keys.generate_key("bob")


def mode_of(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_key_id_is_sha256_prefix_of_raw_public_bytes() -> None:
    raw = ALICE.public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert ALICE.key_id == hashlib.sha256(raw).hexdigest()[:16]
    assert len(ALICE.key_id) == 16 and ALICE.key_id != BOB.key_id


def test_private_key_round_trip_is_owner_only(tmp_path) -> None:
    path = keys.save_private_key(tmp_path / "alice.key", ALICE.private_key)
    assert mode_of(path) == 0o600
    loaded = keys.load_private_key(path)
    assert keys.key_id(loaded.public_key()) == ALICE.key_id
    assert keys.verify(ALICE.public_key, keys.sign(loaded, b"x"), b"x")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["alice.key"]  # no temp files left


def test_overwriting_a_readable_file_makes_it_owner_only(tmp_path) -> None:
    path = tmp_path / "alice.key"
    path.write_text("old")
    path.chmod(0o644)
    keys.save_private_key(path, ALICE.private_key)
    assert mode_of(path) == 0o600


def test_loading_a_readable_private_key_warns(tmp_path, caplog) -> None:
    path = keys.save_private_key(tmp_path / "alice.key", ALICE.private_key)
    path.chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="driftline.lineage.trust.keys"):
        keys.load_private_key(path)
    assert "chmod 600" in caplog.text


def test_encrypted_private_key(tmp_path) -> None:
    path = keys.save_private_key(tmp_path / "a.key", ALICE.private_key, password=b"s3cret")
    assert b"ENCRYPTED" in path.read_bytes()
    assert keys.key_id(keys.load_private_key(path, b"s3cret").public_key()) == ALICE.key_id
    with pytest.raises(InvalidKey, match="a.key"):
        keys.load_private_key(path, b"wrong")
    with pytest.raises(InvalidKey, match="a.key"):
        keys.load_private_key(path)


def test_save_and_load_keypair(tmp_path) -> None:
    private, public = keys.save_keypair(tmp_path / "k", ALICE)
    assert (private.name, public.name) == ("alice.key", "alice.pub")
    assert mode_of(private) == 0o600 and mode_of(public) == 0o644
    assert keys.load_keypair(tmp_path / "k", "alice").key_id == ALICE.key_id
    assert keys.key_id(keys.load_public_key(public)) == ALICE.key_id


@pytest.mark.parametrize("pem", [False, True])
def test_public_key_file_round_trip(tmp_path, pem: bool) -> None:
    path = keys.save_public_key(tmp_path / "alice.pub", ALICE.public_key, pem=pem)
    text = path.read_text()
    assert text.startswith("-----BEGIN PUBLIC KEY-----") == pem
    assert keys.key_id(keys.load_public_key(path)) == ALICE.key_id


def test_base64_and_pem_forms_have_the_same_key_id() -> None:
    b64 = keys.public_key_to_base64(ALICE.public_key)
    assert len(b64) == 44
    pem = keys.public_key_to_pem(ALICE.public_key)
    assert keys.key_id(keys.parse_public_key(b64)) == keys.key_id(keys.parse_public_key(pem))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("not base64!", "neither PEM nor base64"),
        (base64.b64encode(b"x" * 31).decode(), "decodes to 31 bytes"),
        ("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----", "not a readable PEM"),
    ],
)
def test_malformed_public_keys_are_refused(text: str, message: str) -> None:
    with pytest.raises(InvalidKey, match=message):
        keys.parse_public_key(text, source="bob's key")


def test_keys_of_another_algorithm_are_refused(tmp_path) -> None:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    pem = rsa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    with pytest.raises(InvalidKey, match="Ed25519"):
        keys.parse_public_key(pem)
    path = tmp_path / "rsa.key"
    path.write_bytes(
        rsa_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    with pytest.raises(InvalidKey, match="Ed25519"):
        keys.load_private_key(path)


def test_missing_key_files_name_the_path(tmp_path) -> None:
    with pytest.raises(InvalidKey, match="nope.key"):
        keys.load_private_key(tmp_path / "nope.key")
    with pytest.raises(InvalidKey, match="nope.pub"):
        keys.load_public_key(tmp_path / "nope.pub")


def test_verify() -> None:
    signature = keys.sign(ALICE.private_key, b"promote fraud v2")
    assert len(signature) == 64
    assert keys.verify(ALICE.public_key, signature, b"promote fraud v2")
    assert not keys.verify(ALICE.public_key, signature, b"promote fraud v3")
    assert not keys.verify(BOB.public_key, signature, b"promote fraud v2")
    assert not keys.verify(ALICE.public_key, signature[:-1], b"promote fraud v2")
    assert not keys.verify(ALICE.public_key, b"", b"promote fraud v2")


@given(data=st.binary(max_size=256), flip=st.integers(min_value=0, max_value=64 * 8 - 1))
def test_any_flipped_signature_bit_fails(data: bytes, flip: int) -> None:
    signature = bytearray(keys.sign(ALICE.private_key, data))
    assert keys.verify(ALICE.public_key, bytes(signature), data)
    signature[flip // 8] ^= 1 << (flip % 8)
    assert not keys.verify(ALICE.public_key, bytes(signature), data)


@pytest.mark.parametrize("actor", ["", "../etc/passwd", "a b", "-x", 3])
def test_actor_names_must_be_plain(actor) -> None:
    with pytest.raises(LineageError, match="actor name"):
        keys.generate_key(actor)


def test_key_ring_from_directory(tmp_path) -> None:
    keys.save_keypair(tmp_path, ALICE)
    keys.save_keypair(tmp_path, BOB)
    (tmp_path / "notes.txt").write_text("ignored")
    ring = keys.KeyRing.from_directory(tmp_path)
    assert len(ring) == 2  # private .key files are not public keys
    assert ring[ALICE.key_id].actor == "alice" and ring[BOB.key_id].actor == "bob"
    assert ring.key_ids_of("alice") == [ALICE.key_id]
    assert ring.get("0" * 16) is None


def test_key_ring_directory_errors(tmp_path) -> None:
    with pytest.raises(LineageError, match="does not exist"):
        keys.KeyRing.from_directory(tmp_path / "missing")
    with pytest.raises(LineageError, match=r"no \*\.pub files"):
        keys.KeyRing.from_directory(tmp_path)
    (tmp_path / "eve.pub").write_text("garbage")
    with pytest.raises(InvalidKey, match="eve.pub"):
        keys.KeyRing.from_directory(tmp_path)


def test_one_key_cannot_belong_to_two_actors() -> None:
    with pytest.raises(InvalidKey, match="both 'alice' and 'mallory'"):
        keys.KeyRing.from_keys({"alice": ALICE.public_key, "mallory": ALICE.public_key})


def test_key_ring_from_roles_file_with_rotation(tmp_path) -> None:
    new = keys.generate_key("alice")
    path = tmp_path / "roles.toml"
    path.write_text(
        "[actors]\n"
        f'alice = {{ roles = ["r"], key = "{keys.public_key_to_base64(ALICE.public_key)}", '
        f'keys = ["{keys.public_key_to_base64(new.public_key)}"] }}\n'
        f'bob = {{ roles = ["r"], key = """{keys.public_key_to_pem(BOB.public_key)}""" }}\n'
    )
    ring = keys.KeyRing.from_roles_file(path)
    assert ring.key_ids_of("alice") == sorted([ALICE.key_id, new.key_id])
    assert ring[BOB.key_id].actor == "bob"


@pytest.mark.parametrize(
    ("actors", "message"),
    [
        ('alice = { roles = ["r"] }', "actor 'alice' has no key"),
        ('alice = { roles = ["r"], key = 3 }', "key must be a base64 or PEM string"),
        ('alice = { roles = ["r"], keys = "abc" }', "keys must be a list"),
        ('alice = { roles = ["r"], key = "abc=" }', "actor 'alice' key decodes to 2 bytes"),
    ],
)
def test_roles_file_key_errors(tmp_path, actors: str, message: str) -> None:
    path = tmp_path / "roles.toml"
    path.write_text(f"[actors]\n{actors}\n")
    with pytest.raises(LineageError, match=message) as info:
        keys.KeyRing.from_roles_file(path)
    assert str(path) in str(info.value)


def test_roles_file_must_be_toml_with_actors(tmp_path) -> None:
    path = tmp_path / "roles.toml"
    path.write_text("[actors\n")
    with pytest.raises(LineageError, match="not valid TOML"):
        keys.KeyRing.from_roles_file(path)
    path.write_text("four_eyes = true\n")
    with pytest.raises(LineageError, match=r"no \[actors\] table"):
        keys.KeyRing.from_roles_file(path)
