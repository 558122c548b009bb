"""The inference agent's work for one batch: decode, check, score, publish.

Plain code over a list of consumed messages so it can be driven by Faust, by a
benchmark or by a test. Every message ends as predictions or a dead letter.
The features topic carries single FeatureRecords and many-row FeatureFrames;
records become Predictions, frames become one PredictionFrame per arm.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
from opentelemetry import trace
from opentelemetry.trace import SpanKind

from driftline.drift.monitor import MonitorKey
from driftline.drift.outcomes import Pending
from driftline.inference import Router
from driftline.inference.event_time import DEFAULT_BOUNDS, INVALID_EVENT_TIME, EventTimeBounds
from driftline.inference.exceptions import FrameRejected
from driftline.inference.frames import (
    NO_CHAMPION,
    Frame,
    non_finite_detail,
    score_frame,
    split_prediction_frame,
)
from driftline.inference.routing import RoutingTable
from driftline.inference.scoring import score_routed
from driftline.inference.signature import NON_FINITE
from driftline.schemas import DecodeError, SchemaCodec
from driftline.schemas.exceptions import WrongSchema
from driftline.streams.kafka.delivery import BatchDelivery, DeliveryTracker
from driftline.streams.kafka.limits import DEFAULT_LIMIT, TOO_LARGE, MessageLimit
from driftline.streams.kafka.topics import SERVED_WITH_HEADER
from driftline.streams.kafka.tracing import link_to, trace_headers
from driftline.streams.stages.deadletter import DeadLetterPublisher, InboundMessage
from driftline.streams.stages.drift_reduce import DriftStage, Observation
from driftline.streams.stages.enrichment import FeatureEnrichment
from driftline.streams.stages.outcome_join import OutcomeJoiner
from driftline.streams.stats import WorkerStats

tracer = trace.get_tracer(__name__)


class ScoringPipeline:
    def __init__(
        self,
        *,
        codec: SchemaCodec,
        router: Router,
        delivery: DeliveryTracker,
        dead_letters: DeadLetterPublisher,
        predictions_topic: str,
        stats: WorkerStats,
        max_links: int = 1000,
        link_records: bool = True,
        drift: DriftStage | None = None,
        outcomes: OutcomeJoiner | None = None,
        limit: MessageLimit = DEFAULT_LIMIT,
        event_times: EventTimeBounds = DEFAULT_BOUNDS,
        enrichment: FeatureEnrichment | None = None,
        served_features_topic: str | None = None,
    ) -> None:
        self._served_topic = served_features_topic
        self._codec = codec
        self.enrichment = enrichment  # models served with a feature service
        self._limit = limit
        self._event_times = event_times
        self.router = router
        self._delivery = delivery
        self._dead = dead_letters
        self._topic = predictions_topic
        self._stats = stats
        # Off when no span is exported: nobody could see the links, and reading every
        # record's traceparent was a fifth of the hot path's CPU.
        self._max_links = max_links if link_records else 0
        self.drift = drift
        self.outcomes = outcomes  # pending entries for the outcomes join, when set
        self._pending: list[tuple[str, Pending]] = []
        self._observations: list[Observation] = []

    def process(
        self, messages: Sequence[InboundMessage], batch: BatchDelivery | None = None
    ) -> BatchDelivery:
        """Score one batch and enqueue its output; the returned handle says when it is delivered.

        ``batch`` lets a caller collect several calls' output in one handle.
        """
        # Left over only if an earlier call raised half-way: its messages are redone.
        self._pending, self._observations = [], []
        links = [
            link
            for link in (link_to(m.headers) for m in messages[: self._max_links])
            if link is not None
        ]
        batch = self._delivery.batch() if batch is None else batch
        with tracer.start_as_current_span(
            "score features",
            kind=SpanKind.CONSUMER,
            links=links,
            attributes={"messaging.batch.message_count": len(messages)},
        ) as span:
            produced = self._score(messages, batch)
            span.set_attribute("driftline.predictions", produced)
            if self.drift is not None and self._observations:
                observations, self._observations = self._observations, []
                sent = self.drift.fold(observations, batch)
                span.set_attribute("driftline.drift_summaries", sent)
            if self.enrichment is not None and self._served_topic is not None:
                self._publish_served(batch)
            if self.outcomes is not None and self._pending:
                pending, self._pending = self._pending, []
                self.outcomes.publish_pending(pending, batch)
        self._stats.batch_done(len(messages), produced)
        return batch

    def _score(self, messages: Sequence[InboundMessage], batch: BatchDelivery) -> int:
        by_model: dict[str, list[tuple[InboundMessage, dict]]] = defaultdict(list)
        frames: list[tuple[InboundMessage, dict]] = []
        decode = self._codec.decode
        latest = self._event_times.latest()
        for message in messages:
            try:
                name, record = decode(message.value)
            except DecodeError as exc:
                self._dead.publish(message, exc.reason, str(exc), batch)
                continue
            if name == "FeatureRecord":
                if not 0 <= record["event_time"] <= latest:
                    detail = self._event_times.detail(record["event_time"])
                    self._dead.publish(message, INVALID_EVENT_TIME, detail, batch)
                    continue
                by_model[record["model"]].append((message, record))
            elif name == "FeatureFrame":
                frames.append((message, record))
            else:
                detail = f"the features topic takes FeatureRecord or FeatureFrame, got {name}"
                self._dead.publish(message, WrongSchema.reason, detail, batch)

        # Predictions continue the batch span's trace (OTel messaging batch pattern).
        headers = trace_headers()
        produced = 0
        for model_name, items in by_model.items():
            produced += self._score_records(model_name, items, batch, headers)
        for message, record in frames:
            produced += self._score_frame(message, record, batch, headers)
        self._delivery.producer.poll(0)
        return produced

    def _table(self, model_name: str) -> RoutingTable | None:
        table = self.router.table(model_name)
        return None if table is None or not (table.served or table.shadows) else table

    def _score_records(self, model_name, items, batch, headers) -> int:
        table = self._table(model_name)
        if table is None:
            for message, _ in items:
                self._dead.publish(message, NO_CHAMPION, _no_champion(model_name), batch)
            return 0
        records = [record for _, record in items]
        labels: dict[str, str] = {}
        enriched = None if self.enrichment is None else self.enrichment.records(table, records)
        if enriched is not None:
            for index, reason, detail in enriched.refused:
                self._dead.publish(items[index][0], reason, detail, batch)
            items = [(items[i][0], r) for i, r in zip(enriched.kept, enriched.records, strict=True)]
            records, labels = enriched.records, enriched.labels
            if not items:
                return 0
        routed = score_routed(table, records)
        for rejection in routed.rejected:
            message = items[rejection.index][0]
            self._dead.publish(message, rejection.reason, rejection.detail, batch)
        for index in routed.unserved:
            self._dead.publish(items[index][0], NO_CHAMPION, _no_champion(model_name), batch)
        self._stats.shadow_rejected += routed.shadow_rejected
        predictions = routed.predictions
        if labels:
            for p in predictions:
                p["feature_service"] = labels.get(p["record_id"])
        if self.drift is not None and predictions:
            self._observe_records(model_name, items, predictions, table)
        values = self._codec.encode_many("Prediction", predictions)
        # Keys are entity ids, so a huge id counts twice; one cheap check for the common case.
        if max(map(len, values), default=0) > self._limit.max_value_bytes // 2:
            predictions, values = self._drop_oversized(items, predictions, values, batch)
        self._publish(values, [p["entity_id"].encode() for p in predictions], batch, headers)
        # The scorer's per-arm counts hold unless oversized predictions were dropped.
        exact = len(predictions) == len(routed.predictions)
        self._stats.predicted(predictions, routed.arm_counts if exact else None)
        if self.outcomes is not None:
            for p in predictions:
                self._pend(p["prediction_id"], p, np.array([p["score"]]))
        return len(values)

    def _score_frame(self, message, record, batch, headers) -> int:
        model_name = record["model"]
        table = self._table(model_name)
        if table is None:
            self._dead.publish(message, NO_CHAMPION, _no_champion(model_name), batch)
            return 0
        try:
            frame = Frame.from_avro(record)
            late = self._event_times.bad_rows(frame.event_times)
            if len(late):
                raise FrameRejected(INVALID_EVENT_TIME, self._late_rows_detail(frame, late))
            skip, label = None, None
            enriched = None if self.enrichment is None else self.enrichment.frame(table, frame)
            if enriched is not None:
                frame, skip, label = enriched.frame, enriched.skip, enriched.label
                if enriched.reasons:
                    self._dead_letter_unenriched(message, frame, enriched.reasons, batch)
            scored = score_frame(table, frame, skip=skip)
        except FrameRejected as exc:
            self._dead.publish(message, exc.reason, exc.detail, batch)
            return 0
        if len(scored.bad_rows):
            # The whole frame goes to the dead-letter topic so the bad rows can be fixed and
            # replayed; the good rows are scored now, and a replay dedups on their ids.
            detail = non_finite_detail(frame, scored.bad_rows)
            self._dead.publish(message, NON_FINITE, detail, batch)
        if len(scored.unserved_rows):
            detail = f"{len(scored.unserved_rows)} rows: {_no_champion(model_name)}"
            self._dead.publish(message, NO_CHAMPION, detail, batch)
        if label is not None:
            for part in scored.parts:
                part["feature_service"] = label
        if self.drift is not None:
            self._observe_frame(message, frame, scored, table)
        values = self._encode_frame_parts(message, scored.parts, batch)
        key = frame.frame_id.encode()
        self._publish(values, [key] * len(values), batch, headers)
        self._stats.predicted_frame(scored.parts)
        if self.outcomes is not None:
            for part in scored.parts:
                scores = np.frombuffer(part["score"], dtype="<f8")
                self._pend(part["prediction_frame_id"], part, scores)
        return sum(part["n_rows"] for part in scored.parts)

    def _dead_letter_unenriched(self, message, frame: Frame, reasons: dict, batch) -> None:
        """The whole frame goes to the dead-letter topic, as for non-finite rows: the rows
        the store could not complete are named, and the others are scored now."""
        rows = sorted(reasons)
        reason, detail = reasons[rows[0]]
        shown = ", ".join(map(str, rows[:10])) + (", ..." if len(rows) > 10 else "")
        detail = f"{len(rows)} of {frame.n_rows} rows not scored (rows {shown}); first: {detail}"
        self._dead.publish(message, reason, detail, batch)

    def _late_rows_detail(self, frame: Frame, late: np.ndarray) -> str:
        first = int(late[0])
        shown = ", ".join(str(r) for r in late[:10].tolist())
        return (
            f"frame {frame.frame_id!r}: {len(late)} of {frame.n_rows} rows have an impossible "
            f"event_time (rows {shown}); row {first}: "
            + self._event_times.detail(int(frame.event_times[first]))
        )

    def _drop_oversized(self, items, predictions, values, batch):
        """Predictions too big for one message dead-letter their record (a huge id or key)."""
        where = {record["record_id"]: i for i, (_, record) in enumerate(items)}
        kept_predictions, kept_values, dead = [], [], set()
        for prediction, value in zip(predictions, values, strict=True):
            if self._limit.fits(value, prediction["entity_id"].encode()):
                kept_predictions.append(prediction)
                kept_values.append(value)
                continue
            i = where[prediction["record_id"]]
            if i not in dead:
                dead.add(i)
                size = len(value) + len(prediction["entity_id"].encode())
                detail = self._limit.explain(size, "the Prediction for this record (with its key)")
                self._dead.publish(items[i][0], TOO_LARGE, detail, batch)
        return kept_predictions, kept_values

    def _encode_frame_parts(self, message, parts: list[dict], batch) -> list[bytes]:
        """Encoded PredictionFrames, each part split by rows until every piece fits."""
        values: list[bytes] = []
        for part in parts:
            value = self._codec.encode("PredictionFrame", part)
            if self._limit.fits(value):
                values.append(value)
                continue
            pieces = -(-len(value) // self._limit.max_value_bytes) + 1
            encoded = self._codec.encode_many(
                "PredictionFrame", split_prediction_frame(part, pieces)
            )
            oversized = [v for v in encoded if not self._limit.fits(v)]
            if oversized:  # rows this big are a producer bug (megabyte entity ids)
                detail = self._limit.explain(
                    max(map(len, oversized)), f"a piece of the {part['arm']} PredictionFrame"
                )
                self._dead.publish(message, TOO_LARGE, detail, batch)
            values += [v for v in encoded if self._limit.fits(v)]
        return values

    def _pend(self, join_key: str, part: dict, scores: np.ndarray) -> None:
        rows = part.get("rows")
        entry = Pending(
            part["model"],
            part["version"],
            part["arm"],
            part["scored_at"],
            scores,
            np.frombuffer(rows, dtype="<i4") if rows else None,
        )
        self._pending.append((join_key, entry))

    def _observe_records(self, model_name, items, predictions, table: RoutingTable) -> None:
        """One observation per (version, arm, partition), rows in message order."""
        where = {record["record_id"]: i for i, (_, record) in enumerate(items)}
        names = _feature_names(table)
        groups: dict[tuple[int, str, int], list[tuple[int, float]]] = defaultdict(list)
        for prediction in predictions:
            i = where[prediction["record_id"]]
            message = items[i][0]
            groups[(prediction["version"], prediction["arm"], message.partition)].append(
                (i, prediction["score"])
            )
        for (version, arm, partition), members in groups.items():
            index = [i for i, _ in members]
            self._observations.append(
                self.drift.records(
                    partition,
                    np.fromiter((items[i][0].offset for i in index), np.int64, len(index)),
                    np.fromiter((items[i][1]["event_time"] for i in index), np.int64, len(index)),
                    MonitorKey(model_name, version, arm),
                    names[version],
                    np.asarray([items[i][1]["features"] for i in index], dtype=np.float64),
                    np.fromiter((s for _, s in members), np.float64, len(members)),
                )
            )

    def _observe_frame(self, message, frame: Frame, scored, table: RoutingTable) -> None:
        """Each arm's part of the frame, sampled for the window tests (see DriftStage.frame).

        Columns carry the model's names: a frame's own are checked only against a model
        that declares names, so for one that does not they are replaced by positional ones.
        """
        names = _feature_names(table)
        for part in scored.parts:
            columns = names[part["version"]]
            seen = frame
            if tuple(frame.feature_names) != columns:
                seen = replace(frame, feature_names=list(columns))
            self._observations.append(
                self.drift.frame(message.partition, message.offset, seen, part)
            )

    def _publish_served(self, batch) -> None:
        """The sampled completed rows, for the lineage role's skew check."""
        for record, label in self.enrichment.take_served():
            value = self._codec.encode("FeatureFrame", record)
            headers = [(SERVED_WITH_HEADER, label.encode())]
            self._delivery.produce(
                batch, self._served_topic, value, key=record["model"].encode(), headers=headers
            )

    def _publish(self, values: list[bytes], keys: list[bytes], batch, headers) -> None:
        produce = self._delivery.producer.produce
        on_delivery = batch.on_delivery
        sent = 0
        try:
            for value, key in zip(values, keys, strict=True):
                produce(self._topic, value, key=key, headers=headers, on_delivery=on_delivery)
                sent += 1
        except BufferError:
            pass  # local queue full: the rest take the slow path, which waits for room
        finally:
            # Even when produce() raises: the ones sent will call back, and the batch must
            # wait for them, or it would count them as delivered before they are.
            batch.expect(sent)
        for value, key in zip(values[sent:], keys[sent:], strict=True):
            self._delivery.produce(batch, self._topic, value, key=key, headers=headers)


def _feature_names(table: RoutingTable) -> dict[int, tuple[str, ...]]:
    """Each version's input columns: the model's names, else positional ones (the names a
    record carries are only checked against a model that declares names, so they are
    never used to pick the training profile's columns)."""
    models = [arm.model for arm in table.served] + list(table.shadows)
    return {m.version: m.signature.column_names for m in models}


def _no_champion(model_name: str) -> str:
    return (
        f"no champion is serving model {model_name!r}: register a version and "
        f"`driftline model promote {model_name} --version N`"
    )
