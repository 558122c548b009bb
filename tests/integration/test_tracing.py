"""A record's trace continues through the worker: the worker's batch span (exported
over real OTLP/HTTP to a collector in this test) links to the producer's span, and
each prediction carries the batch span's context onward."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from driftline.streams.control.model_commands import ModelCommands
from driftline.streams.demo.loadgen import synthetic_records
from driftline.streams.embedded.processes import free_port
from driftline.streams.kafka.producer import FeatureProducer
from driftline.streams.kafka.topics import Topics
from driftline.streams.kafka.tracing import HEADER_GETTER
from tests.integration.helpers import read_topic, wait_until, write_model

pytestmark = pytest.mark.integration


class _Collector:
    """A minimal OTLP/HTTP trace receiver."""

    def __init__(self) -> None:
        self.spans: list = []
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers["content-length"]))
                request = ExportTraceServiceRequest.FromString(body)
                for resource_spans in request.resource_spans:
                    for scope_spans in resource_spans.scope_spans:
                        collector.spans.extend(scope_spans.spans)
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.port = free_port()
        self.server = HTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


def test_worker_batch_span_links_producer_traces_and_predictions_carry_context(
    stack_env, start_worker, tmp_path
):
    collector = _Collector()
    try:
        worker = start_worker(
            DRIFTLINE_TELEMETRY_OTLP_ENDPOINT=f"http://127.0.0.1:{collector.port}",
            OTEL_BSP_SCHEDULE_DELAY="200",
        )
        settings = stack_env.settings()
        commands = ModelCommands.from_settings(settings)
        event, _ = commands.register(write_model(tmp_path, seed=1), "demo", actor="alice")
        commands.promote("demo", event.version, actor="bob")
        wait_until(lambda: worker.get("/driftline/models/").get("demo"), what="model served")

        producer = FeatureProducer(settings, stack_env.bootstrap)

        sent = list(synthetic_records(model="demo", count=20, entities=5, seed=1, n_features=16))
        for record in sent:
            producer.send(record)
        producer.flush()

        features = read_topic(stack_env.bootstrap, Topics(stack_env.prefix).features, 2)
        producer_traces = {
            HEADER_GETTER.get(m.headers(), "traceparent")[0].split("-")[1] for m in features
        }
        assert len(producer_traces) == 20  # every record has its own trace

        wait_until(
            lambda: any(s.name == "score features" for s in collector.spans),
            timeout_s=30,
            what="the worker's batch span at the collector",
        )
        batch_spans = [s for s in collector.spans if s.name == "score features"]
        linked = {link.trace_id.hex() for span in batch_spans for link in span.links}
        assert producer_traces <= linked

        predictions = read_topic(stack_env.bootstrap, Topics(stack_env.prefix).predictions, 2)
        assert len(predictions) == 20
        # traceparent = version-trace_id-parent_span_id-flags
        carried = {
            tuple(HEADER_GETTER.get(m.headers(), "traceparent")[0].split("-")[1:3])
            for m in predictions
        }
        batch_contexts = {(s.trace_id.hex(), s.span_id.hex()) for s in batch_spans}
        assert carried <= batch_contexts
    finally:
        collector.close()


def _trace_id(message) -> str | None:
    values = HEADER_GETTER.get(message.headers(), "traceparent")
    return values[0].split("-")[1] if values else None


def test_lifecycle_events_continue_the_trace_of_their_command(stack_env, start_worker, tmp_path):
    start_worker()
    settings = stack_env.settings()
    commands = ModelCommands.from_settings(settings)
    event, _ = commands.register(write_model(tmp_path, seed=2), "traced", actor="alice")
    commands.promote("traced", event.version, actor="bob")
    topics = Topics(stack_env.prefix)
    sent = read_topic(stack_env.bootstrap, topics.name("commands"), 2)
    answers = read_topic(stack_env.bootstrap, topics.lifecycle, 2)
    command_traces = {_trace_id(m) for m in sent}
    assert len(sent) == 2 and None not in command_traces and len(command_traces) == 2
    registry_events = [
        m
        for m in answers
        if (HEADER_GETTER.get(m.headers(), "ce_source") or [""])[0] == "driftline/registry"
    ]
    assert len(registry_events) == 2
    assert {_trace_id(m) for m in registry_events} == command_traces
