"""OpenTelemetry and logging set-up. Called only from entry points (CLI commands).

Library code asks for ``trace.get_tracer(__name__)`` and never configures the SDK.
Producers always get valid W3C trace contexts to inject because a TracerProvider is
installed even when nothing is exported; exporting to OTLP is opt-in.
"""

from __future__ import annotations

import logging

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

from driftline import __version__
from driftline.core.settings import TelemetrySettings

# A batch span links to the records it scored; allow one link per record of a
# default-sized batch instead of the SDK's default of 128.
MAX_LINKS_PER_SPAN = 1000

_configured: TracerProvider | None = None
_exporting = False


def configure_telemetry(
    settings: TelemetrySettings, *, exporter: SpanExporter | None = None
) -> TracerProvider:
    """Install the global tracer provider once per process and set log levels."""
    global _configured, _exporting
    logging.basicConfig(
        level=settings.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # Feast logs every registry refresh at INFO, several times a lookup: its warnings only,
    # unless DEBUG is asked for.
    if logging.getLevelName(settings.log_level) > logging.DEBUG:
        logging.getLogger("feast").setLevel(logging.WARNING)
    if _configured is not None:
        return _configured
    provider = TracerProvider(
        resource=Resource.create(
            {"service.name": settings.service_name, "service.version": __version__}
        ),
        sampler=ParentBased(TraceIdRatioBased(settings.sample_ratio)),
        span_limits=SpanLimits(max_links=MAX_LINKS_PER_SPAN),
    )
    if exporter is None and settings.otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter(endpoint=settings.otlp_endpoint.rstrip("/") + "/v1/traces")
    if exporter is not None:
        provider.add_span_processor(BatchSpanProcessor(exporter))
        _exporting = True
    trace.set_tracer_provider(provider)
    _configured = provider
    return provider


def spans_exported() -> bool:
    """Whether finished spans go anywhere. Without an exporter, spans still give producers
    valid contexts to pass on, but what only a span holds (its links) is never seen."""
    return _exporting


def shutdown_telemetry() -> None:
    if _configured is not None:
        _configured.shutdown()
