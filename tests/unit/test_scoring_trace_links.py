"""The scoring span links every record's producer span, but only where spans are exported:
without an exporter nobody can see a link, and reading each record's traceparent was a
fifth of the hot path's CPU."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace import SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from driftline.inference import Router
from driftline.schemas import default_codec
from driftline.streams.kafka.delivery import DeliveryTracker
from driftline.streams.stages import scoring
from driftline.streams.stages.deadletter import DeadLetterPublisher
from driftline.streams.stages.scoring import ScoringPipeline
from driftline.streams.stats import WorkerStats
from driftline.streams.testing import Consumed, RecordingProducer

TRACE_ID, SPAN_ID = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"


@pytest.fixture
def spans(monkeypatch) -> InMemorySpanExporter:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(span_limits=SpanLimits(max_links=1000))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(scoring, "tracer", provider.get_tracer("test"))
    return exporter


def pipeline(link_records: bool) -> tuple[ScoringPipeline, RecordingProducer]:
    codec, producer, stats = default_codec(), RecordingProducer(), WorkerStats()
    delivery = DeliveryTracker(producer)
    dead = DeadLetterPublisher(codec=codec, delivery=delivery, topic="deadletter", stats=stats)
    scorer = ScoringPipeline(
        codec=codec,
        router=Router(),  # nothing served: every record is a no_champion dead letter
        delivery=delivery,
        dead_letters=dead,
        predictions_topic="predictions",
        stats=stats,
        link_records=link_records,
    )
    return scorer, producer


def messages(n: int) -> list[Consumed]:
    traced = []
    for i in range(n):
        span_id = f"{i + 1:016x}"
        header = [("traceparent", f"00-{TRACE_ID}-{span_id}-01".encode())]
        traced.append(Consumed("features", 0, i, b"k", b"\x00garbage", header))
    traced.append(Consumed("features", 0, n, b"k", b"\x00garbage", None))  # untraced
    return traced


@pytest.mark.parametrize(("link_records", "links"), [(True, 5), (False, 0)])
def test_links_only_where_spans_go_somewhere(spans, link_records, links) -> None:
    scorer, producer = pipeline(link_records)
    scorer.process(messages(5))
    (span,) = spans.get_finished_spans()
    assert span.name == "score features"
    assert len(span.links) == links
    if links:
        assert {f"{link.context.span_id:016x}" for link in span.links} == {
            f"{i + 1:016x}" for i in range(5)
        }
    # Either way every message ends somewhere, and outputs carry the batch's context on.
    assert len(producer.take("deadletter")) == 6


@pytest.mark.parametrize("exported", [True, False])
def test_the_worker_links_only_when_it_exports(monkeypatch, exported) -> None:
    from driftline.core import telemetry
    from driftline.core.settings import TelemetrySettings

    monkeypatch.setattr(telemetry, "_configured", None)
    monkeypatch.setattr(telemetry, "_exporting", False)
    monkeypatch.setattr(telemetry.trace, "set_tracer_provider", lambda provider: None)
    exporter = InMemorySpanExporter() if exported else None
    telemetry.configure_telemetry(TelemetrySettings(log_level="WARNING"), exporter=exporter)
    assert telemetry.spans_exported() is exported
