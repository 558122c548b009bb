"""What partition-local work hands to the drift decider: parts of one arm's streams.

A scoring worker reads some partitions of the features topic, the outcomes
join some partitions of its own topic; neither sees all of a model's traffic,
so neither decides. Each reduces what it read into parts and sends them to
the one decider of the model (:mod:`driftline.drift.decider`):

- :class:`InputPart`: the rows one arm scored in one batch that the window
  tests will see, with their scores, per source message its partition, offset
  and how many records it had, and each kept row's index in its message. Rows
  are kept whole, not as counts: the decider cuts tumbling windows of exactly
  ``window`` rows out of the merged stream, which counts of whole batches
  could not give. FeatureFrames are sampled (:func:`sample_rows`), so this
  costs a few bytes per record. Messages from several partitions are merged
  by event time (see :func:`merge_order`): a shift that starts at one moment
  then starts at one moment in the stream the decider sees;
- :class:`ErrorPart`: 0/1 errors of joined outcomes, each with the offset of
  the join message it came from.

``source`` names the topic a part was read from ("features", or the join
partition for errors); with the partitions and offsets it makes folding
exactly-once (see :class:`driftline.drift.decider.Decider`).

>>> key = MonitorKey("m", 1, "champion")
>>> part = ErrorPart(key, "outcome-join/0", np.array([4, 4, 9]), np.array([0, 1, 0]))
>>> [p.errors.tolist() for p in decode_parts(encode_parts([part]))]
[[0, 1, 0]]
>>> sample_rows("frame-7", 10, every=4)
slice(3, 10, 4)
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

from driftline.drift.exceptions import InvalidValue
from driftline.drift.monitor import MonitorKey
from driftline.drift.packing import pack, unpack


@dataclass(frozen=True)
class InputPart:
    key: MonitorKey
    source: str
    feature_names: tuple[str, ...]
    partitions: np.ndarray  # [m] int32: the source partition of each message
    offsets: np.ndarray  # [m] int64, increasing within each partition
    times: np.ndarray  # [m] int64: each message's event time, ms
    records: np.ndarray  # [m] int32: rows each message had on this arm
    taken: np.ndarray  # [m] int32: rows kept from each message
    index: np.ndarray  # [n] int32: each kept row's index among its message's rows
    rows: np.ndarray  # [n, k] float32
    scores: np.ndarray  # [n] float32

    def __post_init__(self) -> None:
        m, n, k = len(self.offsets), len(self.index), len(self.feature_names)
        where = f"drift input part for {self.key.label()} from {self.source}"
        shapes = (self.partitions.shape, self.times.shape, self.records.shape, self.taken.shape)
        shapes += (self.rows.shape, self.scores.shape)
        if shapes != ((m,), (m,), (m,), (m,), (n, k), (n,)):
            raise InvalidValue(f"{where}: array shapes {shapes} do not agree (m={m}, n={n})")
        by_partition = np.lexsort((np.arange(m), self.partitions))
        same = np.diff(self.partitions[by_partition]) == 0
        if m and (np.any(np.diff(self.offsets[by_partition])[same] <= 0) or self.offsets.min() < 0):
            raise InvalidValue(f"{where}: offsets must increase within each partition")
        if np.any(self.taken > self.records) or int(self.taken.sum()) != n:
            raise InvalidValue(f"{where}: kept rows per message do not add up")
        if n and np.any(self.index >= np.repeat(self.records, self.taken)):
            raise InvalidValue(f"{where}: a kept row's index is past its message's rows")


@dataclass(frozen=True)
class ErrorPart:
    key: MonitorKey
    source: str
    offsets: np.ndarray  # [n] int64, non-decreasing: the join message of each outcome
    errors: np.ndarray  # [n] 0/1

    def __post_init__(self) -> None:
        where = f"drift error part for {self.key.label()} from {self.source}"
        if self.offsets.shape != self.errors.shape or self.offsets.ndim != 1:
            raise InvalidValue(f"{where}: offsets and errors differ in shape")
        if len(self.offsets) and (np.any(np.diff(self.offsets) < 0) or self.offsets[0] < 0):
            raise InvalidValue(f"{where}: offsets must not decrease")
        if not np.isin(self.errors, (0, 1)).all():
            raise InvalidValue(f"{where}: errors must be 0 or 1")


Part = InputPart | ErrorPart


def merge_order(partitions: np.ndarray, offsets: np.ndarray, times: np.ndarray) -> np.ndarray:
    """The order to fold messages of several partitions in: by event time, each
    partition's messages kept in offset order.

    A partition's messages are merged at the running maximum of their event
    times, so one that goes back in time never jumps ahead of its predecessors
    (the decider's marks count each partition's offsets in order); ties keep
    partition, then offset order.

    >>> merge_order(np.array([0, 0, 1, 1]), np.array([5, 6, 9, 10]), np.array([1, 3, 2, 4]))
    array([0, 2, 1, 3])
    """
    by_partition = np.lexsort((offsets, partitions))
    running = np.empty(len(times), dtype=np.int64)
    for p in np.unique(partitions):
        mine = by_partition[partitions[by_partition] == p]
        running[mine] = np.maximum.accumulate(times[mine])
    return np.lexsort((offsets, partitions, running))


# Bytes per kept row of an input part, besides its k float32 features: the
# float32 score and the int32 index.
ROW_OVERHEAD = 8


def sample_rows(salt: str, n: int, every: int, max_rows: int | None = None) -> slice:
    """The rows of an ``n``-row frame the window tests see: one in ``every``.

    The stride starts at an offset hashed from ``salt`` (the frame id), so
    the same frame gives the same rows however the topic is partitioned and
    however often it is redelivered. ``max_rows`` caps what one frame
    contributes (a part must fit in one message), by widening the stride.
    """
    if max_rows is not None and max_rows >= 1:
        every = max(every, -(-n // max_rows))
    if every <= 1:
        return slice(0, n, 1)
    return slice(zlib.crc32(salt.encode()) % every, n, every)


def part_bytes(part: Part) -> int:
    """About how many bytes a part takes in an encoded summary."""
    if isinstance(part, ErrorPart):
        return 9 * len(part.errors) + 200
    k = len(part.feature_names)
    return len(part.index) * (4 * k + ROW_OVERHEAD) + 28 * len(part.offsets) + 30 * k + 200


def split(part: InputPart, max_bytes: int) -> list[InputPart]:
    """``part`` cut at message boundaries into pieces of about ``max_bytes`` at most.

    A message's rows are never cut apart (the decider's marks count whole
    messages), so a single message bigger than ``max_bytes`` stays one piece.
    """
    k = len(part.feature_names)
    per_message = part.taken.astype(np.int64) * (4 * k + ROW_OVERHEAD) + 28
    pieces, start, size = [], 0, 0
    row_starts = np.concatenate([[0], np.cumsum(part.taken)])
    for i, cost in enumerate(per_message.tolist()):
        if size and size + cost > max_bytes:
            pieces.append((start, i))
            start, size = i, 0
        size += cost
    pieces.append((start, len(per_message)))
    if len(pieces) == 1:
        return [part]
    out = []
    for lo, hi in pieces:
        a, b = int(row_starts[lo]), int(row_starts[hi])
        out.append(
            InputPart(
                part.key,
                part.source,
                part.feature_names,
                part.partitions[lo:hi],
                part.offsets[lo:hi],
                part.times[lo:hi],
                part.records[lo:hi],
                part.taken[lo:hi],
                part.index[a:b],
                part.rows[a:b],
                part.scores[a:b],
            )
        )
    return out


def split_errors(part: ErrorPart, max_bytes: int) -> list[ErrorPart]:
    """``part`` cut between join messages into pieces of about ``max_bytes`` at most."""
    step = max(1, max_bytes // 9)
    offsets, pieces, lo = part.offsets, [], 0
    while lo < len(offsets):
        hi = min(lo + step, len(offsets))
        if hi < len(offsets):
            # Never between two outcomes of one message: the decider's marks count messages.
            hi = int(np.searchsorted(offsets, offsets[hi], "left"))
            if hi <= lo:
                hi = int(np.searchsorted(offsets, offsets[lo], "right"))
        pieces.append(ErrorPart(part.key, part.source, offsets[lo:hi], part.errors[lo:hi]))
        lo = hi
    return pieces


def chunks(parts: list[Part], max_bytes: int) -> list[list[Part]]:
    """Parts grouped into messages of about ``max_bytes`` at most (a bigger part alone)."""
    out: list[list[Part]] = []
    size = 0
    for part in parts:
        cost = part_bytes(part)
        if not out or size + cost > max_bytes:
            out.append([])
            size = 0
        out[-1].append(part)
        size += cost
    return out


def encode_parts(parts: list[Part]) -> bytes:
    """One summary message: the parts' arrays little-endian, behind a JSON header."""
    blobs: dict[str, bytes] = {}
    described = []
    for i, part in enumerate(parts):
        head = {"key": [part.key.model, part.key.version, part.key.arm], "source": part.source}
        if isinstance(part, InputPart):
            head |= {"kind": "input", "names": list(part.feature_names)}
            arrays = {
                "partitions": part.partitions.astype("<i4"),
                "offsets": part.offsets.astype("<i8"),
                "times": part.times.astype("<i8"),
                "records": part.records.astype("<i4"),
                "taken": part.taken.astype("<i4"),
                "index": part.index.astype("<i4"),
                "rows": part.rows.astype("<f4"),
                "scores": part.scores.astype("<f4"),
            }
        else:
            head |= {"kind": "error"}
            arrays = {"offsets": part.offsets.astype("<i8"), "errors": part.errors.astype("i1")}
        head["m"] = len(part.offsets)
        head["n"] = len(part.index) if isinstance(part, InputPart) else len(part.errors)
        described.append(head)
        blobs |= {f"{i}.{name}": np.ascontiguousarray(a).tobytes() for name, a in arrays.items()}
    return pack("drift-summary", blobs, {"parts": described})


def decode_parts(blob: bytes) -> list[Part]:
    """The parts of an :func:`encode_parts` message; SnapshotError or InvalidValue if bad."""
    blobs, meta = unpack("drift-summary", blob)
    parts: list[Part] = []
    try:
        for i, head in enumerate(meta["parts"]):
            key, source = MonitorKey.from_list(head["key"]), str(head["source"])

            def array(name: str, dtype: str, i: int = i):
                return np.frombuffer(blobs[f"{i}.{name}"], dtype=dtype)

            if head["kind"] == "input":
                names = tuple(str(name) for name in head["names"])
                rows = array("rows", "<f4")
                parts.append(
                    InputPart(
                        key,
                        source,
                        names,
                        array("partitions", "<i4"),
                        array("offsets", "<i8"),
                        array("times", "<i8"),
                        array("records", "<i4"),
                        array("taken", "<i4"),
                        array("index", "<i4"),
                        rows.reshape(int(head["n"]), len(names)),
                        array("scores", "<f4"),
                    )
                )
            elif head["kind"] == "error":
                parts.append(ErrorPart(key, source, array("offsets", "<i8"), array("errors", "i1")))
            else:
                raise InvalidValue(f"drift summary part of unknown kind {head['kind']!r}")
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, InvalidValue):
            raise
        raise InvalidValue(f"malformed drift summary: {exc!r}") from exc
    return parts
