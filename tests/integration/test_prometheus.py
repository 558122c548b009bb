"""A real Prometheus scraping a real worker, and a real Alertmanager paging a webhook.

Debian's Prometheus 2.42 and Alertmanager 0.25 (``make prometheus``) run beside the
stack; everything is read through their HTTP APIs, as an operator's tools would.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from driftline.schemas import default_codec
from driftline.streams.demo.loadgen import produce_at_rate, synthetic_records
from driftline.streams.kafka.codecs import codec_for
from driftline.streams.kafka.lifecycle_topic import LifecycleWatcher
from driftline.streams.kafka.producer import FeatureProducer
from driftline.streams.kafka.topics import Topics
from tests.integration.helpers import champions_in_turn, send_in_order, wait_until
from tests.integration.monitoring import Alertmanager, Prometheus, WebhookReceiver
from tests.integration.test_grafana_dashboards import dashboard_targets
from tests.integration.test_policy import drift_event, publish

pytestmark = pytest.mark.integration

RULES = Path(__file__).resolve().parents[2] / "infra" / "prometheus" / "alerts.yml"
ALERT_BUDGET_S = 30.0  # drift event published -> alert at the webhook


def test_prometheus_counts_what_clickhouse_stores(stack_env, serving_worker, tmp_path):
    settings = stack_env.settings()
    db = settings.clickhouse.database
    sent = produce_at_rate(
        FeatureProducer(settings, stack_env.bootstrap),
        synthetic_records(model="demo", count=500, entities=20, seed=5, n_features=16),
        rate=0,
    )
    wrong_width = default_codec().encode(
        "FeatureRecord",
        {
            "record_id": "narrow",
            "entity_id": "e",
            "model": "demo",
            "features": [1.0, 2.0],
            "feature_names": None,
            "event_time": time.time_ns() // 1_000_000,
        },
    )
    bad = [(b"k", b"garbage")] * 4 + [(b"k", wrong_width)] * 3
    send_in_order(stack_env.bootstrap, Topics(stack_env.prefix).features, bad)
    wait_until(
        lambda: (
            serving_worker.sql(f"SELECT count() FROM {db}.predictions")[0][0] >= sent
            and serving_worker.sql(f"SELECT count() FROM {db}.deadletters")[0][0] >= len(bad)
        ),
        what="predictions and dead letters stored",
    )
    stored = serving_worker.sql(f"SELECT count() FROM {db}.predictions FINAL")[0][0]
    stored_dead = dict(
        serving_worker.sql(f"SELECT reason, count() FROM {db}.deadletters FINAL GROUP BY reason")
    )

    workdir = tmp_path / "prometheus"
    workdir.mkdir()
    prometheus = Prometheus(workdir, [serving_worker.url.removeprefix("http://")])
    try:
        wait_until(
            lambda: prometheus.scalar("sum(driftline_predictions_total)") == stored,
            timeout_s=30,
            what=lambda: (
                f"Prometheus to count {stored} predictions, has "
                f"{prometheus.scalar('sum(driftline_predictions_total)')}"
            ),
        )
        scraped_dead = {
            row["metric"]["reason"]: float(row["value"][1])
            for row in prometheus.query("sum by (reason) (driftline_dead_letters_total)")
        }
        assert scraped_dead == {reason: float(n) for reason, n in stored_dead.items()}
        assert prometheus.scalar('up{job="driftline"}') == 1.0
        served = prometheus.query('driftline_model_info{model="demo", arm="champion"}')
        assert [row["metric"]["version"] for row in served] == ["1"]
        # Every PromQL expression of the Grafana dashboard runs here; those the worker's
        # traffic feeds return series.
        fed = {"Throughput", "Produce-to-prediction", "Arms and", "Dead letters"}
        wait_until(  # rate() needs two scrapes in its window
            lambda: (prometheus.scalar('count_over_time(up{job="driftline"}[1m])') or 0) >= 3,
            timeout_s=20,
            what="three scrapes",
        )
        for title, expr in dashboard_targets("prometheus"):
            result = prometheus.query(expr.replace("$model", ".*"))
            if any(title.startswith(prefix) for prefix in fed):
                assert result, f"{title}: {expr} returned nothing"
    finally:
        prometheus.stop()


def test_a_drift_rollback_pages_the_webhook_through_alertmanager(stack_env, start_worker, tmp_path):
    settings = stack_env.settings()
    worker = start_worker()
    first, second = champions_in_turn(settings, worker, tmp_path)

    receiver = WebhookReceiver()
    (tmp_path / "am").mkdir()
    (tmp_path / "prom").mkdir()
    alertmanager = Alertmanager(tmp_path / "am", receiver.url)
    target = worker.url.removeprefix("http://")
    prometheus = Prometheus(
        tmp_path / "prom", [target], rules=RULES, alertmanager=alertmanager.address
    )
    try:
        wait_until(
            lambda: prometheus.scalar('up{job="driftline"}') == 1.0,
            timeout_s=30,
            what="Prometheus scraping the worker",
        )
        assert receiver.firing("DriftlineRollbackPerformed") == []  # nothing before the drift

        watcher = LifecycleWatcher(
            settings, stack_env.bootstrap, Topics(stack_env.prefix).lifecycle
        )
        sent = time.monotonic()
        publish(settings, stack_env.bootstrap, drift_event("demo", second, "champion", "error"))
        event = watcher.wait_until(codec_for(settings), lambda e: e.type == "rolled_back", 20)
        assert event is not None, f"no rollback; worker log:\n{worker.log_tail()}"
        rolled_back = time.monotonic() - sent
        wait_until(
            lambda: receiver.firing("DriftlineRollbackPerformed"),
            timeout_s=ALERT_BUDGET_S,
            what="the rollback alert at the webhook",
        )
        (arrived, alert), *_ = receiver.firing("DriftlineRollbackPerformed")
        print(
            f"drift event -> rolled_back {rolled_back * 1000:.0f} ms -> alert at the webhook "
            f"{(arrived - sent) * 1000:.0f} ms"
        )
        assert arrived - sent < ALERT_BUDGET_S
        assert alert["labels"]["severity"] == "page"
        assert alert["labels"]["instance"] == target
        assert "previous champion" in alert["annotations"]["runbook"]
    finally:
        prometheus.stop()
        alertmanager.stop()
        receiver.stop()
