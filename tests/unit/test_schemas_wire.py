"""Confluent wire framing and the decode errors a worker routes to the dead-letter topic."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from driftline.schemas import (
    DecodeError,
    SchemaError,
    UndecodablePayload,
    UnknownMagicByte,
    UnknownSchemaId,
    WrongSchema,
    default_codec,
    wire,
)
from driftline.schemas.testing import sample


@given(schema_id=st.integers(0, 2**31 - 1), body=st.binary(max_size=64))
def test_frame_split_round_trip(schema_id, body):
    data = wire.frame(schema_id, body)
    assert data[0] == 0 and len(data) == len(body) + 5
    got_id, got_body = wire.split(data)
    assert got_id == schema_id
    assert bytes(got_body) == body


def test_header_is_big_endian():
    assert wire.frame(0x01020304, b"x") == b"\x00\x01\x02\x03\x04x"


@pytest.mark.parametrize("schema_id", [-1, 2**31])
def test_out_of_range_id_is_rejected(schema_id):
    with pytest.raises(SchemaError, match=str(schema_id)):
        wire.header(schema_id)


def test_reason_codes_match_the_dead_letter_contract():
    assert UndecodablePayload.reason == "undecodable"
    assert UnknownMagicByte.reason == "unknown_magic_byte"
    assert UnknownSchemaId.reason == "unknown_schema_id"
    assert WrongSchema.reason == "wrong_schema"
    for cls in (UndecodablePayload, UnknownMagicByte, UnknownSchemaId, WrongSchema):
        assert issubclass(cls, DecodeError)


@pytest.mark.parametrize("data", [b"", b"\x00", b"\x00\x00", b"\x00\x00\x00", b"\x00\x00\x00\x01"])
def test_too_short_payload_is_undecodable(data):
    with pytest.raises(UndecodablePayload, match=f"{len(data)} bytes is too short") as info:
        wire.split(data)
    assert info.value.reason == "undecodable"
    with pytest.raises(UndecodablePayload):
        default_codec().decode(data)


@pytest.mark.parametrize("data", [b'{"a": 1}', b"\x01\x00\x00\x00\x01\x02", bytearray(b"\xff" * 9)])
def test_bad_magic_byte(data):
    with pytest.raises(UnknownMagicByte, match=f"0x{data[0]:02x}") as info:
        default_codec().decode(data)
    assert info.value.reason == "unknown_magic_byte"


def test_unknown_schema_id():
    with pytest.raises(UnknownSchemaId, match="schema id 999999") as info:
        default_codec().decode(wire.frame(999_999, b"\x02a"))
    assert info.value.reason == "unknown_schema_id"


def test_wrong_schema_names_both_records():
    codec = default_codec()
    data = codec.encode("Outcome", sample("Outcome"))
    with pytest.raises(WrongSchema, match="Outcome.*FeatureRecord") as info:
        codec.decode_as("FeatureRecord", data)
    assert info.value.reason == "wrong_schema"


@pytest.mark.parametrize(
    "body",
    [
        b"",  # nothing after the header
        b"\x02",  # a string of length 1, then end of data
        b"\x80\x80\x80",  # unterminated varint
        b"\x04\xff\xfe",  # invalid UTF-8 in a string
    ],
)
def test_garbage_body_is_undecodable(body):
    codec = default_codec()
    with pytest.raises(UndecodablePayload, match="Outcome") as info:
        codec.decode(wire.frame(codec.schema_id("Outcome"), body))
    assert info.value.reason == "undecodable"


def test_trailing_bytes_are_undecodable():
    codec = default_codec()
    data = codec.encode("Outcome", sample("Outcome")) + b"junk"
    with pytest.raises(UndecodablePayload, match="4 trailing bytes"):
        codec.decode(data)


@given(name=st.sampled_from(["FeatureRecord", "Outcome", "DeadLetter"]), body=st.binary())
def test_random_bodies_decode_or_raise_undecodable(name, body):
    codec = default_codec()
    try:
        decoded_name, _ = codec.decode(wire.frame(codec.schema_id(name), body))
    except UndecodablePayload:
        return
    assert decoded_name == name


def test_decode_accepts_memoryview_and_bytearray():
    codec = default_codec()
    data = codec.encode("Outcome", sample("Outcome"))
    assert codec.decode(memoryview(data)) == codec.decode(bytearray(data)) == codec.decode(data)
