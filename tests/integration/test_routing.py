"""Live routing on a real worker: A/B/n split, shadow arm, frames, live changes, replay."""

from __future__ import annotations

import threading
import time

import pytest

from driftline.inference.routing import bucket_of
from driftline.streams.cli.replay import report, run_replay
from driftline.streams.control.model_commands import ModelCommands
from driftline.streams.demo.loadgen import (
    produce_at_rate,
    produce_frames_at_rate,
    synthetic_frames,
    synthetic_records,
)
from driftline.streams.kafka.producer import FeatureProducer
from tests.integration.helpers import wait_until, write_model

pytestmark = pytest.mark.integration


def _arms(worker) -> dict:
    served = worker.get("/driftline/models/").get("demo", {})
    return {(a["arm"], a["version"], a["traffic_bp"]) for a in served.get("arms", [])}


def test_split_shadow_frames_live_change_and_replay(stack_env, start_worker, tmp_path):
    settings = stack_env.settings()
    worker = start_worker()
    commands = ModelCommands.from_settings(settings)
    versions = []
    for seed in (1, 2, 3):
        event, _ = commands.register(write_model(tmp_path, seed=seed), "demo", actor="alice")
        versions.append(event.version)
    v1, v2, v3 = versions
    commands.promote("demo", v1, actor="bob")
    commands.send("validate", "demo", v2, "alice")
    commands.send("challenger", "demo", v2, "alice", {"percent": "30", "experiment": "exp-it"})
    commands.send("validate", "demo", v3, "alice")
    commands.send("shadow", "demo", v3, "alice")
    wanted = {("challenger", v2, 3000), ("champion", v1, 7000), ("shadow", v3, 0)}
    wait_until(lambda: _arms(worker) == wanted, timeout_s=30, what="the A/B split served")

    producer = FeatureProducer(settings, stack_env.bootstrap)
    started_ms = int(time.time() * 1000) - 1
    records = synthetic_records(model="demo", count=3000, entities=400, seed=7, n_features=16)
    frames = synthetic_frames(
        model="demo", count=20_000, entities=400, seed=8, n_features=16, frame_size=500
    )
    # Frames stream while the canary share changes: nothing lost or scored twice.
    sender = threading.Thread(
        target=produce_frames_at_rate, args=(producer, frames), kwargs={"rate": 10_000}
    )
    sender.start()
    sent_records = produce_at_rate(producer, records, rate=0)
    commands.send("traffic", "demo", v2, "bob", {"percent": "50"})
    sender.join()
    total = sent_records + 20_000

    db = settings.clickhouse.database
    wait_until(
        lambda: (
            worker.sql(f"SELECT count() FROM {db}.predictions WHERE arm != 'shadow'")[0][0] >= total
        ),
        timeout_s=60,
        what="all served predictions stored",
    )
    wait_until(
        lambda: (
            worker.sql(f"SELECT count() FROM {db}.predictions WHERE arm = 'shadow'")[0][0] >= total
        ),
        what="all shadow predictions stored",
    )
    served, unique, experiments = worker.sql(
        f"SELECT count(), uniqExact(record_id), groupUniqArray(experiment_id) "
        f"FROM {db}.predictions WHERE arm != 'shadow'"
    )[0]
    assert served == unique == total  # every row served once, across the live change
    assert experiments == ["exp-it"]
    shadow_versions = worker.sql(
        f"SELECT groupUniqArray(version), uniqExact(record_id) FROM {db}.predictions "
        f"WHERE arm = 'shadow'"
    )[0]
    assert shadow_versions == [[v3], total]

    # Sticky: before the change, each entity's arm is the one its bucket says.
    rows = worker.sql(
        f"SELECT entity_id, groupUniqArray(arm) FROM {db}.predictions "
        f"WHERE arm != 'shadow' AND record_id NOT LIKE '%:%' GROUP BY entity_id"
    )
    assert len(rows) > 300
    for entity, arms in rows:
        bucket = bucket_of(entity, "exp-it")
        if bucket < 3000:
            assert arms == ["challenger"], entity
        elif bucket >= 5000:
            assert arms == ["champion"], entity

    wait_until(
        lambda: worker.sql(f"SELECT count() FROM {db}.features")[0][0] >= total,
        what="features logged",
    )
    progress: list[tuple[int, int]] = []
    summary = run_replay(
        settings, "demo", v2, started_ms, int(time.time() * 1000) + 1,
        lambda d, t: progress.append((d, t)), worker_url=worker.url,
    )  # fmt: skip
    assert summary["rows_replayed"] == total and summary["rows_paired"] == total
    assert progress[-1] == (total, total)
    table = dict(report(settings, summary["replay_id"], 0.5, worker_url=worker.url))
    assert table["paired rows"].replace(",", "") == str(total)
