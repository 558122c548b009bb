"""Errors raised by the schemas package.

Decode failures derive from :class:`DecodeError` and carry ``reason``, the
DeadLetter reason code, so a worker can route any of them with one handler::

    except DecodeError as exc:
        dead_letter(reason=exc.reason, detail=str(exc), raw=value)
"""

from __future__ import annotations

from typing import ClassVar

from driftline.core.errors import DriftlineError


class SchemaError(DriftlineError):
    """Base class for schema, encoding and decoding errors."""


class UnknownRecordName(SchemaError):
    """A record name that is not in the catalog was asked for (a programming error)."""


class InvalidRecord(SchemaError):
    """A record does not match its schema and cannot be encoded."""


class IncompatibleSchema(SchemaError):
    """A new schema version cannot read data written with the previous one."""


class SchemaRegistryError(SchemaError):
    """The schema registry could not be reached or refused a request."""


class DecodeError(SchemaError):
    """A payload cannot be decoded; the message belongs on the dead-letter topic."""

    reason: ClassVar[str] = "undecodable"


class UndecodablePayload(DecodeError):
    """The payload is too short, truncated or its Avro body is corrupt."""

    reason: ClassVar[str] = "undecodable"


class NullValue(DecodeError):
    """The message has no value at all (a tombstone): there is nothing to decode."""

    reason: ClassVar[str] = "null_value"


class UnknownMagicByte(DecodeError):
    """The payload does not start with the Confluent wire format's magic byte 0."""

    reason: ClassVar[str] = "unknown_magic_byte"


class UnknownSchemaId(DecodeError):
    """The payload's schema id is neither pinned nor known to the registry."""

    reason: ClassVar[str] = "unknown_schema_id"


class WrongSchema(DecodeError):
    """The payload's schema id belongs to a different record than the one expected."""

    reason: ClassVar[str] = "wrong_schema"
