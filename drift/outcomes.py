"""Joining outcomes (delayed labels) to the predictions they resolve.

Predictions arrive as *pending* entries keyed by their join key: a
PredictionFrame's id for frame rows (prediction ids ``<frame id>:<row>``),
the prediction id itself for single records. An outcome is matched by its
prediction id:

- ``joined``: the prediction is pending and the outcome came within the wait
  window; it becomes one 0/1 error for the version and arm that served it;
- ``late``: the prediction is pending but the outcome came after the window;
  counted and reported, not fed to the detectors (it would describe old data);
- ``unmatched``: no pending prediction; the outcome waits one window for its
  prediction (outcomes can overtake predictions), then is reported;
- ``duplicate``: the row already has an outcome; counted, not fed twice.

Pending predictions are dropped one wait window after they were scored (or,
beyond ``max_pending`` rows, oldest first; counted as ``evicted``). Nothing
is dropped silently: every outcome ends in exactly one of the counters, and
the streams layer sends late and unmatched ones to the dead-letter topic.
"""

from __future__ import annotations

import json
from collections import Counter, OrderedDict
from dataclasses import dataclass, field

import numpy as np

from driftline.drift.exceptions import InvalidValue
from driftline.drift.packing import pack, unpack


@dataclass
class Pending:
    """Scores of one scored part awaiting outcomes: a frame's rows on one arm, or one record.

    ``rows`` are the frame row indices the part covers (sorted), or None for
    rows ``0..n-1``; the served arms of one frame share a join key, each
    covering its own rows. A *decided* part holds 0/1 decisions (the score
    against the decision threshold) instead of scores: all an error needs, and
    one bit a row on the join topic and in the join's changelog, which every
    scored row crosses.
    """

    model: str
    version: int
    arm: str
    scored_at: int  # epoch ms
    scores: np.ndarray  # [n] positive-class score per row (0/1 decisions when decided)
    rows: np.ndarray | None = None  # [n] int32 frame row indices, None = 0..n-1
    labelled: np.ndarray = field(default=None)  # [n] bool: row already has an outcome
    decided: bool = False

    def __post_init__(self) -> None:
        if self.labelled is None:
            self.labelled = np.zeros(len(self.scores), dtype=bool)

    def decide(self, threshold: float) -> Pending:
        """This part with its scores turned into decisions (score >= threshold)."""
        if self.decided:
            return self
        decisions = (self.scores >= threshold).astype(np.float64)
        return Pending(
            self.model, self.version, self.arm, self.scored_at, decisions, self.rows,
            self.labelled.copy(), decided=True,
        )  # fmt: skip

    def index_of(self, row: int) -> int | None:
        """Position of frame row ``row`` in this part, or None if another part has it."""
        if self.rows is None:
            return row if row < len(self.scores) else None
        at = int(np.searchsorted(self.rows, row))
        return at if at < len(self.rows) and self.rows[at] == row else None

    def same_part(self, other: Pending) -> bool:
        return (self.version, self.arm, len(self.scores)) == (
            other.version,
            other.arm,
            len(other.scores),
        )

    def to_bytes(self) -> bytes:
        # Decided parts as bits, others as float32: the scores only ever meet the threshold.
        n = len(self.scores)
        tag = "b1" if self.decided else "f4"
        head = json.dumps(
            [self.model, self.version, self.arm, self.scored_at, n, self.rows is not None, tag]
        ).encode()
        rows = b"" if self.rows is None else self.rows.astype("<i4").tobytes()
        labelled = np.packbits(self.labelled).tobytes()
        if self.decided:
            scores = np.packbits(self.scores >= 0.5).tobytes()
        else:
            scores = self.scores.astype("<f4").tobytes()
        body = scores + rows + labelled
        return len(head).to_bytes(4, "big") + head + len(body).to_bytes(4, "big") + body

    @classmethod
    def from_bytes(cls, blob: bytes, at: int = 0) -> tuple[Pending, int]:
        """(the part at byte ``at``, the byte after it)."""
        size = int.from_bytes(blob[at : at + 4], "big")
        head = json.loads(blob[at + 4 : at + 4 + size])
        model, version, arm, scored_at, n, has_rows = head[:6]
        tag = head[6] if len(head) > 6 else "f8"  # parts from before the tag: float64
        at += 4 + size
        body_size = int.from_bytes(blob[at : at + 4], "big")
        body = blob[at + 4 : at + 4 + body_size]
        if tag == "b1":
            width = (n + 7) // 8
            bits = np.unpackbits(np.frombuffer(body[:width], dtype=np.uint8))[:n]
            scores = bits.astype(np.float64)
        elif tag in ("f4", "f8"):
            width = int(tag[1]) * n
            scores = np.frombuffer(body[:width], dtype=f"<{tag}").astype(np.float64)
        else:
            raise InvalidValue(f"pending part with scores of unknown kind {tag!r}")
        end = width + 4 * n if has_rows else width
        rows = np.frombuffer(body[width:end], dtype="<i4").copy() if has_rows else None
        flags = body[end:]
        labelled = np.unpackbits(np.frombuffer(flags, dtype=np.uint8))[:n].astype(bool)
        part = cls(model, version, arm, scored_at, scores, rows, labelled, decided=tag == "b1")
        return part, at + 4 + body_size


@dataclass(frozen=True)
class JoinedOutcome:
    prediction_id: str
    model: str
    version: int
    arm: str
    score: float
    value: float
    error: int  # 1 when the thresholded score disagrees with the outcome


@dataclass(frozen=True)
class Report:
    """An outcome that will not feed the detectors (late or unmatched), and why."""

    prediction_id: str
    value: float
    event_time: int
    detail: str
    # Where it came in, opaque here: an offset on the input, -1 if unknown, or the
    # streams layer's [topic, partition, offset].
    source: int | list


def join_key(prediction_id: str) -> tuple[str, int | None]:
    """(join key, row) of a prediction id: frame rows are ``<frame id>:<row>``."""
    key, sep, row = prediction_id.rpartition(":")
    if not sep:
        return prediction_id, None
    if not row.isdigit():
        raise InvalidValue(
            f"prediction id {prediction_id!r}: after ':' must come a row number of its frame"
        )
    return key, int(row)


class OutcomeJoin:
    """Pending predictions, waiting outcomes and the counters; plain data, no I/O."""

    def __init__(self, *, wait_ms: int, max_pending: int, decision_threshold: float = 0.5):
        self.wait_ms, self.max_pending = wait_ms, max_pending
        self.threshold = decision_threshold
        self.pending: OrderedDict[str, list[Pending]] = OrderedDict()
        # join key -> [(prediction id, value, event time, arrived at, source offset)]
        self.waiting: dict[str, list[tuple[str, float, int, int, int]]] = {}
        self.counts: Counter = Counter()
        self._rows = 0
        # join key -> when its first part came (ms, never decreasing): a state record older
        # than the oldest pending part holds no live prediction (see live_since()).
        self._born: dict[str, int] = {}
        self.late: list[Report] = []
        self.unmatched: list[Report] = []
        self._delta = _Delta()  # what changed since take_delta(): the table's unit of state

    def add_pending(self, key: str, entry: Pending, now_ms: int) -> list[JoinedOutcome]:
        """Hold a scored part; outcomes that arrived first and fall in it are joined now."""
        parts = self.pending.setdefault(key, [])
        if any(part.same_part(entry) for part in parts):
            return []  # a redelivered prediction: keep the outcomes already matched
        parts.append(entry)
        self._delta.pending.append((key, entry))
        self._note_born(key, now_ms)
        self._rows += len(entry.scores)
        while self._rows > self.max_pending and len(self.pending) > 1:
            old_key, old = self.pending.popitem(last=False)
            self._born.pop(old_key, None)
            evicted = sum(len(part.scores) for part in old)
            self._rows -= evicted
            self.counts["evicted"] += evicted
        joined, still = [], []
        for item in self.waiting.pop(key, []):
            prediction_id, value, event_time, _, source = item
            found, result = self._match(key, prediction_id, value, event_time, source)
            if not found:
                still.append(item)  # another arm's part of the frame has this row
            else:
                self._delta.resolved.append(prediction_id)
                if result is not None:
                    joined.append(result)
        if still:
            self.waiting[key] = still
        return joined

    def add_outcome(
        self,
        prediction_id: str,
        value: float,
        event_time: int,
        now_ms: int,
        source: int | list = -1,
    ) -> JoinedOutcome | None:
        """Join one outcome, or hold it until its prediction or the window's end.

        ``source`` (the outcome's offset on its input) identifies it in reports.
        """
        key, _ = join_key(prediction_id)
        found, result = (False, None)
        if key in self.pending:
            found, result = self._match(key, prediction_id, value, event_time, source)
        if not found:
            item = (prediction_id, value, event_time, now_ms, source)
            self.waiting.setdefault(key, []).append(item)
            self._delta.waiting.append(item)
        return result

    def _match(self, key, prediction_id: str, value: float, event_time: int, source):
        """(whether a part holds the row, the joined outcome if it counts)."""
        _, row = join_key(prediction_id)
        row = 0 if row is None else row
        for entry in self.pending[key]:
            index = entry.index_of(row)
            if index is not None:
                break
        else:
            return False, None
        if entry.labelled[index]:
            self.counts["duplicate"] += 1
            return True, None
        entry.labelled[index] = True
        self._delta.labelled.append(prediction_id)
        if event_time - entry.scored_at > self.wait_ms:
            self.counts["late"] += 1
            after = event_time - entry.scored_at
            detail = f"came {after} ms after the prediction, past the {self.wait_ms} ms wait"
            self.late.append(Report(prediction_id, value, event_time, detail, source))
            return True, None
        self.counts["joined"] += 1
        score = float(entry.scores[index])
        threshold = 0.5 if entry.decided else self.threshold  # a decision is 0 or 1
        error = int((score >= threshold) != (value >= 0.5))
        joined = JoinedOutcome(
            prediction_id, entry.model, entry.version, entry.arm, score, value, error
        )
        return True, joined

    def expire(self, now_ms: int) -> None:
        """Drop pending predictions past the window; report outcomes that never found one."""
        while self.pending:
            key, parts = next(iter(self.pending.items()))
            if now_ms - parts[0].scored_at <= self.wait_ms:
                break
            self.pending.popitem(last=False)
            self._born.pop(key, None)
            rows = sum(len(part.scores) for part in parts)
            self._rows -= rows
            self.counts["expired_rows"] += rows
        for key in [k for k, items in self.waiting.items() if items[0][3] + self.wait_ms < now_ms]:
            for prediction_id, value, event_time, _, source in self.waiting.pop(key):
                self.counts["unmatched"] += 1
                why = f"no prediction with this id within the {self.wait_ms} ms wait"
                self.unmatched.append(Report(prediction_id, value, event_time, why, source))

    def _note_born(self, key: str, now_ms: int) -> None:
        if key not in self._born:  # a clock that steps back must not reorder them
            self._born[key] = max(now_ms, next(reversed(self._born.values()), now_ms))

    def live_since(self, now_ms: int) -> int:
        """When the oldest pending prediction came (``now_ms`` if none is pending).

        Pending parts leave oldest first (expired or evicted), so a state record written
        before this time holds no live prediction: only outcomes that still wait, which
        :meth:`carry` re-writes, and changes to things since gone.
        """
        return next(iter(self._born.values()), now_ms)

    def carry(self, before_ms: int, now_ms: int, max_bytes: int) -> list[bytes]:
        """The outcomes still waiting that came before ``before_ms``, as delta blobs of at
        most about ``max_bytes`` each: what the state records about to be dropped still hold."""
        items = [item for held in self.waiting.values() for item in held if item[3] < before_ms]
        blobs, chunk, size = [], [], 0
        for item in items:
            cost = len(json.dumps(item)) + 2
            if chunk and size + cost > max_bytes:
                blobs.append(_waiting_delta(chunk, now_ms))
                chunk, size = [], 0
            chunk.append(item)
            size += cost
        if chunk:
            blobs.append(_waiting_delta(chunk, now_ms))
        return blobs

    def held(self) -> tuple[int, int]:
        """(pending prediction rows, outcomes waiting for their prediction)."""
        return self._rows, sum(len(items) for items in self.waiting.values())

    def take_reports(self) -> tuple[list[Report], list[Report]]:
        late, unmatched = self.late, self.unmatched
        self.late, self.unmatched = [], []
        return late, unmatched

    def delta_size(self) -> int:
        """Roughly how many bytes :meth:`take_delta` would return now."""
        return self._delta.size()

    def take_delta(self, now_ms: int) -> bytes | None:
        """Everything that changed since the last call, as bytes (None if nothing did).

        The table keeps one delta per processed batch; replaying the live ones
        in order (:meth:`apply_delta`) rebuilds the state. A delta older than
        the wait window describes only expired things and can be dropped.
        """
        delta, self._delta = self._delta, _Delta()
        if delta.empty():
            return None
        parts, meta = pack_entries(delta.pending)
        meta |= {
            "created_ms": now_ms,
            "labelled": delta.labelled,
            "waiting": delta.waiting,
            "resolved": delta.resolved,
        }
        return pack(DELTA_KIND, parts, meta)

    def apply_delta(self, blob: bytes) -> int:
        """Replay one :meth:`take_delta` blob (after a restart); returns its creation time."""
        parts, meta = unpack((DELTA_KIND, "outcome-delta"), blob)
        created = int(meta["created_ms"])
        for key, entry in unpack_entries(parts, meta):
            existing = self.pending.setdefault(key, [])
            if not any(part.same_part(entry) for part in existing):
                existing.append(entry)
                self._note_born(key, created)
                self._rows += len(entry.scores)
        for prediction_id in meta["labelled"]:
            key, row = join_key(prediction_id)
            for entry in self.pending.get(key, []):
                index = entry.index_of(0 if row is None else row)
                if index is not None:
                    entry.labelled[index] = True
                    break
        for item in meta["waiting"]:
            self.waiting.setdefault(join_key(item[0])[0], []).append(tuple(item))
        for prediction_id in meta["resolved"]:
            key = join_key(prediction_id)[0]
            left = [item for item in self.waiting.get(key, []) if item[0] != prediction_id]
            if left:
                self.waiting[key] = left
            else:
                self.waiting.pop(key, None)
        self._delta = _Delta()
        return created


def _waiting_delta(items: list[tuple], now_ms: int) -> bytes:
    parts, meta = pack_entries([])
    meta |= {"created_ms": now_ms, "labelled": [], "waiting": items, "resolved": []}
    return pack(DELTA_KIND, parts, meta)


@dataclass
class _Delta:
    pending: list[tuple[str, Pending]] = field(default_factory=list)
    labelled: list[str] = field(default_factory=list)
    waiting: list[tuple] = field(default_factory=list)
    resolved: list[str] = field(default_factory=list)

    def empty(self) -> bool:
        return not (self.pending or self.labelled or self.waiting or self.resolved)

    def size(self) -> int:
        rows = sum(len(part.scores) for _, part in self.pending)
        entries = len(self.pending) + len(self.labelled) + len(self.waiting) + len(self.resolved)
        return 13 * rows + 80 * entries


def encode_pending(entries: list[tuple[str, Pending]], *, decide_at: float | None = None) -> bytes:
    """Many (join key, scored part) pairs in one join-topic message; ``decide_at``: the
    one-row parts still holding scores travel as decisions at that threshold."""
    return pack(PENDING_KIND, *pack_entries(entries, decide_at=decide_at))


def decode_pending(blob: bytes) -> list[tuple[str, Pending]]:
    return unpack_entries(*unpack((PENDING_KIND, "pending"), blob))


# -- (join key, Pending) pairs as bytes -------------------------------------------------
#
# Single records make one one-row Pending each, and every one crosses the join topic and
# the join's changelog. As a part of its own each cost a JSON head and a few NumPy calls
# to write and again to read (most of a drift-on worker's event loop at 20k records/s),
# so one-row parts travel as columns: a head index (model, version, arm), scored_at, the
# score as float32 and a flag byte (1: labelled, 2: decided). Frame parts keep
# ``Pending.to_bytes``. ``k`` holds each entry's kind in order, so the order survives.
#
# Version 1 (kinds "pending" and "outcome-delta": one part per entry) is still read: a
# changelog written before holds it, and so may the join topic during an upgrade. Older
# workers refuse version 2 by its kind, so they dead-letter rather than misread it.

PENDING_KIND = "pending/2"
DELTA_KIND = "outcome-delta/2"
_FLAG_LABELLED, _FLAG_DECIDED = 1, 2


def single_row(part: Pending) -> bool:
    """A single record's part: one row, no frame row indices."""
    return part.rows is None and len(part.scores) == 1


def pack_entries(
    entries: list[tuple[str, Pending]], *, decide_at: float | None = None
) -> tuple[dict[str, bytes], dict]:
    """The entries as named blobs and a meta (for :func:`driftline.drift.packing.pack`)."""
    kinds, parts = bytearray(), {}
    heads: dict[tuple[str, int, str], int] = {}
    head_of, scored_at, scores, flags = [], [], [], bytearray()
    for _, part in entries:
        if single_row(part):
            kinds.append(1)
            head_of.append(heads.setdefault((part.model, part.version, part.arm), len(heads)))
            scored_at.append(part.scored_at)
            scores.append(part.scores[0])
            flags.append(_FLAG_DECIDED * part.decided + _FLAG_LABELLED * bool(part.labelled[0]))
        else:
            kinds.append(0)
            parts[f"p{len(parts)}"] = part.to_bytes()
    score = np.asarray(scores, dtype=np.float64)
    flag = np.frombuffer(flags, dtype=np.uint8)
    if decide_at is not None and len(score):
        undecided = (flag & _FLAG_DECIDED) == 0
        score = np.where(undecided, (score >= decide_at).astype(np.float64), score)
        flag = flag | _FLAG_DECIDED
    columns = {
        "k": bytes(kinds),
        "h": np.asarray(head_of, dtype="<u4").tobytes(),
        "t": np.asarray(scored_at, dtype="<i8").tobytes(),
        "s": score.astype("<f4").tobytes(),
        "f": flag.tobytes(),
    }
    meta = {"keys": [key for key, _ in entries], "heads": [list(h) for h in heads]}
    return columns | parts, meta


def unpack_entries(parts: dict[str, bytes], meta: dict) -> list[tuple[str, Pending]]:
    """:func:`pack_entries` undone; version 1 (one part per entry, no ``k``) too."""
    keys = meta["keys"]
    if "k" not in parts:  # version 1
        return [(key, Pending.from_bytes(parts[str(i)])[0]) for i, key in enumerate(keys)]
    try:
        kinds = np.frombuffer(parts["k"], dtype=np.uint8)
        head_of = np.frombuffer(parts["h"], dtype="<u4")
        scored_at = np.frombuffer(parts["t"], dtype="<i8")
        score = np.frombuffer(parts["s"], dtype="<f4").astype(np.float64)
        flag = np.frombuffer(parts["f"], dtype=np.uint8)
        heads = [(str(m), int(v), str(a)) for m, v, a in meta["heads"]]
    except (KeyError, ValueError, TypeError) as exc:
        raise InvalidValue(f"pending entries cannot be read: {exc!r}") from exc
    singles = int(np.count_nonzero(kinds))
    columns = {len(head_of), len(scored_at), len(score), len(flag)}
    heads_known = singles == 0 or int(head_of.max()) < len(heads)
    if len(kinds) != len(keys) or columns != {singles} or not heads_known:
        raise InvalidValue(
            f"pending entries do not add up: {len(keys)} keys, {len(kinds)} kinds, "
            f"{singles} one-row parts with {len(score)} scores and {len(heads)} heads"
        )
    labelled = (flag & _FLAG_LABELLED) != 0
    decided = ((flag & _FLAG_DECIDED) != 0).tolist()
    head_of, scored_at = head_of.tolist(), scored_at.tolist()
    out, single, framed = [], 0, 0
    for key, kind in zip(keys, kinds.tolist(), strict=True):
        if kind:
            model, version, arm = heads[head_of[single]]
            at = slice(single, single + 1)  # views: a row's flag is set in place
            entry = Pending(model, version, arm, scored_at[single], score[at], None,
                            labelled[at], decided=decided[single])  # fmt: skip
            single += 1
        else:
            entry, _ = Pending.from_bytes(parts[f"p{framed}"])
            framed += 1
        out.append((key, entry))
    return out
