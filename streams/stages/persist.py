"""The lineage consumer's work: decoded batches into ClickHouse, then (only then) ack.

All store calls run on one dedicated thread: chDB is one engine per process and
clickhouse-connect clients are not meant for concurrent use.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from driftline.inference.event_time import DEFAULT_BOUNDS, INVALID_EVENT_TIME, EventTimeBounds
from driftline.inference.exceptions import FrameRejected
from driftline.inference.frames import Frame
from driftline.lineage.audit.chain import AuditLogWriter
from driftline.lineage.events import LifecycleEvent
from driftline.lineage.exceptions import InvalidRecord
from driftline.lineage.store.clickhouse import SERVED_FEATURES
from driftline.lineage.store.drift_sinks import DriftSink, OutcomeSink, drift_audit_event
from driftline.lineage.store.frame_sinks import FeatureSink, PredictionFrameSink
from driftline.lineage.store.sinks import DeadLetterSink, PredictionSink
from driftline.schemas import DecodeError, SchemaCodec
from driftline.streams.kafka.delivery import BatchDelivery
from driftline.streams.kafka.topics import SERVED_WITH_HEADER
from driftline.streams.kafka.tracing import HEADER_GETTER
from driftline.streams.stages.deadletter import DeadLetterPublisher, InboundMessage
from driftline.streams.stats import WorkerStats

log = logging.getLogger(__name__)
T = TypeVar("T")


class StoreRunner:
    """Runs blocking store calls on one thread and retries them until they succeed."""

    def __init__(self, stats: WorkerStats) -> None:
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="clickhouse")
        self._stats = stats

    async def call(self, fn: Callable[[], T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, fn)

    async def until_stored(self, fn: Callable[[], T], what: str) -> T:
        backoff = 0.2
        while True:
            future = asyncio.ensure_future(self.call(fn))
            started = time.perf_counter()
            try:
                # Shielded: a shutdown waits for an insert in flight rather than
                # abandoning it half-way through.
                stored = await asyncio.shield(future)
                self._stats.insert_latency_s.observe(time.perf_counter() - started)
                return stored
            except asyncio.CancelledError:
                await asyncio.wait_for(asyncio.shield(future), timeout=30)
                raise
            except Exception as exc:  # the store is down or refused the batch
                self._stats.store_failures += 1
                log.error(
                    "storing %s failed (%s); retrying in %.1fs, offsets stay uncommitted",
                    what,
                    exc,
                    backoff,
                )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)

    def close(self) -> None:
        self._executor.shutdown(wait=True)


def _trace_id(headers: object) -> str:
    values = HEADER_GETTER.get(headers, "traceparent")  # 00-<trace id>-<span id>-<flags>
    parts = values[0].split("-") if values else []
    return parts[1] if len(parts) == 4 else ""


class LineageWriter:
    def __init__(
        self,
        *,
        codec: SchemaCodec,
        store: StoreRunner,
        predictions: PredictionSink,
        frames: PredictionFrameSink,
        features: FeatureSink,
        audit: AuditLogWriter,
        dead_letter_sink: DeadLetterSink,
        dead_letters: DeadLetterPublisher,
        stats: WorkerStats,
        drift: DriftSink | None = None,
        outcomes: OutcomeSink | None = None,
        event_times: EventTimeBounds = DEFAULT_BOUNDS,
        served_features: FeatureSink | None = None,
    ) -> None:
        self._codec = codec
        # Completed rows the scoring workers sampled for the skew check; all of them kept.
        self._served = (
            FeatureSink(audit.client, audit.database, table_name=SERVED_FEATURES)
            if served_features is None
            else served_features
        )
        self._event_times = event_times
        self._store = store
        self._predictions = predictions
        self._frames = frames
        self._features = features
        self._audit = audit
        self._dead_letter_sink = dead_letter_sink
        self._dead = dead_letters
        self._stats = stats
        # Default: the same client and database as the audit log.
        self._drift = DriftSink(audit.client, audit.database) if drift is None else drift
        self._outcomes = OutcomeSink(audit.client, audit.database) if outcomes is None else outcomes

    def _decode_all(
        self, name: str, messages: Sequence[InboundMessage], batch: BatchDelivery
    ) -> list[tuple]:
        decoded = []
        for message in messages:
            try:
                decoded.append((message, self._codec.decode_as(name, message.value)))
            except DecodeError as exc:
                self._dead.publish(message, exc.reason, str(exc), batch)
        return decoded

    async def store_predictions(
        self, messages: Sequence[InboundMessage], batch: BatchDelivery
    ) -> None:
        """Predictions and PredictionFrames share the topic; both land in ``predictions``."""
        rows = []
        for message in messages:
            try:
                name, record = self._codec.decode(message.value)
            except DecodeError as exc:
                self._dead.publish(message, exc.reason, str(exc), batch)
                continue
            if name == "Prediction":
                if not self._valid_time(message, record, batch):
                    continue
                record["trace_id"] = _trace_id(message.headers)
                rows.append(record)
            elif name == "PredictionFrame":
                try:
                    self._frames.add(record, _trace_id(message.headers))
                except FrameRejected as exc:
                    self._dead.publish(message, exc.reason, exc.detail, batch)
            else:
                detail = f"the predictions topic takes Prediction or PredictionFrame, got {name}"
                self._dead.publish(message, "wrong_schema", detail, batch)
        self._predictions.add_many(rows)

        def flush() -> int:
            return self._predictions.flush() + self._frames.flush()

        stored = await self._store.until_stored(flush, "predictions")
        self._stats.rows_stored["predictions"] += stored

    async def store_features(self, messages: Sequence[InboundMessage]) -> None:
        """Log a sample of feature rows for replay and skew checks.

        Bad input is the scoring agent's to dead-letter; here it is only skipped,
        whatever it is, so this agent never stops on it.
        """
        records = []
        latest = self._event_times.latest()
        for message in messages:
            try:
                name, record = self._codec.decode(message.value)
                if name == "FeatureRecord" and 0 <= record["event_time"] <= latest:
                    records.append(record)
                elif name == "FeatureFrame":
                    frame = Frame.from_avro(record)
                    if not len(self._event_times.bad_rows(frame.event_times)):
                        self._features.add_frame(frame)
            except Exception:  # the scoring agent dead-letters this message
                log.debug("feature log skips %s[%d]@%d", message.topic, message.partition,
                          message.offset, exc_info=True)  # fmt: skip
                continue
        if records:
            self._features.add_records(records)
        stored = await self._store.until_stored(self._features.flush, "features")
        self._stats.rows_stored["features"] += stored

    async def store_served_features(
        self, messages: Sequence[InboundMessage], batch: BatchDelivery
    ) -> None:
        """The served-features topic: FeatureFrames the scoring workers wrote themselves,
        each with its feature service in a header."""
        for message, record in self._decode_all("FeatureFrame", messages, batch):
            service = dict(message.headers or ()).get(SERVED_WITH_HEADER)
            try:
                frame = Frame.from_avro(record)
            except FrameRejected as exc:
                self._dead.publish(message, exc.reason, exc.detail, batch)
                continue
            self._served.add_frame(frame, service.decode() if service else None)
        stored = await self._store.until_stored(self._served.flush, SERVED_FEATURES)
        self._stats.rows_stored[SERVED_FEATURES] += stored

    async def store_lifecycle(
        self, messages: Sequence[InboundMessage], batch: BatchDelivery
    ) -> None:
        items = []
        for message, record in self._decode_all("LifecycleEvent", messages, batch):
            try:
                event = LifecycleEvent.from_avro(record)
            except InvalidRecord as exc:
                self._dead.publish(message, "invalid_event", str(exc), batch)
                continue
            items.append((event, message.topic, message.partition, message.offset))
        stored = await self._store.until_stored(lambda: self._audit.write(items), "audit events")
        self._stats.rows_stored["audit_log"] += stored

    async def store_drift(self, messages: Sequence[InboundMessage], batch: BatchDelivery) -> None:
        """DriftEvents into ``drift``, and into their model's audit chain as drift_detected.

        The audit chain assumes one writer per model: the drift topic, like the
        lifecycle topic, is keyed by model, and both go through this one writer.
        """
        rows, items = [], []
        for message, record in self._decode_all("DriftEvent", messages, batch):
            try:
                event = drift_audit_event(record)
            except InvalidRecord as exc:
                self._dead.publish(message, "invalid_event", str(exc), batch)
                continue
            rows.append(record)
            items.append((event, message.topic, message.partition, message.offset))
        self._drift.add_many(rows)
        stored = await self._store.until_stored(self._drift.flush, "drift events")
        self._stats.rows_stored["drift"] += stored
        # Table first, chain second: a crash between them re-delivers the batch, the
        # table drops the repeated rows and the audit writer skips events it holds.
        audited = await self._store.until_stored(lambda: self._audit.write(items), "audit events")
        self._stats.rows_stored["audit_log"] += audited

    async def store_outcomes(
        self, messages: Sequence[InboundMessage], batch: BatchDelivery
    ) -> None:
        """Outcomes (delayed labels) into ``outcomes``, with their Kafka coordinates."""
        rows = []
        for message, record in self._decode_all("Outcome", messages, batch):
            if not self._valid_time(message, record, batch):
                continue
            record["source_partition"] = message.partition
            record["source_offset"] = message.offset
            rows.append(record)
        self._outcomes.add_many(rows)
        stored = await self._store.until_stored(self._outcomes.flush, "outcomes")
        self._stats.rows_stored["outcomes"] += stored

    async def store_dead_letters(
        self, messages: Sequence[InboundMessage], batch: BatchDelivery
    ) -> None:
        records = []
        for message in messages:
            try:
                records.append(self._codec.decode_as("DeadLetter", message.value))
            except DecodeError as exc:
                # A dead letter we cannot read is itself kept, raw, rather than re-queued forever.
                records.append(
                    {
                        "source_topic": message.topic,
                        "partition": message.partition,
                        "offset": message.offset,
                        "key": message.key,
                        "reason": exc.reason,
                        "detail": str(exc),
                        "raw": bytes(message.value or b""),
                        "failed_at": 0,
                    }
                )
        self._dead_letter_sink.add_many(records)
        stored = await self._store.until_stored(self._dead_letter_sink.flush, "dead letters")
        self._stats.rows_stored["deadletters"] += stored

    def _valid_time(self, message: InboundMessage, record: dict, batch: BatchDelivery) -> bool:
        if 0 <= record["event_time"] <= self._event_times.latest():
            return True
        detail = self._event_times.detail(record["event_time"])
        self._dead.publish(message, INVALID_EVENT_TIME, detail, batch)
        return False

    def partitions_reassigned(self) -> None:
        """Another worker may have extended a chain meanwhile: re-read heads from the table."""
        self._audit.reset()
