"""Small pure pieces of streams/: trace links, CloudEvents headers, topic names."""

from __future__ import annotations

import pytest
from opentelemetry import trace

from driftline.lineage.events import registered
from driftline.lineage.exceptions import InvalidRecord
from driftline.streams.control.store_access import audit_trail_query
from driftline.streams.kafka.lifecycle_topic import cloudevent_headers
from driftline.streams.kafka.topics import TOPIC_KINDS, Topics
from driftline.streams.kafka.tracing import link_to, trace_headers

VALID = b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def test_link_to_reads_a_w3c_traceparent():
    link = link_to([("other", b"x"), ("traceparent", VALID)])
    context = link.context
    assert f"{context.trace_id:032x}" == "0af7651916cd43dd8448eb211c80319c"
    assert f"{context.span_id:016x}" == "b7ad6b7169203331"
    assert context.is_remote and context.trace_flags.sampled


@pytest.mark.parametrize(
    "headers",
    [
        None,
        [],
        [("traceparent", b"garbage")],
        [("traceparent", b"01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")],
        [("traceparent", b"00-00000000000000000000000000000000-b7ad6b7169203331-01")],
        [("traceparent", b"00-0af7651916cd43dd8448eb211c80319c-zzzzzzzzzzzzzzzz-01")],
        [("traceparent", b"00-0af7651916cd43dd-b7ad6b7169203331-01")],
    ],
)
def test_link_to_ignores_missing_or_malformed_contexts(headers):
    assert link_to(headers) is None


def test_trace_headers_inject_the_current_span_and_round_trip():
    tracer = trace.get_tracer(__name__)
    with tracer.start_as_current_span("produce") as span:
        headers = trace_headers()
    link = link_to(headers)
    assert link.context.trace_id == span.get_span_context().trace_id
    assert link.context.span_id == span.get_span_context().span_id


def test_cloudevent_headers_are_binary_mode():
    event = registered("fraud", 3, "alice", {"digest": "ab" * 32, "artifact": "x"})
    headers = dict(cloudevent_headers(event, "driftline/cli"))
    assert headers["ce_specversion"] == b"1.0"
    assert headers["ce_id"] == event.event_id.encode()
    assert headers["ce_type"] == b"io.driftline.lifecycle.registered"
    assert headers["ce_source"] == b"driftline/cli"
    assert headers["ce_time"].endswith(b"Z")
    assert headers["ce_subject"] == b"fraud"


def test_topic_names_use_the_prefix():
    topics = Topics("acme.")
    assert topics.features == "acme.features"
    assert len(topics.all()) == len(TOPIC_KINDS) == 8
    with pytest.raises(ValueError, match="unknown topic kind 'feature'"):
        topics.name("feature")


def test_audit_query_refuses_model_names_that_could_inject_sql():
    assert "model = 'fraud-v2.a_b'" in audit_trail_query("driftline", "fraud-v2.a_b")
    with pytest.raises(InvalidRecord, match="not valid"):
        audit_trail_query("driftline", "x' OR 1=1 --")


def test_restart_backoff_doubles_to_a_cap_and_resets_after_a_healthy_run():
    from driftline.streams.embedded.stack import RestartBackoff

    backoff = RestartBackoff(first_s=1, most_s=8, healthy_s=60)
    assert [backoff.after_run(0.5) for _ in range(5)] == [1, 2, 4, 8, 8]
    assert backoff.after_run(120) == 1  # it ran a while: back to a quick restart
    assert backoff.restarts == 6
