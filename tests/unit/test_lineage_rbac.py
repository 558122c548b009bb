import dataclasses
import hashlib
import json

import pytest

from driftline.lineage.events import LifecycleEvent
from driftline.lineage.exceptions import IllegalTransition, LineageError
from driftline.lineage.registry.model_registry import ModelRegistry
from driftline.lineage.trust import keys
from driftline.lineage.trust.commands import LifecycleCommand, new_command
from driftline.lineage.trust.rbac import CommandAuthority
from driftline.lineage.trust.roles import Roles, write_example_roles

KEYS = {name: keys.generate_key(name) for name in ("alice", "bob", "carol", "ci", "policy")}
B64 = {name: keys.public_key_to_base64(pair.public_key) for name, pair in KEYS.items()}

ROLES = f"""
four_eyes = true
[actors]
alice = {{ roles = ["data-scientist"], key = "{B64["alice"]}" }}
bob = {{ roles = ["approver", "data-scientist"], key = "{B64["bob"]}" }}
carol = {{ roles = ["approver"], key = "{B64["carol"]}" }}
ci = {{ roles = ["ci"], key = "{B64["ci"]}" }}
policy = {{ roles = ["policy"], key = "{B64["policy"]}" }}

[roles.data-scientist]
allow = [{{ actions = ["register", "validate", "challenger", "canary"], models = ["*"] }}]
[roles.approver]
allow = [{{ actions = ["promote", "rollback", "archive", "reject"], models = ["fraud*", "demo"] }}]
[roles.ci]
allow = [{{ actions = ["validate", "reject"], models = ["fraud", "churn-[0-9]"] }}]
[roles.policy]
allow = [{{ actions = ["*"], models = ["*"] }}]
"""

DESCRIPTION = {"input_name": "x", "input_shape": "[null, 4]"}


def load(tmp_path, text: str = ROLES) -> Roles:
    path = tmp_path / "roles.toml"
    path.write_text(text)
    return Roles.load(path)


def register(registry: ModelRegistry, name: str, actor: str) -> int:
    digest = hashlib.sha256(f"{name}-{registry.next_version(name)}".encode()).hexdigest()
    event = registry.plan_register(name, DESCRIPTION, digest, f"{digest}.onnx", actor)
    assert isinstance(event, LifecycleEvent) and registry.apply(event)
    return event.version


def move(registry: ModelRegistry, action: str, name: str, version: int) -> None:
    assert registry.apply(registry.plan(action, name, version, "setup"))


@pytest.fixture
def registry() -> ModelRegistry:
    """fraud v1 registered by alice; fraud v2 by bob; demo v1 and fraud-eu v1 by alice."""
    reg = ModelRegistry()
    register(reg, "fraud", "alice")
    register(reg, "fraud", "bob")
    register(reg, "demo", "alice")
    register(reg, "demo2", "alice")
    register(reg, "fraud-eu", "alice")
    return reg


@pytest.fixture
def authority(tmp_path) -> CommandAuthority:
    return CommandAuthority(load(tmp_path))


def signed(action, model, version, actor, arguments=None, *, key=None) -> LifecycleCommand:
    command = new_command(action, model, version, actor, arguments)
    return command.signed(KEYS[key or actor].private_key)


def assert_rejected(event: LifecycleEvent, command: LifecycleCommand, check: str) -> str:
    assert event.type == "command_rejected", event
    assert (event.model, event.version, event.actor) == (
        command.model,
        command.version,
        command.actor,
    )
    assert event.evidence["command_id"] == command.command_id
    assert event.evidence["action"] == command.action
    assert event.evidence["check"] == check, event.evidence["reason"]
    assert event.state is None  # a refusal moves nothing
    return event.evidence["reason"]


# -- accepted commands --------------------------------------------------------


def test_accepted_command_becomes_the_registry_event(authority, registry) -> None:
    command = signed("promote", "fraud", 1, "carol", {"reason": "passed the gate"})
    event = authority.decide(command, registry)
    assert (event.type, event.model, event.version, event.actor) == (
        "promoted",
        "fraud",
        1,
        "carol",
    )
    assert event.evidence == {
        "reason": "passed the gate",
        "command_id": command.command_id,
        "key_id": KEYS["carol"].key_id,
        "approved_by": "carol",
    }
    assert registry.apply(event) and registry.champion("fraud").version == 1


def test_authorize_returns_none_for_a_good_command(authority, registry) -> None:
    assert authority.authorize(signed("register", "fraud", None, "alice"), registry) is None


# -- signature ----------------------------------------------------------------


def test_unsigned_command_is_rejected(authority, registry) -> None:
    command = new_command("validate", "fraud", 1, "alice")
    reason = assert_rejected(authority.decide(command, registry), command, "signature")
    assert "unsigned" in reason


def test_key_of_another_actor_is_rejected(authority, registry) -> None:
    # carol may promote, and it is carol's valid signature, but the command claims bob.
    command = signed("promote", "fraud", 1, "bob", key="carol")
    event = authority.decide(command, registry)
    reason = assert_rejected(event, command, "signature")
    assert f"key {KEYS['carol'].key_id} belongs to 'carol', not to 'bob'" in reason
    assert event.evidence["signature_verified"] is False


def test_unknown_key_is_rejected(authority, registry) -> None:
    command = new_command("validate", "fraud", 1, "alice").signed(
        keys.generate_key("alice").private_key
    )
    reason = assert_rejected(authority.decide(command, registry), command, "signature")
    assert "is not in the roles file" in reason and KEYS["alice"].key_id in reason


def test_wrong_key_id_with_a_valid_signature_is_rejected(authority, registry) -> None:
    # Signed by alice, then relabelled with bob's key id: the signature covers key_id.
    command = dataclasses.replace(
        signed("validate", "fraud", 1, "bob", key="alice"), key_id=KEYS["bob"].key_id
    )
    reason = assert_rejected(authority.decide(command, registry), command, "signature")
    assert "does not verify" in reason


@pytest.mark.parametrize(
    ("field", "value"), [("version", 2), ("model", "fraud-eu"), ("arguments", {"weight": "1"})]
)
def test_command_altered_after_signing_is_rejected(authority, registry, field, value) -> None:
    command = dataclasses.replace(signed("validate", "fraud", 1, "alice"), **{field: value})
    reason = assert_rejected(authority.decide(command, registry), command, "signature")
    assert "altered after signing" in reason


def test_unknown_actor_is_rejected(authority, registry) -> None:
    mallory = keys.generate_key("mallory")
    command = new_command("promote", "fraud", 1, "mallory").signed(mallory.private_key)
    reason = assert_rejected(authority.decide(command, registry), command, "unknown_actor")
    assert "'mallory'" in reason and "alice, bob, carol, ci, policy" in reason


# -- RBAC ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("actor", "action", "model", "allowed"),
    [
        ("alice", "validate", "fraud", True),
        ("alice", "canary", "anything", True),
        ("alice", "promote", "fraud", False),
        ("alice", "archive", "fraud", False),
        ("carol", "promote", "fraud", True),
        ("carol", "promote", "fraud-eu", True),
        ("carol", "archive", "demo", True),
        ("carol", "archive", "demo2", False),  # "demo" is exact, not a prefix
        ("carol", "promote", "Fraud", False),  # patterns are case-sensitive
        ("carol", "validate", "fraud", False),
        ("ci", "validate", "churn-3", True),
        ("ci", "validate", "churn-x", False),
        ("ci", "validate", "fraud-eu", False),
        ("policy", "rollback", "anything", True),
        ("nobody", "validate", "fraud", False),
    ],
)
def test_policy_allows(tmp_path, actor, action, model, allowed) -> None:
    assert load(tmp_path).allows(actor, action, model) is allowed


def test_rbac_refusal_names_the_roles_that_may(authority, registry) -> None:
    command = signed("promote", "fraud", 1, "alice")
    reason = assert_rejected(authority.decide(command, registry), command, "rbac")
    assert reason == (
        "'alice' (roles: data-scientist) may not promote model 'fraud'; "
        "roles that may: approver, policy"
    )
    assert registry.get("fraud", 1).state == "registered"


def test_rbac_refuses_models_outside_the_pattern(authority, registry) -> None:
    command = signed("reject", "demo2", 1, "carol")
    assert_rejected(authority.decide(command, registry), command, "rbac")
    ok = signed("reject", "demo", 1, "carol")
    assert authority.decide(ok, registry).type == "rejected"


def test_unknown_action_is_rejected_even_for_wildcard_roles(authority, registry) -> None:
    command = signed("delete", "fraud", 1, "policy")
    reason = assert_rejected(authority.decide(command, registry), command, "unknown_action")
    assert "'delete'" in reason and "promote" in reason


def test_reserved_arguments_are_rejected(authority, registry) -> None:
    command = signed("validate", "fraud", 1, "alice", {"approved_by": "carol"})
    reason = assert_rejected(authority.decide(command, registry), command, "arguments")
    assert "approved_by" in reason


def test_evidence_argument_becomes_structured_evidence(authority, registry) -> None:
    evidence = {"gates": {"auc": 0.91, "passed": True}, "holdout_rows": 5000}
    command = signed("validate", "fraud", 1, "alice", {"evidence": json.dumps(evidence)})
    event = authority.decide(command, registry)
    assert event.type == "validated"
    assert event.evidence["gates"] == {"auc": 0.91, "passed": True}
    assert event.evidence["holdout_rows"] == 5000
    assert "evidence" not in event.evidence  # merged, not kept as a string


@pytest.mark.parametrize(
    ("text", "words"),
    [("not json", "is not JSON"), ("[1, 2]", "JSON object"), ('{"approved_by": "x"}', "reserved")],
)
def test_bad_evidence_argument_is_rejected(authority, registry, text, words) -> None:
    command = signed("validate", "fraud", 1, "alice", {"evidence": text})
    reason = assert_rejected(authority.decide(command, registry), command, "arguments")
    assert words in reason


# -- four eyes ----------------------------------------------------------------


def test_four_eyes_refuses_the_registering_actor(authority, registry) -> None:
    command = signed("promote", "fraud", 2, "bob")  # bob registered v2
    event = authority.decide(command, registry)
    reason = assert_rejected(event, command, "four_eyes")
    assert "'bob' registered 'fraud' v2" in reason
    assert event.evidence["signature_verified"] is True


def test_four_eyes_accepts_another_approver(authority, registry) -> None:
    assert authority.decide(signed("promote", "fraud", 2, "carol"), registry).type == "promoted"
    assert authority.decide(signed("promote", "fraud", 1, "bob"), registry).type == "promoted"


def test_four_eyes_off_lets_the_registering_actor_promote(tmp_path, registry) -> None:
    authority = CommandAuthority(
        load(tmp_path, ROLES.replace("four_eyes = true", "four_eyes = false"))
    )
    assert authority.decide(signed("promote", "fraud", 2, "bob"), registry).type == "promoted"


def test_four_eyes_is_on_unless_the_file_says_otherwise(tmp_path) -> None:
    assert load(tmp_path, ROLES.replace("four_eyes = true", "")).four_eyes is True


def test_four_eyes_needs_a_version(authority, registry) -> None:
    command = signed("promote", "fraud", None, "carol")
    assert_rejected(authority.decide(command, registry), command, "four_eyes")


def test_four_eyes_does_not_stop_other_actions(authority, registry) -> None:
    assert authority.decide(signed("validate", "fraud", 2, "bob"), registry).type == "validated"


# -- registry refusals --------------------------------------------------------


def test_illegal_transition_carries_the_registry_message(authority, registry) -> None:
    move(registry, "reject", "fraud", 1)
    command = signed("promote", "fraud", 1, "carol")
    with pytest.raises(IllegalTransition) as info:
        registry.plan("promote", "fraud", 1, "carol")
    reason = assert_rejected(authority.decide(command, registry), command, "illegal_transition")
    assert reason == str(info.value)


@pytest.mark.parametrize(
    ("model", "version", "check"),
    [("fraud", 9, "unknown_version"), ("fraud-x", 1, "unknown_model")],
)
def test_unknown_targets_are_rejected(authority, registry, model, version, check) -> None:
    for action, actor in (("promote", "carol"), ("validate", "alice")):  # with and without 4-eyes
        command = signed(action, model, version, actor)
        assert_rejected(authority.decide(command, registry), command, check)


def test_max_age_refuses_stale_and_future_commands(tmp_path, registry) -> None:
    now = 1_800_000_000_000
    authority = CommandAuthority(load(tmp_path), max_age_ms=60_000, clock=lambda: now)

    def at(issued_at: int) -> LifecycleCommand:
        command = new_command("validate", "fraud", 1, "alice", issued_at=issued_at)
        return command.signed(KEYS["alice"].private_key)

    for issued_at in (now - 60_001, now + 60_001):
        command = at(issued_at)
        assert_rejected(authority.decide(command, registry), command, "expired")
    assert authority.decide(at(now - 60_000), registry).type == "validated"


# -- roles file ---------------------------------------------------------------


def _named_keys(text: str) -> str:
    """The test id of a case: keys are random per run, so each is named by its actor, and
    every pytest-xdist process collects the same ids."""
    for name, key in B64.items():
        text = text.replace(key, f"<{name}'s key>")
    return text


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            '"promote", "rollback"',
            '"promote", "deploy"',
            r"unknown action\(s\) 'deploy'; accepted: register, validate",
        ),
        ('"fraud*", "demo"', '"fraud*", "demo/../x"', "model pattern 'demo/../x' is not valid"),
        ('"fraud*", "demo"', '"fr[aud"', "model pattern 'fr\\[aud' is not valid"),
        ('"fraud*", "demo"', '""', "models must be a non-empty list of strings"),
        (', models = ["*"] }]\n[roles.approver]', " }]\n[roles.approver]", "missing models"),
        ('roles = ["ci"], ', "", "actor 'ci': missing roles"),
        (
            'roles = ["ci"]',
            'roles = ["cl"]',
            r"actor 'ci': undefined role\(s\) 'cl'; defined roles: data-scientist",
        ),
        (f'key = "{B64["ci"]}"', 'key = "abc="', "actor 'ci' key decodes to 2 bytes"),
        (f'key = "{B64["ci"]}"', f'key = "{B64["alice"]}"', "given to both 'alice' and 'ci'"),
        (
            f'key = "{B64["ci"]}"',
            f'kee = "{B64["ci"]}"',
            r"actor 'ci': unknown key\(s\) 'kee'; accepted: roles, key, keys",
        ),
        ("four_eyes = true", "four_eyes = 1", "four_eyes must be true or false"),
        (
            "four_eyes = true",
            "four_eye = true",
            r"unknown key\(s\) 'four_eye'; accepted: four_eyes, actors, roles",
        ),
        ("[roles.ci]\nallow", "[roles.ci]\ndeny", r"role 'ci': unknown key\(s\) 'deny'"),
        ("[actors]", "[actors", "not valid TOML"),
        ("bob = {", "b b = {", "not valid TOML"),
        ("bob = {", '"b b" = {', "actor name 'b b' is not valid"),
    ],
    ids=_named_keys,
)
def test_malformed_roles_files(tmp_path, old, new, message) -> None:
    assert old in ROLES
    with pytest.raises(LineageError, match=message) as info:
        load(tmp_path, ROLES.replace(old, new, 1))
    assert str(tmp_path / "roles.toml") in str(info.value) or "actor name" in message


def test_roles_file_needs_actors_and_roles(tmp_path) -> None:
    with pytest.raises(LineageError, match=r"missing or empty \[roles\] table"):
        load(tmp_path, "[actors]\n")
    with pytest.raises(LineageError, match="cannot read"):
        Roles.load(tmp_path / "missing.toml")


# -- bootstrap ----------------------------------------------------------------


def test_write_example_roles(tmp_path) -> None:
    path = write_example_roles(
        tmp_path / "cfg" / "roles.toml",
        {name: KEYS[name].public_key for name in ("alice", "ci", "policy")} | {"bob": B64["bob"]},
        roles={"bob": ["approver"]},
    )
    policy = Roles.load(path)
    assert policy.four_eyes is True
    assert {name: actor.roles for name, actor in policy.actors.items()} == {
        "alice": ("data-scientist",),
        "ci": ("ci",),
        "policy": ("policy",),
        "bob": ("approver",),
    }
    assert {entry.actor for entry in policy.keyring.values()} == set(policy.actors)
    assert policy.keyring[KEYS["bob"].key_id].actor == "bob"
    assert policy.allows("bob", "promote", "fraud") and not policy.allows(
        "alice", "promote", "fraud"
    )


def test_write_example_roles_four_eyes_off(tmp_path) -> None:
    path = write_example_roles(tmp_path / "r.toml", {"alice": B64["alice"]}, four_eyes=False)
    assert Roles.load(path).four_eyes is False


def test_write_example_roles_refuses_an_undefined_role(tmp_path) -> None:
    with pytest.raises(LineageError, match="undefined role"):
        write_example_roles(tmp_path / "r.toml", {"alice": B64["alice"]}, roles={"alice": ["root"]})
