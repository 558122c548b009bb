"""The scoring worker's share of drift detection: reduce each batch, send it to the decider.

A scoring worker reads only some partitions of the features topic, so it
decides nothing. After it scores a batch it keeps, per ``(model, version,
arm)`` and source partition, the rows the window tests will see (every
single record; one row in ``DRIFTLINE_DRIFT_SAMPLE_EVERY`` of each frame,
:func:`drift.summary.sample_rows`) with their scores, source offsets and how
many records each message had, and publishes them as input parts
(:class:`drift.summary.InputPart`): one summary message per model and batch
(more if large) on the internal topic ``<app>-drift-summaries``, partition
``crc32(model) % partitions``, so all of a model's parts meet in one place.
The messages join the batch's delivery: its offsets are committed only once
they are acknowledged. The ``decide-drift`` agent takes it from there
(:mod:`streams.drift_decider`).

Nothing here holds state: a redelivered batch sends the same parts again (the
same rows, the same offsets) and the decider skips what it has folded.
"""

from __future__ import annotations

import time
import zlib
from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from drift.config import DriftConfig
from drift.monitor import MonitorKey
from drift.summary import (
    ROW_OVERHEAD,
    InputPart,
    Part,
    chunks,
    encode_parts,
    sample_rows,
    split,
)
from inference.frames import Frame
from streams.delivery import BatchDelivery, DeliveryTracker
from streams.stats import WorkerStats

# Brokers refuse messages over 1 MB by default (Tansu too): summaries stay well under.
MAX_SUMMARY_BYTES = 512 * 1024
FEATURES_SOURCE = "features"


def summary_partition(model: str, partitions: int) -> int:
    """The summaries-topic partition of a model: its decider's."""
    return zlib.crc32(model.encode()) % partitions


@dataclass(frozen=True)
class Observation:
    """Rows one arm scored from one partition's messages, in offset order, as the tests see them."""

    partition: int
    model: str
    version: int
    arm: str
    feature_names: tuple[str, ...]
    offsets: np.ndarray  # [m] int64: the source messages
    records: np.ndarray  # [m]: rows each message had on this arm
    taken: np.ndarray  # [m]: rows kept from each (every record's; a sample of a frame's)
    index: np.ndarray  # [n]: each kept row's index among its message's rows on this arm
    rows: np.ndarray  # [n, k]: the kept rows
    scores: np.ndarray  # [n]


class DriftStage:
    def __init__(
        self,
        *,
        config: DriftConfig,
        delivery: DeliveryTracker,
        summaries_topic: str,
        partitions: int,
        stats: WorkerStats,
        max_message_bytes: int = MAX_SUMMARY_BYTES,
    ) -> None:
        self.config = config
        self._delivery = delivery
        self._topic = summaries_topic
        self._partitions = partitions
        self._stats = stats
        self._max_bytes = max_message_bytes

    def records(
        self,
        partition: int,
        offsets: np.ndarray,
        key: MonitorKey,
        feature_names: tuple[str, ...],
        rows: np.ndarray,
        scores: np.ndarray,
    ) -> Observation:
        """Single records (one row per message): every one is kept."""
        ones = np.ones(len(offsets), dtype=np.int32)
        return Observation(
            partition,
            key.model,
            key.version,
            key.arm,
            tuple(feature_names),
            np.asarray(offsets, dtype=np.int64),
            ones,
            ones,
            np.zeros(len(offsets), dtype=np.int32),
            rows,
            scores,
        )

    def frame(
        self,
        partition: int,
        offset: int,
        frame: Frame,
        part: dict,
    ) -> Observation:
        """One arm's part of a scored frame: a sample of its rows (``sample_every``)."""
        n, k = part["n_rows"], len(frame.feature_names)
        # A frame's kept rows must fit in one summary message, with room to spare.
        keep = sample_rows(
            frame.frame_id,
            n,
            self.config.sample_every,
            max_rows=self._max_bytes // 2 // (4 * k + ROW_OVERHEAD),
        )
        # Empty "rows" means every row of the frame (score_frame names them otherwise).
        served = np.frombuffer(part["rows"], dtype="<i4") if part["rows"] else None
        index = np.arange(n, dtype=np.int32)[keep]
        rows = frame.matrix[keep] if served is None else frame.matrix[served[keep]]
        scores = np.frombuffer(part["score"], dtype="<f8")[keep]
        return Observation(
            partition,
            part["model"],
            part["version"],
            part["arm"],
            tuple(frame.feature_names),
            np.array([offset], dtype=np.int64),
            np.array([n], dtype=np.int32),
            np.array([len(index)], dtype=np.int32),
            index,
            rows,
            scores,
        )

    def fold(self, observations: list[Observation], batch: BatchDelivery) -> int:
        """Publish a batch's observations as parts for the decider; returns the messages sent."""
        started = time.perf_counter()
        groups: dict[tuple[MonitorKey, int], list[Observation]] = defaultdict(list)
        for item in observations:
            groups[(MonitorKey(item.model, item.version, item.arm), item.partition)].append(item)
        by_model: dict[str, list[Part]] = defaultdict(list)
        for (key, partition), items in groups.items():
            part = _merge(key, f"{FEATURES_SOURCE}/{partition}", items)
            by_model[key.model] += split(part, self._max_bytes // 2)
        sent = sum(self._send(model, parts, batch) for model, parts in by_model.items())
        self._stats.timing["drift_s"] += time.perf_counter() - started
        return sent

    def _send(self, model: str, parts: list[Part], batch: BatchDelivery) -> int:
        partition = summary_partition(model, self._partitions)
        messages = chunks(parts, self._max_bytes)
        for chunk in messages:
            value = encode_parts(chunk)
            self._delivery.produce(
                batch, self._topic, value, key=model.encode(), partition=partition
            )
            self._stats.drift_summary_bytes += len(value)
        return len(messages)


def _merge(key: MonitorKey, source: str, items: list[Observation]) -> InputPart:
    """One part from a group's observations, messages in offset order."""
    offsets = np.concatenate([o.offsets for o in items])
    records = np.concatenate([o.records for o in items])
    taken = np.concatenate([o.taken for o in items])
    index = np.concatenate([o.index for o in items])
    rows = np.concatenate([o.rows for o in items]).astype(np.float32, copy=False)
    scores = np.concatenate([o.scores for o in items]).astype(np.float32, copy=False)
    if len(offsets) > 1 and np.any(np.diff(offsets) <= 0):
        # Records and frames of one batch are scored apart: put messages back in order.
        order = np.argsort(offsets, kind="stable")
        starts = np.concatenate([[0], np.cumsum(taken)[:-1]])
        rows_order = np.concatenate(
            [np.arange(starts[i], starts[i] + taken[i]) for i in order]
        ).astype(np.int64)
        offsets, records, taken = offsets[order], records[order], taken[order]
        index, rows, scores = index[rows_order], rows[rows_order], scores[rows_order]
    return InputPart(
        key, source, items[0].feature_names, offsets, records, taken, index, rows, scores
    )
