"""The inference agent's work for one batch: decode, check, score, publish.

Plain code over a list of consumed messages so it can be driven by Faust, by a
benchmark or by a test. Every message ends as predictions or a dead letter.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from opentelemetry import trace
from opentelemetry.trace import SpanKind

from inference import Router, score_records
from schemas import DecodeError, SchemaCodec
from streams.deadletter import DeadLetterPublisher, InboundMessage
from streams.delivery import BatchDelivery, DeliveryTracker
from streams.stats import WorkerStats
from streams.tracing import link_to, trace_headers

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
    ) -> None:
        self._codec = codec
        self.router = router
        self._delivery = delivery
        self._dead = dead_letters
        self._topic = predictions_topic
        self._stats = stats
        self._max_links = max_links

    def process(self, messages: Sequence[InboundMessage]) -> BatchDelivery:
        """Score one batch and enqueue its output; the returned handle says when it is delivered."""
        links = [
            link
            for link in (link_to(m.headers) for m in messages[: self._max_links])
            if link is not None
        ]
        batch = self._delivery.batch()
        with tracer.start_as_current_span(
            "score features",
            kind=SpanKind.CONSUMER,
            links=links,
            attributes={"messaging.batch.message_count": len(messages)},
        ) as span:
            produced = self._score(messages, batch)
            span.set_attribute("driftline.predictions", produced)
        self._stats.batch_done(len(messages), produced)
        return batch

    def _score(self, messages: Sequence[InboundMessage], batch: BatchDelivery) -> int:
        by_model: dict[str, list[tuple[InboundMessage, dict]]] = defaultdict(list)
        decode = self._codec.decode_as
        for message in messages:
            try:
                record = decode("FeatureRecord", message.value)
            except DecodeError as exc:
                self._dead.publish(message, exc.reason, str(exc), batch)
                continue
            by_model[record["model"]].append((message, record))

        # Predictions continue the batch span's trace (OTel messaging batch pattern).
        headers = trace_headers()
        produced = 0
        for model_name, items in by_model.items():
            model = self.router.champion(model_name)
            if model is None:
                detail = (
                    f"no champion is serving model {model_name!r}: register a version and "
                    f"`driftline model promote {model_name} --version N`"
                )
                for message, _ in items:
                    self._dead.publish(message, "no_champion", detail, batch)
                continue
            scored = score_records(model, [record for _, record in items])
            for rejection in scored.rejected:
                message = items[rejection.index][0]
                self._dead.publish(message, rejection.reason, rejection.detail, batch)
            values = self._codec.encode_many("Prediction", scored.predictions)
            produce = self._delivery.producer.produce
            on_delivery = batch.on_delivery
            sent = 0
            try:
                for prediction, value in zip(scored.predictions, values, strict=True):
                    produce(
                        self._topic,
                        value,
                        key=prediction["entity_id"].encode(),
                        headers=headers,
                        on_delivery=on_delivery,
                    )
                    sent += 1
            except BufferError:
                pass  # local queue full: the rest take the slow path, which waits for room
            batch.expect(sent)
            for prediction, value in zip(scored.predictions[sent:], values[sent:], strict=True):
                self._delivery.produce(
                    batch, self._topic, value, key=prediction["entity_id"].encode(), headers=headers
                )
            produced += len(values)
        self._delivery.producer.poll(0)
        return produced
