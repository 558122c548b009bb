"""Who may do what on a secured Kafka cluster: one principal per worker role and per client.

``PRINCIPALS`` is the one place that says it. The tests create exactly these ACLs
through the Admin API (:func:`acl_bindings`), and ``infra/kafka/acls.sh`` is this
table as ``kafka-acls.sh`` commands (:func:`acls_script`), checked against it by a
unit test::

    python -m driftline.streams.kafka.acls --prefix driftline. > infra/kafka/acls.sh

Least privilege, with the topic prefix as the fence: every grant names a resource
under the prefix. Workers share what every start-up does (see which topics exist and
check their configs, join the ``<prefix>worker`` group, dead-letter bad input); beyond
that each role reads and writes only the topics its agents use. Topics are created up
front by the provisioner, so no worker holds Create.

Producers write ``features`` and ``outcomes`` only; only the registry writes
``lifecycle``; dashboards read. The lineage role raises audit alarms as signed
commands (:mod:`driftline.streams.stages.checkpointing`), which the registry turns into lifecycle
events, so it writes ``commands``, not ``lifecycle``.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Iterable
from dataclasses import dataclass

from confluent_kafka.admin import (
    AclBinding,
    AclOperation,
    AclPermissionType,
    ResourcePatternType,
    ResourceType,
)

TOPIC, GROUP = "topic", "group"
USER_PREFIX = "driftline-"


@dataclass(frozen=True)
class Grant:
    """Operations (Kafka's names: Read, Write, Describe, ...) on one resource.

    ``name`` follows the topic prefix: ``features`` is ``<prefix>features``. With
    ``prefixed`` the grant covers every name that starts with it (a PREFIXED pattern);
    ``""`` prefixed is everything under the prefix.
    """

    operations: tuple[str, ...]
    resource: str
    name: str
    prefixed: bool = False

    def resource_name(self, prefix: str) -> str:
        return f"{prefix}{self.name}"


@dataclass(frozen=True)
class Principal:
    role: str  # a worker role (driftline.core.settings.WORKER_ROLES) or a client kind
    why: str
    grants: tuple[Grant, ...]

    def user(self, user_prefix: str = USER_PREFIX) -> str:
        """The SASL user name: ``driftline-inference`` and so on."""
        return f"{user_prefix}{self.role}"


def _read(*kinds: str) -> tuple[Grant, ...]:
    return tuple(Grant(("Read",), TOPIC, kind) for kind in kinds)


def _write(*kinds: str) -> tuple[Grant, ...]:
    return tuple(Grant(("Write",), TOPIC, kind) for kind in kinds)


# Every worker, whatever its roles: start-up lists the topics and checks each one's config
# (streams/kafka/topics.py, streams/kafka/topic_config.py), which needs Describe and
# DescribeConfigs on all of them (a topic a principal may not describe looks missing,
# and would be created);
# agents consume in the workers' consumer groups, <prefix>worker and any group named from it
# (Read to join and commit; it implies Describe, so a worker can list the other worker
# groups); any stage may dead-letter a record.
_WORKER = (
    Grant(("Describe", "DescribeConfigs"), TOPIC, "", prefixed=True),
    Grant(("Read",), GROUP, "worker", prefixed=True),
    *_write("deadletter"),
)

PRINCIPALS: tuple[Principal, ...] = (
    Principal(
        "provisioner",
        "creates the topics with their configs before any worker starts; fixes configs",
        (Grant(("Create", "Describe", "DescribeConfigs", "AlterConfigs"), TOPIC, "", True),),
    ),
    Principal(
        "inference",
        "scores features into predictions; follows lifecycle for the models it serves; "
        "drift stage, outcome join and drift decider on the worker-* topics",
        (
            *_WORKER,
            *_read("features", "lifecycle", "outcomes"),
            *_write("predictions", "drift"),
            # Table changelogs, the outcome-join and drift-summaries topics.
            Grant(("Read", "Write"), TOPIC, "worker-", prefixed=True),
        ),
    ),
    Principal(
        "lineage",
        "stores every stream in ClickHouse, the scoring workers' served-features sample "
        "too; anchors signed audit checkpoints on Kafka, reads lifecycle and drift records "
        "back to verify the audit log, sends the registry signed audit alarms, and "
        "publishes the training-serving skew check's drift events",
        (
            *_WORKER,
            *_read(
                "features",
                "predictions",
                "outcomes",
                "drift",
                "lifecycle",
                "deadletter",
                "audit-checkpoints",
                "worker-served-features",
            ),
            *_write("audit-checkpoints", "commands", "drift"),
        ),
    ),
    Principal(
        "registry",
        "the only writer of lifecycle: decides signed commands against the whole history",
        (*_WORKER, *_read("commands", "lifecycle"), *_write("lifecycle")),
    ),
    Principal(
        "policy",
        "answers drift events with signed rollback commands (the registry decides them)",
        (*_WORKER, *_read("drift", "lifecycle"), *_write("commands")),
    ),
    Principal(
        "producer",
        "applications publishing feature records, frames and outcomes",
        _write("features", "outcomes"),
    ),
    Principal(
        "dashboard",
        "dashboards and downstream consumers: read predictions, drift and lifecycle, in "
        "consumer groups named <prefix>dashboard...",
        (
            *_read("predictions", "drift", "lifecycle"),
            Grant(("Read",), GROUP, "dashboard", prefixed=True),
        ),
    ),
    Principal(
        "operator",
        "people and CI with the CLI: send signed commands (the registry checks signature "
        "and role) and read lifecycle, drift and the audit anchor",
        (*_write("commands"), *_read("lifecycle", "drift", "audit-checkpoints")),
    ),
)


def principal(role: str) -> Principal:
    for candidate in PRINCIPALS:
        if candidate.role == role:
            return candidate
    raise KeyError(f"no principal for {role!r}; known: {', '.join(p.role for p in PRINCIPALS)}")


_OPERATIONS = {
    "Read": AclOperation.READ,
    "Write": AclOperation.WRITE,
    "Create": AclOperation.CREATE,
    "Describe": AclOperation.DESCRIBE,
    "DescribeConfigs": AclOperation.DESCRIBE_CONFIGS,
    "AlterConfigs": AclOperation.ALTER_CONFIGS,
}
_RESOURCES = {TOPIC: ResourceType.TOPIC, GROUP: ResourceType.GROUP}


def acl_bindings(
    prefix: str,
    *,
    user_prefix: str = USER_PREFIX,
    principals: Iterable[Principal] = PRINCIPALS,
) -> list[AclBinding]:
    """The table as confluent-kafka ACL bindings, for ``AdminClient.create_acls``."""
    return [
        AclBinding(
            _RESOURCES[grant.resource],
            grant.resource_name(prefix),
            ResourcePatternType.PREFIXED if grant.prefixed else ResourcePatternType.LITERAL,
            f"User:{who.user(user_prefix)}",
            "*",
            _OPERATIONS[operation],
            AclPermissionType.ALLOW,
        )
        for who in principals
        for grant in who.grants
        for operation in grant.operations
    ]


def acls_script(prefix: str, *, user_prefix: str = USER_PREFIX) -> str:
    """The table as a ``kafka-acls.sh`` script, run by an administrator."""
    generated = "python -m driftline.streams.kafka.acls --prefix " + shlex.quote(prefix)
    if user_prefix != USER_PREFIX:
        generated += " --user-prefix " + shlex.quote(user_prefix)
    lines = [
        "#!/bin/sh",
        f"# Generated by `{generated}` from streams/kafka/acls.py;",
        "# do not edit (a unit test checks this file against the table).",
        "#",
        "# driftline's ACLs: one SCRAM principal per worker role and per kind of client,",
        "# least privilege. Run as a cluster administrator (a super user, or a principal",
        "# allowed to Alter the cluster), after creating the users, e.g.",
        "#   kafka-configs.sh --bootstrap-server $BOOTSTRAP --command-config $COMMAND_CONFIG \\",
        "#     --alter --entity-type users --entity-name driftline-inference \\",
        "#     --add-config 'SCRAM-SHA-512=[password=...]'",
        "# Usage: BOOTSTRAP=kafka-1:9093 COMMAND_CONFIG=admin.properties sh acls.sh",
        "set -eu",
        ': "${BOOTSTRAP:?host:port of the cluster}"',
        ': "${COMMAND_CONFIG:?admin client properties (SASL_SSL and an administrator)}"',
        'KAFKA_ACLS="${KAFKA_ACLS:-kafka-acls.sh}"',
        "",
        "acl() {",
        '  "$KAFKA_ACLS" --bootstrap-server "$BOOTSTRAP" --command-config "$COMMAND_CONFIG" \\',
        '    --add "$@"',
        "}",
    ]
    for who in PRINCIPALS:
        user = who.user(user_prefix)
        lines += ["", f"# {user}: {who.why}"]
        for grant in who.grants:
            operations = " ".join(f"--operation {op}" for op in grant.operations)
            pattern = "prefixed" if grant.prefixed else "literal"
            lines.append(
                f"acl --allow-principal User:{user} {operations} "
                f"--{grant.resource} {shlex.quote(grant.resource_name(prefix))} "
                f"--resource-pattern-type {pattern}"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m driftline.streams.kafka.acls",
        description="Print driftline's ACLs as a kafka-acls.sh script.",
    )
    parser.add_argument("--prefix", default="driftline.", help="DRIFTLINE_KAFKA_TOPIC_PREFIX")
    parser.add_argument("--user-prefix", default=USER_PREFIX, help="SASL user name prefix")
    args = parser.parse_args(argv)
    sys.stdout.write(acls_script(args.prefix, user_prefix=args.user_prefix))
    return 0


if __name__ == "__main__":
    sys.exit(main())
