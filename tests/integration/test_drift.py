"""Drift detection on a real worker: a shifted feature is one alarm, and a killed worker resumes.

Two runs over the same frames (same ids, so the same partitions of the two)
under two model names: one worker that runs throughout, and one that is
killed (SIGKILL) mid-stream and restarted. Rows of both partitions meet in
the model's one decider, so the shift is one alarm, not one per partition.
The restarted worker recovers its monitors from the ``drift-state`` table's
changelog and must raise the same alarms: re-scored batches must not be
counted twice. Positions count records in the order the decider received
them, which can differ between two runs within a scoring batch, so they are
compared within a tolerance.
"""

from __future__ import annotations

import json
import signal
import time

import numpy as np
import pytest
from skl2onnx import to_onnx
from sklearn.linear_model import LogisticRegression

from driftline.inference import describe_onnx
from driftline.inference.synthetic import SyntheticFeatures
from driftline.schemas import default_codec
from driftline.streams.cli.drift import drift_events_query
from driftline.streams.control.model_commands import ModelCommands
from driftline.streams.demo.loadgen import (
    produce_frames_at_rate,
    synthetic_frames,
    synthetic_records,
)
from driftline.streams.kafka.producer import FeatureProducer
from driftline.streams.kafka.topics import Topics
from driftline.streams.stages.drift_decider import STATE_TABLE
from tests.integration.helpers import read_topic, wait_until, write_model

pytestmark = pytest.mark.integration

ROWS, FRAME, SHIFT_AT, SHIFTED = 100_000, 500, 30_000, 3
# Frames are sampled 1 row in 16 (the default): a window of 1,000 tested rows spans 16,000
# records. Positions may differ between runs by a scoring batch and a window.
WINDOW_RECORDS = 16_000


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


def _alarms(settings, bootstrap, model: str) -> list[tuple]:
    """(version, arm, stream, detector, feature, position) of each DriftEvent, in order."""
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
            evidence["position"],
        )
        found[record["event_id"]] = where  # a re-sent event has the same id
    return sorted(found.values())


def _signals(alarms: list[tuple]) -> list[tuple]:
    return [alarm[:5] for alarm in alarms]


def _state_recorded(settings, bootstrap: str, model: str) -> bool:
    """Whether the drift decider has written a state record of a monitor of ``model``."""
    topic = Topics(settings.kafka.topic_prefix).changelog(STATE_TABLE)
    stem = f"m|{json.dumps([model])[:-1]},".encode()
    messages = read_topic(bootstrap, topic, settings.kafka.partitions)
    return any((m.key() or b"").startswith(stem) for m in messages)


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
    live = worker.get("/driftline/drift/")["monitors"]
    monitors = [m for m in live if m["model"] == "steady"]
    # One monitor for the model's one arm, fed by both partitions.
    assert len(monitors) == 1 and monitors[0]["reference"] == "training", live
    assert monitors[0]["records_seen"] == ROWS
    assert sorted(monitors[0]["marks"]) == ["features/0", "features/1"]
    # What `driftline drift` lists: the stored events, one row per event, in the audit log too.
    db = settings.clickhouse.database
    query = drift_events_query(db, "steady", limit=1000)
    wait_until(lambda: len(worker.sql(query)) == len(steady), what="drift events stored")
    audited = f"SELECT count() FROM {db}.audit_log WHERE event_type = 'drift_detected'"
    assert worker.sql(audited + " AND model = 'steady'")[0][0] == len(steady)
    worker.stop()

    inputs = [key for key in steady if key[2] == "input"]
    shifted = SyntheticFeatures(16, seed=1).feature_names[SHIFTED]
    # One shift of one feature on two partitions: one alarm, KS and PSI together.
    assert [key[3:5] for key in inputs] == [("ks+psi", shifted)], steady
    assert SHIFT_AT - WINDOW_RECORDS < inputs[0][5] <= SHIFT_AT + 3 * WINDOW_RECORDS, inputs

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
    # Killed once its monitor's state is on the changelog: scoring can run ahead of the
    # drift decider, and a kill before any state was written would restore nothing.
    wait_until(
        lambda: _state_recorded(settings, stack_env.bootstrap, "killed"),
        timeout_s=60,
        what="the killed model's monitor state on the changelog",
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
    expected = _signals(steady)
    wait_until(
        lambda: _signals(_alarms(settings, stack_env.bootstrap, "killed")) == expected,
        timeout_s=30,
        what=lambda: (
            f"the same alarms after the restart: {expected} against "
            f"{_alarms(settings, stack_env.bootstrap, 'killed')}"
        ),
    )
    killed = _alarms(settings, stack_env.bootstrap, "killed")
    for before, after in zip(steady, killed, strict=True):
        assert abs(before[5] - after[5]) <= 2 * WINDOW_RECORDS, (steady, killed)
    live = worker.get("/driftline/drift/")["monitors"]
    # Nothing counted twice: every record once, though a batch was scored again.
    assert [m["records_seen"] for m in live if m["model"] == "killed"] == [ROWS]
    # The state really came back from the changelog: the restarted worker resumed its
    # monitor part-way into the stream instead of recounting from the start.
    stats = worker.get("/driftline/stats/")
    restored = stats["drift_restored"]  # "<model>/v<n>/<arm>" -> {source: next offset}
    assert restored and any(o > 0 for marks in restored.values() for o in marks.values()), stats


def test_plain_onnx_export_is_monitored_against_its_training_data(
    stack_env, start_worker, tmp_path
):
    """A model exported by plain skl2onnx names no features; registered with training data,
    its rows are still compared with that training profile, column for column."""
    x, y = SyntheticFeatures(n_features=16, seed=4).sample(5_000)
    classifier = LogisticRegression(max_iter=200).fit(x, y)
    # Tensor outputs: driftline scores float tensors (a ZipMap output is refused at load).
    plain = to_onnx(classifier, x[:1].astype(np.float32), options={"zipmap": False})
    path = tmp_path / "plain.onnx"
    path.write_bytes(plain.SerializeToString())
    assert describe_onnx(path.read_bytes()).feature_names is None
    training = tmp_path / "train.npy"
    np.save(training, x)
    settings = stack_env.settings()
    worker = start_worker(DRIFTLINE_DRIFT_ENABLED="true")
    commands = ModelCommands.from_settings(settings)
    event, _ = commands.register(path, "plain", actor="alice", training_data=training)
    commands.promote("plain", event.version, actor="bob")
    wait_until(lambda: worker.get("/driftline/models/").get("plain"), what="plain served")
    producer = FeatureProducer(settings, stack_env.bootstrap)
    for record in synthetic_records(model="plain", count=2_000, entities=50, seed=4, n_features=16):
        producer.send(record)  # single records, no feature names
    producer.flush()
    wait_until(lambda: _scored(worker, "plain") >= 2_000, timeout_s=60, what="records scored")

    def monitors() -> list[dict]:
        return [m for m in worker.get("/driftline/drift/")["monitors"] if m["model"] == "plain"]

    wait_until(lambda: monitors() and monitors()[0]["records_seen"] > 0, what="a monitor")
    assert [m["reference"] for m in monitors()] == ["training"], monitors()
    # Frames name their columns as they like; for this model they are the same positions.
    seen = monitors()[0]["records_seen"]
    producer.send_frame(
        "plain-frame", "plain", [f"e{i}" for i in range(500)], [int(time.time() * 1000)] * 500,
        [f"column {i}" for i in range(16)], x[:500],
    )  # fmt: skip
    producer.flush()
    wait_until(lambda: monitors()[0]["records_seen"] >= seen + 500, what="the frame monitored")
    assert [m["reference"] for m in monitors()] == ["training"], monitors()
    assert worker.get("/driftline/stats/")["dead_letters"] == {}
