"""One place decides drift for a model version and arm, whatever the partitioning.

Scoring workers read the features topic partition by partition, and the
outcomes join reads its own topic the same way. Neither decides: each reduces
what it read into parts (:mod:`driftline.drift.summary`) and sends them, keyed by
model, to one decider. The decider folds every part into the single
:class:`~driftline.drift.monitor.ArmMonitor` of its ``(model, version, arm)``, in the
order the parts arrive. Windows, multiplicity control, debouncing and the
error detectors all see the merged stream, so the same traffic gives the same
alarms, after about the same number of records, on 1 partition or 48.

Exactly once over at-least-once delivery: per monitor the decider keeps a
**mark** per source partition, the next offset it will fold from it. A part
that comes again (its batch was redelivered to a scoring worker after a
crash, or the summary itself was redelivered to the decider) carries the same
offsets and is skipped, message by message; each partition's offsets arrive
in order because one producer sends them, in offset order, to one partition. The marks are
stored with the monitor in one record (:meth:`Decider.record`), so a monitor
and what it has counted never disagree.

Positions: an input alarm's position counts the records of the merged stream
(frames are sampled, so fewer rows are tested), an error alarm's the outcomes.

>>> from driftline.drift.config import DriftConfig
>>> from driftline.drift.summary import ErrorPart
>>> decider = Decider(DriftConfig(error_detectors=("hddm_a",)), lambda model, version: None)
>>> key = MonitorKey("m", 1, "champion")
>>> errors = np.r_[np.zeros(1000, np.int8), np.ones(300, np.int8)]
>>> part = ErrorPart(key, "outcome-join/0", np.arange(1300), errors)
>>> [(a.stream, a.detector) for a in decider.fold(part)]
[('error', 'hddm_a')]
>>> decider.fold(part), decider.skipped  # the same part again: already counted
([], 1300)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from driftline.drift.config import DriftConfig
from driftline.drift.exceptions import InvalidValue
from driftline.drift.monitor import ArmMonitor, DriftAlarm, MonitorKey
from driftline.drift.packing import pack, unpack
from driftline.drift.profile import ReferenceProfile
from driftline.drift.summary import ErrorPart, InputPart, Part

References = Callable[[str, int], ReferenceProfile | None]
Stored = Callable[[MonitorKey], bytes | None]


@dataclass
class _Watched:
    monitor: ArmMonitor
    marks: dict[str, int] = field(default_factory=dict)  # source -> next offset to fold
    records: int = 0  # input records folded (before sampling)


class Decider:
    """Every monitor this decider owns, with the marks that make folding exactly-once.

    ``references(model, version)`` gives a version's training profile (or None);
    ``stored(key)`` a monitor's last :meth:`record`, read when the key is first seen.
    """

    def __init__(
        self, config: DriftConfig, references: References, stored: Stored | None = None
    ) -> None:
        self.config = config
        self._references = references
        self._stored = stored or (lambda key: None)
        self.watched: dict[MonitorKey, _Watched] = {}
        self.touched: set[MonitorKey] = set()  # since the last take_touched()
        self.restored: dict[str, dict[str, int]] = {}  # monitor label -> marks it resumed at
        self.skipped = 0  # rows and outcomes already folded before, not counted again

    def fold(self, part: Part) -> list[DriftAlarm]:
        """Fold one part into its monitor; the alarms it raised."""
        if isinstance(part, InputPart):
            return self._fold_inputs(part)
        return self._fold_errors(part)

    def fold_all(self, parts: list[Part]) -> list[DriftAlarm]:
        """Fold parts in order; runs of input parts of one monitor (the pieces a large
        batch was cut into) are folded as one, which gives the same alarms for less work."""
        alarms: list[DriftAlarm] = []
        run: list[InputPart] = []
        for part in [*parts, None]:
            if run and (part is None or not _continues(run[-1], part)):
                for joined in _joined(run):
                    alarms += self.fold(joined)
                run = []
            if isinstance(part, InputPart):
                run.append(part)
            elif part is not None:
                alarms += self.fold(part)
        return alarms

    def _fold_inputs(self, part: InputPart) -> list[DriftAlarm]:
        watched = self._watch(part.key)
        reference = self._references(part.key.model, part.key.version)
        watched.monitor.watch_inputs(part.feature_names, reference)
        sources = [f"{part.source}/{p}" for p in part.partitions.tolist()]
        marks = np.array([watched.marks.get(source, 0) for source in sources], dtype=np.int64)
        fresh = part.offsets >= marks  # per message: not folded before
        if not fresh.any():
            self.skipped += int(part.records.sum())
            return []
        rows, scores, index = part.rows, part.scores, part.index
        records, taken, times = part.records.astype(np.int64), part.taken, part.times
        if not fresh.all():
            self.skipped += int(records[~fresh].sum())
            kept = np.repeat(fresh, taken)
            rows, scores, index = rows[kept], scores[kept], index[kept]
            records, taken, times = records[fresh], taken[fresh], times[fresh]
        before = watched.records + np.cumsum(records) - records
        positions = np.repeat(before, taken) + index + 1
        watched.records += int(records.sum())
        for source, offset in zip(sources, part.offsets.tolist(), strict=True):
            if offset >= watched.marks.get(source, 0):  # each partition's offsets increase
                watched.marks[source] = offset + 1
        self.touched.add(part.key)
        if len(positions) == 0:
            return []
        return watched.monitor.observe(rows, scores, positions, np.repeat(times, taken))

    def _fold_errors(self, part: ErrorPart) -> list[DriftAlarm]:
        watched = self._watch(part.key)
        first = self._first_fresh(watched, part.source, part.offsets)
        if first is None:
            self.skipped += len(part.errors)
            return []
        self.skipped += first
        watched.marks[part.source] = int(part.offsets[-1]) + 1
        self.touched.add(part.key)
        return watched.monitor.observe_errors(part.errors[first:])

    @staticmethod
    def _first_fresh(watched: _Watched, source: str, offsets: np.ndarray) -> int | None:
        """Index of the first entry at or past the source's mark; None if there is none.

        Offsets never decrease within a part, so what was folded before is a prefix.
        """
        mark = watched.marks.get(source, 0)
        if len(offsets) == 0 or offsets[-1] < mark:
            return None
        return int(np.searchsorted(offsets, mark, "left"))

    def _watch(self, key: MonitorKey) -> _Watched:
        found = self.watched.get(key)
        if found is None:
            found = self.watched[key] = _Watched(ArmMonitor(key, None, None, self.config))
            blob = self._stored(key)
            if blob is not None:
                parts, meta = unpack("drift-monitor", blob)
                found.monitor.restore(parts["state"])
                found.marks = {str(s): int(o) for s, o in meta["marks"].items()}
                found.records = int(meta["records"])
                self.restored[key.label()] = dict(found.marks)
        return found

    def take_touched(self) -> list[MonitorKey]:
        """Monitors changed since the last call, whose records are due."""
        touched, self.touched = sorted(self.touched, key=MonitorKey.text), set()
        return touched

    def record(self, key: MonitorKey) -> bytes:
        """A monitor's state and marks, as one record for the state table."""
        watched = self.watched[key]
        meta = {"marks": watched.marks, "records": watched.records}
        return pack("drift-monitor", {"state": watched.monitor.snapshot()}, meta)

    def forget(self) -> None:
        """Drop every monitor in memory; each comes back from its record when next fed."""
        self.watched.clear()
        self.touched.clear()

    def status(self) -> list[dict[str, Any]]:
        return [
            w.monitor.summary() | {"records_seen": w.records, "marks": dict(w.marks)}
            for _, w in sorted(self.watched.items(), key=lambda item: item[0].text())
        ]


def _continues(last: InputPart, part: Part) -> bool:
    return isinstance(part, InputPart) and (part.key, part.source, part.feature_names) == (
        last.key,
        last.source,
        last.feature_names,
    )


def _joined(run: list[InputPart]) -> list[InputPart]:
    """The run as one part, or as it is when its parts do not chain (a redelivery)."""
    if len(run) == 1:
        return run
    head = run[0]

    def cat(name: str) -> np.ndarray:
        return np.concatenate([getattr(part, name) for part in run])

    try:
        arrays = [cat(name) for name in _ARRAYS]
        return [InputPart(head.key, head.source, head.feature_names, *arrays)]
    except InvalidValue:  # offsets repeat: fold them one by one, the marks skip repeats
        return run


_ARRAYS = ("partitions", "offsets", "times", "records", "taken", "index", "rows", "scores")
