"""One consumer group per set of worker roles, and the start-up check that keeps them apart.

Workers with the same roles share a group (``Topics.group``) and split its
partitions. Two *different* role sets that share a role would each read that role's
topics in full, in their own group: every record scored twice, every audit row
appended twice. So a worker refuses to start while another worker group with an
overlapping, different role set is active. Run workers of one kind with the same
roles, or split roles so that no role is in two kinds (for example ``inference`` on
many workers and ``lineage,registry,policy`` on the one that owns the store).

Brokers that do not list groups (the embedded Tansu) cannot be checked: that is
logged, and the single embedded worker has no one to overlap with anyway.
"""

from __future__ import annotations

import logging

from confluent_kafka import ConsumerGroupState, KafkaException
from confluent_kafka.admin import AdminClient

from driftline.streams.exceptions import RoleGroupConflict
from driftline.streams.kafka.topics import Topics

log = logging.getLogger(__name__)

_ACTIVE = {
    ConsumerGroupState.STABLE,
    ConsumerGroupState.PREPARING_REBALANCING,
    ConsumerGroupState.COMPLETING_REBALANCING,
}


def active_role_groups(admin_config: dict, topics: Topics) -> dict[str, frozenset[str]]:
    """The active worker groups under this prefix, with their roles."""
    admin = AdminClient(admin_config)
    listed = admin.list_consumer_groups(request_timeout=10).result()
    groups = {}
    for group in listed.valid:
        roles = topics.group_roles(group.group_id)
        if roles is not None and group.state in _ACTIVE:
            groups[group.group_id] = roles
    return groups


def refuse_overlapping_role_groups(
    admin_config: dict, topics: Topics, roles: frozenset[str]
) -> None:
    """Raise :class:`RoleGroupConflict` if an active worker group of another role set
    shares a role with ``roles``."""
    mine = topics.group(roles)
    try:
        groups = active_role_groups(admin_config, topics)
    except KafkaException as exc:
        log.warning("cannot list consumer groups to check worker roles apart: %s", exc)
        return
    for group, theirs in sorted(groups.items()):
        shared = roles & theirs
        if group != mine and shared:
            raise RoleGroupConflict(
                f"worker group {group!r} (roles {', '.join(sorted(theirs))}) is active and "
                f"also runs {', '.join(sorted(shared))}: this worker (roles "
                f"{', '.join(sorted(roles))}, group {mine!r}) would process those topics a "
                "second time. Give workers of one kind the same DRIFTLINE_WORKER_ROLES, or "
                "split the roles so no role runs in two kinds of worker (e.g. inference on "
                "many workers, lineage,registry,policy on the one that owns the store)"
            )
