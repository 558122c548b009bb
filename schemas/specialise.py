"""Schema-specialised Avro readers and writers, generated from a parsed schema.

Long on purpose: one code generator, whose reader and writer share the walk over a schema's
types and the runtime helpers the generated code calls.

fastavro interprets the schema for every datum: each field costs a dispatch on
its type name, an options lookup and, when reading, one ``read`` call on a file
object per primitive. For the hot records that is most of a decode or encode.
This module turns a parsed (fastavro) schema into the source of one reader and
one writer function with the schema's walk unrolled, compiled once per schema
when the codec is built. Nothing in here names a driftline field: the code is
derived from whatever parsed schema it is given.

They sit *in front of* fastavro, which stays the authority:

* ``writer(record, out)`` appends the record's Avro body to the bytearray
  ``out``. When it returns, what it appended is byte for byte what
  ``fastavro.schemaless_writer(..., strict_allow_default=True)`` writes. For
  anything it does not handle exactly as fastavro does (a type other than the
  plain one, a missing or unknown field, an integer out of range, union tuple
  notation, ...) it raises, leaving junk after the record's start in ``out``;
  the caller truncates and asks fastavro, which writes the record or raises
  its own error.
* ``reader(data, pos)`` reads one body from the bytes ``data`` at ``pos`` and
  returns ``(record, end)``. When it returns, fastavro's ``schemaless_reader``
  would return an equal record and stop at ``end``. It raises on anything
  unusual (truncation, bad UTF-8, negative lengths or block counts, union or
  enum indexes out of range, varints past 64 bits), and the caller lets
  fastavro give its verdict, so corrupt payloads fail with fastavro's messages.

``compile_writer`` and ``compile_reader`` return None for a schema they do not
cover (logical types left in it, recursive named types, ``error`` types); the
codec then uses fastavro alone. Reading an old version through the latest
reader schema (resolution) is always left to fastavro.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping
from io import BytesIO
from typing import Any

Reader = Callable[[bytes, int], tuple[Any, int]]
Writer = Callable[[Any, bytearray], None]

_PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})
_INT32 = (-(2**31), 2**31 - 1)
_INT64 = (-(2**63), 2**63 - 1)

# A union branch fastavro could pick for a value of each plain Python type: the
# branches whose validator accepts such a value (fastavro.validation). The
# specialised writer picks a branch only when exactly one could take the value.
_UNION_CANDIDATES: dict[str, frozenset[str]] = {
    "NoneType": frozenset({"null"}),
    "bool": frozenset({"boolean"}),
    "int": frozenset({"int", "long", "float", "double"}),
    "float": frozenset({"float", "double"}),
    "str": frozenset({"string", "enum"}),
    "bytes": frozenset({"bytes", "fixed"}),
    "list": frozenset({"array"}),
    "dict": frozenset({"record", "map"}),
}


class Unsupported(Exception):
    """The schema uses something the generator does not cover; use fastavro."""


class Fallback(Exception):
    """Raised by generated code for a datum or payload it leaves to fastavro."""


# -- runtime helpers the generated code calls ----------------------------------

_SMALL = [bytes([i]) for i in range(128)]
_pack_f = struct.Struct("<f").pack
_pack_d = struct.Struct("<d").pack
_unpack_f = struct.Struct("<f").unpack_from
_unpack_d = struct.Struct("<d").unpack_from
_ARRAYS: dict[tuple[str, int], struct.Struct] = {}
_CACHED_ARRAY = 1024  # longer arrays get a throwaway Struct: garbage counts must not grow memory


# Bound pack/unpack of n floats or doubles for short arrays, looked up by length.
_SHORT = 64
_PACK = {c: [struct.Struct(f"<{n}{c}").pack for n in range(_SHORT)] for c in "fd"}
_UNPACK = {c: [struct.Struct(f"<{n}{c}").unpack_from for n in range(_SHORT)] for c in "fd"}


def _array_struct(code: str, n: int) -> struct.Struct:
    key = (code, n)
    found = _ARRAYS.get(key)
    if found is None:
        found = struct.Struct(f"<{n}{code}")
        if n <= _CACHED_ARRAY:
            _ARRAYS[key] = found
    return found


def _varint(n: int) -> bytes:
    """The Avro varint of an already zig-zagged ``n`` (0 <= n < 2**64)."""
    if n < 0x80:
        return _SMALL[n]
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _zigzag(value: int) -> bytes:
    """The Avro encoding of a long ``value`` in the int64 range."""
    return _varint((value << 1) ^ (value >> 63))


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:  # noqa: PLR0911
    """The raw (still zig-zagged) varint at ``pos`` and the position after it (unrolled)."""
    b = data[pos]
    n = b & 0x7F
    if b < 0x80:
        return n, pos + 1
    b = data[pos + 1]
    n |= (b & 0x7F) << 7
    if b < 0x80:
        return n, pos + 2
    b = data[pos + 2]
    n |= (b & 0x7F) << 14
    if b < 0x80:
        return n, pos + 3
    b = data[pos + 3]
    n |= (b & 0x7F) << 21
    if b < 0x80:
        return n, pos + 4
    b = data[pos + 4]
    n |= (b & 0x7F) << 28
    if b < 0x80:
        return n, pos + 5
    b = data[pos + 5]
    n |= (b & 0x7F) << 35
    if b < 0x80:
        return n, pos + 6
    b = data[pos + 6]
    n |= (b & 0x7F) << 42
    if b < 0x80:
        return n, pos + 7
    b = data[pos + 7]
    n |= (b & 0x7F) << 49
    if b < 0x80:
        return n, pos + 8
    b = data[pos + 8]
    n |= (b & 0x7F) << 56
    if b < 0x80:
        return n, pos + 9
    b = data[pos + 9]
    # Past 64 bits (or an 11th byte) fastavro's 64-bit arithmetic wraps: its call.
    if b > 1:
        raise Fallback
    return n | (b << 63), pos + 10


def _read_length(data: bytes, pos: int) -> tuple[int, int]:
    """A string's or bytes' length at ``pos``: refused when negative."""
    n, pos = _read_varint(data, pos)
    if n & 1:
        raise Fallback
    return n >> 1, pos


def _python_long_at(data: bytes, pos: int) -> tuple[int, int]:
    n, pos = _read_varint(data, pos)
    return (n >> 1) ^ -(n & 1), pos


def _fastavro_long_at() -> Callable[[bytes, int], tuple[int, int]]:
    """A long at ``pos`` read by fastavro's own compiled ``read_long`` (faster past one byte).

    ``fastavro._read.read_long`` is internal too; checked here like the writer.
    """
    try:
        from fastavro._read import CYTHON_MODULE, read_long

        def long_at(data: bytes, pos: int) -> tuple[int, int]:
            stream = BytesIO(data)
            stream.seek(pos)
            return read_long(stream), stream.tell()

        for value in (64, -65, 2**40, -(2**63), 2**63 - 1):
            body = b"xy" + _zigzag(value) + b"z"
            if long_at(body, 2) != (value, len(body) - 1):
                return _python_long_at
        if CYTHON_MODULE:
            return long_at
    except Exception:  # noqa: S110 - any change in fastavro's internals: use Python
        pass
    return _python_long_at


def _python_write_long(out: bytearray, value: int, *_: Any) -> None:
    if not -(2**63) <= value < 2**63:
        raise OverflowError(value)
    out += _zigzag(value)


def _fastavro_write_long() -> Callable[..., None]:
    """fastavro's own compiled long writer, called as ``(out, value, "long", {}, "", {})``.

    ``fastavro._write.write_data`` is internal (but a stable ``cpdef`` for years);
    it is checked here and replaced by a Python varint writer if it changed.
    """
    try:
        from fastavro._write import CYTHON_MODULE, write_data

        probe = bytearray()
        for value in (0, -1, 63, -64, 64, 2**40, -(2**63), 2**63 - 1):
            write_data(probe, value, "long", {}, "", {})
        expected = b"".join(_zigzag(v) for v in (0, -1, 63, -64, 64, 2**40, -(2**63), 2**63 - 1))
        if CYTHON_MODULE and bytes(probe) == expected:
            return write_data
    except Exception:  # noqa: S110 - any change in fastavro's internals: use Python
        pass
    return _python_write_long


_HELPERS: dict[str, Any] = {
    "Fallback": Fallback,
    "_write_long": _fastavro_write_long(),
    "_NS": {},
    "_SMALL": _SMALL,
    "_pack_f": _pack_f,
    "_pack_d": _pack_d,
    "_unpack_f": _unpack_f,
    "_unpack_d": _unpack_d,
    "_array_struct": _array_struct,
    "_PACK_f": _PACK["f"],
    "_PACK_d": _PACK["d"],
    "_UNPACK_f": _UNPACK["f"],
    "_UNPACK_d": _UNPACK["d"],
    "_varint": _varint,
    "_read_varint": _read_varint,
    "_read_length": _read_length,
    "_long_at": _fastavro_long_at(),
}


# -- the generator --------------------------------------------------------------


class _Source:
    def __init__(self, named: Mapping[str, Any]) -> None:
        self.lines: list[str] = []
        self.names: dict[str, Any] = dict(_HELPERS)
        self.named = named
        self.stack: list[str] = []
        self._count = 0

    def tmp(self, prefix: str) -> str:
        self._count += 1
        return f"{prefix}{self._count}"

    def const(self, value: Any) -> str:
        name = self.tmp("_k")
        self.names[name] = value
        return name

    def emit(self, depth: int, line: str) -> None:
        self.lines.append("    " * depth + line)

    def kind(self, schema: Any) -> tuple[str, Any]:
        """``(type name, schema)`` with named references looked up."""
        if isinstance(schema, list):
            return "union", schema
        if isinstance(schema, str):
            if schema in _PRIMITIVES:
                return schema, schema
            if schema in self.stack:
                raise Unsupported(f"recursive type {schema}")
            try:
                return self.kind(self.named[schema])
            except KeyError:
                raise Unsupported(f"unknown named type {schema}") from None
        if not isinstance(schema, dict):
            raise Unsupported(f"schema {schema!r}")
        if "logicalType" in schema:
            raise Unsupported(f"logical type {schema['logicalType']}")
        kind = schema.get("type")
        if isinstance(kind, (list, dict)):
            return self.kind(kind)
        if kind in _PRIMITIVES or kind in ("record", "enum", "array", "map", "fixed"):
            return kind, schema
        raise Unsupported(f"type {kind!r}")

    def compile(self, name: str, header: str) -> Callable[..., Any]:
        text = "\n".join([header, *self.lines])
        namespace = dict(self.names)
        exec(compile(text, f"<specialised {name}>", "exec"), namespace)  # noqa: S102
        function = namespace[name]
        function.source = text  # for debugging: print(codec_writer.source)
        return function


def _enter(src: _Source, schema: Any) -> Any:
    """Push a named type on the recursion stack; returns the name to pop, or None."""
    name = schema.get("name") if isinstance(schema, dict) else None
    if name:
        namespace = schema.get("namespace")
        full = name if "." in name or not namespace else f"{namespace}.{name}"
        src.stack.append(full)
        return full
    return None


# -- writer ---------------------------------------------------------------------


def compile_writer(parsed: Mapping[str, Any]) -> Writer | None:
    """A specialised writer for a parsed record schema, or None when it is not covered."""
    src = _Source(parsed.get("__named_schemas", {}))
    try:
        _write(src, parsed, "rec", 1, strict=False)
        return src.compile("write", "def write(rec, out):")
    except Unsupported:
        return None


def _write(src: _Source, schema: Any, v: str, d: int, *, strict: bool) -> None:
    """Emit code appending value ``v`` of ``schema`` to ``out``.

    ``strict``: inside a union, where fastavro first validates the value
    against each branch; only values that pass fastavro's validation may be
    written, so every check is at least as strict as its validator.
    """
    kind, schema = src.kind(schema)
    emit = src.emit
    if kind == "null":
        if strict:
            emit(d, f"if {v} is not None: raise Fallback")
        # fastavro writes nothing for a null, whatever the value.
    elif kind == "boolean":
        emit(d, f"if {v} is True: out += b'\\x01'")
        emit(d, f"elif {v} is False: out += b'\\x00'")
        emit(d, "else: raise Fallback")
    elif kind in ("int", "long"):
        emit(d, f"if type({v}) is not int: raise Fallback")
        if strict and kind == "int":  # fastavro's validator: an int fits 32 bits
            emit(d, f"if not {_INT32[0]} <= {v} <= {_INT32[1]}: raise Fallback")
        emit(d, f"if -64 <= {v} < 64: out += _SMALL[({v} << 1) ^ ({v} >> 63)]")
        # fastavro's own writer: same bytes, OverflowError past 64 bits.
        emit(d, f'else: _write_long(out, {v}, "long", _NS, "", _NS)')
    elif kind in ("float", "double"):
        if strict:
            emit(d, f"if type({v}) is not float: raise Fallback")
        emit(d, f"out += _pack_{kind[0]}({v})")
    elif kind == "string":
        if strict:
            emit(d, f"if type({v}) is not str: raise Fallback")
        _write_blob(src, f"{v}.encode()", d)
    elif kind == "bytes":
        emit(d, f"if type({v}) is not bytes: raise Fallback")
        _write_blob(src, v, d)
    elif kind == "fixed":
        emit(d, f"if type({v}) is not bytes or len({v}) != {int(schema['size'])}: raise Fallback")
        emit(d, f"out += {v}")
    elif kind == "enum":
        table = src.const({s: _zigzag(i) for i, s in enumerate(schema["symbols"])})
        emit(d, f"if type({v}) is not str: raise Fallback")
        emit(d, f"out += {table}[{v}]")
    elif kind == "array":
        _write_array(src, schema, v, d, strict=strict)
    elif kind == "map":
        _write_map(src, schema, v, d, strict=strict)
    elif kind == "union":
        _write_union(src, schema, v, d)
    elif kind == "record":
        if strict:  # fastavro picks among record branches by counting fields: leave it that
            raise Unsupported("record in a union")
        _write_record(src, schema, v, d)
    else:  # pragma: no cover - kind() returns only the kinds above
        raise Unsupported(kind)


def _write_blob(src: _Source, expr: str, d: int) -> None:
    b = src.tmp("b")
    src.emit(d, f"{b} = {expr}")
    src.emit(d, f"out += _SMALL[2 * len({b})] if len({b}) < 64 else _varint(2 * len({b}))")
    src.emit(d, f"out += {b}")


def _write_array(src: _Source, schema: Mapping[str, Any], v: str, d: int, *, strict: bool) -> None:
    emit = src.emit
    emit(d, f"if type({v}) is not list: raise Fallback")
    emit(d, f"if {v}:")
    item_kind, _ = src.kind(schema["items"])
    if item_kind in ("float", "double"):
        if strict:
            x = src.tmp("x")
            emit(d + 1, f"for {x} in {v}:")
            emit(d + 2, f"if type({x}) is not float: raise Fallback")
        # struct converts each item as fastavro's C cast does (PyFloat_AsDouble);
        # it refuses a double too large for a float, which fastavro writes as inf.
        code = item_kind[0]
        n = src.tmp("n")
        emit(d + 1, f"{n} = len({v})")
        emit(d + 1, f"if {n} < {_SHORT}:")
        emit(d + 2, f"out += _SMALL[2 * {n}]")
        emit(d + 2, f"out += _PACK_{code}[{n}](*{v})")
        emit(d + 1, "else:")
        emit(d + 2, f"out += _varint(2 * {n})")
        emit(d + 2, f"out += _array_struct({code!r}, {n}).pack(*{v})")
    else:
        emit(d + 1, f"out += _SMALL[2 * len({v})] if len({v}) < 64 else _varint(2 * len({v}))")
        x = src.tmp("x")
        emit(d + 1, f"for {x} in {v}:")
        _write(src, schema["items"], x, d + 2, strict=strict)
    emit(d, "out += b'\\x00'")


def _write_map(src: _Source, schema: Mapping[str, Any], v: str, d: int, *, strict: bool) -> None:
    emit = src.emit
    key, value = src.tmp("key"), src.tmp("val")
    emit(d, f"if type({v}) is not dict: raise Fallback")
    emit(d, f"if {v}:")
    emit(d + 1, f"out += _SMALL[2 * len({v})] if len({v}) < 64 else _varint(2 * len({v}))")
    emit(d + 1, f"for {key}, {value} in {v}.items():")
    if strict:
        emit(d + 2, f"if type({key}) is not str: raise Fallback")
    _write_blob(src, f"{key}.encode()", d + 2)
    _write(src, schema["values"], value, d + 2, strict=strict)
    emit(d, "out += b'\\x00'")


def _write_union(src: _Source, branches: list[Any], v: str, d: int) -> None:
    kinds = [src.kind(branch)[0] for branch in branches]
    emit = src.emit
    t = src.tmp("t")
    emit(d, f"{t} = type({v})")
    first = True
    for pytype, candidates in _UNION_CANDIDATES.items():
        matches = [i for i, kind in enumerate(kinds) if kind in candidates]
        if len(matches) != 1:
            continue  # none (fastavro raises) or a choice fastavro makes by validating: leave it
        index = matches[0]
        kind = kinds[index]
        if pytype == "int" and kind not in ("int", "long"):
            continue  # an int written as a float or double: rare, leave it
        if pytype == "dict" and kind == "record":
            continue
        check = f"{v} is None" if pytype == "NoneType" else f"{t} is {pytype}"
        emit(d, f"{'if' if first else 'elif'} {check}:")
        first = False
        emit(d + 1, f"out += {_zigzag(index)!r}")
        mark = len(src.lines)
        try:
            _write(src, branches[index], v, d + 1, strict=True)
        except Unsupported:  # e.g. an array of records: fastavro writes those
            del src.lines[mark:]
            emit(d + 1, "raise Fallback")
    if first:
        emit(d, "raise Fallback")
    else:
        emit(d, "else: raise Fallback")


def _write_record(src: _Source, schema: Mapping[str, Any], r: str, d: int) -> None:
    emit = src.emit
    pushed = _enter(src, schema)
    fields = schema["fields"]
    missing = src.tmp("m")
    emit(d, f"if type({r}) is not dict: raise Fallback")
    if any("default" in field for field in fields):
        emit(d, f"{missing} = 0")
    else:
        missing = "0"
    numbers: list[tuple[str, str]] = []  # a run of float/double fields, packed at once

    def flush() -> None:
        if numbers:
            packer = src.const(struct.Struct("<" + "".join(c for _, c in numbers)).pack)
            emit(d, f"out += {packer}({', '.join(v for v, _ in numbers)})")
            numbers.clear()

    for field in fields:
        name = field["name"]
        value = src.tmp("v")
        if field["type"] not in ("float", "double"):
            flush()
        if "default" in field:
            # strict_allow_default: a field with a default may be left out.
            emit(d, f"{value} = {r}.get({name!r}, Fallback)")
            emit(d, f"if {value} is Fallback:")
            emit(d + 1, f"{value} = {src.const(field['default'])}")
            emit(d + 1, f"{missing} += 1")
        else:
            emit(d, f"{value} = {r}[{name!r}]")  # KeyError: missing, fastavro says so
        if field["type"] in ("float", "double"):
            # fastavro converts a record's float field with float() first ("NaN", ints).
            emit(d, f"{value} = float({value})")
            numbers.append((value, field["type"][0]))
        else:
            _write(src, field["type"], value, d, strict=False)
    flush()
    # Every present schema field was read: any other key is one the schema lacks,
    # which strict_allow_default refuses.
    emit(d, f"if len({r}) + {missing} != {len(fields)}: raise Fallback")
    if pushed:
        src.stack.pop()


# -- reader ---------------------------------------------------------------------


def compile_reader(parsed: Mapping[str, Any]) -> Reader | None:
    """A specialised reader for a parsed record schema, or None when it is not covered."""
    src = _Source(parsed.get("__named_schemas", {}))
    try:
        _read(src, parsed, "rec", 1)
        src.emit(1, "if pos > end: raise Fallback")
        src.emit(1, "return rec, pos")
        return src.compile("read", "def read(data, pos):\n    end = len(data)")
    except Unsupported:
        return None


def _read_long(src: _Source, n: str, d: int) -> None:
    src.emit(d, f"{n} = data[pos]")
    src.emit(d, "pos += 1")
    src.emit(d, f"if {n} >= 128: {n}, pos = _read_varint(data, pos - 1)")
    src.emit(d, f"{n} = ({n} >> 1) ^ -({n} & 1)")


def _read(src: _Source, schema: Any, t: str, d: int) -> None:
    """Emit code reading one value of ``schema`` at ``pos`` into variable ``t``."""
    kind, schema = src.kind(schema)
    emit = src.emit
    if kind == "null":
        emit(d, f"{t} = None")
    elif kind == "boolean":
        emit(d, f"{t} = data[pos] != 0")
        emit(d, "pos += 1")
    elif kind in ("int", "long"):
        emit(d, f"{t} = data[pos]")
        emit(d, f"if {t} < 128:")
        emit(d + 1, f"{t} = ({t} >> 1) ^ -({t} & 1)")
        emit(d + 1, "pos += 1")
        emit(d, f"else: {t}, pos = _long_at(data, pos)")
    elif kind in ("float", "double"):
        emit(d, f"{t}, = _unpack_{kind[0]}(data, pos)")
        emit(d, f"pos += {4 if kind == 'float' else 8}")
    elif kind in ("string", "bytes"):
        n = src.tmp("n")
        # A length under 64 is one even byte; else the full varint, refused when
        # negative. No bounds check: a slice past the end leaves pos past it,
        # which the reader's last line refuses.
        emit(d, f"{n} = data[pos]")
        emit(d, f"if {n} & 0x81: {n}, pos = _read_length(data, pos)")
        emit(d, "else:")
        emit(d + 1, f"{n} >>= 1")
        emit(d + 1, "pos += 1")
        decode = ".decode()" if kind == "string" else ""
        emit(d, f"{t} = data[pos:pos + {n}]{decode}")
        emit(d, f"pos += {n}")
    elif kind == "fixed":
        size = int(schema["size"])
        emit(d, f"if {size} > end - pos: raise Fallback")
        emit(d, f"{t} = data[pos:pos + {size}]")
        emit(d, f"pos += {size}")
    elif kind == "enum":
        i = src.tmp("i")
        _read_long(src, i, d)
        emit(d, f"if {i} < 0: raise Fallback")
        emit(d, f"{t} = {src.const(tuple(schema['symbols']))}[{i}]")
    elif kind in ("array", "map"):
        _read_blocks(src, schema, kind, t, d)
    elif kind == "union":
        i = src.tmp("i")
        _read_long(src, i, d)
        for index, branch in enumerate(schema):
            emit(d, f"{'if' if index == 0 else 'elif'} {i} == {index}:")
            _read(src, branch, t, d + 1)
        emit(d, "else: raise Fallback")
    elif kind == "record":
        pushed = _enter(src, schema)
        values = []
        for field in schema["fields"]:
            value = src.tmp("v")
            _read(src, field["type"], value, d)
            values.append(f"{field['name']!r}: {value}")
        emit(d, f"{t} = {{{', '.join(values)}}}")
        if pushed:
            src.stack.pop()
    else:  # pragma: no cover
        raise Unsupported(kind)


def _read_blocks(src: _Source, schema: Mapping[str, Any], kind: str, t: str, d: int) -> None:
    emit = src.emit
    c = src.tmp("c")
    emit(d, f"{t} = []" if kind == "array" else f"{t} = {{}}")
    _read_long(src, c, d)
    emit(d, f"while {c}:")
    # Negative counts (followed by a byte size) are never written by fastavro;
    # a count past the bytes left is garbage. Both go to fastavro.
    emit(d + 1, f"if {c} < 0 or {c} > end - pos: raise Fallback")
    item_kind = src.kind(schema["items"])[0] if kind == "array" else None
    if item_kind in ("float", "double"):
        size = 4 if item_kind == "float" else 8
        code = item_kind[0]
        emit(d + 1, f"if {c} < {_SHORT}: {t} += _UNPACK_{code}[{c}](data, pos)")
        emit(d + 1, f"else: {t} += _array_struct({code!r}, {c}).unpack_from(data, pos)")
        emit(d + 1, f"pos += {size} * {c}")
    else:
        emit(d + 1, f"for _ in range({c}):")
        x = src.tmp("x")
        if kind == "array":
            _read(src, schema["items"], x, d + 2)
            emit(d + 2, f"{t}.append({x})")
        else:
            key = src.tmp("key")
            _read(src, "string", key, d + 2)
            _read(src, schema["values"], x, d + 2)
            emit(d + 2, f"{t}[{key}] = {x}")
    _read_long(src, c, d + 1)
