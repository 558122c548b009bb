"""The scoring worker's drift stage: scored rows in, DriftEvents and state snapshots out.

Runs inside the inference agent, on the batch it has just scored, so the
frames path pays for drift detection with vectorised window tests rather than
another pass over Kafka. Per source partition it keeps a
:class:`drift.monitor.MonitorSet` (one monitor per model version and arm).

State: after each batch every monitor it fed is snapshotted into the
``drift-state`` Faust table, one record per monitor, written to the table's
changelog partition that matches the source partition; the batch's offsets are
acknowledged only once those records (and every DriftEvent) are delivered. A
restarted or rebalanced worker gets the table back from the changelog (Faust's
recovery) and resumes where each snapshot was; the next offset in each record
makes re-delivered messages count once.

Tansu (the embedded broker) reports a partition's end offset as the last
batch's base offset + 1, and Faust recovers a table up to that offset, so the
snapshot producer sends one message per batch (``batch.num.messages=1``).
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass

import numpy as np
from confluent_kafka import Producer

from drift.config import DriftConfig
from drift.monitor import ArmMonitor, DriftAlarm, MonitorKey
from drift.packing import pack, unpack
from lineage.profile import ReferenceProfile
from schemas import SchemaCodec
from streams.delivery import BatchDelivery, DeliveryTracker
from streams.stats import WorkerStats

log = logging.getLogger(__name__)

STATE_TABLE = "drift-state"
_EVENT_NAMESPACE = uuid.UUID("5d1f3a52-8c1e-4f0e-9a57-3b2f1c0d7e11")

References = Callable[[str, int], ReferenceProfile | None]


@dataclass(frozen=True)
class Observation:
    """Rows one arm scored from one partition's messages, in offset order."""

    partition: int
    offsets: np.ndarray  # [n] int64: the source message of each row
    model: str
    version: int
    arm: str
    feature_names: tuple[str, ...]
    rows: np.ndarray  # [n, k]
    scores: np.ndarray  # [n]


def event_id(alarm: DriftAlarm, partition: int) -> str:
    """Stable across redelivery and restarts: the same alarm at the same record, the same id."""
    k = alarm.key
    name = (
        f"{k.model}|{k.version}|{k.arm}|{alarm.stream}|{alarm.detector}|"
        f"{alarm.feature}|{partition}|{alarm.position}"
    )
    return uuid.uuid5(_EVENT_NAMESPACE, name).hex


def drift_record(alarm: DriftAlarm, partition: int, detected_at: int) -> dict:
    """The Avro DriftEvent for an alarm."""
    p_value = alarm.p_value if alarm.p_value is None or np.isfinite(alarm.p_value) else None
    evidence = dict(alarm.evidence) | {"position": alarm.position, "source_partition": partition}
    return {
        "event_id": event_id(alarm, partition),
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


class _PartitionMonitors:
    """The monitors fed from one source partition, each with the next offset it will fold.

    Each monitor is its own table record (``p<partition>|<model, version, arm>``),
    so a record stays small however many versions and arms a partition feeds, and
    a crash between two records' writes leaves each monitor consistent with its
    own offset. Stored records are restored lazily, when their monitor is next fed.
    """

    def __init__(self, config: DriftConfig, stored: dict[str, bytes]) -> None:
        self.config = config
        self.monitors: dict[MonitorKey, ArmMonitor] = {}
        self.next_offset: dict[MonitorKey, int] = {}
        self._stored = stored

    def get(self, key: MonitorKey, names: tuple[str, ...], reference) -> ArmMonitor:
        found = self.monitors.get(key)
        if found is None:
            found = self.monitors[key] = ArmMonitor(key, names, reference, self.config)
            blob = self._stored.pop(key.text(), None)
            if blob is not None:
                parts, meta = unpack("drift-monitor", blob)
                found.restore(parts["state"])
                self.next_offset[key] = int(meta["next_offset"])
        return found

    def record(self, key: MonitorKey) -> bytes:
        state = {"state": self.monitors[key].snapshot()}
        return pack("drift-monitor", state, {"next_offset": self.next_offset.get(key, 0)})


class DriftStage:
    def __init__(
        self,
        *,
        config: DriftConfig,
        codec: SchemaCodec,
        delivery: DeliveryTracker,
        drift_topic: str,
        state_topic: str,
        state_producer: Producer,
        references: References,
        stats: WorkerStats,
    ) -> None:
        self.config = config
        self._codec = codec
        self._delivery = delivery
        self._drift_topic = drift_topic
        self._state_topic = state_topic
        self._state_producer = state_producer
        self._references = references
        self._stats = stats
        self._sets: dict[int, _PartitionMonitors] = {}
        self.table: MutableMapping[bytes, bytes] = {}  # the Faust table's local data

    def partitions_changed(self) -> None:
        """Forget in-memory monitors: each is rebuilt from the (recovered) table when next fed."""
        self._sets.clear()

    def _set(self, partition: int) -> _PartitionMonitors:
        found = self._sets.get(partition)
        if found is None:
            prefix = f"p{partition}|".encode()
            stored = {
                key[len(prefix) :].decode(): value
                for key, value in list(self.table.items())
                if key.startswith(prefix)
            }
            if stored:
                log.info(
                    "drift state of partition %d: %d monitors to restore", partition, len(stored)
                )
            found = self._sets[partition] = _PartitionMonitors(self.config, stored)
        return found

    def fold(self, observations: list[Observation], batch: BatchDelivery) -> int:
        """Feed a batch's scored rows to the monitors; publish alarms; snapshot. Returns alarms."""
        started = time.perf_counter()
        by_partition: dict[int, list[Observation]] = defaultdict(list)
        for item in observations:
            by_partition[item.partition].append(item)
        alarms = 0
        for partition, items in by_partition.items():
            alarms += self._fold_partition(partition, items, batch)
        self._stats.timing["drift_s"] += time.perf_counter() - started
        return alarms

    def _fold_partition(self, partition: int, items: list[Observation], batch) -> int:
        monitors = self._set(partition)
        now = time.time_ns() // 1_000_000
        alarms: list[DriftAlarm] = []
        touched: dict[MonitorKey, None] = {}
        for item in items:
            key = MonitorKey(item.model, item.version, item.arm)
            reference = self._references(item.model, item.version)
            restored = key not in monitors.monitors
            monitor = monitors.get(key, item.feature_names, reference)
            start = monitors.next_offset.get(key, 0)
            if restored and start:
                self._stats.drift_restored[f"{partition}:{key.label()}"] = start
            if item.offsets[-1] < start:  # counted before a restart
                self._stats.drift_redelivered += len(item.offsets)
                continue
            rows, scores = item.rows, item.scores
            if item.offsets[0] < start:
                fresh = item.offsets >= start
                self._stats.drift_redelivered += int(len(fresh) - fresh.sum())
                rows, scores = rows[fresh], scores[fresh]
            alarms += monitor.observe(rows, scores)
            monitors.next_offset[key] = int(item.offsets[-1]) + 1
            touched[key] = None
        for alarm in alarms:
            value = self._codec.encode("DriftEvent", drift_record(alarm, partition, now))
            self._delivery.produce(batch, self._drift_topic, value, key=alarm.key.model.encode())
        self._stats.drift_events += len(alarms)
        for key in touched:
            batch.expect()
            table_key = f"p{partition}|{key.text()}".encode()
            self._send_state(partition, table_key, monitors.record(key), batch)
        return len(alarms)

    def _send_state(self, partition: int, key: bytes, blob: bytes, batch: BatchDelivery) -> None:
        def delivered(err, msg) -> None:
            if err is not None:
                # Re-sent here, not by the batch: it must land on this exact partition.
                log.warning(
                    "drift state of partition %d not delivered (%s); re-sending", partition, err
                )
                self._send_state(partition, key, blob, batch)
                return
            self.table[key] = blob
            batch.on_delivery(None, msg)

        while True:
            try:
                self._state_producer.produce(
                    self._state_topic, blob, key=key, partition=partition, on_delivery=delivered
                )
                break
            except BufferError:
                self._state_producer.poll(0.05)
        self._stats.drift_snapshot_bytes += len(blob)

    def status(self) -> dict:
        """Live monitors of this worker, per source partition (the /driftline/drift/ view)."""
        return {
            "config": self.config.params(),
            "partitions": {
                str(partition): {
                    "monitors": [
                        m.summary() | {"next_offset": monitors.next_offset.get(key, 0)}
                        for key, m in monitors.monitors.items()
                    ],
                }
                for partition, monitors in sorted(self._sets.items())
            },
        }

    def poll(self) -> None:
        """Serve the snapshot producer's delivery callbacks (call often, on the event loop)."""
        self._state_producer.poll(0)

    def flush(self, timeout: float = 10.0) -> None:
        self._state_producer.flush(timeout)
