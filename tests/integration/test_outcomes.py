"""Outcomes joined to predictions on a real worker: concept drift on one arm, late and unmatched.

Champion and challenger split the traffic. Outcomes arrive for every served
row: the champion stays right 90% of the time, the challenger drops to 50%
half-way. The error detectors must alarm on the challenger's arm only; a late
outcome and one for an unknown prediction must be counted and dead-lettered,
never fed to the detectors and never lost.
"""

from __future__ import annotations

import signal

import numpy as np
import pytest
from confluent_kafka import Consumer, TopicPartition

from driftline.inference import scoring
from driftline.streams.control.model_commands import ModelCommands
from driftline.streams.demo.loadgen import produce_frames_at_rate, synthetic_frames
from driftline.streams.kafka.offsets import watermarks
from driftline.streams.kafka.producer import FeatureProducer
from driftline.streams.kafka.topics import Topics
from driftline.streams.stages.outcome_join import JOIN_TABLE
from tests.integration.helpers import read_topic, wait_until, write_model

pytestmark = pytest.mark.integration

ROWS = 10_000
WAIT_S = 20  # long enough to send every outcome; the unmatched wait this long


# Outcomes routed by confluent-kafka batches (the default) and by the Faust agent.
@pytest.mark.parametrize("outcomes_consumer", ["faust", "kafka"])
def test_error_drift_on_one_arm_and_late_and_unmatched_outcomes(
    stack_env, start_worker, tmp_path, outcomes_consumer
):
    settings = stack_env.settings(DRIFTLINE_DRIFT_OUTCOME_WAIT_S=str(WAIT_S))
    worker = start_worker(
        DRIFTLINE_WORKER_OUTCOMES_CONSUMER=outcomes_consumer,
        DRIFTLINE_DRIFT_ENABLED="true",
        DRIFTLINE_DRIFT_OUTCOME_WAIT_S=str(WAIT_S),
        DRIFTLINE_DRIFT_ERROR_DETECTORS="adwin",
    )
    commands = ModelCommands.from_settings(settings)
    v1, _ = commands.register(write_model(tmp_path, seed=1), "demo", actor="alice")
    v2, _ = commands.register(write_model(tmp_path, seed=2), "demo", actor="alice")
    commands.promote("demo", v1.version, actor="bob")
    commands.send("validate", "demo", v2.version, "alice")
    commands.send("challenger", "demo", v2.version, "alice", {"percent": "50"})
    wait_until(
        lambda: len(worker.get("/driftline/models/").get("demo", {}).get("arms", [])) == 2,
        what="champion and challenger served",
    )

    producer = FeatureProducer(settings, stack_env.bootstrap)
    frames = synthetic_frames(
        model="demo", count=ROWS, entities=2_000, seed=4, n_features=16, frame_size=500
    )
    produce_frames_at_rate(producer, frames, rate=0)
    db = settings.clickhouse.database
    query = (
        f"SELECT prediction_id, arm, score, toUnixTimestamp64Milli(scored_at) "
        f"FROM {db}.predictions FINAL ORDER BY scored_at, prediction_id"
    )
    wait_until(lambda: len(worker.sql(query)) >= ROWS, timeout_s=60, what="predictions stored")
    rows = worker.sql(query)

    rng = np.random.default_rng(0)
    by_arm: dict[str, int] = {"champion": 0, "challenger": 0}
    late_id, late_scored_at = rows[2][0], rows[2][3]
    for prediction_id, arm, score, _ in rows:
        if prediction_id == late_id:
            continue
        by_arm[arm] += 1
        wrong_rate = 0.5 if arm == "challenger" and by_arm[arm] > 2_000 else 0.1
        predicted = score >= 0.5
        truth = predicted != (rng.random() < wrong_rate)
        producer.send_outcome(prediction_id, float(truth))
    producer.send_outcome("no-such-frame:3", 1.0)  # unmatched: no such frame
    producer.send_outcome("no-such-prediction", 1.0)  # unmatched: no such record
    # A second outcome for a row already labelled: counted as a duplicate, fed once.
    producer.send_outcome(rows[1][0], 1.0)
    # Late: observed long after its prediction was scored (the window is WAIT_S).
    producer.send_outcome(late_id, 1.0, event_time=late_scored_at + (WAIT_S + 60) * 1000)
    producer.flush()

    def counts() -> dict:
        return worker.get("/driftline/stats/")["outcomes"]

    wait_until(
        lambda: counts().get("joined", 0) >= ROWS - 1 and counts().get("unmatched", 0) >= 2,
        timeout_s=WAIT_S + 60,
        what=lambda: f"outcomes joined and the unmatched reported: {counts()}",
    )
    got = counts()
    assert got["joined"] == ROWS - 1  # every row but the late one
    assert got["late"] == 1 and got["unmatched"] == 2 and got["duplicate"] == 1

    def drift_rows() -> list:
        return worker.sql(
            f"SELECT arm, detector, stream, version FROM {db}.drift FINAL WHERE stream = 'error'"
        )

    wait_until(lambda: drift_rows(), timeout_s=30, what="an error-stream drift event stored")
    alarms = drift_rows()
    assert {(arm, detector, version) for arm, detector, _, version in alarms} == {
        ("challenger", "adwin", v2.version)
    }
    audited = worker.sql(
        f"SELECT count() FROM {db}.audit_log WHERE model = 'demo' AND event_type = 'drift_detected'"
    )[0][0]
    assert audited >= len(alarms)

    def reasons() -> dict:
        return dict(
            worker.sql(
                f"SELECT reason, count() FROM {db}.deadletters FINAL "
                "WHERE reason IN ('outcome_late', 'outcome_unmatched') GROUP BY reason"
            )
        )

    wanted = {"outcome_late": 1, "outcome_unmatched": 2}
    wait_until(lambda: reasons() == wanted, what=lambda: f"late/unmatched stored: {reasons()}")

    topics = Topics(stack_env.prefix)
    if outcomes_consumer == "kafka":
        # Read in batches by the worker's own service, and committed to the end once routed.
        log = worker.log_file.read_text()
        assert f"{topics.name('outcomes')} partitions assigned" in log
        wait_until(
            lambda: _behind(stack_env.bootstrap, f"{topics.app_id}.outcomes", topics) == 0,
            what="the outcomes group committed to the end",
        )


def _behind(bootstrap: str, group: str, topics: Topics) -> int:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        asked = [TopicPartition(topics.name("outcomes"), p) for p in range(2)]
        behind = 0
        for tp in consumer.committed(asked, timeout=10):
            _, high = watermarks(consumer, tp.topic, tp.partition)
            behind += high - max(tp.offset, 0)
        return behind
    finally:
        consumer.close()


def test_outcomes_waiting_for_their_predictions_survive_a_killed_worker(
    stack_env, start_worker, tmp_path
):
    """Outcomes that came before their predictions wait in the join's changelogged table.
    Its old records are dropped once newer predictions evict theirs, the waiting outcomes
    carried forward; a worker killed then restarts from the changelog and joins each once."""
    wait = {"DRIFTLINE_DRIFT_OUTCOME_WAIT_S": "120"}  # an expiry (and compaction) every 30 s
    env = {
        **wait,
        "DRIFTLINE_DRIFT_ENABLED": "true",
        "DRIFTLINE_DRIFT_MAX_PENDING_PREDICTIONS": "1000",  # per join partition
    }
    settings = stack_env.settings(**wait)
    worker = start_worker(**env)
    commands = ModelCommands.from_settings(settings)
    v1, _ = commands.register(write_model(tmp_path, seed=1), "demo", actor="alice")
    commands.promote("demo", v1.version, actor="bob")
    wait_until(lambda: worker.get("/driftline/models/").get("demo"), what="demo served")

    producer = FeatureProducer(settings, stack_env.bootstrap)
    early = list(synthetic_frames(model="demo", count=2_000, entities=500, seed=7, n_features=16,
                                  frame_size=500))  # fmt: skip
    served = scoring.id_key("champion", v1.version)
    for frame in early:  # their outcomes first: they wait for these predictions
        frame_ids = scoring.prediction_id(frame["frame_id"], "demo", served)
        for row in range(len(frame["entity_ids"])):
            producer.send_outcome(f"{frame_ids}:{row}", 1.0)
    producer.flush()

    def held() -> dict:
        return worker.get("/driftline/stats/").get("outcome_join", {})

    wait_until(lambda: held().get("waiting_outcomes") == 2_000, timeout_s=60,
               what=lambda: f"2,000 outcomes waiting: {held()}")  # fmt: skip
    # 20,000 other rows evict one another (1,000 pending a partition): the records that
    # first held the waiting outcomes are dropped, and the outcomes carried.
    produce_frames_at_rate(producer, synthetic_frames(
        model="demo", count=20_000, entities=500, seed=8, n_features=16, frame_size=500),
        rate=0)  # fmt: skip
    changelog = Topics(stack_env.prefix).changelog(JOIN_TABLE)

    def carried() -> bool:
        messages = read_topic(stack_env.bootstrap, changelog, settings.kafka.partitions)
        return any((m.key() or b"").count(b"|") == 3 and m.value() for m in messages)

    wait_until(carried, timeout_s=60, what="carry records on the join's changelog")
    wait_until(lambda: held().get("pending_rows", 0) <= 2_000 and held()["state_records"] < 40,
               timeout_s=40, what=lambda: f"the table compacted: {held()}")  # fmt: skip
    worker.proc.send_signal(signal.SIGKILL)
    worker.proc.wait(10)

    worker = start_worker(**env)
    produce_frames_at_rate(producer, iter(early), rate=0)

    def counts() -> dict:
        return worker.get("/driftline/stats/")["outcomes"]

    wait_until(
        lambda: counts().get("joined", 0) >= 2_000,
        timeout_s=90,
        what=lambda: f"the waiting outcomes joined after the restart: {counts()}",
    )
    assert counts()["joined"] == 2_000
    assert counts().get("unmatched", 0) == 0 and counts().get("duplicate", 0) == 0
