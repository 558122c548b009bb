"""The outcomes join: outcomes meet the predictions they resolve, errors feed the detectors.

Outcomes are keyed by prediction id and predictions by entity or frame id, so
the two never share a partition. Both are re-keyed onto one internal topic,
``<app>-outcome-join``, by their join key (the prediction frame id, or the
prediction id of a single record): the scoring worker publishes a compact
*pending* entry per scored part, and the ``route-outcomes`` agent forwards
each outcome. One ``join-outcomes`` agent then sees both sides of a key on one
partition, in order, and holds the state in the ``outcome-join`` Faust table:

- ``p<partition>|d|<offset>``: what one batch changed (scored parts awaiting
  outcomes, rows labelled, outcomes that overtook their prediction), see
  :meth:`drift.outcomes.OutcomeJoin.take_delta`; replayed in order on
  recovery and deleted once older than the wait window;
- ``p<partition>|monitors``: the error-stream detectors of every version and
  arm fed from that partition, with the next offset to fold (exactly-once
  folding over at-least-once delivery, as in the drift stage).

Both kinds of join-topic message go to an explicit partition,
``crc32(join key) % partitions``, so the scoring worker can send all of a
batch's pending parts for one partition as one message.

Late and unmatched outcomes go to the dead-letter topic (reasons
``outcome_late``, ``outcome_unmatched``) and are counted in the worker stats.
"""

from __future__ import annotations

import logging
import time
import zlib
from collections import defaultdict
from collections.abc import MutableMapping, Sequence
from dataclasses import dataclass

import numpy as np
from confluent_kafka import Producer

from drift.config import DriftConfig
from drift.exceptions import InvalidValue, SnapshotError
from drift.monitor import MonitorKey, MonitorSet
from drift.outcomes import (
    OutcomeJoin,
    Pending,
    Report,
    decode_pending,
    encode_pending,
    join_key,
)
from inference.event_time import DEFAULT_BOUNDS, INVALID_EVENT_TIME, EventTimeBounds
from schemas import DecodeError, SchemaCodec
from streams.deadletter import DeadLetterPublisher, InboundMessage
from streams.delivery import BatchDelivery, DeliveryTracker
from streams.drift_stage import drift_record
from streams.limits import DEFAULT_LIMIT, TOO_LARGE, MessageLimit
from streams.stats import WorkerStats

log = logging.getLogger(__name__)

JOIN_TABLE = "outcome-join"
JOIN_TOPIC_SUFFIX = "outcome-join"
PENDING_TAG, OUTCOME_TAG = b"P", b"O"  # first byte of a join-topic value
# Brokers refuse messages over 1 MB by default (Tansu too): state records and
# pending messages are cut below that.
MAX_RECORD_BYTES = 512 * 1024


@dataclass(frozen=True)
class _Reported:
    """An outcome that ended late or unmatched, in the shape the dead-letter publisher takes."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: object = None


def join_partition(key: str, partitions: int) -> int:
    """The join-topic partition of a join key (both sides use it, explicitly)."""
    return zlib.crc32(key.encode()) % partitions


class OutcomeJoiner:
    def __init__(
        self,
        *,
        config: DriftConfig,
        wait_ms: int,
        max_pending: int,
        partitions: int,
        codec: SchemaCodec,
        delivery: DeliveryTracker,
        dead_letters: DeadLetterPublisher,
        join_topic: str,
        drift_topic: str,
        state_topic: str,
        state_producer: Producer,
        stats: WorkerStats,
        limit: MessageLimit = DEFAULT_LIMIT,
        event_times: EventTimeBounds = DEFAULT_BOUNDS,
    ) -> None:
        self._limit, self._event_times = limit, event_times
        self.config, self.wait_ms, self.max_pending = config, wait_ms, max_pending
        self.partitions = partitions
        self._codec, self._delivery, self._dead = codec, delivery, dead_letters
        self.join_topic, self._drift_topic = join_topic, drift_topic
        self._state_topic, self._state_producer = state_topic, state_producer
        self._stats = stats
        self._joins: dict[int, OutcomeJoin] = {}
        self._monitors: dict[int, MonitorSet] = {}
        self._deltas: dict[int, dict[bytes, int]] = {}  # live delta keys -> created ms
        self.table: MutableMapping[bytes, bytes] = {}

    # -- both sides onto the join topic ---------------------------------------------------

    def publish_pending(self, entries: list[tuple[str, Pending]], batch: BatchDelivery) -> None:
        """The scoring worker's side: one message per join partition for a batch's parts."""
        by_partition: dict[int, list[tuple[str, Pending]]] = defaultdict(list)
        for key, part in entries:
            by_partition[join_partition(key, self.partitions)].append((key, part))
        for partition, items in by_partition.items():
            chunk, size = [], 0
            for key, part in items:
                chunk.append((key, part))
                size += 13 * len(part.scores) + 80
                if size >= MAX_RECORD_BYTES // 2:
                    self._send_pending(chunk, partition, batch)
                    chunk, size = [], 0
            if chunk:
                self._send_pending(chunk, partition, batch)

    def _send_pending(self, entries, partition: int, batch: BatchDelivery) -> None:
        value = PENDING_TAG + encode_pending(entries)
        self._delivery.produce(batch, self.join_topic, value, partition=partition)

    def route(self, messages: Sequence[InboundMessage], batch: BatchDelivery) -> None:
        """The outcomes' side: each outcome forwarded to its join key's partition."""
        for message in messages:
            try:
                record = self._codec.decode_as("Outcome", message.value)
                key, _ = join_key(record["prediction_id"])
            except DecodeError as exc:
                self._dead.publish(message, exc.reason, str(exc), batch)
                continue
            except InvalidValue as exc:
                self._dead.publish(message, "invalid_outcome", str(exc), batch)
                continue
            if not 0 <= record["event_time"] <= self._event_times.latest():
                detail = self._event_times.detail(record["event_time"])
                self._dead.publish(message, INVALID_EVENT_TIME, detail, batch)
                continue
            value = OUTCOME_TAG + bytes(message.value)
            if not self._limit.fits(value, key.encode()):
                detail = self._limit.explain(len(value), "the outcome, forwarded to the join")
                self._dead.publish(message, TOO_LARGE, detail, batch)
                continue
            partition = join_partition(key, self.partitions)
            self._delivery.produce(
                batch, self.join_topic, value, key=key.encode(), partition=partition
            )

    # -- the join -----------------------------------------------------------------------

    def partitions_changed(self) -> None:
        self._joins.clear()
        self._monitors.clear()
        self._deltas.clear()

    def process(self, messages: Sequence[InboundMessage], batch: BatchDelivery) -> None:
        by_partition: dict[int, list[InboundMessage]] = defaultdict(list)
        for message in messages:
            by_partition[message.partition].append(message)
        now = time.time_ns() // 1_000_000
        for partition, items in by_partition.items():
            self._process_partition(partition, items, now, batch)

    def expire(self, batch: BatchDelivery) -> None:
        """Timer: end the wait of old pending predictions and of outcomes with none;
        drop the deltas that describe only expired things."""
        now = time.time_ns() // 1_000_000
        for partition, join in self._joins.items():
            join.expire(now)
            self._report(join, partition, batch)
            live = self._deltas.setdefault(partition, {})
            for key in [k for k, created in live.items() if created + self.wait_ms < now]:
                del live[key]
                batch.expect()
                self._send_state(partition, key, None, batch)

    def _state(self, partition: int) -> tuple[OutcomeJoin, MonitorSet]:
        if partition not in self._joins:
            join = OutcomeJoin(
                wait_ms=self.wait_ms,
                max_pending=self.max_pending,
                decision_threshold=self.config.decision_threshold,
            )
            monitors = MonitorSet(self.config)
            live = self._deltas[partition] = {}
            prefix = f"p{partition}|".encode()
            for raw_key in sorted(k for k in self.table if k.startswith(prefix + b"d|")):
                live[raw_key] = join.apply_delta(self.table[raw_key])
            if prefix + b"monitors" in self.table:
                monitors.restore(self.table[prefix + b"monitors"])
            join.counts.clear()  # replay re-counts nothing: those were reported before
            self._joins[partition], self._monitors[partition] = join, monitors
        return self._joins[partition], self._monitors[partition]

    def _process_partition(self, partition: int, items, now: int, batch) -> None:
        join, monitors = self._state(partition)
        errors: dict[MonitorKey, list[int]] = defaultdict(list)
        fresh = [message for message in items if message.offset >= monitors.next_offset]
        delta_from = fresh[0].offset if fresh else 0
        for message in fresh:
            if join.delta_size() >= MAX_RECORD_BYTES // 2:
                self._write_delta(partition, join, delta_from, now, batch)
                delta_from = message.offset
            try:
                joined = self._join_one(join, message, now)
            except (DecodeError, SnapshotError, InvalidValue) as exc:
                # Only driftline writes this topic, so this is a bug or corruption: keep it.
                self._dead.publish(message, "invalid_join_message", str(exc), batch)
                continue
            for outcome in joined:
                key = MonitorKey(outcome.model, outcome.version, outcome.arm)
                errors[key].append(outcome.error)
        if not fresh:
            return  # counted before a restart
        monitors.next_offset = fresh[-1].offset + 1
        alarms = []
        for key, values in errors.items():
            monitor = monitors.monitor(key, (), None)
            alarms += monitor.observe_errors(np.asarray(values, dtype=np.int8))
        for alarm in alarms:
            value = self._codec.encode("DriftEvent", drift_record(alarm, partition, now))
            self._delivery.produce(batch, self._drift_topic, value, key=alarm.key.model.encode())
        self._stats.drift_events += len(alarms)
        self._report(join, partition, batch)
        self._write_delta(partition, join, delta_from, now, batch)
        batch.expect()
        self._send_state(partition, f"p{partition}|monitors".encode(), monitors.snapshot(), batch)

    def _join_one(self, join: OutcomeJoin, message, now: int) -> list:
        kind, body = bytes(message.value[:1]), bytes(message.value[1:])
        if kind == PENDING_TAG:
            joined = []
            for key, part in decode_pending(body):
                joined += join.add_pending(key, part, now)
            return joined
        if kind == OUTCOME_TAG:
            record = self._codec.decode_as("Outcome", body)
            found = join.add_outcome(
                record["prediction_id"],
                record["value"],
                record["event_time"],
                now,
                source=message.offset,
            )
            return [] if found is None else [found]
        raise InvalidValue(f"join-topic message of unknown kind {kind!r}")

    def _write_delta(self, partition: int, join: OutcomeJoin, first: int, now: int, batch) -> None:
        """One state record for what changed from offset ``first`` on (keys sort by offset)."""
        delta = join.take_delta(now)
        if delta is None:
            return
        key = f"p{partition}|d|{first:020d}".encode()
        self._deltas.setdefault(partition, {})[key] = now
        batch.expect()
        self._send_state(partition, key, delta, batch)

    def _report(self, join: OutcomeJoin, partition: int, batch) -> None:
        late, unmatched = join.take_reports()
        for reason, reports in (("outcome_late", late), ("outcome_unmatched", unmatched)):
            for report in reports:
                detail = f"outcome for {report.prediction_id} {report.detail}; not fed to detectors"
                self._dead.publish(self._reported(report, partition), reason, detail, batch)
        self._stats.outcomes.update(join.counts)
        join.counts.clear()

    def _reported(self, report: Report, partition: int) -> _Reported:
        """The outcome as it came in (re-encoded), so it can be fixed and replayed."""
        record = {
            "prediction_id": report.prediction_id,
            "entity_id": None,
            "value": report.value,
            "label": None,
            "event_time": report.event_time,
        }
        value = self._codec.encode("Outcome", record)
        key = report.prediction_id.encode()
        return _Reported(self.join_topic, partition, report.source, key, value)

    def _send_state(self, partition: int, key: bytes, value: bytes | None, batch) -> None:
        def delivered(err, msg) -> None:
            if err is not None:
                # Re-sent here, not by the batch: it must land on this exact partition.
                log.warning("outcome-join state not delivered (%s); re-sending", err)
                self._send_state(partition, key, value, batch)
                return
            if value is None:
                self.table.pop(key, None)
            else:
                self.table[key] = value
            batch.on_delivery(None, msg)

        while True:
            try:
                self._state_producer.produce(
                    self._state_topic, value, key=key, partition=partition, on_delivery=delivered
                )
                return
            except BufferError:
                self._state_producer.poll(0.05)
