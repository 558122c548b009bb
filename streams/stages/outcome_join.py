"""The outcomes join: outcomes meet the predictions they resolve; errors go to the decider.

Outcomes are keyed by prediction id and predictions by entity or frame id, so
the two never share a partition. Both are re-keyed onto one internal topic,
``<app>-outcome-join``, by their join key (the prediction frame id, or the
prediction id of a single record): the scoring worker publishes a compact
*pending* entry per scored part, and the ``route-outcomes`` agent forwards
each batch's outcomes, packed into one message per join partition (one Faust
event a batch on the join side, not one an outcome: per-event cost capped the
join at about 900 outcomes/s on a busy 2-core worker). One ``join-outcomes``
agent then sees both sides of a key on one partition, in order, and holds the
state in the ``outcome-join`` Faust table:

- ``p<partition>|d|<offset>``: what one batch changed (scored parts awaiting
  outcomes, rows labelled, outcomes that overtook their prediction), see
  :meth:`driftline.drift.outcomes.OutcomeJoin.take_delta`; replayed in order on
  recovery and deleted once older than the wait window;
- ``p<partition>|next``: the next join-topic offset to process, so a
  redelivered batch is not joined twice.

The 0/1 errors of joined outcomes are not judged here: a join partition sees
only some of a model's outcomes. Per batch they go as error parts
(:class:`driftline.drift.summary.ErrorPart`: each error with the offset of the join
message it came from) to the model's drift decider on the summaries topic
(:mod:`driftline.streams.stages.drift_decider`), which runs the error detectors once per
version and arm over the outcomes of every partition.

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

from driftline.drift.config import DriftConfig
from driftline.drift.exceptions import InvalidValue, SnapshotError
from driftline.drift.monitor import MonitorKey
from driftline.drift.outcomes import (
    OutcomeJoin,
    Pending,
    Report,
    decode_pending,
    encode_pending,
    join_key,
    single_row,
)
from driftline.drift.packing import pack, unpack
from driftline.drift.summary import ErrorPart, chunks, encode_parts, split_errors
from driftline.inference.event_time import DEFAULT_BOUNDS, INVALID_EVENT_TIME, EventTimeBounds
from driftline.schemas import DecodeError, SchemaCodec
from driftline.streams.kafka.delivery import BatchDelivery, DeliveryTracker
from driftline.streams.kafka.limits import DEFAULT_LIMIT, TOO_LARGE, MessageLimit
from driftline.streams.stages.deadletter import DeadLetterPublisher, InboundMessage
from driftline.streams.stages.drift_reduce import MAX_SUMMARY_BYTES, summary_partition
from driftline.streams.stats import WorkerStats

log = logging.getLogger(__name__)

JOIN_TABLE = "outcome-join"
JOIN_TOPIC_SUFFIX = "outcome-join"
# First byte of a join-topic value: pending parts, one outcome (as written before outcomes
# were packed; still read), or a batch's outcomes for one partition.
PENDING_TAG, OUTCOME_TAG, OUTCOMES_TAG = b"P", b"O", b"M"
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


Origin = list  # [topic, partition, offset] of an outcome on the topic it came in on


def encode_outcomes(outcomes: Sequence[tuple[bytes, Origin]]) -> bytes:
    """Outcomes, each as it came in (Confluent-framed Avro) with where it came in, in one
    join-topic message. The origin names an outcome's dead letter, should it end as one:
    the join message's own offset is shared by every outcome in it."""
    values = {str(i): value for i, (value, _) in enumerate(outcomes)}
    return pack("outcomes", values, {"origins": [origin for _, origin in outcomes]})


def decode_outcomes(blob: bytes) -> list[tuple[bytes, Origin]]:
    parts, meta = unpack("outcomes", blob)
    origins = meta.get("origins")
    if not isinstance(origins, list) or len(origins) != len(parts):
        raise SnapshotError(f"corrupt outcomes message: {len(parts)} outcomes, origins {origins!r}")
    return [(parts[str(i)], origin) for i, origin in enumerate(origins)]


def _is_carry(state_key: bytes) -> bool:
    """Whether a state key names a carry record (``p<partition>|d|<offset>|c<n>``)."""
    return state_key.count(b"|") == 3


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
        summaries_topic: str,
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
        self.join_topic, self._summaries_topic = join_topic, summaries_topic
        self._state_topic, self._state_producer = state_topic, state_producer
        self._stats = stats
        self._joins: dict[int, OutcomeJoin] = {}
        self._next: dict[int, int] = {}  # join partition -> next offset to process
        self._deltas: dict[int, dict[bytes, int]] = {}  # live delta keys -> created ms
        self.table: MutableMapping[bytes, bytes] = {}

    # -- both sides onto the join topic ---------------------------------------------------

    def publish_pending(self, entries: list[tuple[str, Pending]], batch: BatchDelivery) -> None:
        """The scoring worker's side: one message per join partition for a batch's parts."""
        by_partition: dict[int, list[tuple[str, Pending]]] = defaultdict(list)
        threshold = self.config.decision_threshold
        for key, part in entries:
            # Decisions, not scores: a bit a row instead of four on the join topic. One-row
            # parts (single records) are decided all at once as they are encoded.
            decided = part if single_row(part) else part.decide(threshold)
            by_partition[join_partition(key, self.partitions)].append((key, decided))
        for partition, items in by_partition.items():
            chunk, size = [], 0
            for key, part in items:
                chunk.append((key, part))
                n = len(part.scores)
                size += n // 4 + (4 * n if part.rows is not None else 0) + 80
                if size >= MAX_RECORD_BYTES // 2:
                    self._send_pending(chunk, partition, batch)
                    chunk, size = [], 0
            if chunk:
                self._send_pending(chunk, partition, batch)

    def _send_pending(self, entries, partition: int, batch: BatchDelivery) -> None:
        value = PENDING_TAG + encode_pending(entries, decide_at=self.config.decision_threshold)
        self._delivery.produce(batch, self.join_topic, value, partition=partition)

    def route(self, messages: Sequence[InboundMessage], batch: BatchDelivery) -> None:
        """The outcomes' side: each outcome forwarded to its join key's partition, a batch's
        outcomes for one partition packed into messages of at most MAX_RECORD_BYTES / 2."""
        by_partition: dict[int, list[tuple[bytes, Origin]]] = defaultdict(list)
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
            outcome = (bytes(message.value), [message.topic, message.partition, message.offset])
            alone = OUTCOMES_TAG + encode_outcomes([outcome])
            if not self._limit.fits(alone):
                detail = self._limit.explain(len(alone), "the outcome, forwarded to the join")
                self._dead.publish(message, TOO_LARGE, detail, batch)
                continue
            by_partition[join_partition(key, self.partitions)].append(outcome)
        for partition, outcomes in by_partition.items():
            chunk, size = [], 0
            for outcome in outcomes:
                # Each also costs its name, size and origin in the pack's JSON header.
                cost = len(outcome[0]) + len(outcome[1][0]) + 48
                if chunk and size + cost > MAX_RECORD_BYTES // 2:
                    self._send_outcomes(chunk, partition, batch)
                    chunk, size = [], 0
                chunk.append(outcome)
                size += cost
            self._send_outcomes(chunk, partition, batch)

    def _send_outcomes(self, outcomes: list, partition: int, batch: BatchDelivery) -> None:
        value = OUTCOMES_TAG + encode_outcomes(outcomes)
        self._delivery.produce(batch, self.join_topic, value, partition=partition)

    # -- the join -----------------------------------------------------------------------

    def partitions_changed(self) -> None:
        self._joins.clear()
        self._next.clear()
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
        drop the state records that hold nothing live."""
        now = time.time_ns() // 1_000_000
        for partition, join in self._joins.items():
            join.expire(now)
            self._report(join, partition, batch)
            self._compact(partition, join, now, batch)

    def _compact(self, partition: int, join: OutcomeJoin, now: int, batch) -> None:
        """Drop the deltas written before the oldest pending prediction came, and re-write
        the outcomes they hold that still wait (the *carry*) as the newest state records.

        Without this a delta stayed for a whole wait window (600 s by default) however
        soon its predictions were evicted, so under load the table grew for the whole
        window. A delta's time is when its contents came (one clock reading per batch), so
        one older than every pending prediction holds none of them.
        """
        live = self._deltas.setdefault(partition, {})
        cutoff = join.live_since(now)
        dead = [k for k, created in live.items() if created < cutoff and not _is_carry(k)]
        old_carry = [k for k in live if _is_carry(k)]
        if not dead and not old_carry:
            return
        # Sorts after every delta written so far and before every later one, so a replay
        # sees the carried outcomes before anything that resolves them.
        after = max(self._next.get(partition, 0) - 1, 0)
        carry = {}
        for i, blob in enumerate(join.carry(cutoff, now, MAX_RECORD_BYTES // 2)):
            carry[f"p{partition}|d|{after:020d}|c{i:05d}".encode()] = blob
        for key, blob in carry.items():
            live[key] = now
            batch.expect()
            self._send_state(partition, key, blob, batch)
        for key in dead + [k for k in old_carry if k not in carry]:
            del live[key]
            batch.expect()
            self._send_state(partition, key, None, batch)

    def note_state(self) -> None:
        """What the join holds, in the worker's stats: it must stay bounded. Called once the
        expiry's state records are delivered (the table changes on delivery)."""
        held = [join.held() for join in self._joins.values()]
        self._stats.outcome_join = {
            "pending_rows": sum(rows for rows, _ in held),
            "waiting_outcomes": sum(waiting for _, waiting in held),
            "state_records": len(self.table),
            "state_bytes": sum(len(k) + len(v) for k, v in list(self.table.items())),
        }

    def _state(self, partition: int) -> OutcomeJoin:
        if partition not in self._joins:
            join = OutcomeJoin(
                wait_ms=self.wait_ms,
                max_pending=self.max_pending,
                decision_threshold=self.config.decision_threshold,
            )
            live = self._deltas[partition] = {}
            prefix = f"p{partition}|".encode()
            for raw_key in sorted(k for k in self.table if k.startswith(prefix + b"d|")):
                live[raw_key] = join.apply_delta(self.table[raw_key])
            stored = self.table.get(prefix + b"next")
            self._next[partition] = int(stored) if stored is not None else 0
            join.counts.clear()  # replay re-counts nothing: those were reported before
            self._joins[partition] = join
        return self._joins[partition]

    def _process_partition(self, partition: int, items, now: int, batch) -> None:
        join = self._state(partition)
        errors: dict[MonitorKey, list[tuple[int, int]]] = defaultdict(list)  # (offset, error)
        fresh = [message for message in items if message.offset >= self._next[partition]]
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
                errors[key].append((message.offset, outcome.error))
        if not fresh:
            return  # processed before a restart
        self._next[partition] = fresh[-1].offset + 1
        self._send_errors(partition, errors, batch)
        self._report(join, partition, batch)
        self._write_delta(partition, join, delta_from, now, batch)
        batch.expect()
        next_offset = str(self._next[partition]).encode()
        self._send_state(partition, f"p{partition}|next".encode(), next_offset, batch)

    def _send_errors(self, partition: int, errors, batch: BatchDelivery) -> None:
        """The batch's errors per version and arm, to each model's decider."""
        by_model: dict[str, list[ErrorPart]] = defaultdict(list)
        source = f"{JOIN_TOPIC_SUFFIX}/{partition}"
        for key, pairs in errors.items():
            offsets, values = np.asarray(pairs, dtype=np.int64).reshape(-1, 2).T
            part = ErrorPart(key, source, offsets, values.astype(np.int8))
            by_model[key.model] += split_errors(part, MAX_SUMMARY_BYTES // 2)
        for model, parts in by_model.items():
            for chunk in chunks(parts, MAX_SUMMARY_BYTES):
                value = encode_parts(chunk)
                self._delivery.produce(
                    batch,
                    self._summaries_topic,
                    value,
                    key=model.encode(),
                    partition=summary_partition(model, self.partitions),
                )
                self._stats.drift_summary_bytes += len(value)

    def _join_one(self, join: OutcomeJoin, message, now: int) -> list:
        kind, body = bytes(message.value[:1]), bytes(message.value[1:])
        if kind == PENDING_TAG:
            joined = []
            for key, part in decode_pending(body):
                joined += join.add_pending(key, part, now)
            return joined
        if kind in (OUTCOME_TAG, OUTCOMES_TAG):
            joined = []
            alone = [(body, message.offset)]  # written before packing: its join offset names it
            for value, origin in alone if kind == OUTCOME_TAG else decode_outcomes(body):
                record = self._codec.decode_as("Outcome", value)
                found = join.add_outcome(
                    record["prediction_id"],
                    record["value"],
                    record["event_time"],
                    now,
                    source=origin,
                )
                if found is not None:
                    joined.append(found)
            return joined
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
        if isinstance(report.source, int):  # an offset on the join topic
            return _Reported(self.join_topic, partition, report.source, key, value)
        topic, origin_partition, offset = report.source
        return _Reported(topic, origin_partition, offset, key, value)

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
