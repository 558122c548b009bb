"""Residency at start-up: a worker with the lineage role refuses a ClickHouse store, or a
feature store, outside the allowed regions before opening it, and the refusal reaches the
audit log."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from driftline.lineage.audit.residency import RESIDENCY_CHAIN
from tests.integration.helpers import wait_until

pytestmark = pytest.mark.integration

ALLOWED = {"DRIFTLINE_DATA_ALLOWED_REGIONS": "eu-central-1,eu-west-1"}


def test_a_store_outside_the_allowed_regions_is_refused_on_record(
    stack_env, start_worker, feast_repo
):
    refused = subprocess.run(
        [sys.executable, "-m", "driftline.streams.cli", "worker"],
        env=os.environ | stack_env.env | ALLOWED | {"DRIFTLINE_CLICKHOUSE_REGION": "us-east-1"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert refused.returncode == 2, refused.stderr[-2000:]
    assert "ClickHouse store" in refused.stderr and "'us-east-1'" in refused.stderr
    assert "the refusal is audited" in refused.stderr
    # The feature store the worker would enrich from is guarded the same way.
    features_refused = subprocess.run(
        [sys.executable, "-m", "driftline.streams.cli", "worker"],
        env=os.environ | stack_env.env | ALLOWED | {
            "DRIFTLINE_CLICKHOUSE_REGION": "eu-west-1",
            "DRIFTLINE_FEATURES_REPO": str(feast_repo),
            "DRIFTLINE_FEATURES_REGION": "ap-south-1",
        },
        capture_output=True,
        text=True,
        timeout=120,
    )  # fmt: skip
    assert features_refused.returncode == 2, features_refused.stderr[-2000:]
    assert "feature store" in features_refused.stderr and "'ap-south-1'" in features_refused.stderr
    # It never opened the store: a worker in an allowed region opens it and records the
    # refusal, which waited on the commands topic for a registry.
    worker = start_worker(**ALLOWED, DRIFTLINE_CLICKHOUSE_REGION="eu-west-1")
    db = stack_env.settings().clickhouse.database
    query = (
        "SELECT event_type, actor, JSONExtractString(canonical, 'evidence', 'check'), "
        "JSONExtractString(canonical, 'evidence', 'arguments', 'region') "
        f"FROM {db}.audit_log WHERE model = '{RESIDENCY_CHAIN}'"
    )
    wait_until(lambda: len(worker.sql(query)) == 2, what="the residency refusals in the audit log")
    assert sorted(worker.sql(query)) == [
        ["command_rejected", "lineage-writer", "region", "ap-south-1"],
        ["command_rejected", "lineage-writer", "region", "us-east-1"],
    ]
    wait_until(
        lambda: worker.get(f"/driftline/audit/verify/?model={RESIDENCY_CHAIN}")["ok"],
        what="the residency chain verified",
    )
