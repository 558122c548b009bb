"""Topic names and their explicit creation.

The embedded broker does not auto-create topics with the partition counts Faust
expects, and production clusters should not auto-create at all, so every topic
is created up front with the configured partition count and checked.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

from confluent_kafka import KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic, OffsetSpec, TopicMetadata

from driftline.core.settings import WORKER_ROLES
from driftline.streams.exceptions import BrokerUnavailable, TopicMismatch

TOPIC_KINDS = (
    "features",
    "predictions",
    "outcomes",
    "drift",
    "lifecycle",
    "commands",
    "deadletter",
    "audit-checkpoints",
)

# Faust tables of the worker app; their changelogs are created with the topics.
INTERNAL_TABLES = ("drift-state", "outcome-join")
# On the served-features topic: the feature service that completed a frame (name@version).
SERVED_WITH_HEADER = "driftline-feature-service"


@dataclass(frozen=True)
class Topics:
    prefix: str

    def name(self, kind: str) -> str:
        if kind not in TOPIC_KINDS:
            raise ValueError(f"unknown topic kind {kind!r}; expected one of {TOPIC_KINDS}")
        return f"{self.prefix}{kind}"

    @property
    def features(self) -> str:
        return self.name("features")

    @property
    def predictions(self) -> str:
        return self.name("predictions")

    @property
    def lifecycle(self) -> str:
        return self.name("lifecycle")

    @property
    def deadletter(self) -> str:
        return self.name("deadletter")

    @property
    def audit_checkpoints(self) -> str:
        """Signed audit chain heads, one JSON record each, keyed by model (the anchor)."""
        return self.name("audit-checkpoints")

    def all(self) -> list[str]:
        return [self.name(kind) for kind in TOPIC_KINDS]

    @property
    def app_id(self) -> str:
        """The consumer group of workers that run every role, and the stem of the
        workers' internal topic names (changelogs, join, summaries)."""
        return f"{self.prefix}worker"

    def group(self, roles: Iterable[str]) -> str:
        """The consumer group (Faust app id) of workers running ``roles``.

        Workers with the same roles share a group and split its partitions. Workers
        with other roles need a group of their own: Kafka splits each topic's
        partitions among a group's members whatever agents they run, so in one group
        a lineage-only worker would take features partitions that no scoring agent
        then reads, and the scoring workers' partitions would never be logged.
        """
        roles = frozenset(roles)
        if roles == WORKER_ROLES:
            return self.app_id
        return f"{self.app_id}-{'+'.join(sorted(roles))}"

    def worker_groups(
        self, roles: Iterable[str], *, features_consumer: bool
    ) -> tuple[str, str | None]:
        """(Faust's consumer group, the features consumer's group or None) of a worker.

        Without the features consumer, Faust's agents read everything in the role
        group. With it, the two consumers need two groups (a group's members must share
        an assignor, and Faust's is its own). The role group then goes to whichever
        reads the features topic to the end of the worker's work on it: the lineage
        role's feature log, a Faust agent, when the worker stores; otherwise scoring.
        So the role group's offsets on every topic a worker reads mean what they
        always meant, whatever consumer runs.
        """
        group = self.group(roles)
        if not features_consumer:
            return group, None
        if "lineage" in frozenset(roles):
            return group, f"{group}.scoring"
        return f"{group}.agents", group

    def group_roles(self, group: str) -> frozenset[str] | None:
        """The roles of a worker group named by :meth:`group`; None for other groups."""
        if group == self.app_id:
            return WORKER_ROLES
        stem = f"{self.app_id}-"
        if not group.startswith(stem):
            return None
        roles = frozenset(group.removeprefix(stem).split("+"))
        return roles if roles and roles <= WORKER_ROLES else None

    def changelog(self, table: str) -> str:
        """Faust's changelog topic for a table of the worker app."""
        return f"{self.app_id}-{table}-changelog"

    @property
    def outcome_join(self) -> str:
        """Predictions and outcomes re-keyed by join key, so both sides share a partition."""
        return f"{self.app_id}-outcome-join"

    @property
    def drift_summaries(self) -> str:
        """Parts of each model's streams for its drift decider, keyed by model."""
        return f"{self.app_id}-drift-summaries"

    @property
    def served_features(self) -> str:
        """A sample of the completed feature rows models were served, for the skew check."""
        return f"{self.app_id}-served-features"

    def internal(self) -> list[str]:
        """Topics only workers read: table changelogs, the join, summaries and served
        features topics; created up front."""
        tables = [self.changelog(table) for table in INTERNAL_TABLES]
        return tables + [self.outcome_join, self.drift_summaries, self.served_features]


def ensure_topics(
    admin_config: dict,
    names: list[str],
    partitions: int,
    replication_factor: int = 1,
    *,
    configs: dict[str, dict[str, str]] | None = None,
    timeout: float = 15.0,
) -> list[str]:
    """Create missing topics; fail if an existing one has another partition count.

    Returns the names that were created by this call.
    """
    admin = AdminClient(admin_config)
    try:
        existing = admin.list_topics(timeout=timeout).topics
    except KafkaException as exc:
        raise BrokerUnavailable(
            f"cannot list topics at {admin_config.get('bootstrap.servers')}: {exc}"
        ) from exc
    for name in names:
        if name in existing and len(existing[name].partitions) != partitions:
            raise TopicMismatch(
                f"topic {name!r} has {len(existing[name].partitions)} partitions but "
                f"DRIFTLINE_KAFKA_PARTITIONS is {partitions}; use another "
                f"DRIFTLINE_KAFKA_TOPIC_PREFIX "
                "or set the partition count to match"
            )
    missing = [name for name in names if name not in existing]
    if not missing:
        return []
    configs = configs or {}
    futures = admin.create_topics(
        [
            NewTopic(
                name,
                num_partitions=partitions,
                replication_factor=replication_factor,
                config=configs.get(name, {}),
            )
            for name in missing
        ],
        request_timeout=timeout,
    )
    for name, future in futures.items():
        try:
            future.result(timeout)
        except KafkaException as exc:
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise BrokerUnavailable(f"cannot create topic {name!r}: {exc}") from exc
    _wait_for_leaders(admin, missing, timeout)
    return missing


def _wait_for_leaders(admin: AdminClient, names: list[str], timeout: float) -> None:
    # The controller acknowledges a new topic before its partitions have leaders, and
    # a broker is named leader in metadata a moment before it answers as one: a client
    # using the topic at once is told "not leader". Return only once every partition
    # has a leader that answers a ListOffsets, so callers never see that moment.
    deadline = time.monotonic() + timeout
    waiting = list(names)
    unanswered: list[TopicPartition] = []
    while True:
        if waiting:
            try:
                topics = admin.list_topics(timeout=max(deadline - time.monotonic(), 0.5)).topics
            except KafkaException:
                topics = {}
            led = [name for name in waiting if _has_leaders(topics.get(name))]
            unanswered += [TopicPartition(n, p) for n in led for p in topics[n].partitions]
            waiting = [name for name in waiting if name not in led]
        if unanswered:
            unanswered = _not_answering(admin, unanswered)
        if not waiting and not unanswered:
            return
        if time.monotonic() > deadline:
            late = sorted(set(waiting) | {tp.topic for tp in unanswered})
            raise BrokerUnavailable(
                f"created topics {late} but their partitions had no answering leader after "
                f"{timeout:.0f}s; check the brokers' logs"
            )
        time.sleep(0.1)


def _not_answering(admin: AdminClient, partitions: list[TopicPartition]) -> list[TopicPartition]:
    futures = admin.list_offsets({tp: OffsetSpec.latest() for tp in partitions})
    late = []
    for tp, future in futures.items():
        try:
            future.result()
        except KafkaException:
            late.append(tp)
    return late


def _has_leaders(topic: TopicMetadata | None) -> bool:
    return (
        topic is not None
        and topic.error is None
        and bool(topic.partitions)
        and all(p.leader >= 0 and p.error is None for p in topic.partitions.values())
    )
