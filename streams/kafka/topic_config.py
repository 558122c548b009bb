"""What each topic's configuration must be, and the start-up check that it is.

Three kinds of topic, three rules:

- **Records of truth** (lifecycle, commands, audit-checkpoints) never expire and are
  never compacted: the registry is a projection of the first two, and the third anchors
  the audit log outside ClickHouse. Losing an old record silently changes history.
- **Table changelogs** are compacted: the latest value per key is the table's state,
  and a time limit would lose the state of keys that have been quiet for a while.
- **Streams** (features, predictions, outcomes, drift, deadletter, and the workers'
  join and summaries topics) are kept for a time, ``DRIFTLINE_RETENTION_TOPIC_DEFAULT_MS``
  or a per-kind override (``DRIFTLINE_RETENTION_TOPIC_MS``): the settings that also give
  the ClickHouse tables their time-to-live.

Topics driftline creates get these configs. Topics that already exist are checked:
a record-of-truth topic that would expire or compact records, or a changelog that is
not compacted, stops start-up (the first can be overridden by
``DRIFTLINE_KAFKA_ALLOW_FINITE_LIFECYCLE_RETENTION``); a stream kept for another time
than configured is the operator's choice and only logged. A broker that does not report
a config (Tansu reports only what a topic was created with) is not second-guessed.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, ConfigResource

from driftline.core.settings import KafkaSettings, RetentionSettings
from driftline.streams.exceptions import BrokerUnavailable, TopicMisconfigured
from driftline.streams.kafka.topics import INTERNAL_TABLES, Topics

log = logging.getLogger(__name__)

RECORD_OF_TRUTH_KINDS = ("lifecycle", "commands", "audit-checkpoints")
STREAM_KINDS = ("features", "predictions", "outcomes", "drift", "deadletter")

_FOREVER = {"cleanup.policy": "delete", "retention.ms": "-1", "retention.bytes": "-1"}
_COMPACTED = {"cleanup.policy": "compact"}


def topic_configs(topics: Topics, retention: RetentionSettings) -> dict[str, dict[str, str]]:
    """The config every driftline topic is created with, by topic name."""
    configs = {topics.name(kind): dict(_FOREVER) for kind in RECORD_OF_TRUTH_KINDS}
    streams = {topics.name(kind): kind for kind in STREAM_KINDS}
    streams[topics.outcome_join] = "outcome-join"
    streams[topics.drift_summaries] = "drift-summaries"
    streams[topics.served_features] = "served-features"
    for name, kind in streams.items():
        configs[name] = {"cleanup.policy": "delete", "retention.ms": str(retention.topic_for(kind))}
    for table in INTERNAL_TABLES:
        configs[topics.changelog(table)] = dict(_COMPACTED)
    return configs


@dataclass(frozen=True)
class TopicConfigProblem:
    topic: str
    key: str
    found: str
    expected: str
    why: str
    blocking: bool

    def __str__(self) -> str:
        return f"{self.topic}: {self.key}={self.found}, expected {self.expected} ({self.why})"

    def fix(self, bootstrap: str) -> str:
        return (
            f"kafka-configs.sh --bootstrap-server {bootstrap} --alter --entity-type topics "
            f"--entity-name {self.topic} --add-config {self.key}={self.expected}"
        )


def compare_configs(
    topic: str, expected: dict[str, str], found: dict[str, str]
) -> list[TopicConfigProblem]:
    """Where a topic's reported config breaks its rule; keys the broker does not report
    are left alone."""
    problems = []
    policy = found.get("cleanup.policy")
    record_of_truth = expected.get("retention.ms") == "-1"
    if record_of_truth:
        why = "a record of truth: an expired or compacted record changes history"
        for key in ("retention.ms", "retention.bytes"):
            if key in found and found[key] != "-1":
                problems.append(TopicConfigProblem(topic, key, found[key], "-1", why, True))
        if policy is not None and "compact" in policy:
            problems.append(
                TopicConfigProblem(topic, "cleanup.policy", policy, "delete", why, True)
            )
    elif expected.get("cleanup.policy") == "compact":
        if policy is not None and "compact" not in policy:
            why = "a table changelog: without compaction a quiet key's state expires"
            problems.append(
                TopicConfigProblem(topic, "cleanup.policy", policy, "compact", why, True)
            )
    else:
        retention = found.get("retention.ms")
        if retention is not None and retention != expected["retention.ms"]:
            why = "the configured stream retention; the topic's own setting is kept"
            problems.append(
                TopicConfigProblem(
                    topic, "retention.ms", retention, expected["retention.ms"], why, False
                )
            )
    return problems


def describe_topic_configs(
    admin: AdminClient, names: list[str], timeout: float = 15.0
) -> dict[str, dict[str, str]]:
    """Each topic's reported config values (``None`` values left out).

    A topic created a moment ago may not have reached the broker that answers yet
    (UNKNOWN_TOPIC_OR_PART on a cluster): those are asked again until ``timeout``.
    """
    deadline = time.monotonic() + timeout
    described: dict[str, dict[str, str]] = {}
    pending = list(names)
    while pending:
        futures = admin.describe_configs([ConfigResource("topic", name) for name in pending])
        pending = []
        for resource, future in futures.items():
            try:
                entries = future.result(max(0.1, deadline - time.monotonic()))
            except KafkaException as exc:
                unknown = exc.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART
                if unknown and time.monotonic() < deadline:
                    pending.append(resource.name)
                    continue
                raise BrokerUnavailable(
                    f"cannot describe the config of topic {resource.name!r}: {exc}"
                ) from exc
            described[resource.name] = {
                key: entry.value for key, entry in entries.items() if entry.value is not None
            }
        if pending:
            time.sleep(0.2)
    return described


def check_topic_configs(
    admin_config: dict,
    topics: Topics,
    kafka: KafkaSettings,
    retention: RetentionSettings,
    timeout: float = 15.0,
) -> list[TopicConfigProblem]:
    """Check every driftline topic's config; raise :class:`TopicMisconfigured` naming each
    blocking problem and its fix, log the others, and return them all."""
    expected = topic_configs(topics, retention)
    found = describe_topic_configs(AdminClient(admin_config), sorted(expected), timeout)
    problems = [
        problem
        for name in sorted(expected)
        for problem in compare_configs(name, expected[name], found.get(name, {}))
    ]
    bootstrap = admin_config.get("bootstrap.servers", "<bootstrap>")
    blocking = []
    for problem in problems:
        allowed = (
            kafka.allow_finite_lifecycle_retention
            and problem.key != "cleanup.policy"
            and problem.topic in {topics.name(kind) for kind in RECORD_OF_TRUTH_KINDS}
        )
        if problem.blocking and not allowed:
            blocking.append(problem)
        else:
            log.warning("topic config: %s", problem)
    if blocking:
        lines = [f"  {p}\n    fix: {p.fix(bootstrap)}" for p in blocking]
        finite = any(p.key.startswith("retention") for p in blocking)
        raise TopicMisconfigured(
            "driftline will not run on these topic configs:\n"
            + "\n".join(lines)
            + (
                "\n  (to run anyway with expiring records of truth, set "
                "DRIFTLINE_KAFKA_ALLOW_FINITE_LIFECYCLE_RETENTION=true)"
                if finite
                else ""
            )
        )
    return problems
