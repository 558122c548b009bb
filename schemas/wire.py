"""Confluent wire format: magic byte 0, a 4-byte big-endian schema id, the Avro body.

This is the framing every Confluent serializer writes, so driftline's messages
can be read by any Confluent-compatible consumer and vice versa.
"""

from __future__ import annotations

import struct

from driftline.schemas.exceptions import (
    NullValue,
    SchemaError,
    UndecodablePayload,
    UnknownMagicByte,
)

MAGIC_BYTE = 0
HEADER_SIZE = 5
MAX_SCHEMA_ID = 2**31 - 1  # the registry's ids are Java ints

_HEADER = struct.Struct(">BI")


def header(schema_id: int) -> bytes:
    """Return the 5-byte header that precedes an Avro body written with ``schema_id``."""
    if not 0 <= schema_id <= MAX_SCHEMA_ID:
        raise SchemaError(
            f"schema id {schema_id!r} is outside 0..{MAX_SCHEMA_ID}: check the id map"
        )
    return _HEADER.pack(MAGIC_BYTE, schema_id)


def frame(schema_id: int, body: bytes) -> bytes:
    """Prefix an Avro ``body`` with the wire-format header for ``schema_id``."""
    return header(schema_id) + bytes(body)


def schema_id_of(data: bytes | bytearray | memoryview | None) -> int:
    """Return the schema id of a framed payload, checking length and magic byte."""
    if data is None:
        raise NullValue(
            "the message has a null value (a tombstone): driftline topics carry no "
            "tombstones, so the producer must send a Confluent-framed Avro record"
        )
    if len(data) < HEADER_SIZE:
        raise UndecodablePayload(
            f"payload of {len(data)} bytes is too short for the Confluent wire format "
            f"(magic byte + 4-byte schema id = {HEADER_SIZE} bytes, then the Avro body): "
            "the producer must use a Confluent Avro serializer or schemas.SchemaCodec"
        )
    if data[0] != MAGIC_BYTE:
        raise UnknownMagicByte(
            f"payload starts with byte 0x{data[0]:02x}, not the Confluent magic byte 0x00: "
            "the producer wrote something other than Confluent-framed Avro (plain JSON or "
            "text?); use a Confluent Avro serializer or schemas.SchemaCodec"
        )
    return int.from_bytes(data[1:HEADER_SIZE], "big")


def split(data: bytes | bytearray | memoryview) -> tuple[int, memoryview]:
    """Split a framed payload into its schema id and a zero-copy view of the Avro body."""
    schema_id = schema_id_of(data)
    return schema_id, memoryview(data)[HEADER_SIZE:]
