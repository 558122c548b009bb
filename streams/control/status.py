"""`driftline status`: one screen of what a worker is doing.

Read over the worker's own HTTP API, as any client would: health, throughput and dead
letters (``/driftline/stats/``), the served models and their arms (``/driftline/models/``),
the features consumer's lag (``/metrics``), the policy's recent decisions
(``/driftline/policy/``), and the last lifecycle events from the audit log when the
worker owns the store (``/driftline/sql/``). A section the worker does not serve (its role
is off) says so instead of failing the command.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from driftline.streams.embedded.stack import http_json, http_text


@dataclass
class WorkerStatus:
    url: str
    ready: bool
    roles: list[str]
    stats: dict[str, Any]
    models: dict[str, Any] | None  # None: no inference role
    lag: dict[str, float]  # "topic[partition]" -> records behind
    decisions: dict[str, Any] | None  # None: no policy role
    lifecycle: list[list] | None  # None: the store is elsewhere
    notes: list[str] = field(default_factory=list)


def _optional(url: str, payload: dict | None = None) -> dict | None:
    """The endpoint's JSON, or None where the worker answers 404 (a role that is off)."""
    answer = http_json(url, payload)  # an error status comes back as {"status": code, ...}
    return None if answer.get("status") == 404 else answer


def _lag(url: str) -> dict[str, float]:
    text = http_text(url + "/metrics")
    return {
        f"{s.labels['topic']}[{s.labels['partition']}]": s.value
        for family in text_string_to_metric_families(text)
        if family.name == "driftline_consumer_lag_records"
        for s in family.samples
    }


def read_status(url: str, database: str, *, events: int = 8) -> WorkerStatus:
    """Everything `driftline status` shows, read from the worker at ``url``."""
    health = http_json(url + "/driftline/health/")  # 503, ready false, while catching up
    status = WorkerStatus(
        url=url,
        ready=bool(health.get("ready")),
        roles=list(health.get("roles", [])),
        stats=http_json(url + "/driftline/stats/"),
        models=_optional(url + "/driftline/models/"),
        lag=_lag(url),
        decisions=_optional(url + "/driftline/policy/"),
        lifecycle=None,
    )
    if "lineage" in status.roles:
        query = (
            "SELECT formatDateTime(occurred_at, '%F %T') AS time, model, event_type, version, "
            f"actor FROM {database}.audit_log ORDER BY occurred_at DESC, seq DESC LIMIT {events}"
        )
        answer = _optional(url + "/driftline/sql/", {"query": query})
        if answer is not None and "error" not in answer:
            status.lifecycle = answer["rows"]
        elif answer is not None:
            status.notes.append(f"lifecycle unreadable: {answer['error']}")
    return status
