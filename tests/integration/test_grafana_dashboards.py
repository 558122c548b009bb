"""The Grafana dashboards cannot rot: every SQL query in them runs against chDB holding real
rows, with Grafana's ClickHouse macros expanded, and returns rows. (Every PromQL
expression in them runs against a real Prometheus in test_prometheus.py.)

Grafana itself cannot be installed here, so the queries are what is checked: the
panel types and layout are Grafana's to render.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from pathlib import Path

import pytest
import yaml

from driftline.lineage.audit.chain import AuditLogWriter
from driftline.lineage.events import LifecycleEvent
from driftline.lineage.registry.model_registry import ModelRegistry
from driftline.lineage.store.clickhouse import create_tables
from driftline.lineage.store.drift_sinks import DriftSink
from driftline.lineage.store.sinks import DeadLetterSink, PredictionSink
from driftline.schemas.testing import sample

pytestmark = pytest.mark.integration

GRAFANA = Path(__file__).resolve().parents[2] / "infra" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "driftline.json"
MODEL = "fraud"


def dashboard_targets(kind: str) -> list[tuple[str, str]]:
    """(panel title, query) for every target of datasource ``kind`` ('prometheus' or
    'grafana-clickhouse-datasource'), template variables included."""
    board = json.loads(DASHBOARD.read_text())
    found = [
        (panel["title"], target.get("expr") or target.get("rawSql"))
        for panel in board["panels"]
        for target in panel["targets"]
        if target["datasource"]["type"] == kind
    ]
    for variable in board["templating"]["list"]:
        if variable["datasource"]["type"] == kind:
            found.append((f"variable {variable['name']}", variable["query"]))
    return found


def expand_sql(query: str, database: str, start_s: int, end_s: int) -> str:
    """What Grafana's ClickHouse datasource sends for ``query`` (its macros), on ``database``."""
    query = re.sub(
        r"\$__timeFilter\((\w+)\)",
        rf"\1 >= toDateTime({start_s}) AND \1 <= toDateTime({end_s})",
        query,
    )
    query = re.sub(
        r"\$__timeInterval\((\w+)\)",
        r"toStartOfInterval(toDateTime(\1), INTERVAL 60 second)",
        query,
    )
    query = query.replace("${model}", MODEL).replace("$model", MODEL)
    assert "$" not in query, f"an unexpanded macro or variable in: {query}"
    return query.replace("driftline.", f"{database}.")


def _lifecycle() -> list[LifecycleEvent]:
    """v1 champion, v2 canary stepped up and promoted, then rolled back: real planned events."""
    registry, events = ModelRegistry(), []
    description = {"input_name": "x", "input_shape": "[null, 4]"}

    def apply(event: LifecycleEvent) -> None:
        assert registry.apply(event)
        events.append(event)

    for n in (1, 2):
        digest = hashlib.sha256(f"{MODEL}-{n}".encode()).hexdigest()
        apply(registry.plan_register(MODEL, description, digest, f"{digest}.onnx", "alice"))
    apply(registry.plan("promote", MODEL, 1, "bob"))
    apply(registry.plan("validate", MODEL, 2, "ci"))
    apply(registry.plan("canary", MODEL, 2, "alice", arguments={"percent": "5"}))
    apply(registry.plan("traffic", MODEL, 2, "policy", arguments={"percent": "25"}))
    apply(registry.plan("promote", MODEL, 2, "policy", evidence={"reason": "canary passed"}))
    apply(registry.plan("rollback", MODEL, None, "policy", evidence={"reason": "drift"}))
    return events


@pytest.fixture
def loaded(chdb_client, fresh_database) -> str:
    """A store holding a model's recent life: predictions, lifecycle, drift, dead letters."""
    create_tables(chdb_client, fresh_database)
    now = time.time_ns() // 1_000_000
    predictions = PredictionSink(chdb_client, fresh_database)
    for i in range(300):
        version, arm = (2, "canary") if i % 4 == 0 else (1, "champion")
        predictions.add(
            sample(
                "Prediction",
                prediction_id=f"p{i}",
                record_id=f"r{i}",
                model=MODEL,
                version=version,
                arm=arm,
                scored_at=now - (300 - i) * 1000,
                event_time=now - (300 - i) * 1000 - 20,
            )
        )
    predictions.flush()
    items = [(e, "driftline.lifecycle", 0, i) for i, e in enumerate(_lifecycle())]
    AuditLogWriter(chdb_client, fresh_database).write(items)
    drift = DriftSink(chdb_client, fresh_database)
    drift.add(sample("DriftEvent", model=MODEL, version=2, detected_at=now - 5_000))
    drift.flush()
    dead = DeadLetterSink(chdb_client, fresh_database)
    dead.add(sample("DeadLetter", failed_at=now - 60_000))
    dead.flush()
    return fresh_database


def test_the_dashboard_holds_sql_and_promql_panels():
    assert len(dashboard_targets("grafana-clickhouse-datasource")) >= 5
    assert len(dashboard_targets("prometheus")) >= 8


@pytest.mark.parametrize(
    ("title", "query"),
    dashboard_targets("grafana-clickhouse-datasource"),
    ids=[title for title, _ in dashboard_targets("grafana-clickhouse-datasource")],
)
def test_every_sql_query_returns_rows_from_real_data(chdb_client, loaded, title, query):
    end = int(time.time()) + 60
    rows = chdb_client.query(expand_sql(query, loaded, end - 3600, end)).result_rows
    assert rows, f"{title}: no rows"


def test_the_provisioning_names_the_dashboards_datasources():
    datasources = yaml.safe_load((GRAFANA / "provisioning/datasources/driftline.yml").read_text())
    uids = {d["uid"]: d for d in datasources["datasources"]}
    board = json.loads(DASHBOARD.read_text())
    used = {target["datasource"]["uid"] for panel in board["panels"] for target in panel["targets"]}
    assert used <= set(uids)
    assert uids["driftline-clickhouse"]["jsonData"]["username"] == "driftline_dashboard"
    users = (Path(GRAFANA).parent / "clickhouse" / "users.xml").read_text()
    assert "<driftline_dashboard>" in users and "<readonly>1</readonly>" in users
