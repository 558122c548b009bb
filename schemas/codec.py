"""Hot-path Avro encode/decode in the Confluent wire format, with fastavro.

Schemas are parsed once, when the codec is built. Timestamps stay plain int
epoch milliseconds on both sides: the ``logicalType`` annotations are kept in
the ``.avsc`` files (and in the registry) but stripped from the parsed copies,
because converting every timestamp to a ``datetime`` and back costs more than
the rest of the decode and no consumer wants one.

A payload written with an older version of a record is read with the latest
version as the reader schema, so consumers always see the current field set.

Bulk and fast paths: each latest version also gets a reader and a writer
generated from its parsed schema (:mod:`driftline.schemas.specialise`) that run in front
of fastavro. Whatever they do not handle exactly as fastavro would (a corrupt
payload, a wrongly typed field, an old version) goes to fastavro, so the bytes
written and the errors raised are fastavro's. ``decode_many`` decodes a batch
and returns each message's record or DecodeError; ``encode_many`` writes a
batch into one buffer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from io import BytesIO
from typing import Any

from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.validation import ValidationError, validate

from driftline.schemas import catalog, wire
from driftline.schemas.catalog import SchemaEntry
from driftline.schemas.exceptions import (
    DecodeError,
    InvalidRecord,
    SchemaError,
    UndecodablePayload,
    UnknownRecordName,
    UnknownSchemaId,
    WrongSchema,
)
from driftline.schemas.specialise import Reader, Writer, compile_reader, compile_writer

# Fetches the writer schema of an id this codec does not know (from a registry).
# It raises UnknownSchemaId when the id does not exist, SchemaRegistryError when
# the registry cannot be asked.
SchemaFetcher = Callable[[int], Mapping[str, Any]]

_MAX_MISSING_IDS = 1024
_HEADER_SIZE = wire.HEADER_SIZE


def _strip_logical_types(schema: Any) -> Any:
    if isinstance(schema, dict):
        return {k: _strip_logical_types(v) for k, v in schema.items() if k != "logicalType"}
    if isinstance(schema, list):
        return [_strip_logical_types(v) for v in schema]
    return schema


def _parse(schema: Mapping[str, Any]) -> dict[str, Any]:
    # A fresh named-schema table per parse: two versions of one record share a name.
    return parse_schema(_strip_logical_types(dict(schema)), named_schemas={})


def _short_name(schema: Mapping[str, Any]) -> str:
    return str(schema.get("name", "")).rsplit(".", 1)[-1]


@dataclass(frozen=True, slots=True)
class _Writer:
    name: str
    schema_id: int
    header: bytes
    parsed: dict[str, Any]
    fast: Writer | None = None  # specialised writer; None: fastavro only


@dataclass(frozen=True, slots=True)
class _Reader:
    name: str
    schema_id: int
    writer: dict[str, Any]
    reader: dict[str, Any] | None  # None: written with the latest version, no resolution
    fast: Reader | None = None  # specialised reader; None: fastavro only


class SchemaCodec:
    """Encode and decode driftline records as Confluent-framed Avro.

    ``SchemaCodec(ids)`` uses the catalog's schemas with ``ids`` (``{name:
    {version: id}}``, the pinned map when None); ``fetch`` looks up ids this
    codec was not built with, e.g. versions registered by newer producers.
    ``specialise=False`` leaves every record to fastavro alone (benchmarks and
    equivalence tests compare the two).
    """

    def __init__(
        self,
        ids: Mapping[str, Mapping[int, int]] | None = None,
        *,
        fetch: SchemaFetcher | None = None,
        specialise: bool = True,
    ) -> None:
        self._init(catalog.entries(ids), fetch, specialise)

    @classmethod
    def from_entries(
        cls,
        entries: Iterable[SchemaEntry],
        *,
        fetch: SchemaFetcher | None = None,
        specialise: bool = True,
    ) -> SchemaCodec:
        """Build a codec over explicit schema versions (tools, tests, synthetic versions)."""
        codec = cls.__new__(cls)
        codec._init(list(entries), fetch, specialise)
        return codec

    def _init(
        self, entries: list[SchemaEntry], fetch: SchemaFetcher | None, specialise: bool
    ) -> None:
        seen: dict[int, SchemaEntry] = {}
        for entry in entries:
            other = seen.setdefault(entry.schema_id, entry)
            if other is not entry:
                raise SchemaError(
                    f"schema id {entry.schema_id} is given to both {other.name} v{other.version} "
                    f"and {entry.name} v{entry.version}: every version needs its own id"
                )
        latest: dict[str, SchemaEntry] = {}
        for entry in entries:
            if entry.name not in latest or entry.version > latest[entry.name].version:
                latest[entry.name] = entry

        self._writers: dict[str, _Writer] = {}
        for name, e in latest.items():
            parsed = _parse(e.schema)
            fast = compile_writer(parsed) if specialise else None
            self._writers[name] = _Writer(name, e.schema_id, wire.header(e.schema_id), parsed, fast)
        self._readers: dict[int, _Reader] = {}
        for entry in entries:
            writer = self._writers[entry.name]
            if entry is latest[entry.name]:
                fast_reader = compile_reader(writer.parsed) if specialise else None
                self._readers[entry.schema_id] = _Reader(
                    entry.name, entry.schema_id, writer.parsed, None, fast_reader
                )
            else:
                self._readers[entry.schema_id] = _Reader(
                    entry.name, entry.schema_id, _parse(entry.schema), writer.parsed
                )
        self._fast_readers = {
            wire.header(schema_id): reader
            for schema_id, reader in self._readers.items()
            if reader.fast is not None
        }
        self._fetch = fetch
        self._missing: dict[int, str] = {}  # id -> why it is unknown

    # -- encoding -----------------------------------------------------------

    def schema_id(self, name: str) -> int:
        """Return the id of the latest version of ``name``, the one ``encode`` writes."""
        return self._writer(name).schema_id

    def encode(self, name: str, record: Mapping[str, Any]) -> bytes:
        """Encode ``record`` as the latest version of ``name``, framed with its schema id."""
        writer = self._writer(name)
        return self._encode(writer, record, None)

    def encode_many(self, name: str, records: Iterable[Mapping[str, Any]]) -> list[bytes]:
        """Encode each of ``records`` as ``name``; one schema lookup for the whole batch.

        The batch is written into one buffer and cut into one value per record;
        InvalidRecord names the index of the first bad record.
        """
        writer = self._writer(name)
        fast = writer.fast
        if fast is None:
            return [self._encode(writer, record, i) for i, record in enumerate(records)]
        header = writer.header
        out = bytearray()
        ends = []
        for i, record in enumerate(records):
            start = len(out)
            out += header
            try:
                fast(record, out)
            except Exception:  # not a plain record: fastavro writes it or says why not
                del out[start:]
                out += self._encode_fastavro(writer, record, i)
            ends.append(len(out))
        data = bytes(out)
        return [data[a:b] for a, b in zip([0, *ends], ends, strict=False)]

    def _encode(self, writer: _Writer, record: Mapping[str, Any], index: int | None) -> bytes:
        fast = writer.fast
        if fast is not None:
            out = bytearray(writer.header)
            try:
                fast(record, out)
            except Exception:  # not a plain record: fastavro writes it or says why not
                pass
            else:
                return bytes(out)
        return self._encode_fastavro(writer, record, index)

    def _encode_fastavro(
        self, writer: _Writer, record: Mapping[str, Any], index: int | None
    ) -> bytes:
        buffer = BytesIO()
        buffer.write(writer.header)
        try:
            # strict_allow_default: an unknown key (a typo) is an error, not silently dropped.
            schemaless_writer(buffer, writer.parsed, record, strict_allow_default=True)
        except Exception as exc:  # fastavro raises ValueError/TypeError/OverflowError/...
            raise _invalid(writer, record, index, exc) from exc
        return buffer.getvalue()

    def _writer(self, name: str) -> _Writer:
        try:
            return self._writers[name]
        except KeyError:
            raise UnknownRecordName(
                f"unknown record name {name!r}: expected one of {', '.join(self._writers)}"
            ) from None

    # -- decoding -----------------------------------------------------------

    def decode(self, data: bytes | bytearray | memoryview) -> tuple[str, dict[str, Any]]:
        """Decode a framed payload into ``(record name, record)`` at the latest version."""
        if type(data) is bytes:
            # Looked up by the whole 5-byte header: magic byte and schema id at once.
            reader = self._fast_readers.get(data[:_HEADER_SIZE])
            if reader is not None:
                try:
                    record, end = reader.fast(data, _HEADER_SIZE)
                except Exception:  # corrupt or unusual: fastavro's verdict below
                    pass
                else:
                    if end == len(data):
                        return reader.name, record
                return reader.name, self._read_fastavro(reader, data)
        reader = self._reader(data)
        return reader.name, self._read(reader, data)

    def decode_as(self, name: str, data: bytes | bytearray | memoryview) -> dict[str, Any]:
        """Decode a payload that must be a ``name`` record; raise WrongSchema otherwise."""
        self._writer(name)  # an unknown name is a programming error, not bad data
        reader = self._reader(data)
        if reader.name != name:
            raise WrongSchema(
                f"payload has schema id {reader.schema_id}, a {reader.name}, where a {name} "
                "was expected: the producer wrote to the wrong topic or used the wrong schema"
            )
        return self._read(reader, data)

    def decode_many(
        self, values: Iterable[bytes | bytearray | memoryview | None]
    ) -> list[tuple[str, dict[str, Any]] | DecodeError]:
        """Decode a batch: for each value, ``(record name, record)`` or the DecodeError.

        A DecodeError is returned in the message's place, not raised, so one bad
        message does not stop the batch; it is the exception ``decode`` would
        raise for that value. Other errors (the schema registry unreachable
        while looking up a new id) are raised, as by ``decode``.
        """
        results: list[tuple[str, dict[str, Any]] | DecodeError] = []
        append = results.append
        decode = self.decode
        for data in values:
            try:
                append(decode(data))
            except DecodeError as exc:
                append(exc)
        return results

    def _reader(self, data: bytes | bytearray | memoryview) -> _Reader:
        schema_id = wire.schema_id_of(data)
        reader = self._readers.get(schema_id)
        return reader if reader is not None else self._resolve(schema_id)

    def _read(self, reader: _Reader, data: bytes | bytearray | memoryview) -> dict[str, Any]:
        fast = reader.fast
        if fast is not None:
            try:
                record, end = fast(data if type(data) is bytes else bytes(data), _HEADER_SIZE)
            except Exception:  # corrupt or unusual: fastavro's verdict below
                pass
            else:
                if end == len(data):
                    return record
        return self._read_fastavro(reader, data)

    def _read_fastavro(
        self, reader: _Reader, data: bytes | bytearray | memoryview
    ) -> dict[str, Any]:
        stream = BytesIO(data)
        stream.seek(wire.HEADER_SIZE)
        try:
            record = schemaless_reader(stream, reader.writer, reader.reader)
        except Exception as exc:  # corrupt input surfaces as EOFError, ValueError, ...
            raise UndecodablePayload(
                f"cannot decode {len(data)}-byte payload as {reader.name} (schema id "
                f"{reader.schema_id}): {type(exc).__name__}: {exc}; the body is corrupt or "
                "was not written with that schema"
            ) from exc
        trailing = len(data) - stream.tell()
        if trailing:
            raise UndecodablePayload(
                f"payload decoded as {reader.name} (schema id {reader.schema_id}) has "
                f"{trailing} trailing bytes: it was not written with that schema"
            )
        return record

    def _resolve(self, schema_id: int) -> _Reader:
        if schema_id in self._missing:
            raise UnknownSchemaId(self._missing[schema_id])
        if self._fetch is None:
            raise UnknownSchemaId(
                f"schema id {schema_id} is not one of this codec's ids "
                f"({sorted(self._readers)}): the producer used a schema version this worker "
                "does not know; upgrade driftline or run with a schema registry"
            )
        try:
            schema = self._fetch(schema_id)
        except UnknownSchemaId as exc:
            # Remembered, so a stream of garbage ids costs one registry call each.
            if len(self._missing) >= _MAX_MISSING_IDS:
                self._missing.clear()  # bounded: garbage ids must not grow memory
            self._missing[schema_id] = str(exc)
            raise
        name = _short_name(schema)
        writer = self._writers.get(name)
        if schema.get("type") != "record" or writer is None:
            raise UnknownSchemaId(
                f"schema id {schema_id} is {schema.get('namespace', '')}.{schema.get('name')}, "
                f"not a driftline record ({', '.join(self._writers)})"
            )
        try:
            parsed = _parse(schema)
        except Exception as exc:  # fastavro's SchemaParseException and friends
            raise UnknownSchemaId(
                f"schema id {schema_id} ({name}) from the registry does not parse: {exc}"
            ) from exc
        reader = _Reader(name, schema_id, parsed, writer.parsed)
        self._readers[schema_id] = reader  # one dict store: safe without a lock
        return reader


def _invalid(writer: _Writer, record: Any, index: int | None, exc: Exception) -> InvalidRecord:
    where = f"{writer.name} record" if index is None else f"{writer.name} record #{index}"
    if not isinstance(record, Mapping):
        detail = f"expected a dict of fields, got {type(record).__name__}"
    else:
        detail = f"{type(exc).__name__}: {exc}"
        try:
            # Only on failure: validation names the offending field, but is slow.
            validate(record, writer.parsed, raise_errors=True)
        except ValidationError as error:
            detail = "; ".join(_explain(e) for e in error.errors) or detail
        except Exception:  # keep fastavro's own message
            pass
    file = f"schemas/avro/{catalog.snake_name(writer.name)}.avsc"
    return InvalidRecord(
        f"cannot encode {where}: {detail}. Make it match {file} "
        "(timestamps are int epoch milliseconds, optional fields may be left out)"
    )


def _explain(error: Any) -> str:
    field = str(getattr(error, "field", "") or "").removeprefix(f"{catalog.NAMESPACE}.")
    datum = getattr(error, "datum", None)
    schema = getattr(error, "schema", None)
    expected = schema.get("type") if isinstance(schema, dict) else schema
    if datum is None:
        return f"{field} is missing or None, expected {expected}"
    return f"{field} is {datum!r:.60} ({type(datum).__name__}), expected {expected}"


@cache
def default_codec() -> SchemaCodec:
    """Return the shared codec over the pinned schema ids (built once per process)."""
    return SchemaCodec()
