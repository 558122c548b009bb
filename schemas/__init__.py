"""driftline's Avro record contracts, their Confluent schema ids and the wire codec.

Typical use::

    from driftline.schemas import default_codec

    codec = default_codec()
    value = codec.encode("Outcome", {"prediction_id": "p-1", "value": 1.0, "event_time": ms})
    name, record = codec.decode(value)
"""

from driftline.schemas.catalog import SCHEMA_NAMES
from driftline.schemas.codec import SchemaCodec, default_codec
from driftline.schemas.exceptions import (
    DecodeError,
    IncompatibleSchema,
    InvalidRecord,
    SchemaError,
    SchemaRegistryError,
    UndecodablePayload,
    UnknownMagicByte,
    UnknownRecordName,
    UnknownSchemaId,
    WrongSchema,
)
from driftline.schemas.registry import codec_from_registry

__all__ = [
    "SCHEMA_NAMES",
    "DecodeError",
    "IncompatibleSchema",
    "InvalidRecord",
    "SchemaCodec",
    "SchemaError",
    "SchemaRegistryError",
    "UndecodablePayload",
    "UnknownMagicByte",
    "UnknownRecordName",
    "UnknownSchemaId",
    "WrongSchema",
    "codec_from_registry",
    "default_codec",
]
