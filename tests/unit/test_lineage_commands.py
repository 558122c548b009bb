import dataclasses
import json
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from driftline.lineage.events import now_ms
from driftline.lineage.exceptions import InvalidRecord
from driftline.lineage.trust import keys
from driftline.lineage.trust.commands import ACTIONS, LifecycleCommand, new_command
from driftline.schemas.codec import default_codec

ALICE = keys.generate_key("alice")
BOB = keys.generate_key("bob")


def command(**changes) -> LifecycleCommand:
    base = LifecycleCommand(
        command_id="c-1",
        action="promote",
        model="fraud",
        version=2,
        actor="alice",
        arguments={"reason": "wins the A/B test", "ticket": "OPS-7"},
        issued_at=1_700_000_000_000,
    )
    return dataclasses.replace(base, **changes)


def test_new_command_is_fresh_and_unsigned() -> None:
    before = now_ms()
    cmd = new_command("promote", "fraud", 2, "alice", {"reason": "x"})
    assert uuid.UUID(cmd.command_id).version == 4
    assert before <= cmd.issued_at <= now_ms() and isinstance(cmd.issued_at, int)
    assert (cmd.key_id, cmd.signature, cmd.is_signed) == (None, None, False)
    assert not cmd.verify(ALICE.public_key)
    assert new_command("archive", "m", None, "bob").arguments == {}


def test_signed_fills_key_id_and_signature() -> None:
    cmd = command()
    signed = cmd.signed(ALICE.private_key)
    assert signed.key_id == ALICE.key_id and len(signed.signature) == 64
    assert signed.is_signed and signed.verify(ALICE.public_key)
    assert not signed.verify(BOB.public_key)
    assert cmd.signature is None  # the original is untouched
    assert dataclasses.replace(signed, key_id=None, signature=None) == cmd


def test_signing_bytes_are_canonical_and_cover_the_key_id() -> None:
    cmd = command(arguments={"z": "é", "a": "1"}, key_id="abcd")
    assert (
        cmd.signing_bytes()
        == (
            '{"action":"promote","actor":"alice","arguments":{"a":"1","z":"é"},'
            '"command_id":"c-1","issued_at":1700000000000,"key_id":"abcd","model":"fraud",'
            '"version":2}'
        ).encode()
    )
    assert dataclasses.replace(cmd, signature=b"sig").signing_bytes() == cmd.signing_bytes()


TAMPERED = {
    "command_id": "c-2",
    "action": "archive",
    "model": "fraud2",
    "version": 3,
    "actor": "bob",
    "arguments": {"reason": "wins the A/B test", "ticket": "OPS-8"},
    "issued_at": 1_700_000_000_001,
    "key_id": BOB.key_id,
}


def test_every_field_but_the_signature_is_tampered_here() -> None:
    fields = {f.name for f in dataclasses.fields(LifecycleCommand)}
    assert set(TAMPERED) == fields - {"signature"}


@pytest.mark.parametrize("field", sorted(TAMPERED))
def test_tampering_with_any_field_breaks_the_signature(field: str) -> None:
    signed = command().signed(ALICE.private_key)
    tampered = dataclasses.replace(signed, **{field: TAMPERED[field]})
    assert tampered.signing_bytes() != signed.signing_bytes()
    assert not tampered.verify(ALICE.public_key)


@pytest.mark.parametrize(
    "arguments", [{}, {"reason": "wins the A/B test"}, {"reason": "x", "ticket": "OPS-7"}]
)
def test_dropping_or_changing_arguments_breaks_the_signature(arguments: dict) -> None:
    signed = command().signed(ALICE.private_key)
    assert not dataclasses.replace(signed, arguments=arguments).verify(ALICE.public_key)


def test_version_none_and_zero_are_different_commands() -> None:
    signed = command(version=None).signed(ALICE.private_key)
    assert not dataclasses.replace(signed, version=0).verify(ALICE.public_key)


def test_tampered_signature_fails() -> None:
    signed = command().signed(ALICE.private_key)
    bad = bytes([signed.signature[0] ^ 1]) + signed.signature[1:]
    assert not dataclasses.replace(signed, signature=bad).verify(ALICE.public_key)


def test_avro_dict_round_trip() -> None:
    signed = command().signed(ALICE.private_key)
    record = signed.to_avro()
    assert list(record) == [f.name for f in dataclasses.fields(LifecycleCommand)]
    assert LifecycleCommand.from_avro(record) == signed


def test_codec_round_trip_keeps_ints_and_signature() -> None:
    codec = default_codec()
    signed = command(version=None).signed(ALICE.private_key)
    record = codec.decode_as("LifecycleCommand", codec.encode("LifecycleCommand", signed.to_avro()))
    assert isinstance(record["issued_at"], int)
    decoded = LifecycleCommand.from_avro(record)
    assert decoded == signed and decoded.verify(ALICE.public_key)


def test_from_avro_names_a_missing_field() -> None:
    record = command().to_avro()
    del record["actor"]
    with pytest.raises(InvalidRecord, match="lacks field 'actor'"):
        LifecycleCommand.from_avro(record)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"command_id": ""}, "command_id must be a non-empty string"),
        ({"actor": None}, "actor must be a non-empty string"),
        ({"version": True}, "version must be an int or None"),
        ({"version": "2"}, "version must be an int or None"),
        ({"issued_at": 1.5}, "issued_at must be int milliseconds"),
        ({"arguments": {"weight": 0.1}}, "arguments must map strings to strings"),
        ({"key_id": ""}, "key_id must be a non-empty string or None"),
        ({"signature": "abc"}, "signature must be bytes or None"),
        ({"model": "\ud800"}, "not valid Unicode"),
    ],
)
def test_invalid_commands_are_refused(changes: dict, message: str) -> None:
    with pytest.raises(InvalidRecord, match=message):
        command(**changes)


def test_arguments_are_copied() -> None:
    arguments = {"reason": "a"}
    cmd = command(arguments=arguments)
    arguments["reason"] = "b"
    assert cmd.arguments == {"reason": "a"}


# Avro strings are UTF-8, so no lone surrogates (category Cs).
unicode = st.characters(exclude_categories=("Cs",))
plain_text = st.text(alphabet=unicode, min_size=1, max_size=20)


@given(
    action=st.sampled_from(ACTIONS),
    model=plain_text,
    version=st.none() | st.integers(min_value=-(2**31), max_value=2**31 - 1),
    actor=plain_text,
    arguments=st.dictionaries(plain_text, st.text(alphabet=unicode)),
    issued_at=st.integers(min_value=0, max_value=2**62),
)
def test_any_command_signs_encodes_and_verifies(
    action, model, version, actor, arguments, issued_at
) -> None:
    cmd = LifecycleCommand("id", action, model, version, actor, arguments, issued_at)
    signed = cmd.signed(ALICE.private_key)
    codec = default_codec()
    decoded = LifecycleCommand.from_avro(
        codec.decode_as("LifecycleCommand", codec.encode("LifecycleCommand", signed.to_avro()))
    )
    assert decoded == signed and decoded.verify(ALICE.public_key)
    assert json.loads(signed.signing_bytes())["arguments"] == arguments
