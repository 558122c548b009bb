"""The policy role on a real broker: a drift event on the champion's errors rolls it back."""

from __future__ import annotations

import json
import time
import uuid

from confluent_kafka import Producer

from driftline.streams.control.model_commands import ModelCommands
from driftline.streams.kafka.codecs import codec_for
from driftline.streams.kafka.lifecycle_topic import LifecycleWatcher
from driftline.streams.kafka.topics import Topics
from tests.integration.helpers import champions_in_turn, wait_until, write_model


def drift_event(model: str, version: int, arm: str, stream: str) -> dict:
    return {
        "event_id": uuid.uuid4().hex,
        "model": model,
        "version": version,
        "arm": arm,
        "detector": "adwin" if stream == "error" else "ks",
        "feature": "" if stream == "error" else "f03",
        "statistic": 0.21,
        "threshold": 0.05,
        "p_value": None,
        "window_size": 1000,
        "evidence": json.dumps({"stream": stream, "position": 4200}),
        "detected_at": time.time_ns() // 1_000_000,
    }


def publish(settings, bootstrap: str, record: dict) -> None:
    producer = Producer(settings.kafka.librdkafka_config(bootstrap))
    topic = Topics(settings.kafka.topic_prefix).name("drift")
    producer.produce(topic, codec_for(settings).encode("DriftEvent", record), key=b"demo")
    assert producer.flush(10) == 0


def test_champion_drift_rolls_back_to_the_previous_champion(stack_env, start_worker, tmp_path):
    settings = stack_env.settings()
    worker = start_worker()
    first, second = champions_in_turn(settings, worker, tmp_path)

    topics = Topics(settings.kafka.topic_prefix)
    watcher = LifecycleWatcher(settings, stack_env.bootstrap, topics.lifecycle)
    trigger = drift_event("demo", second, "champion", "error")
    sent = time.monotonic()
    publish(settings, stack_env.bootstrap, trigger)
    event = watcher.wait_until(codec_for(settings), lambda e: e.type == "rolled_back", 20)
    elapsed = time.monotonic() - sent
    assert event is not None, f"no rollback; worker log:\n{worker.log_tail()}"
    print(f"drift event -> rolled_back event: {elapsed * 1000:.0f} ms")

    assert event.actor == "policy" and event.version == second
    assert event.attributes["restored_champion"] == str(first)
    assert event.evidence["drift_event_ids"] == [trigger["event_id"]]
    assert event.evidence["policy_rule"]["name"] == "champion-errors"
    assert event.evidence["key_id"]  # signed by the policy's key, checked by the registry agent
    wait_until(
        lambda: worker.get("/driftline/models/").get("demo", {}).get("version") == first,
        what="v1 served again",
    )
    # A redelivered or repeated event does not roll back twice.
    publish(settings, stack_env.bootstrap, trigger)
    time.sleep(1.0)
    assert worker.get("/driftline/stats/")["policy_actions"] == 1


def test_input_drift_on_every_arm_is_not_the_canarys_fault(stack_env, start_worker, tmp_path):
    settings = stack_env.settings()
    worker = start_worker()
    commands = ModelCommands.from_settings(settings)
    first, _ = commands.register(write_model(tmp_path, seed=1), "demo", actor="alice")
    commands.promote("demo", first.version, actor="bob")
    second, _ = commands.register(write_model(tmp_path, seed=2), "demo", actor="alice")
    commands.send("validate", "demo", second.version, "alice")
    commands.send("canary", "demo", second.version, "alice", {"percent": "10"})

    topics = Topics(settings.kafka.topic_prefix)
    watcher = LifecycleWatcher(settings, stack_env.bootstrap, topics.lifecycle)
    # The score distribution shifts on the champion and the canary alike: the world moved.
    publish(settings, stack_env.bootstrap, drift_event("demo", first.version, "champion", "score"))
    publish(settings, stack_env.bootstrap, drift_event("demo", second.version, "canary", "score"))
    time.sleep(2.0)
    assert worker.get("/driftline/stats/")["policy_actions"] == 0
    # Errors only on the canary: its own fault; its traffic goes to 0%.
    trigger = drift_event("demo", second.version, "canary", "error")
    publish(settings, stack_env.bootstrap, trigger)
    event = watcher.wait_until(
        codec_for(settings), lambda e: e.actor == "policy" and e.type != "command_rejected", 20
    )
    assert event is not None, f"no policy action; worker log:\n{worker.log_tail()}"
    assert event.type == "traffic_changed", event
    assert event.attributes["traffic_bp"] == "0"
    assert event.evidence["drift_event_ids"] == [trigger["event_id"]]
