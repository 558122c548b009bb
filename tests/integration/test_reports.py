"""`driftline report`: the HTML written from a real store, rendered in a real browser."""

from __future__ import annotations

import dataclasses
import hashlib
import time

import pytest
from playwright.sync_api import sync_playwright

from driftline.lineage.audit.chain import AuditLogWriter
from driftline.lineage.events import LifecycleEvent
from driftline.lineage.registry.model_registry import ModelRegistry
from driftline.lineage.store.clickhouse import create_tables
from driftline.lineage.store.drift_sinks import DriftSink
from driftline.schemas.testing import sample
from driftline.streams.control.reports import report
from tests.integration.debian_tools import chromium

pytestmark = pytest.mark.integration

MODEL = "fraud"
GUARDRAILS = [
    {"name": "error_rate", "status": "pass", "value": 0.04, "limit": 0.06},
    {"name": "latency_p99_ms", "status": "pass", "value": 31.0, "limit": 250.0},
]


def _test(statistic: float, n: int, outcome: str = "continue") -> dict:
    return {"test": "msprt", "statistic": statistic, "alpha": 0.05, "outcome": outcome,
            "p_value": 0.3, "n_control": n, "n_treatment": n, "ci": [-0.01, 0.02]}  # fmt: skip


def _history() -> list[LifecycleEvent]:
    """v1 champion; v2 through a canary stepped by the policy with its guardrails and test,
    then promoted when the test stopped."""
    registry, events = ModelRegistry(), []

    start = time.time_ns() // 1_000_000 - 3_600_000

    def apply(event: LifecycleEvent) -> None:
        # A minute apart, as a real rollout's steps are (planning stamps them now).
        event = dataclasses.replace(event, occurred_at=start + len(events) * 60_000)
        assert registry.apply(event)
        events.append(event)

    for n in (1, 2):
        digest = hashlib.sha256(f"{MODEL}-{n}".encode()).hexdigest()
        description = {"input_name": "x", "input_shape": "[null, 4]"}
        apply(registry.plan_register(MODEL, description, digest, f"{digest}.onnx", "alice"))
    apply(registry.plan("promote", MODEL, 1, "bob"))
    apply(registry.plan("validate", MODEL, 2, "ci"))
    apply(registry.plan("canary", MODEL, 2, "alice", arguments={"percent": "5"}))
    for step, (percent, statistic) in enumerate([("25", 0.8), ("50", 1.9)]):
        evidence = {"reason": f"step {step + 1} passed", "guardrails": GUARDRAILS,
                    "test": _test(statistic, 500 * (step + 1))}  # fmt: skip
        apply(
            registry.plan(
                "traffic", MODEL, 2, "policy", arguments={"percent": percent}, evidence=evidence
            )
        )
    final = {"reason": "the test stopped: v2 wins", "guardrails": GUARDRAILS,
             "test": _test(3.4, 2000, "reject")}  # fmt: skip
    apply(registry.plan("promote", MODEL, 2, "policy", evidence=final))
    return events


@pytest.fixture
def store(chdb_client, fresh_database):
    create_tables(chdb_client, fresh_database)
    items = [(e, "driftline.lifecycle", 0, i) for i, e in enumerate(_history())]
    AuditLogWriter(chdb_client, fresh_database).write(items)
    drift = DriftSink(chdb_client, fresh_database)
    now = time.time_ns() // 1_000_000
    for i in range(6):
        drift.add(sample("DriftEvent", event_id=f"d{i}", model=MODEL, feature="amount",
                         statistic=0.1 + i / 20, detected_at=now - (6 - i) * 60_000))  # fmt: skip
    drift.flush()

    def query(sql: str):
        result = chdb_client.query(sql)
        return list(result.column_names), [list(r) for r in result.result_rows]

    return query, fresh_database


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("canary", ["Canary share of traffic", "guardrails", "error_rate pass", "promoted"]),
        ("experiment", ["Sequential test", "log likelihood ratio", "boundary", "reject"]),
        ("drift", ["ks amount", "statistic", "threshold"]),
    ],
)
def test_each_report_renders_its_plots_in_a_browser(store, tmp_path, kind, expected):
    query, database = store
    page_file = tmp_path / f"{kind}.html"
    page_file.write_text(report(kind, query, database, MODEL), encoding="utf-8")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium()), args=["--no-sandbox"])
        page = browser.new_page()
        requested = []
        page.on("request", lambda request: requested.append(request.url))
        page.goto(page_file.as_uri())
        text = page.inner_text("body")
        for words in expected:
            assert words in text, f"{kind}: {words!r} not on the page"
        lines = page.locator("svg.chart polyline")
        assert lines.count() >= 1
        xs = [
            float(point.split(",")[0])
            for i in range(lines.count())
            for point in lines.nth(i).get_attribute("points").split()
        ]
        assert max(xs) - min(xs) > 300  # a line across the chart, not a dot or a stroke
        box = page.locator("svg.chart").first.bounding_box()
        assert box["width"] > 300 and box["height"] > 100
        page.screenshot(path=str(tmp_path / f"{kind}.png"), full_page=True)
        browser.close()
    assert requested == [page_file.as_uri()]  # self-contained: nothing else fetched


def test_an_unknown_report_or_model_name_is_refused(store):
    query, database = store
    with pytest.raises(ValueError, match="choose one of canary, experiment, drift"):
        report("latency", query, database, MODEL)
    with pytest.raises(Exception, match="model name"):
        report("canary", query, database, "x'; DROP TABLE y; --")
