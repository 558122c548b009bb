"""`driftline status`: one screen of a real worker, read over its HTTP API."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from driftline.streams.demo.loadgen import produce_at_rate, synthetic_records
from driftline.streams.kafka.producer import FeatureProducer
from tests.integration.helpers import wait_until

pytestmark = pytest.mark.integration


def _status(stack_env, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "driftline.streams.cli", "status", *args],
        env=os.environ | stack_env.env | {"COLUMNS": "160"},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_status_shows_health_throughput_models_and_lifecycle(stack_env, serving_worker):
    settings = stack_env.settings()
    sent = produce_at_rate(
        FeatureProducer(settings, stack_env.bootstrap),
        synthetic_records(model="demo", count=300, entities=10, seed=4, n_features=16),
        rate=0,
    )
    wait_until(
        lambda: serving_worker.get("/driftline/stats/")["predictions_out"] >= sent,
        what="the records scored",
    )
    shown = _status(stack_env, "--worker", serving_worker.url)
    assert shown.returncode == 0, shown.stderr
    out = shown.stdout
    assert "ready" in out and "inference" in out
    assert f"predictions out {sent:,}" in out
    assert "served models" in out and "demo" in out and "champion" in out and "v1" in out
    assert "100.00%" in out
    assert "recent lifecycle events" in out and "promoted" in out and "bob" in out


def test_status_without_a_stack_says_how_to_name_a_worker(stack_env, tmp_path):
    shown = subprocess.run(
        [sys.executable, "-m", "driftline.streams.cli", "status"],
        env=os.environ | stack_env.env | {"DRIFTLINE_DATA_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert shown.returncode != 0
    assert "--worker" in shown.stderr and "driftline up" in shown.stderr
