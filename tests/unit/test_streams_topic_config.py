"""Topic configuration rules: what driftline creates, and which existing configs stop it."""

from __future__ import annotations

import pytest

from driftline.core.errors import ConfigError
from driftline.core.settings import RetentionSettings, load_settings
from driftline.streams.kafka.topic_config import compare_configs, topic_configs
from driftline.streams.kafka.topics import Topics

TOPICS = Topics("acme.")


def _configs(**retention) -> dict[str, dict[str, str]]:
    return topic_configs(TOPICS, RetentionSettings(**retention))


def test_every_topic_driftline_creates_has_a_config():
    configs = _configs()
    assert set(configs) == set(TOPICS.all() + TOPICS.internal())


def test_records_of_truth_never_expire_and_are_not_compacted():
    configs = _configs(topic_default_ms=3_600_000)
    for kind in ("lifecycle", "commands", "audit-checkpoints"):
        config = configs[f"acme.{kind}"]
        assert config == {"cleanup.policy": "delete", "retention.ms": "-1", "retention.bytes": "-1"}


def test_changelogs_are_compacted_and_streams_keep_the_configured_time():
    configs = _configs(topic_default_ms=3_600_000, topic_ms={"deadletter": 86_400_000})
    assert configs[TOPICS.changelog("drift-state")] == {"cleanup.policy": "compact"}
    assert configs[TOPICS.changelog("outcome-join")] == {"cleanup.policy": "compact"}
    assert configs["acme.features"]["retention.ms"] == "3600000"
    assert configs["acme.deadletter"]["retention.ms"] == "86400000"
    assert configs[TOPICS.outcome_join]["retention.ms"] == "3600000"
    assert configs[TOPICS.drift_summaries]["cleanup.policy"] == "delete"


@pytest.mark.parametrize(
    ("found", "key"),
    [
        ({"retention.ms": "604800000"}, "retention.ms"),
        ({"retention.ms": "-1", "retention.bytes": "1073741824"}, "retention.bytes"),
        ({"retention.ms": "-1", "cleanup.policy": "compact"}, "cleanup.policy"),
        ({"retention.ms": "-1", "cleanup.policy": "compact,delete"}, "cleanup.policy"),
    ],
)
def test_an_expiring_or_compacted_lifecycle_topic_is_a_blocking_problem(found, key):
    expected = _configs()["acme.lifecycle"]
    problems = compare_configs("acme.lifecycle", expected, found)
    assert [(p.key, p.blocking) for p in problems] == [(key, True)]
    assert "record of truth" in str(problems[0]) and found[key] in str(problems[0])
    assert f"--entity-name acme.lifecycle --add-config {key}=" in problems[0].fix("b:9092")


def test_a_changelog_with_delete_policy_is_blocking_and_a_stream_retention_is_not():
    changelog = TOPICS.changelog("drift-state")
    expected = _configs()
    problems = compare_configs(changelog, expected[changelog], {"cleanup.policy": "delete"})
    assert [(p.key, p.expected, p.blocking) for p in problems] == [
        ("cleanup.policy", "compact", True)
    ]
    stream = compare_configs("acme.features", expected["acme.features"], {"retention.ms": "1"})
    assert [(p.key, p.blocking) for p in stream] == [("retention.ms", False)]


def test_unreported_keys_and_matching_configs_are_fine():
    expected = _configs()
    for name, config in expected.items():
        assert compare_configs(name, config, {}) == []
        assert compare_configs(name, config, dict(config)) == []


def test_retention_overrides_name_known_kinds(monkeypatch):
    monkeypatch.setenv("DRIFTLINE_RETENTION_TOPIC_MS", '{"commands": 3600000}')
    with pytest.raises(
        ConfigError, match="DRIFTLINE_RETENTION_TOPIC_MS.*no time retention for commands"
    ):
        load_settings()
    monkeypatch.setenv("DRIFTLINE_RETENTION_TOPIC_MS", '{"features": 10}')
    with pytest.raises(ConfigError, match="under a minute"):
        load_settings()


def test_the_old_kafka_retention_settings_name_their_new_place(monkeypatch):
    monkeypatch.setenv("DRIFTLINE_KAFKA_RETENTION_MS", "3600000")
    with pytest.raises(ConfigError, match="use DRIFTLINE_RETENTION_TOPIC_DEFAULT_MS"):
        load_settings()
    monkeypatch.delenv("DRIFTLINE_KAFKA_RETENTION_MS")
    monkeypatch.setenv("DRIFTLINE_KAFKA_TOPIC_RETENTION_MS", '{"features": 3600000}')
    with pytest.raises(ConfigError, match="use DRIFTLINE_RETENTION_TOPIC_MS"):
        load_settings()
