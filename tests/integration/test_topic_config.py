"""Topic configuration on real brokers: driftline creates what production needs and
refuses to run on a lifecycle topic that would expire (Apache Kafka's describe configs)."""

from __future__ import annotations

import logging
import uuid

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from driftline.core.settings import RetentionSettings
from driftline.streams.exceptions import TopicMisconfigured
from driftline.streams.kafka.provision import prepare_topics
from driftline.streams.kafka.topic_config import describe_topic_configs, topic_configs
from driftline.streams.kafka.topics import Topics
from tests.integration.conftest import StackEnv

pytestmark = pytest.mark.integration

DAY_MS = 24 * 3600 * 1000


def _stack(bootstrap: str, tmp_path, **env: str) -> StackEnv:
    base = {
        "DRIFTLINE_KAFKA_BOOTSTRAP": bootstrap,
        "DRIFTLINE_KAFKA_TOPIC_PREFIX": f"cfg{uuid.uuid4().hex[:8]}.",
        "DRIFTLINE_KAFKA_PARTITIONS": "2",
        "DRIFTLINE_DATA_DIR": str(tmp_path / "data"),
    }
    return StackEnv(env=base | env, data_dir=tmp_path / "data", bootstrap=bootstrap)


def test_topics_are_created_as_production_needs_them(kafka_broker, tmp_path):
    stack = _stack(
        kafka_broker.bootstrap,
        tmp_path,
        DRIFTLINE_RETENTION_TOPIC_DEFAULT_MS=str(2 * DAY_MS),
        DRIFTLINE_RETENTION_TOPIC_MS=f'{{"deadletter": {30 * DAY_MS}}}',
    )
    settings = stack.settings()
    created = prepare_topics(settings, kafka_broker.bootstrap)
    topics = Topics(stack.prefix)
    assert sorted(created) == sorted(topics.all() + topics.internal())

    admin = AdminClient({"bootstrap.servers": kafka_broker.bootstrap})
    found = describe_topic_configs(admin, sorted(created))
    for kind in ("lifecycle", "commands", "audit-checkpoints"):
        config = found[topics.name(kind)]
        assert (config["retention.ms"], config["retention.bytes"]) == ("-1", "-1"), kind
        assert config["cleanup.policy"] == "delete", kind
    for table in ("drift-state", "outcome-join"):
        assert found[topics.changelog(table)]["cleanup.policy"] == "compact", table
    for name in (topics.features, topics.predictions, topics.name("drift"), topics.outcome_join):
        assert found[name]["retention.ms"] == str(2 * DAY_MS), name
        assert found[name]["cleanup.policy"] == "delete", name
    assert found[topics.deadletter]["retention.ms"] == str(30 * DAY_MS)
    # What the broker holds is what driftline asks for, key by key.
    for name, wanted in topic_configs(topics, settings.retention).items():
        assert {key: found[name][key] for key in wanted} == wanted, name

    # A second start finds them right and creates nothing.
    assert prepare_topics(settings, kafka_broker.bootstrap) == []


def _precreate(bootstrap: str, name: str, config: dict[str, str]) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(name, 2, 1, config=config)]).values():
        future.result(15)


def test_a_lifecycle_topic_with_the_brokers_default_retention_stops_start_up(
    kafka_broker, tmp_path, caplog
):
    stack = _stack(kafka_broker.bootstrap, tmp_path)
    topics = Topics(stack.prefix)
    # Created by hand, or by broker auto-creation: Kafka's default is seven days.
    _precreate(kafka_broker.bootstrap, topics.lifecycle, {})
    _precreate(
        kafka_broker.bootstrap, topics.changelog("drift-state"), {"cleanup.policy": "delete"}
    )
    with pytest.raises(TopicMisconfigured) as refused:
        prepare_topics(stack.settings(), kafka_broker.bootstrap)
    message = str(refused.value)
    assert f"{topics.lifecycle}: retention.ms=604800000, expected -1" in message
    assert f"--entity-name {topics.lifecycle} --add-config retention.ms=-1" in message
    assert f"{topics.changelog('drift-state')}: cleanup.policy=delete, expected compact" in message
    assert "DRIFTLINE_KAFKA_ALLOW_FINITE_LIFECYCLE_RETENTION=true" in message

    # Told to, it runs on the expiring lifecycle topic (with a warning); the changelog's
    # missing compaction still stops it: no setting makes losing table state acceptable.
    allowed = stack.settings(DRIFTLINE_KAFKA_ALLOW_FINITE_LIFECYCLE_RETENTION="true")
    with pytest.raises(TopicMisconfigured) as still:
        prepare_topics(allowed, kafka_broker.bootstrap)
    assert topics.lifecycle not in str(still.value)
    admin = AdminClient({"bootstrap.servers": kafka_broker.bootstrap})
    for future in admin.delete_topics([topics.changelog("drift-state")]).values():
        future.result(15)
    _precreate(
        kafka_broker.bootstrap, topics.changelog("drift-state"), {"cleanup.policy": "compact"}
    )
    with caplog.at_level(logging.WARNING, logger="driftline.streams.kafka.topic_config"):
        prepare_topics(allowed, kafka_broker.bootstrap)
    assert f"{topics.lifecycle}: retention.ms=604800000" in caplog.text


def test_the_embedded_broker_passes_the_same_checks(tansu_broker, tmp_path):
    # Tansu reports only the configs a topic was created with: those must match too.
    stack = _stack(tansu_broker.bootstrap, tmp_path)
    settings = stack.settings()
    assert prepare_topics(settings, tansu_broker.bootstrap)
    topics = Topics(stack.prefix)
    admin = AdminClient({"bootstrap.servers": tansu_broker.bootstrap})
    found = describe_topic_configs(admin, [topics.lifecycle, topics.features])
    assert found[topics.lifecycle]["retention.ms"] == "-1"
    assert found[topics.features]["retention.ms"] == str(RetentionSettings().topic_default_ms)


def test_driftline_topics_provisions_then_finds_everything_in_place(kafka_broker, tmp_path):
    import os
    import subprocess
    import sys

    stack = _stack(kafka_broker.bootstrap, tmp_path)
    env = os.environ | stack.env

    def run() -> str:
        done = subprocess.run(
            [sys.executable, "-m", "driftline.streams.cli", "topics"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    first = run()
    assert "created " in first and Topics(stack.prefix).lifecycle in first
    assert "every " in run()  # the second run creates nothing
