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

from drift.exceptions import InvalidValue


@dataclass
class Pending:
    """Scores of one prediction frame part (or one record) awaiting outcomes."""

    model: str
    version: int
    arm: str
    scored_at: int  # epoch ms
    scores: np.ndarray  # [n] positive-class score per row
    labelled: np.ndarray = field(default=None)  # [n] bool: row already has an outcome

    def __post_init__(self) -> None:
        if self.labelled is None:
            self.labelled = np.zeros(len(self.scores), dtype=bool)

    def to_bytes(self) -> bytes:
        head = json.dumps(
            [self.model, self.version, self.arm, self.scored_at, len(self.scores)]
        ).encode()
        return (
            len(head).to_bytes(4, "big")
            + head
            + self.scores.astype("<f8").tobytes()
            + np.packbits(self.labelled).tobytes()
        )

    @classmethod
    def from_bytes(cls, blob: bytes) -> Pending:
        size = int.from_bytes(blob[:4], "big")
        model, version, arm, scored_at, n = json.loads(blob[4 : 4 + size])
        start = 4 + size
        scores = np.frombuffer(blob[start : start + 8 * n], dtype="<f8").copy()
        labelled = np.unpackbits(np.frombuffer(blob[start + 8 * n :], dtype=np.uint8))[:n]
        return cls(model, version, arm, scored_at, scores, labelled.astype(bool))


@dataclass(frozen=True)
class JoinedOutcome:
    prediction_id: str
    model: str
    version: int
    arm: str
    score: float
    value: float
    error: int  # 1 when the thresholded score disagrees with the outcome


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
        self.pending: OrderedDict[str, Pending] = OrderedDict()
        self.waiting: dict[str, list[tuple[str, float, int, int]]] = {}
        self.counts: Counter = Counter()
        self._rows = 0
        self.late: list[tuple[str, int]] = []  # (prediction id, ms after the prediction)
        self.unmatched: list[tuple[str, str]] = []  # (prediction id, why)
        self.dirty: set[str] = set()  # pending/waiting keys changed since take_dirty()

    def add_pending(self, key: str, entry: Pending, now_ms: int) -> list[JoinedOutcome]:
        """Hold a prediction; outcomes that arrived first are joined now."""
        if key in self.pending:  # a redelivered prediction: keep the outcomes already matched
            return []
        self.pending[key] = entry
        self.dirty.add(key)
        self._rows += len(entry.scores)
        while self._rows > self.max_pending and len(self.pending) > 1:
            old_key, old = self.pending.popitem(last=False)
            self.dirty.add(old_key)
            self._rows -= len(old.scores)
            self.counts["evicted"] += len(old.scores)
        joined = []
        for prediction_id, value, event_time, _ in self.waiting.pop(key, []):
            result = self._match(key, prediction_id, value, event_time)
            if result is not None:
                joined.append(result)
        return joined

    def add_outcome(
        self, prediction_id: str, value: float, event_time: int, now_ms: int
    ) -> JoinedOutcome | None:
        """Join one outcome, or hold it until its prediction or the window's end."""
        key, _ = join_key(prediction_id)
        self.dirty.add(key)
        if key not in self.pending:
            self.waiting.setdefault(key, []).append((prediction_id, value, event_time, now_ms))
            return None
        return self._match(key, prediction_id, value, event_time)

    def _match(self, key: str, prediction_id: str, value: float, event_time: int):
        entry = self.pending[key]
        _, row = join_key(prediction_id)
        row = 0 if row is None else row
        if row >= len(entry.scores):
            self.counts["unmatched"] += 1
            self.unmatched.append((prediction_id, f"row {row} is not in its frame"))
            return None
        if entry.labelled[row]:
            self.counts["duplicate"] += 1
            return None
        entry.labelled[row] = True
        if event_time - entry.scored_at > self.wait_ms:
            self.counts["late"] += 1
            self.late.append((prediction_id, event_time - entry.scored_at))
            return None
        self.counts["joined"] += 1
        score = float(entry.scores[row])
        error = int((score >= self.threshold) != (value >= 0.5))
        return JoinedOutcome(
            prediction_id, entry.model, entry.version, entry.arm, score, value, error
        )

    def expire(self, now_ms: int) -> None:
        """Drop pending predictions past the window; report outcomes that never found one."""
        while self.pending:
            key, entry = next(iter(self.pending.items()))
            if now_ms - entry.scored_at <= self.wait_ms:
                break
            self.pending.popitem(last=False)
            self.dirty.add(key)
            self._rows -= len(entry.scores)
            self.counts["expired_rows"] += len(entry.scores)
        for key in [k for k, items in self.waiting.items() if items[0][3] + self.wait_ms < now_ms]:
            self.dirty.add(key)
            for prediction_id, *_ in self.waiting.pop(key):
                self.counts["unmatched"] += 1
                self.unmatched.append((prediction_id, "no prediction within the wait window"))

    def take_reports(self) -> tuple[list[tuple[str, int]], list[tuple[str, str]]]:
        late, unmatched = self.late, self.unmatched
        self.late, self.unmatched = [], []
        return late, unmatched

    def take_dirty(self) -> dict[str, tuple[bytes | None, bytes | None]]:
        """Changed keys -> (pending bytes or None, waiting JSON or None); None = deleted."""
        out = {}
        for key in self.dirty:
            entry, waiting = self.pending.get(key), self.waiting.get(key)
            out[key] = (
                entry.to_bytes() if entry is not None else None,
                json.dumps(waiting).encode() if waiting else None,
            )
        self.dirty = set()
        return out

    def load(self, key: str, pending: bytes | None, waiting: bytes | None) -> None:
        """Restore one key's state (from the table, after a restart or rebalance)."""
        if pending is not None:
            entry = Pending.from_bytes(pending)
            self.pending[key] = entry
            self._rows += len(entry.scores)
        if waiting is not None:
            self.waiting[key] = [tuple(item) for item in json.loads(waiting)]

    def order_pending(self) -> None:
        """After loading: oldest first, so expiry and eviction stay in time order."""
        self.pending = OrderedDict(sorted(self.pending.items(), key=lambda kv: kv[1].scored_at))
