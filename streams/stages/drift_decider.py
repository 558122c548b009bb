"""The ``decide-drift`` agent: every model's drift decided once, in one place.

Scoring workers (:mod:`driftline.streams.stages.drift_reduce`) and the outcomes join
(:mod:`driftline.streams.stages.outcome_join`) publish parts of each model's streams to the
internal topic ``<app>-drift-summaries``, keyed by model, on partition
``crc32(model) % partitions``. Faust gives each partition of that topic to
one worker, so one :class:`driftline.drift.decider.Decider` sees all of a model's
rows and outcomes, from every partition of the features and join topics, and
one monitor per ``(model, version, arm)`` decides. Alarms become DriftEvents
on the ``drift`` topic, keyed by model.

State: after each batch every monitor it changed is written to the
``drift-state`` Faust table, one record per monitor (``m|<model, version,
arm>``) holding the detectors and the marks (next offset per source
partition), on the changelog partition of the summaries partition it came
from; the batch's offsets are committed only once those records and the
DriftEvents are delivered. After a restart or rebalance Faust recovers the
table from its changelog, each monitor is restored from its record when next
fed, and the marks skip what it had already counted.

Tansu (the embedded broker) reports a partition's end offset as the last
batch's base offset + 1, and Faust recovers a table up to that offset, so on
Tansu the state producer sends one message per batch (streams/kafka/broker_quirks.py);
on Apache Kafka it batches normally.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import MutableMapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial

import numpy as np
from confluent_kafka import Producer

from driftline.drift.config import DriftConfig
from driftline.drift.decider import Decider, References
from driftline.drift.exceptions import InvalidValue, SnapshotError
from driftline.drift.monitor import DriftAlarm, MonitorKey
from driftline.drift.river_adapter import river_drift
from driftline.drift.summary import decode_parts
from driftline.schemas import SchemaCodec
from driftline.streams.kafka.delivery import BatchDelivery, DeliveryTracker
from driftline.streams.stages.deadletter import DeadLetterPublisher, InboundMessage
from driftline.streams.stats import WorkerStats

log = logging.getLogger(__name__)

STATE_TABLE = "drift-state"
INVALID_SUMMARY = "invalid_drift_summary"
_EVENT_NAMESPACE = uuid.UUID("5d1f3a52-8c1e-4f0e-9a57-3b2f1c0d7e11")


def state_key(key: MonitorKey) -> bytes:
    return f"m|{key.text()}".encode()


def event_id(alarm: DriftAlarm) -> str:
    """Stable across redelivery and restarts: the same alarm at the same record, the same id."""
    k = alarm.key
    name = (
        f"{k.model}|{k.version}|{k.arm}|{alarm.stream}|{alarm.detector}|"
        f"{alarm.feature}|{alarm.position}"
    )
    return uuid.uuid5(_EVENT_NAMESPACE, name).hex


def drift_record(alarm: DriftAlarm, detected_at: int) -> dict:
    """The Avro DriftEvent for an alarm."""
    p_value = alarm.p_value if alarm.p_value is None or np.isfinite(alarm.p_value) else None
    evidence = dict(alarm.evidence) | {"position": alarm.position}
    return {
        "event_id": event_id(alarm),
        "model": alarm.key.model,
        "version": alarm.key.version,
        "arm": alarm.key.arm,
        "detector": alarm.detector,
        "feature": alarm.feature,
        "statistic": float(alarm.statistic),
        "threshold": float(alarm.threshold),
        "p_value": p_value,
        "window_size": int(alarm.window_size),
        "evidence": json.dumps(evidence, sort_keys=True, default=float),
        "detected_at": detected_at,
    }


class DriftDecider:
    def __init__(
        self,
        *,
        config: DriftConfig,
        codec: SchemaCodec,
        delivery: DeliveryTracker,
        dead_letters: DeadLetterPublisher,
        drift_topic: str,
        state_topic: str,
        state_producer: Producer,
        references: References,
        stats: WorkerStats,
    ) -> None:
        self.config = config
        self._codec = codec
        self._delivery = delivery
        self._dead = dead_letters
        self._drift_topic = drift_topic
        self._state_topic = state_topic
        self._state_producer = state_producer
        self._stats = stats
        self.table: MutableMapping[bytes, bytes] = {}  # the Faust table's local data
        self.decider = Decider(config, references, lambda key: self.table.get(state_key(key)))
        # Now, not at the first fold: importing River takes hundreds of milliseconds, and
        # on the fold thread it held the GIL while the scoring agents waited.
        river_drift()
        self._partition_of: dict[MonitorKey, int] = {}
        self._skipped_counted = 0  # of decider.skipped, already in the stats
        self._folding = asyncio.Lock()
        self._fold_thread = ThreadPoolExecutor(1, thread_name_prefix="drift-fold")

    def partitions_changed(self) -> None:
        """Forget in-memory monitors: each is rebuilt from the (recovered) table when next fed."""
        self.decider.forget()
        self._partition_of.clear()

    async def partitions_changed_async(self) -> None:
        """:meth:`partitions_changed`, once the batch being folded off the loop is done, so
        its monitors' records are written before they are forgotten."""
        async with self._folding:
            self.partitions_changed()

    def process(self, messages: Sequence[InboundMessage], batch: BatchDelivery) -> None:
        """Fold a batch of summary messages; publish alarms; write the monitors it changed."""
        started = time.perf_counter()
        parts = self._decode(messages, batch)
        self._publish(*self._fold(parts), batch)
        self._stats.timing["decide_s"] += time.perf_counter() - started

    async def process_async(self, messages: Sequence[InboundMessage], batch: BatchDelivery) -> None:
        """:meth:`process` with the fold on the decider's own thread. The fold bins every
        row of the batch into the window tests (tens of milliseconds for a large batch); on
        the event loop it held up the scoring agents of the same worker for that long."""
        started = time.perf_counter()
        async with self._folding:  # one fold at a time, and none across a rebalance
            parts = self._decode(messages, batch)
            loop = asyncio.get_running_loop()
            folded = await loop.run_in_executor(self._fold_thread, self._fold, parts)
            self._publish(*folded, batch)
        self._stats.timing["decide_s"] += time.perf_counter() - started

    def _fold(self, parts: list) -> tuple[list[DriftAlarm], list[tuple[MonitorKey, bytes]]]:
        """The alarms, and the record of each monitor the parts changed."""
        # The whole batch at once: a scoring batch's pieces fold as one part.
        alarms = self.decider.fold_all(parts)
        return alarms, [(key, self.decider.record(key)) for key in self.decider.take_touched()]

    def _decode(self, messages: Sequence[InboundMessage], batch: BatchDelivery) -> list:
        parts = []
        for message in messages:
            try:
                decoded = decode_parts(bytes(message.value or b""))
            except (SnapshotError, InvalidValue) as exc:
                # Only driftline writes this topic, so this is a bug or corruption: keep it.
                self._dead.publish(message, INVALID_SUMMARY, str(exc), batch)
                continue
            for part in decoded:
                self._partition_of[part.key] = message.partition
            parts += decoded
        return parts

    def _publish(
        self,
        alarms: list[DriftAlarm],
        records: list[tuple[MonitorKey, bytes]],
        batch: BatchDelivery,
    ) -> None:
        """The alarms as DriftEvents, and a state record of each monitor the fold changed."""
        now = time.time_ns() // 1_000_000
        for alarm in alarms:
            record = drift_record(alarm, now)
            value = self._codec.encode("DriftEvent", record)
            self._delivery.produce(batch, self._drift_topic, value, key=alarm.key.model.encode())
            labels = (
                record["model"],
                record["arm"] or "",
                record["detector"],
                record["feature"] or "",
            )
            self._stats.drift_alarms[labels] += 1
        self._stats.drift_events += len(alarms)
        self._stats.drift_redelivered += self.decider.skipped - self._skipped_counted
        self._skipped_counted = self.decider.skipped
        self._stats.drift_restored.update(self.decider.restored)
        for key, blob in records:
            batch.expect()
            self._resend(self._partition_of[key], state_key(key), blob, key, batch)
            self._stats.drift_snapshot_bytes += len(blob)

    def _resend(self, partition: int, key: bytes, blob: bytes, monitor: MonitorKey, batch) -> None:
        # A partial, not a closure that names itself to re-send: that was a reference cycle
        # per state record, holding the record and its batch until a full collection, which
        # the worker's GC tuning makes rare (the scoring worker grew ~0.6 MiB/s).
        delivered = partial(self._state_delivered, partition, key, blob, monitor, batch)
        while True:
            try:
                self._state_producer.produce(
                    self._state_topic, blob, key=key, partition=partition, on_delivery=delivered
                )
                return
            except BufferError:
                self._state_producer.poll(0.05)

    def _state_delivered(self, partition, key, blob, monitor, batch, err, msg) -> None:
        if err is not None:
            # Re-sent here, not by the batch: it must land on this exact partition.
            log.warning("drift state of %s not delivered (%s); re-sending", monitor, err)
            self._resend(partition, key, blob, monitor, batch)
            return
        self.table[key] = blob
        batch.on_delivery(None, msg)

    def status(self) -> dict:
        """The monitors this worker decides for (the /driftline/drift/ view)."""
        return {"config": self.config.params(), "monitors": self.decider.status()}

    async def status_async(self) -> dict:
        """:meth:`status` between folds, never of monitors half way through one."""
        async with self._folding:
            return self.status()

    def poll(self) -> None:
        """Serve the state producer's delivery callbacks (call often, on the event loop)."""
        self._state_producer.poll(0)

    def flush(self, timeout: float = 10.0) -> None:
        self._state_producer.flush(timeout)

    def close(self) -> None:
        self._fold_thread.shutdown(wait=True)
