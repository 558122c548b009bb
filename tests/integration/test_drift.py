"""Drift detection on a real worker: a shifted feature is caught, and a killed worker resumes.

Two runs over the same frames (same ids, so the same partitions) under two
model names: one worker that runs throughout, and one that is killed (SIGKILL)
mid-stream and restarted. The restarted worker recovers its detector state
from the ``drift-state`` table's changelog and must raise exactly the same
alarms at exactly the same records: event ids encode model version, arm,
detector, feature, partition and the stream position of the alarm.
"""

from __future__ import annotations

import json
import signal

import numpy as np
import pytest

from inference.synthetic import SyntheticFeatures
from schemas import default_codec
from streams.drift_cli import drift_events_query
from streams.loadgen import produce_frames_at_rate, synthetic_frames
from streams.models import ModelCommands
from streams.producer import FeatureProducer
from tests.integration.conftest import wait_until
from tests.integration.helpers import read_topic, write_model

pytestmark = pytest.mark.integration

ROWS, FRAME, SHIFT_AT, SHIFTED = 40_000, 500, 20_000, 3


def _frames(model: str) -> list[dict]:
    frames = list(
        synthetic_frames(
            model=model, count=ROWS, entities=500, seed=1, n_features=16, frame_size=FRAME
        )
    )
    scale = SyntheticFeatures(n_features=16, seed=1).scales[SHIFTED]
    for index, frame in enumerate(frames):
        if index * FRAME >= SHIFT_AT:  # a 1-sigma shift of one feature from row 20,000 on
            frame["matrix"] = frame["matrix"].copy()
            frame["matrix"][:, SHIFTED] += 1.0 * scale
    return frames


def _register(settings, tmp_path, name: str) -> int:
    training = tmp_path / "train.npy"
    x, _ = SyntheticFeatures(n_features=16, seed=1).sample(20_000)
    np.save(training, x)
    commands = ModelCommands.from_settings(settings)
    event, _ = commands.register(
        write_model(tmp_path, seed=1), name, actor="alice", training_data=training
    )
    commands.promote(name, event.version, actor="bob")
    return event.version


def _alarms(settings, bootstrap, model: str) -> dict[tuple, dict]:
    codec = default_codec()
    topic = f"{settings.kafka.topic_prefix}drift"
    found = {}
    for message in read_topic(bootstrap, topic, settings.kafka.partitions):
        record = codec.decode_as("DriftEvent", message.value())
        if record["model"] != model:
            continue
        evidence = json.loads(record["evidence"])
        where = (
            record["version"],
            record["arm"],
            evidence["stream"],
            record["detector"],
            record["feature"],
            evidence["source_partition"],
            evidence["position"],
        )
        found[where] = record
    return found


def _scored(worker, _model: str) -> int:
    return worker.get("/driftline/stats/")["predictions_out"]


def test_shift_detected_and_killed_worker_resumes_at_the_same_record(
    stack_env, start_worker, tmp_path
):
    settings = stack_env.settings()
    producer = FeatureProducer(settings, stack_env.bootstrap)

    # Run 1: uninterrupted.
    worker = start_worker(DRIFTLINE_DRIFT_ENABLED="true")
    _register(settings, tmp_path, "steady")
    wait_until(lambda: worker.get("/driftline/models/").get("steady"), what="steady served")
    produce_frames_at_rate(producer, iter(_frames("steady")), rate=0)
    wait_until(lambda: _scored(worker, "steady") >= ROWS, timeout_s=90, what="run 1 scored")
    wait_until(
        lambda: len(_alarms(settings, stack_env.bootstrap, "steady")) > 0,
        timeout_s=30,
        what="drift events from the uninterrupted run",
    )
    steady = _alarms(settings, stack_env.bootstrap, "steady")
    live = worker.get("/driftline/drift/")["partitions"]
    monitors = [m for p in live.values() for m in p["monitors"] if m["model"] == "steady"]
    assert monitors and all(m["reference"] == "training" for m in monitors)
    assert sum(m["rows_seen"] for m in monitors) == ROWS
    # What `driftline drift` lists: the stored events, one row per event, in the audit log too.
    db = settings.clickhouse.database
    query = drift_events_query(db, "steady", limit=1000)
    wait_until(lambda: len(worker.sql(query)) == len(steady), what="drift events stored")
    audited = f"SELECT count() FROM {db}.audit_log WHERE event_type = 'drift_detected'"
    assert worker.sql(audited + " AND model = 'steady'")[0][0] == len(steady)
    worker.stop()

    inputs = [key for key in steady if key[2] == "input"]
    assert inputs, f"no input drift detected: {sorted(steady)}"
    shifted = SyntheticFeatures(16, seed=1).feature_names[SHIFTED]
    assert {key[4] for key in inputs} == {shifted}, f"alarms on other features: {sorted(inputs)}"
    # Each partition got about half the rows; the shift starts near row 10,000 of each.
    for key in inputs:
        assert SHIFT_AT // 2 - 3_000 < key[6] < SHIFT_AT // 2 + 5_000, key

    # Run 2: the same frames under another name; the worker is killed mid-stream.
    worker = start_worker(DRIFTLINE_DRIFT_ENABLED="true")
    _register(settings, tmp_path, "killed")
    wait_until(lambda: worker.get("/driftline/models/").get("killed"), what="killed served")
    frames = _frames("killed")
    half = len(frames) * 3 // 8  # before the shift
    produce_frames_at_rate(producer, iter(frames[:half]), rate=0)
    wait_until(
        lambda: _scored(worker, "killed") >= half * FRAME, timeout_s=60, what="first part scored"
    )
    worker.proc.send_signal(signal.SIGKILL)
    worker.proc.wait(10)

    worker = start_worker(DRIFTLINE_DRIFT_ENABLED="true")
    produce_frames_at_rate(producer, iter(frames[half:]), rate=0)
    wait_until(
        lambda: _scored(worker, "killed") >= (len(frames) - half) * FRAME,
        timeout_s=120,
        what="the rest scored after the restart",
    )
    expected = set(steady)
    wait_until(
        lambda: set(_alarms(settings, stack_env.bootstrap, "killed")) >= expected,
        timeout_s=30,
        what=lambda: (
            f"the same alarms after the restart; missing "
            f"{sorted(expected - set(_alarms(settings, stack_env.bootstrap, 'killed')))}"
        ),
    )
    assert set(_alarms(settings, stack_env.bootstrap, "killed")) == expected
    # The state really came back from the changelog: the restarted worker resumed its
    # detectors part-way into the stream instead of recounting from the start.
    stats = worker.get("/driftline/stats/")
    restored = stats["drift_restored"]  # "<partition>:<model>/v<n>/<arm>" -> next offset
    assert restored and all(offset > 0 for offset in restored.values()), stats
