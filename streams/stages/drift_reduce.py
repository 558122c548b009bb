"""The scoring worker's share of drift detection: reduce each batch, send it to the decider.

A scoring worker reads only some partitions of the features topic, so it
decides nothing. After it scores a batch it keeps, per ``(model, version,
arm)``, the rows the window tests will see (every single record; one row in
``DRIFTLINE_DRIFT_SAMPLE_EVERY`` of each frame,
:func:`driftline.drift.summary.sample_rows`) with their scores, each message's source
partition, offset and record count, merged across partitions by event time
(:func:`driftline.drift.summary.merge_order`), and publishes them as input parts
(:class:`driftline.drift.summary.InputPart`): one summary message per model and batch
(more if large) on the internal topic ``<app>-drift-summaries``, partition
``crc32(model) % partitions``, so all of a model's parts meet in one place.
The messages join the batch's delivery: its offsets are committed only once
they are acknowledged. The ``decide-drift`` agent takes it from there
(:mod:`driftline.streams.stages.drift_decider`).

Nothing here holds state: a redelivered batch sends the same parts again (the
same rows, the same offsets) and the decider skips what it has folded.
"""

from __future__ import annotations

import time
import zlib
from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from driftline.drift.config import DriftConfig
from driftline.drift.monitor import MonitorKey
from driftline.drift.summary import (
    ROW_OVERHEAD,
    InputPart,
    Part,
    chunks,
    encode_parts,
    merge_order,
    sample_rows,
    split,
)
from driftline.inference.frames import Frame
from driftline.streams.kafka.delivery import BatchDelivery, DeliveryTracker
from driftline.streams.stats import WorkerStats

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
    times: np.ndarray  # [m] int64: each message's event time (ms; a frame's earliest)
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
        times: np.ndarray,
        key: MonitorKey,
        feature_names: tuple[str, ...],
        rows: np.ndarray,
        scores: np.ndarray,
    ) -> Observation:
        """Single records (one row per message, with its event time): every one is kept."""
        ones = np.ones(len(offsets), dtype=np.int32)
        return Observation(
            partition,
            key.model,
            key.version,
            key.arm,
            tuple(feature_names),
            np.asarray(offsets, dtype=np.int64),
            np.asarray(times, dtype=np.int64),
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
        start = int(frame.event_times.min()) if len(frame.event_times) else 0
        return Observation(
            partition,
            part["model"],
            part["version"],
            part["arm"],
            tuple(frame.feature_names),
            np.array([offset], dtype=np.int64),
            np.array([start], dtype=np.int64),
            np.array([n], dtype=np.int32),
            np.array([len(index)], dtype=np.int32),
            index,
            rows,
            scores,
        )

    def fold(self, observations: list[Observation], batch: BatchDelivery) -> int:
        """Publish a batch's observations as parts for the decider; returns the messages sent."""
        started = time.perf_counter()
        groups: dict[MonitorKey, list[Observation]] = defaultdict(list)
        for item in observations:
            groups[MonitorKey(item.model, item.version, item.arm)].append(item)
        by_model: dict[str, list[Part]] = defaultdict(list)
        for key, items in groups.items():
            by_model[key.model] += split(_merge(key, items), self._max_bytes // 2)
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


def _merge(key: MonitorKey, items: list[Observation]) -> InputPart:
    """One part from an arm's observations of a batch: messages of every partition merged
    by event time, each partition's in offset order."""
    partitions = np.concatenate([np.full(len(o.offsets), o.partition, np.int32) for o in items])
    offsets = np.concatenate([o.offsets for o in items])
    records = np.concatenate([o.records for o in items])
    taken = np.concatenate([o.taken for o in items])
    index = np.concatenate([o.index for o in items])
    rows = np.concatenate([o.rows for o in items]).astype(np.float32, copy=False)
    scores = np.concatenate([o.scores for o in items]).astype(np.float32, copy=False)
    times = np.concatenate([o.times for o in items])
    order = merge_order(partitions, offsets, times)
    if np.any(np.diff(order) != 1):
        # Rows follow their messages: the ranges of the reordered messages, concatenated.
        starts = np.cumsum(taken) - taken
        moved = taken[order].astype(np.int64)
        row_order = np.repeat(starts[order] - (np.cumsum(moved) - moved), moved)
        row_order += np.arange(int(moved.sum()))
        partitions, offsets, times = partitions[order], offsets[order], times[order]
        records, taken = records[order], taken[order]
        index, rows, scores = index[row_order], rows[row_order], scores[row_order]
    return InputPart(
        key,
        FEATURES_SOURCE,
        items[0].feature_names,
        partitions,
        offsets,
        times,
        records,
        taken,
        index,
        rows,
        scores,
    )
