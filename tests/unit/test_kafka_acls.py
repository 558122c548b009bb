"""The ACL table (streams/kafka/acls.py): its rules, and infra/kafka/acls.sh generated from it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from confluent_kafka.admin import AclOperation, ResourcePatternType, ResourceType

from driftline.core.settings import WORKER_ROLES
from driftline.streams.kafka.acls import PRINCIPALS, acl_bindings, acls_script, main, principal
from driftline.streams.kafka.topics import Topics

ACLS_SH = Path(__file__).resolve().parents[2] / "infra" / "kafka" / "acls.sh"


def test_checked_in_acls_sh_is_the_generated_script():
    assert ACLS_SH.read_text() == acls_script("driftline."), (
        "infra/kafka/acls.sh is stale: python -m driftline.streams.kafka.acls --prefix driftline. "
        "> infra/kafka/acls.sh"
    )


def test_main_prints_the_script(capsys):
    assert main(["--prefix", "driftline."]) == 0
    assert capsys.readouterr().out == acls_script("driftline.")


def allowed(user: str, operation: AclOperation, topic: str, prefix: str = "driftline.") -> bool:
    """Whether the table lets ``user`` do ``operation`` on ``topic`` (prefixed patterns too)."""
    return any(
        binding.restype == ResourceType.TOPIC
        and binding.operation == operation
        and binding.principal == f"User:{user}"
        and (
            topic == binding.name
            or (
                binding.resource_pattern_type == ResourcePatternType.PREFIXED
                and topic.startswith(binding.name)
            )
        )
        for binding in acl_bindings(prefix)
    )


def writers(prefix: str = "driftline.") -> dict[str, set[str]]:
    """topic -> users allowed to write it, from the bindings (prefixed patterns resolved)."""
    topics = Topics(prefix)
    return {
        name: {
            f"User:{who.user()}"
            for who in PRINCIPALS
            if allowed(who.user(), AclOperation.WRITE, name, prefix)
        }
        for name in topics.all() + topics.internal()
    }


def test_only_the_registry_writes_lifecycle_and_producers_only_features_and_outcomes():
    topics = Topics("driftline.")
    found = writers()
    assert found[topics.lifecycle] == {"User:driftline-registry"}
    produced = {name for name, users in found.items() if "User:driftline-producer" in users}
    assert produced == {topics.features, topics.name("outcomes")}
    assert not any("User:driftline-dashboard" in users for users in found.values())


def test_every_worker_role_has_a_principal_and_none_may_create_topics():
    for role in WORKER_ROLES:
        assert principal(role).user() == f"driftline-{role}"
    creators = {
        b.principal for b in acl_bindings("driftline.") if b.operation == AclOperation.CREATE
    }
    assert creators == {"User:driftline-provisioner"}


def test_every_grant_stays_under_the_prefix_and_is_allow_only():
    for binding in acl_bindings("acme.ml."):
        assert binding.name.startswith("acme.ml."), binding
        assert binding.restype in (ResourceType.TOPIC, ResourceType.GROUP), binding
        assert binding.host == "*"
    users = [p.user("acme-") for p in PRINCIPALS]
    assert len(set(users)) == len(users)
    assert {b.principal for b in acl_bindings("x.", user_prefix="acme-")} == {
        f"User:{user}" for user in users
    }


# Builds a worker's real app and prints the topics it consumes: its Faust agents' topics, the
# features consumer's and the lifecycle follower's. In a process of its own: the app's
# producers would otherwise go on retrying the absent broker for the rest of the test run,
# and the lineage role's chDB store would clash with the session's (one path per process).
_READS = """
import json, sys
from driftline.core.settings import load_settings
from driftline.streams.app import runtime as runtime_module
from driftline.streams.app.faust_app import create_app
from driftline.streams.kafka.broker_quirks import BrokerQuirks

# No broker here: the quirks probe would wait 10 s for a cluster id.
runtime_module.detect_quirks = lambda config: BrokerQuirks()
app, runtime = create_app(load_settings(), "127.0.0.1:1", web_port=6066)
read = {topic for agent in app.agents.values() for topic in agent.channel.topics}
for reader in (runtime.features_consumer, runtime.follower):
    if reader is not None:
        read.add(reader._topic)
print(json.dumps(sorted(read)))
sys.stdout.flush()
import os; os._exit(0)  # the producers' threads would retry the absent broker at exit
"""


def topics_read_by(role: str, tmp_path: Path) -> set[str]:
    env = os.environ | {
        "DRIFTLINE_DATA_DIR": str(tmp_path / role),
        "DRIFTLINE_WORKER_ROLES": role,
        "DRIFTLINE_TELEMETRY_LOG_LEVEL": "ERROR",
    }
    env.pop("DRIFTLINE_CLICKHOUSE_DSN", None)
    done = subprocess.run(
        [sys.executable, "-c", _READS], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return set(json.loads(done.stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize("role", sorted(WORKER_ROLES))
def test_each_role_may_read_every_topic_its_worker_consumes(role, tmp_path):
    """A topic wired into a role without its grant stops that worker on a secured cluster
    (TopicAuthorization) while every unsecured test passes: the served-features topic did."""
    read = topics_read_by(role, tmp_path)
    assert read, f"the {role} worker consumes nothing?"
    user = principal(role).user()
    refused = sorted(topic for topic in read if not allowed(user, AclOperation.READ, topic))
    assert not refused, f"{user} may not read {refused}: add them to its grants in acls.py"


@pytest.mark.parametrize(
    ("role", "topic"),
    [
        ("inference", "predictions"),
        ("inference", "drift"),
        ("inference", "deadletter"),
        # The scoring stage's sample of served rows, for the skew check.
        ("inference", "worker-served-features"),
        ("inference", "worker-outcome-join"),
        ("inference", "worker-drift-summaries"),
        # The training-serving skew check publishes DriftEvents from the lineage role.
        ("lineage", "drift"),
        ("lineage", "commands"),
        ("lineage", "audit-checkpoints"),
        ("registry", "lifecycle"),
        ("policy", "commands"),
    ],
)
def test_each_role_may_write_what_its_stages_produce(role, topic):
    assert allowed(principal(role).user(), AclOperation.WRITE, f"driftline.{topic}")
