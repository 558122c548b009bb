"""A small producer API for feature records: encoding, keys and trace context done right.

producer = FeatureProducer(settings, bootstrap)
producer.send({"record_id": "r1", "entity_id": "e1", "model": "fraud",
               "features": [...], "feature_names": None, "event_time": now_ms})
producer.flush()
"""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.trace import SpanKind

from driftline.settings import Settings
from schemas import SchemaCodec
from streams.codecs import codec_for
from streams.exceptions import StreamsError
from streams.kafka import make_producer
from streams.topics import Topics
from streams.tracing import trace_headers

tracer = trace.get_tracer(__name__)


class FeatureProducer:
    def __init__(
        self, settings: Settings, bootstrap: str, *, codec: SchemaCodec | None = None
    ) -> None:
        self._codec = codec or codec_for(settings)
        self._topic = Topics(settings.kafka.topic_prefix).features
        self._producer = make_producer(settings, bootstrap)
        self._errors: list = []

    def _on_delivery(self, err, _msg) -> None:
        if err is not None:
            self._errors.append(err)

    def send(self, record: dict) -> None:
        """Encode and enqueue one FeatureRecord, with a W3C traceparent header."""
        with tracer.start_as_current_span("send features", kind=SpanKind.PRODUCER):
            headers = trace_headers()
        value = self._codec.encode("FeatureRecord", record)
        while True:
            try:
                self._producer.produce(
                    self._topic,
                    value,
                    key=record["entity_id"].encode(),
                    headers=headers,
                    on_delivery=self._on_delivery,
                )
                return
            except BufferError:  # local queue full: let deliveries drain, then retry
                self._producer.poll(0.05)

    def poll(self) -> None:
        self._producer.poll(0)

    def flush(self, timeout_s: float = 30.0) -> None:
        remaining = self._producer.flush(timeout_s)
        if remaining or self._errors:
            raise StreamsError(
                f"{remaining} feature records unacknowledged, {len(self._errors)} failed "
                f"(first error: {self._errors[0] if self._errors else 'timeout'})"
            )
