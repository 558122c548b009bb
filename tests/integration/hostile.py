"""Hypothesis strategies for messages no driftline client would write, and the ledger.

Each hostile message comes with the dead-letter reasons it may end with, so a
ledger test can say not only "it was dead-lettered" but "for the right cause".
"""

from __future__ import annotations

import struct
import time
from dataclasses import dataclass, field

from confluent_kafka import Producer
from hypothesis import strategies as st

from driftline.schemas import default_codec

CODEC = default_codec()
DECODE_REASONS = {"undecodable", "unknown_magic_byte", "unknown_schema_id", "wrong_schema"}


@dataclass(frozen=True)
class Hostile:
    kind: str
    key: bytes | None
    value: bytes | None
    reasons: frozenset[str]

    def __repr__(self) -> str:  # failure reports stay readable with megabyte values
        size = "None" if self.value is None else f"{len(self.value)} bytes"
        return f"Hostile({self.kind}, key {len(self.key or b'')} bytes, value {size})"

    def _repr_pretty_(self, printer, cycle) -> None:  # Hypothesis's falsifying-example printer
        printer.text(repr(self))


def _header(name: str) -> bytes:
    return b"\x00" + struct.pack(">I", CODEC.schema_id(name))


def _now() -> int:
    return int(time.time() * 1000)


def _avro_long(n: int) -> bytes:
    zigzag = (n << 1) ^ (n >> 63)
    out = bytearray()
    while zigzag > 0x7F:
        out.append((zigzag & 0x7F) | 0x80)
        zigzag >>= 7
    out.append(zigzag)
    return bytes(out)


def _avro_string(raw: bytes) -> bytes:
    return _avro_long(len(raw)) + raw


def fixed_hostile(record_name: str, valid: dict) -> list[Hostile]:
    """One of each fixed kind of bad bytes any topic can receive."""
    good = CODEC.encode(record_name, valid)
    other = "DeadLetter" if record_name != "DeadLetter" else "Outcome"
    other_value = CODEC.encode(
        other,
        {
            "source_topic": "x",
            "partition": 0,
            "offset": 0,
            "key": None,
            "reason": "r",
            "detail": "d",
            "raw": b"",
            "failed_at": 0,
        }
        if other == "DeadLetter"
        else {"prediction_id": "p", "value": 1.0, "event_time": _now()},
    )
    decode = frozenset(DECODE_REASONS)
    return [
        Hostile("null", b"k", None, frozenset({"null_value"})),
        Hostile("empty", b"k", b"", frozenset({"undecodable"})),
        Hostile("truncated", b"k", good[: len(good) // 2], decode),
        Hostile("trailing", b"k", good + b"\x00junk", decode),
        Hostile("unknown_id", b"k", b"\x00" + struct.pack(">I", 2**31 - 7) + b"\x02", decode),
        Hostile("wrong_schema", b"k", other_value, frozenset({"wrong_schema"})),
        Hostile("not_utf8", b"k", _header(record_name) + _avro_string(b"\xff\xfe"), decode),
        Hostile("huge_key", b"K" * 100_000, b"\x07junk", frozenset({"unknown_magic_byte"})),
        Hostile(
            "oversized", b"k", b"\x00\x00\x00\x00\x01" + bytes(1_300_000), frozenset({"too_large"})
        ),
    ]


def common_hostile(record_name: str, valid: dict) -> st.SearchStrategy[Hostile]:
    """:func:`fixed_hostile`, plus random, truncated and padded bytes."""
    good = CODEC.encode(record_name, valid)
    decode = frozenset(DECODE_REASONS)
    return st.one_of(
        st.sampled_from(fixed_hostile(record_name, valid)),
        st.binary(min_size=1, max_size=64).map(lambda b: Hostile("random", b"k", b, decode)),
        st.integers(1, len(good) - 1).map(lambda n: Hostile("truncated", b"k", good[:n], decode)),
        st.binary(min_size=1, max_size=32).map(
            lambda tail: Hostile("trailing", b"k", good + tail, decode)
        ),
        st.integers(10_000, 2**31 - 1).map(
            lambda i: Hostile("unknown_id", b"k", b"\x00" + struct.pack(">I", i) + b"\x02", decode)
        ),
    )


def _encoded(valid: dict, kind: str, reasons: set[str], **changes) -> Hostile:
    value = CODEC.encode("FeatureRecord", dict(valid, **changes))
    return Hostile(kind, b"k", value, frozenset(reasons))


def fixed_feature_hostile(valid: dict) -> list[Hostile]:
    """One of each kind of bad message on the features topic (an explicit example)."""
    return fixed_hostile("FeatureRecord", valid) + [
        _encoded(valid, "count", {"feature_count_mismatch"}, features=[0.5] * 3),
        _encoded(valid, "non_finite", {"non_finite"}, features=[0.1] * 15 + [1e39]),
        _encoded(valid, "event_time", {"invalid_event_time"}, event_time=2**63 - 1),
        _encoded(valid, "names", {"feature_names_mismatch"}, feature_names=["x"] * 16),
        _encoded(valid, "no_model", {"no_champion"}, model="nobody-serves-this"),
    ]


def feature_hostile(valid: dict) -> st.SearchStrategy[Hostile]:
    """Everything in :func:`common_hostile`, plus records that decode but cannot be scored."""

    def encoded(kind: str, reasons: set[str], **changes) -> Hostile:
        return _encoded(valid, kind, reasons, **changes)

    return st.one_of(
        common_hostile("FeatureRecord", valid),
        st.sampled_from(fixed_feature_hostile(valid)),
        st.integers(0, 40)
        .filter(lambda n: n != len(valid["features"]))
        .map(lambda n: encoded("count", {"feature_count_mismatch"}, features=[0.5] * n)),
        st.sampled_from([float("nan"), float("inf"), float("-inf"), 1e39]).map(
            lambda v: encoded("non_finite", {"non_finite"}, features=[0.1] * 15 + [v])
        ),
        st.one_of(st.integers(-(2**63), -1), st.integers(_now() + 2 * 86_400_000, 2**63 - 1)).map(
            lambda t: encoded("event_time", {"invalid_event_time"}, event_time=t)
        ),
    )


@dataclass
class Sent:
    """Where every message of one example landed: (partition, offset) -> what it was."""

    good: dict[tuple[int, int], str] = field(default_factory=dict)
    bad: dict[tuple[int, int], Hostile] = field(default_factory=dict)


def send_all(
    bootstrap: str, topic: str, items: list[tuple[int, str | None, Hostile | None, bytes]]
) -> Sent:
    """Produce ``(partition, good id or None, hostile or None, good value)`` in order."""
    sent = Sent()
    producer = Producer({"bootstrap.servers": bootstrap, "message.max.bytes": 8 * 1024**2})

    def delivered(good_id, hostile):
        def callback(err, msg):
            assert err is None, err
            where = (msg.partition(), msg.offset())
            if hostile is None:
                sent.good[where] = good_id
            else:
                sent.bad[where] = hostile

        return callback

    for partition, good_id, hostile, value in items:
        key = hostile.key if hostile is not None else good_id.encode()
        payload = hostile.value if hostile is not None else value
        producer.produce(
            topic, payload, key=key, partition=partition, on_delivery=delivered(good_id, hostile)
        )
    assert producer.flush(30) == 0
    return sent
