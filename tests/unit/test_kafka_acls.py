"""The ACL table (streams/kafka/acls.py): its rules, and infra/kafka/acls.sh generated from it."""

from __future__ import annotations

from pathlib import Path

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


def writers(prefix: str = "driftline.") -> dict[str, set[str]]:
    """topic -> users allowed to write it, from the bindings (prefixed patterns resolved)."""
    topics = Topics(prefix)
    found: dict[str, set[str]] = {}
    for binding in acl_bindings(prefix):
        if binding.restype != ResourceType.TOPIC or binding.operation != AclOperation.WRITE:
            continue
        for name in topics.all() + topics.internal():
            if name == binding.name or (
                binding.resource_pattern_type == ResourcePatternType.PREFIXED
                and name.startswith(binding.name)
            ):
                found.setdefault(name, set()).add(binding.principal)
    return found


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
