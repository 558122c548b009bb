"""A small producer API for feature records and frames: encoding, keys and trace context.

producer = FeatureProducer(settings, bootstrap)
producer.send({"record_id": "r1", "entity_id": "e1", "model": "fraud",
               "features": [...], "feature_names": None, "event_time": now_ms})
# Many rows in one message: the fast path (hundreds of thousands of rows/s).
producer.send_frame("frame-1", "fraud", entity_ids, event_times_ms, feature_names, matrix)
# Later, the truth for a prediction (its id is on the Prediction / PredictionFrame):
producer.send_outcome(prediction_id, 1.0)
producer.flush()
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
from confluent_kafka import KafkaException
from opentelemetry import trace
from opentelemetry.trace import SpanKind

from driftline.core.settings import Settings
from driftline.inference.frames import pack_frame
from driftline.schemas import SchemaCodec
from driftline.streams.exceptions import StreamsError
from driftline.streams.kafka.clients import make_producer
from driftline.streams.kafka.codecs import codec_for
from driftline.streams.kafka.delivery import refused
from driftline.streams.kafka.topics import Topics
from driftline.streams.kafka.tracing import trace_headers

tracer = trace.get_tracer(__name__)


class FeatureProducer:
    def __init__(
        self, settings: Settings, bootstrap: str, *, codec: SchemaCodec | None = None
    ) -> None:
        self._codec = codec or codec_for(settings)
        topics = Topics(settings.kafka.topic_prefix)
        self._topic, self._outcomes = topics.features, topics.name("outcomes")
        self._producer = make_producer(settings, bootstrap)
        self._errors: list = []
        self._closed = False

    def _on_delivery(self, err, _msg) -> None:
        if err is not None:
            self._errors.append(err)

    def send(self, record: dict) -> None:
        """Encode and enqueue one FeatureRecord, with a W3C traceparent header."""
        with tracer.start_as_current_span("send features", kind=SpanKind.PRODUCER):
            headers = trace_headers()
        value = self._codec.encode("FeatureRecord", record)
        self._produce(value, record["entity_id"].encode(), headers)

    def send_frame(
        self,
        frame_id: str,
        model: str,
        entity_ids: Sequence[str],
        event_times: Sequence[int],
        feature_names: Sequence[str],
        matrix: np.ndarray,
    ) -> None:
        """Encode and enqueue one FeatureFrame: ``matrix`` is ``[len(entity_ids), n_features]``.

        ``feature_names`` must be the model's input names in column order;
        ``event_times`` are epoch milliseconds. Keyed by ``frame_id``.
        """
        with tracer.start_as_current_span("send feature frame", kind=SpanKind.PRODUCER):
            headers = trace_headers()
        record = pack_frame(frame_id, model, entity_ids, event_times, feature_names, matrix)
        self._produce(self._codec.encode("FeatureFrame", record), frame_id.encode(), headers)

    def send_outcome(
        self,
        prediction_id: str,
        value: float,
        *,
        event_time: int | None = None,
        entity_id: str | None = None,
        label: str | None = None,
    ) -> None:
        """Enqueue the observed truth for a prediction (a delayed label), keyed by prediction id.

        ``value`` is 0.0/1.0 for a binary classifier (the drift stage turns it
        into an error against the served score); ``event_time`` defaults to now.
        Frame rows have prediction ids ``<prediction_frame_id>:<row>``.
        """
        record = {
            "prediction_id": prediction_id,
            "entity_id": entity_id,
            "value": float(value),
            "label": label,
            "event_time": event_time if event_time is not None else time.time_ns() // 1_000_000,
        }
        value_bytes = self._codec.encode("Outcome", record)
        self._produce(value_bytes, prediction_id.encode(), None, topic=self._outcomes)

    def _produce(self, value: bytes, key: bytes, headers, *, topic: str | None = None) -> None:
        while True:
            try:
                self._producer.produce(
                    topic or self._topic,
                    value,
                    key=key,
                    headers=headers,
                    on_delivery=self._on_delivery,
                )
                return
            except BufferError:  # local queue full: let deliveries drain, then retry
                self._producer.poll(0.05)
            except KafkaException as exc:  # e.g. larger than DRIFTLINE_KAFKA_MESSAGE_MAX_BYTES
                raise refused(topic or self._topic, value, key, exc) from exc

    def poll(self) -> None:
        self._producer.poll(0)

    def flush(self, timeout_s: float = 30.0) -> None:
        remaining = self._producer.flush(timeout_s)
        if remaining or self._errors:
            raise StreamsError(
                f"{remaining} feature records unacknowledged, {len(self._errors)} failed "
                f"(first error: {self._errors[0] if self._errors else 'timeout'})"
            )

    def close(self, timeout_s: float = 30.0) -> None:
        """Flush, then let go of the broker connection, so nothing reconnects after a stop.

        A second call does nothing; sending after close() raises RuntimeError.
        """
        if self._closed:
            return
        self._closed = True
        try:
            self.flush(timeout_s)
        finally:
            # flush has already reported anything undelivered; don't wait on it again.
            self._producer.purge()
            self._producer.close()
