"""`driftline data erase` end to end: a real worker owns the store, the CLI sends the request
there, the registry records it, and the audit log still verifies."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from driftline.lineage.audit.erasure import ERASURE_CHAIN, entity_hash
from driftline.streams.control.identity import create_actor
from driftline.streams.kafka.producer import FeatureProducer
from tests.integration.helpers import serve_model, wait_until

pytestmark = pytest.mark.integration

KEY = "erasure-key-for-the-test-suite-0123456789"
ERASED, KEPT = "person-42", "person-43"
# Stored of each entity: 3 predictions, the features of all 6 records it sent (features
# are logged before validation), and the dead letters of its 3 records of the wrong size.
EACH = {"predictions": 3, "features": 6, "deadletters": 3}


def _cli(stack_env, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "driftline.streams.cli", *args],
        env=os.environ | stack_env.env | env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _counts(worker, db: str, entity: str) -> dict[str, int]:
    e = entity.replace("'", "")
    return {
        "predictions": worker.sql(f"SELECT count() FROM {db}.predictions WHERE entity_id = '{e}'"),
        "features": worker.sql(f"SELECT count() FROM {db}.features WHERE entity_id = '{e}'"),
        "deadletters": worker.sql(f"SELECT count() FROM {db}.deadletters WHERE key = '{e}'"),
    }


def test_driftline_data_erase_through_the_worker(stack_env, start_worker, tmp_path):
    settings = stack_env.settings(DRIFTLINE_DATA_ERASURE_KEY=KEY)
    db = settings.clickhouse.database
    create_actor(settings, "dana", ["data-protection"])
    worker = start_worker(DRIFTLINE_DATA_ERASURE_KEY=KEY)
    serve_model(settings, worker, tmp_path)

    producer = FeatureProducer(settings, stack_env.bootstrap)
    for n in range(6):
        entity = (ERASED, KEPT)[n % 2]
        producer.send(
            {
                "record_id": f"r{n}",
                "entity_id": entity,
                "model": "demo",
                "features": [0.1 * n] * 16,
                "feature_names": None,
                "event_time": 1_700_000_000_000 + n,
            }
        )
        producer.send(  # the wrong feature count: a dead letter keyed by the entity
            {
                "record_id": f"bad{n}",
                "entity_id": entity,
                "model": "demo",
                "features": [0.0] * 3,
                "feature_names": None,
                "event_time": 1_700_000_000_000 + n,
            }
        )
    producer.close()

    def stored(entity: str) -> dict[str, int]:
        return {name: rows[0][0] for name, rows in _counts(worker, db, entity).items()}

    wait_until(
        lambda: stored(ERASED) == EACH and stored(KEPT) == EACH,
        what=lambda: f"both entities stored: {stored(ERASED)} {stored(KEPT)}",
    )

    # Without the key the CLI refuses before anything is sent.
    no_key = _cli(stack_env, "data", "erase", "--entity", ERASED, "--actor", "dana")
    assert no_key.returncode == 2
    assert "DRIFTLINE_DATA_ERASURE_KEY is not set" in no_key.stderr

    # alice (a data scientist) may not erase: refused, and the refusal is audited.
    refused = _cli(
        stack_env,
        *("data", "erase", "--entity", ERASED, "--actor", "alice", "--worker", worker.url),
        DRIFTLINE_DATA_ERASURE_KEY=KEY,
    )
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "erase refused (rbac)" in refused.stderr
    assert stored(ERASED)["predictions"] == 3

    done = _cli(
        stack_env,
        *("data", "erase", "--entity", ERASED, "--actor", "dana", "--worker", worker.url),
        DRIFTLINE_DATA_ERASURE_KEY=KEY,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "audited as erased by dana" in done.stdout
    assert stored(ERASED) == {"predictions": 0, "features": 0, "deadletters": 0}
    assert stored(KEPT) == EACH

    hashed = entity_hash(KEY.encode(), ERASED)
    wait_until(
        lambda: (
            len(worker.sql(f"SELECT seq FROM {db}.audit_log WHERE model = '{ERASURE_CHAIN}'")) == 2
        ),
        what="the refusal and the erasure in the audit log",
    )
    rows = worker.sql(
        f"SELECT event_type, actor, JSONExtractString(canonical, 'evidence', 'entity_hash'), "
        "JSONExtractString(canonical, 'evidence', 'arguments', 'entity_hash'), "
        "JSONExtractString(canonical, 'evidence', 'check'), "
        "JSONExtractInt(canonical, 'evidence', 'rows_deleted') "
        f"FROM {db}.audit_log WHERE model = '{ERASURE_CHAIN}' ORDER BY seq"
    )
    assert rows == [
        ["command_rejected", "alice", "", hashed, "rbac", 0],
        ["erased", "dana", hashed, "", "", 12],
    ]
    leaked = worker.sql(
        f"SELECT count() FROM {db}.audit_log WHERE position(canonical, '{ERASED}') > 0"
    )
    assert leaked == [[0]]
    # The chain, its checkpoints and the rows' source records on Kafka all hold.
    wait_until(
        lambda: worker.get(f"/driftline/audit/verify/?model={ERASURE_CHAIN}")["ok"],
        what="the erasure chain verified",
    )
    assert worker.get("/driftline/audit/verify/")["ok"] is True
