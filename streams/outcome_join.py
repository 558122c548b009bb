"""The outcomes join: outcomes meet the predictions they resolve, errors feed the detectors.

Outcomes are keyed by prediction id and predictions by entity or frame id, so
the two never share a partition. Both are re-keyed onto one internal topic,
``<app>-outcome-join``, by their join key (the prediction frame id, or the
prediction id of a single record): the scoring worker publishes a compact
*pending* entry per scored part, and the ``route-outcomes`` agent forwards
each outcome. One ``join-outcomes`` agent then sees both sides of a key on one
partition, in order, and holds the state in the ``outcome-join`` Faust table:

- ``p<partition>|pending|<key>``: scores awaiting outcomes (:class:`drift.outcomes.Pending`);
- ``p<partition>|waiting|<key>``: outcomes that overtook their prediction;
- ``p<partition>|monitors``: the error-stream detectors of every version and
  arm fed from that partition, with the next offset to fold (exactly-once
  folding over at-least-once delivery, as in the drift stage).

Late and unmatched outcomes go to the dead-letter topic (reasons
``outcome_late``, ``outcome_unmatched``) and are counted in the worker stats.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import MutableMapping, Sequence
from dataclasses import dataclass

import numpy as np
from confluent_kafka import Producer

from drift.config import DriftConfig
from drift.exceptions import InvalidValue
from drift.monitor import MonitorKey, MonitorSet
from drift.outcomes import OutcomeJoin, Pending, Report, join_key
from schemas import DecodeError, SchemaCodec
from streams.deadletter import DeadLetterPublisher, InboundMessage
from streams.delivery import BatchDelivery, DeliveryTracker
from streams.drift_stage import drift_record
from streams.stats import WorkerStats

log = logging.getLogger(__name__)

JOIN_TABLE = "outcome-join"
JOIN_TOPIC_SUFFIX = "outcome-join"
PENDING_TAG, OUTCOME_TAG = b"P", b"O"  # first byte of a join-topic value


@dataclass(frozen=True)
class _Reported:
    """An outcome that ended late or unmatched, in the shape the dead-letter publisher takes."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: object = None


class OutcomeJoiner:
    def __init__(
        self,
        *,
        config: DriftConfig,
        wait_ms: int,
        max_pending: int,
        codec: SchemaCodec,
        delivery: DeliveryTracker,
        dead_letters: DeadLetterPublisher,
        join_topic: str,
        drift_topic: str,
        outcomes_topic: str,
        state_topic: str,
        state_producer: Producer,
        stats: WorkerStats,
    ) -> None:
        self.config, self.wait_ms, self.max_pending = config, wait_ms, max_pending
        self._codec, self._delivery, self._dead = codec, delivery, dead_letters
        self.join_topic, self._drift_topic = join_topic, drift_topic
        self._outcomes_topic = outcomes_topic
        self._state_topic, self._state_producer = state_topic, state_producer
        self._stats = stats
        self._joins: dict[int, OutcomeJoin] = {}
        self._monitors: dict[int, MonitorSet] = {}
        self.table: MutableMapping[bytes, bytes] = {}

    # -- routing outcomes onto the join topic -------------------------------------------

    def route(self, messages: Sequence[InboundMessage], batch: BatchDelivery) -> None:
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
            value = OUTCOME_TAG + bytes(message.value)
            self._delivery.produce(batch, self.join_topic, value, key=key.encode())

    # -- the join -----------------------------------------------------------------------

    def partitions_changed(self) -> None:
        self._joins.clear()
        self._monitors.clear()

    def process(self, messages: Sequence[InboundMessage], batch: BatchDelivery) -> None:
        by_partition: dict[int, list[InboundMessage]] = defaultdict(list)
        for message in messages:
            by_partition[message.partition].append(message)
        now = time.time_ns() // 1_000_000
        for partition, items in by_partition.items():
            self._process_partition(partition, items, now, batch)

    def expire(self, batch: BatchDelivery) -> None:
        """Timer: end the wait of old pending predictions and of outcomes with none."""
        now = time.time_ns() // 1_000_000
        for partition, join in self._joins.items():
            join.expire(now)
            self._report(join, partition, batch)
            self._write(partition, join, None, batch)

    def _state(self, partition: int) -> tuple[OutcomeJoin, MonitorSet]:
        if partition not in self._joins:
            join = OutcomeJoin(
                wait_ms=self.wait_ms,
                max_pending=self.max_pending,
                decision_threshold=self.config.decision_threshold,
            )
            monitors = MonitorSet(self.config)
            prefix = f"p{partition}|".encode()
            for raw_key, value in list(self.table.items()):
                if not raw_key.startswith(prefix):
                    continue
                kind, _, key = raw_key[len(prefix) :].decode().partition("|")
                if kind == "pending":
                    join.load(key, value, None)
                elif kind == "waiting":
                    join.load(key, None, value)
                elif kind == "monitors":
                    monitors.restore(value)
            join.order_pending()
            self._joins[partition], self._monitors[partition] = join, monitors
        return self._joins[partition], self._monitors[partition]

    def _process_partition(self, partition: int, items, now: int, batch) -> None:
        join, monitors = self._state(partition)
        errors: dict[MonitorKey, list[int]] = defaultdict(list)
        folded = False
        for message in items:
            if message.offset < monitors.next_offset:
                continue  # counted before a restart
            folded = True
            kind, body = bytes(message.value[:1]), bytes(message.value[1:])
            key = message.key.decode() if message.key else ""
            if kind == PENDING_TAG:
                joined = join.add_pending(key, Pending.from_bytes(body)[0], now)
            elif kind == OUTCOME_TAG:
                record = self._codec.decode_as("Outcome", body)
                found = join.add_outcome(
                    record["prediction_id"],
                    record["value"],
                    record["event_time"],
                    now,
                    source=message.offset,
                )
                joined = [] if found is None else [found]
            else:
                self._dead.publish(message, "invalid_join_message", f"kind {kind!r}", batch)
                continue
            for outcome in joined:
                errors[MonitorKey(outcome.model, outcome.version, outcome.arm)].append(
                    outcome.error
                )
        if not folded:
            return
        monitors.next_offset = items[-1].offset + 1
        alarms = []
        for key, values in errors.items():
            monitor = monitors.monitor(key, (), None)
            alarms += monitor.observe_errors(np.asarray(values, dtype=np.int8))
        for alarm in alarms:
            value = self._codec.encode("DriftEvent", drift_record(alarm, partition, now))
            self._delivery.produce(batch, self._drift_topic, value, key=alarm.key.model.encode())
        self._stats.drift_events += len(alarms)
        self._report(join, partition, batch)
        self._write(partition, join, monitors, batch)

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

    def _write(self, partition: int, join: OutcomeJoin, monitors, batch) -> None:
        prefix = f"p{partition}|"
        writes: list[tuple[bytes, bytes | None]] = []
        for key, (pending, waiting) in join.take_dirty().items():
            writes.append(((prefix + "pending|" + key).encode(), pending))
            waiting_key = (prefix + "waiting|" + key).encode()
            if waiting is not None or waiting_key in self.table:
                writes.append((waiting_key, waiting))
        if monitors is not None:
            writes.append(((prefix + "monitors").encode(), monitors.snapshot()))
        for table_key, value in writes:
            batch.expect()
            self._send_state(partition, table_key, value, batch)

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
