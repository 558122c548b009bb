"""A tiny container for nested snapshots: named byte blobs behind a JSON header.

Monitors hold several detectors, each with its own opaque snapshot; this packs
them (and a JSON-able ``meta``) into one ``bytes`` and back, checking a magic
tag so a snapshot of something else is refused rather than misread.

>>> blob = pack("demo", {"a": b"xy", "b": b""}, meta={"n": 3})
>>> unpack("demo", blob)
({'a': b'xy', 'b': b''}, {'n': 3})
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from typing import Any

from driftline.drift.exceptions import SnapshotError

_MAGIC = b"DLPK1"
_LENGTH = struct.Struct(">I")


def pack(kind: str, parts: Mapping[str, bytes], meta: Mapping[str, Any] | None = None) -> bytes:
    names = list(parts)
    header = json.dumps(
        {"kind": kind, "names": names, "sizes": [len(parts[n]) for n in names], "meta": meta or {}},
        separators=(",", ":"),
    ).encode()
    return b"".join([_MAGIC, _LENGTH.pack(len(header)), header, *(parts[n] for n in names)])


def unpack(kind: str | tuple[str, ...], blob: bytes) -> tuple[dict[str, bytes], dict[str, Any]]:
    """The parts and meta of a :func:`pack` blob of ``kind`` (or of any of several kinds:
    a format's versions); SnapshotError otherwise."""
    kinds = (kind,) if isinstance(kind, str) else kind
    kind = " or ".join(kinds)
    if not isinstance(blob, bytes | bytearray | memoryview) or bytes(blob[:5]) != _MAGIC:
        raise SnapshotError(f"not a driftline {kind} snapshot (bad magic)")
    blob = bytes(blob)
    try:
        (length,) = _LENGTH.unpack_from(blob, 5)
        header = json.loads(blob[9 : 9 + length])
        offset = 9 + length
        parts = {}
        for name, size in zip(header["names"], header["sizes"], strict=True):
            parts[name] = blob[offset : offset + size]
            offset += size
    except (struct.error, ValueError, KeyError, TypeError) as exc:
        raise SnapshotError(f"corrupt {kind} snapshot: {exc}") from exc
    if header.get("kind") not in kinds:
        raise SnapshotError(f"expected a {kind} snapshot, got one of {header.get('kind')!r}")
    if offset != len(blob):
        raise SnapshotError(f"corrupt {kind} snapshot: {len(blob) - offset} trailing bytes")
    return parts, header["meta"]
