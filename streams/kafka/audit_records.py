"""The audit log's evidence on Kafka: the anchor topic and the source records.

The lineage role publishes every signed checkpoint to ``<prefix>audit-checkpoints``
(JSON, keyed by model, kept forever), so a checkpoint deleted from ClickHouse is
still on the topic. Verification reads that topic back, and fetches the record
behind each audit row from the lifecycle topic (or the drift topic, for
``drift_detected`` rows) to compare (:mod:`driftline.lineage.audit.sources`).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Sequence

from confluent_kafka import Consumer, KafkaException, Message, Producer, TopicPartition

from driftline.core.errors import DriftlineError
from driftline.core.settings import Settings
from driftline.lineage.audit.checkpoints import Checkpoint
from driftline.lineage.audit.sources import SourceLog, SourceRecord, Wanted
from driftline.lineage.events import LifecycleEvent
from driftline.lineage.exceptions import InvalidRecord
from driftline.lineage.store.drift_sinks import drift_audit_event
from driftline.lineage.trust.commands import LifecycleCommand
from driftline.schemas import SchemaCodec
from driftline.streams.exceptions import BrokerUnavailable
from driftline.streams.kafka.clients import make_producer
from driftline.streams.kafka.offsets import watermarks
from driftline.streams.kafka.topics import Topics
from driftline.streams.kafka.tracing import trace_headers

log = logging.getLogger(__name__)

# The last offset of a range read to the partition's end: the embedded broker
# under-reports end offsets, so the end is where a poll comes back empty.
_TO_THE_END = 2**63 - 2


class AuditKafka:
    """Reads (and, for the lineage role, writes) the audit evidence on one cluster."""

    def __init__(self, settings: Settings, bootstrap: str, codec: SchemaCodec) -> None:
        self._settings = settings
        self._config = settings.kafka.librdkafka_config(bootstrap)
        self._bootstrap = bootstrap
        self._codec = codec
        topics = Topics(settings.kafka.topic_prefix)
        self.anchor_topic = topics.audit_checkpoints
        self.lifecycle_topic = topics.lifecycle
        self.commands_topic = topics.name("commands")
        self.drift_topic = topics.name("drift")
        self._producer: Producer | None = None

    # -- the anchor topic -----------------------------------------------------------

    def publish(self, checkpoints: Sequence[Checkpoint], timeout_s: float = 5.0) -> None:
        """Publish checkpoints and wait for the broker's acknowledgement of each."""
        if not checkpoints:
            return
        if self._producer is None:
            self._producer = make_producer(self._settings, self._bootstrap)
        errors: list = []
        for c in checkpoints:
            self._producer.produce(
                self.anchor_topic,
                c.to_json(),
                key=c.model.encode(),
                on_delivery=lambda err, _msg: errors.append(err) if err else None,
            )
        remaining = self._producer.flush(timeout_s)
        if remaining or errors:
            raise BrokerUnavailable(
                f"{len(checkpoints)} checkpoint(s) were not acknowledged on {self.anchor_topic} "
                f"at {self._bootstrap}: {errors[:3] or f'{remaining} still queued'}"
            )

    def publish_command(self, command: LifecycleCommand, timeout_s: float = 5.0) -> None:
        """Send a signed command (an audit alarm) to the registry, keyed by model, and wait
        for the ack."""
        if self._producer is None:
            self._producer = make_producer(self._settings, self._bootstrap)
        errors: list = []
        self._producer.produce(
            self.commands_topic,
            self._codec.encode("LifecycleCommand", command.to_avro()),
            key=command.model.encode(),
            headers=trace_headers(),
            on_delivery=lambda err, _msg: errors.append(err) if err else None,
        )
        remaining = self._producer.flush(timeout_s)
        if remaining or errors:
            raise BrokerUnavailable(
                f"command {command.command_id} was not acknowledged on "
                f"{self.commands_topic} at {self._bootstrap}: {errors or 'timed out'}"
            )

    def anchors(self, timeout_s: float = 30.0) -> tuple[list[Checkpoint], list[str]]:
        """Every checkpoint on the anchor topic, and the records that are not checkpoints."""
        checkpoints, unreadable = [], []
        for message in self._read_topic(self.anchor_topic, timeout_s):
            try:
                checkpoints.append(Checkpoint.from_json(message.value() or b""))
            except InvalidRecord as exc:
                where = f"{message.topic()}[{message.partition()}]@{message.offset()}"
                unreadable.append(f"{where}: {exc}")
        return checkpoints, unreadable

    # -- source records -------------------------------------------------------------

    def fetch(
        self, wanted: Wanted, *, whole_lifecycle: bool = True, timeout_s: float = 60.0
    ) -> SourceLog:
        """The source records audit rows cite; with ``whole_lifecycle`` (full verification)
        the whole lifecycle topic, so events missing from the log are found too."""
        complete = {self.lifecycle_topic} if whole_lifecycle else set()
        result = SourceLog(complete=frozenset(complete))
        with self._consumer() as consumer:
            for topic in (self.lifecycle_topic, self.drift_topic):
                extents = self._extents(consumer, topic)
                result.extents.update({(topic, p): e for p, e in extents.items()})
                result.first_ms[topic] = self._first_timestamp(consumer, topic, extents, timeout_s)
            ranges = {
                (topic, p): (low, _TO_THE_END)
                for (topic, p), (low, _) in result.extents.items()
                if topic in complete
            }
            for (topic, p), (first, last) in wanted.items():
                if topic not in complete and (topic, p) in result.extents:
                    ranges[(topic, p)] = (max(first, result.extents[(topic, p)][0]), last)
            for message in _read(consumer, ranges, result.extents, timeout_s):
                coordinates = (message.topic(), message.partition(), message.offset())
                result.records[coordinates] = self._decode(message)
                # The embedded broker under-reports end offsets: trust what was read.
                key = coordinates[:2]
                low, high = result.extents.get(key, (0, 0))
                result.extents[key] = (low, max(high, message.offset() + 1))
        return result

    def _decode(self, message: Message) -> SourceRecord:
        timestamp = message.timestamp()[1]
        try:
            if message.topic() == self.lifecycle_topic:
                record = self._codec.decode_as("LifecycleEvent", message.value())
                event = LifecycleEvent.from_avro(record)
            else:
                event = drift_audit_event(self._codec.decode_as("DriftEvent", message.value()))
        except (DriftlineError, ValueError, TypeError, KeyError) as exc:
            return SourceRecord(None, timestamp, str(exc))
        return SourceRecord(event, timestamp)

    # -- plumbing -------------------------------------------------------------------

    def _consumer(self) -> _ClosingConsumer:
        config = self._config | {
            # Never commits: a private, throwaway group id.
            "group.id": f"driftline-audit-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "enable.partition.eof": False,
        }
        return _ClosingConsumer(config, self._bootstrap)

    def _read_topic(self, topic: str, timeout_s: float) -> list[Message]:
        with self._consumer() as consumer:
            extents = self._extents(consumer, topic)
            ranges = {(topic, p): (low, _TO_THE_END) for p, (low, _) in extents.items()}
            return _read(consumer, ranges, {(topic, p): e for p, e in extents.items()}, timeout_s)

    def _extents(self, consumer: Consumer, topic: str) -> dict[int, tuple[int, int]]:
        try:
            metadata = consumer.list_topics(timeout=10).topics.get(topic)
            partitions = sorted(metadata.partitions) if metadata is not None else []
            return {p: watermarks(consumer, topic, p) for p in partitions}
        except KafkaException as exc:
            raise BrokerUnavailable(
                f"cannot read topic {topic!r} at {self._bootstrap}: {exc}"
            ) from exc

    def _first_timestamp(
        self,
        consumer: Consumer,
        topic: str,
        extents: dict[int, tuple[int, int]],
        timeout_s: float,
    ) -> int | None:
        # The oldest record the topic still holds: rows older than it lost their source.
        heads = {(topic, p): (low, low) for p, (low, high) in extents.items() if high > low}
        return min((m.timestamp()[1] for m in _read(consumer, heads, {}, timeout_s)), default=None)


class _ClosingConsumer:
    def __init__(self, config: dict, bootstrap: str) -> None:
        self._config = config
        self._bootstrap = bootstrap

    def __enter__(self) -> Consumer:
        try:
            self._consumer = Consumer(self._config)
        except KafkaException as exc:
            raise BrokerUnavailable(f"cannot connect to Kafka at {self._bootstrap}: {exc}") from exc
        return self._consumer

    def __exit__(self, *exc_info: object) -> None:
        self._consumer.close()


def _read(
    consumer: Consumer,
    ranges: dict[tuple[str, int], tuple[int, int]],
    extents: dict[tuple[str, int], tuple[int, int]],
    timeout_s: float,
) -> list[Message]:
    """Records in ``ranges`` ((topic, partition) -> first, last offset, inclusive).

    The embedded broker under-reports end offsets, so neither the reported end nor a
    single empty poll proves a record absent: reading stops once every partition has
    reached its reported end and every wanted last offset was seen (or, for ranges read
    to the end, at the next empty poll), or after a stretch of silence (a row citing
    a record that does not exist). Records outside the ranges are dropped.
    """
    if not ranges:
        return []
    consumer.assign([TopicPartition(t, p, first) for (t, p), (first, _) in ranges.items()])
    ends = {}  # partitions still short of their reported end
    for key, (first, last) in ranges.items():
        end = min(last + 1, extents.get(key, (0, last + 1))[1])
        if first < end:
            ends[key] = end
    # Last offsets still to be seen, for ranges that do not run to the end.
    pending = {key: last for key, (_, last) in ranges.items() if last != _TO_THE_END}
    out: list[Message] = []
    idle = 0
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            if time.monotonic() > deadline:
                raise BrokerUnavailable(
                    f"could not read {sorted(ends)} within {timeout_s:.0f}s; the broker is "
                    "slow or unreachable"
                )
            messages = consumer.consume(1000, timeout=0.5)
            if not messages:
                idle += 1
                if (not ends and not pending) or (not ends and idle >= 3) or idle >= 6:
                    break
                continue
            idle = 0
            for message in messages:
                if message.error():
                    continue
                key = (message.topic(), message.partition())
                first, last = ranges.get(key, (0, -1))
                if first <= message.offset() <= last:
                    out.append(message)
                if message.offset() + 1 >= ends.get(key, 0):
                    ends.pop(key, None)
                if message.offset() >= pending.get(key, _TO_THE_END + 1):
                    pending.pop(key, None)
    finally:
        consumer.unassign()
    return out
