"""An audit_alarm freezes a model's promotions until a signed clear_alarm lifts it;
rollbacks, archives and shares going down still go through."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
from types import SimpleNamespace

import pytest

from driftline.lineage.audit.alarms import alarm_command, alarm_evidence
from driftline.lineage.audit.chain import AuditProblem
from driftline.lineage.audit.checkpoints import WriterKey
from driftline.lineage.events import LifecycleEvent
from driftline.lineage.exceptions import IllegalTransition, PromotionsFrozen
from driftline.lineage.promotion.policy import PromotionPolicy
from driftline.lineage.registry.model_registry import ModelRegistry
from driftline.lineage.trust import keys
from driftline.lineage.trust.commands import new_command
from driftline.lineage.trust.rbac import CommandAuthority
from driftline.lineage.trust.roles import Roles, write_example_roles
from driftline.streams.stages import policy_loop
from driftline.streams.stages.policy_loop import PolicyLoop
from driftline.streams.stages.registry_agent import RegistryAgent
from driftline.streams.stages.roles_source import RolesSource

DESCRIPTION = {"input_name": "x", "input_shape": "[null, 4]"}
PROBLEM = AuditProblem("fraud", 6, "forged", "no record at driftline.lifecycle[0]@99")
KEYS = {name: keys.generate_key(name) for name in ("alice", "bob", "policy")}


def alarm_event(problems, verified_seq: int) -> LifecycleEvent:
    """The audit_alarm event the registry plans for the lineage writer's alarm."""
    evidence = alarm_evidence(problems, verified_seq=verified_seq)
    return ModelRegistry().plan("raise_alarm", "fraud", None, "lineage-writer", evidence=evidence)


def register(registry: ModelRegistry, actor: str = "alice") -> int:
    digest = hashlib.sha256(f"fraud-{registry.next_version('fraud')}".encode()).hexdigest()
    event = registry.plan_register("fraud", DESCRIPTION, digest, f"{digest}.onnx", actor)
    assert isinstance(event, LifecycleEvent) and registry.apply(event)
    return event.version


def move(registry: ModelRegistry, action: str, version: int | None, **arguments: str) -> None:
    assert registry.apply(registry.plan(action, "fraud", version, "setup", arguments=arguments))


@pytest.fixture
def registry() -> ModelRegistry:
    """fraud: v1 archived (replaced by v2), v2 champion, v3 canary at 10%, v4 validated."""
    reg = ModelRegistry()
    for _ in range(4):
        register(reg)
    move(reg, "promote", 1)
    move(reg, "promote", 2)
    move(reg, "validate", 3)
    move(reg, "canary", 3, percent="10")
    move(reg, "validate", 4)
    return reg


@pytest.fixture
def frozen(registry) -> ModelRegistry:
    registry.apply(alarm_event([PROBLEM], verified_seq=5))
    return registry


@pytest.mark.parametrize(
    ("action", "version", "arguments"),
    [("promote", 4, {}), ("challenger", 4, {}), ("canary", 4, {}),
     ("traffic", 3, {"percent": "50"})],
)  # fmt: skip
def test_alarm_freezes_promotions(frozen, action, version, arguments) -> None:
    with pytest.raises(PromotionsFrozen) as refused:
        frozen.plan(action, "fraud", version, "bob", arguments=arguments)
    message = str(refused.value)
    assert "promotions of fraud are frozen by audit alarm" in message
    assert "forged at seq 6" in message and "driftline audit clear fraud" in message


@pytest.mark.parametrize(
    ("action", "version", "arguments"),
    [("rollback", None, {}), ("archive", 3, {}), ("shadow", 4, {}),
     ("traffic", 3, {"percent": "1"})],
)  # fmt: skip
def test_alarm_leaves_rollbacks_and_retreats_alone(frozen, action, version, arguments) -> None:
    assert frozen.apply(frozen.plan(action, "fraud", version, "bob", arguments=arguments))


def test_clearing_lifts_the_freeze(frozen) -> None:
    alarm = frozen.alarm("fraud")
    cleared = frozen.plan("clear_alarm", "fraud", None, "bob", evidence={"reason": "repaired"})
    assert cleared.type == "audit_alarm_cleared"
    assert cleared.evidence == {"alarm_event_id": alarm.event_id, "reason": "repaired"}
    frozen.apply(cleared)
    assert frozen.alarm("fraud") is None
    assert frozen.apply(frozen.plan("promote", "fraud", 4, "bob"))
    with pytest.raises(IllegalTransition, match="fraud has no audit alarm"):
        frozen.plan("clear_alarm", "fraud", None, "bob")


def test_freeze_survives_a_replay_and_the_alarm_is_history(frozen) -> None:
    replayed = ModelRegistry.from_events(
        LifecycleEvent.from_canonical(e.canonical_json())
        for e in _events(frozen)  # the audit log holds exactly these
    )
    assert replayed.alarm("fraud") is not None
    assert frozen.history("fraud")[-1].event_type == "audit_alarm"
    assert [v.state for v in replayed.versions("fraud")] == [
        v.state for v in frozen.versions("fraud")
    ]


def _events(registry: ModelRegistry) -> list[LifecycleEvent]:
    # Rebuild what the log held from the history entries' ids: plan again in order.
    rebuilt = ModelRegistry()
    events = []
    for _ in range(4):
        digest = hashlib.sha256(f"fraud-{rebuilt.next_version('fraud')}".encode()).hexdigest()
        events.append(rebuilt.plan_register("fraud", DESCRIPTION, digest, f"{digest}.onnx", "a"))
        rebuilt.apply(events[-1])
    for action, version, arguments in [
        ("promote", 1, {}), ("promote", 2, {}), ("validate", 3, {}),
        ("canary", 3, {"percent": "10"}), ("validate", 4, {}),
    ]:  # fmt: skip
        events.append(rebuilt.plan(action, "fraud", version, "setup", arguments=arguments))
        rebuilt.apply(events[-1])
    events.append(alarm_event([PROBLEM], verified_seq=5))
    return events


def test_a_second_alarm_keeps_the_freeze_and_one_clear_lifts_it(registry) -> None:
    assert registry.apply(alarm_event([PROBLEM], verified_seq=5)) is False
    second = alarm_event([PROBLEM], verified_seq=5)  # after a worker restart
    registry.apply(second)
    assert registry.alarm("fraud").event_id == second.event_id
    assert [h.event_type for h in registry.history("fraud")].count("audit_alarm") == 2
    registry.apply(registry.plan("clear_alarm", "fraud", None, "bob"))
    assert registry.alarm("fraud") is None


# -- through signed commands ------------------------------------------------------------


@pytest.fixture
def authority(tmp_path) -> CommandAuthority:
    path = write_example_roles(
        tmp_path / "roles.toml",
        {name: pair.public_key for name, pair in KEYS.items()},
        {"alice": ["data-scientist"], "bob": ["approver"]},
    )
    return CommandAuthority(Roles.load(path))


def signed(action, version, actor, arguments=None):
    return new_command(action, "fraud", version, actor, arguments).signed(KEYS[actor].private_key)


def test_frozen_promotion_is_an_audited_refusal(authority, frozen) -> None:
    event = authority.decide(signed("promote", 4, "bob"), frozen)
    assert event.type == "command_rejected"
    assert event.evidence["check"] == "audit_alarm"
    assert "frozen by audit alarm" in event.evidence["reason"]
    assert authority.decide(signed("rollback", None, "bob"), frozen).type == "rolled_back"


def test_only_roles_that_allow_it_may_clear(authority, frozen) -> None:
    refused = authority.decide(signed("clear_alarm", None, "alice", {"reason": "x"}), frozen)
    assert (refused.type, refused.evidence["check"]) == ("command_rejected", "rbac")
    refused = authority.decide(signed("clear_alarm", None, "policy", {"reason": "x"}), frozen)
    assert (refused.type, refused.evidence["check"]) == ("command_rejected", "rbac")
    cleared = authority.decide(signed("clear_alarm", None, "bob", {"reason": "repaired"}), frozen)
    assert cleared.type == "audit_alarm_cleared" and cleared.actor == "bob"


# -- the policy loop --------------------------------------------------------------------


def _canary_says(monkeypatch, action: str) -> None:
    nxt = 50.0 if action == "advance" else None
    decision = SimpleNamespace(action=action, next_percent=nxt, reasons=(), evidence=dict)
    monkeypatch.setattr(policy_loop, "decide_canary", lambda *a, **k: decision)


def _loop(registry) -> tuple[PolicyLoop, list]:
    sent = []

    async def query(sql: str) -> list:
        return []

    def send(batch, action, model, version, arguments, evidence) -> bool:
        sent.append((action, version))
        return True

    loop = PolicyLoop(
        policy=PromotionPolicy.load(None),
        registry=registry,
        query=query,
        send=send,
        database="driftline",
        threshold=0.5,
    )
    return loop, sent


@pytest.mark.parametrize("action", ["promote", "advance"])
def test_policy_holds_back_promotions_while_frozen(monkeypatch, frozen, action) -> None:
    _canary_says(monkeypatch, action)
    loop, sent = _loop(frozen)
    assert asyncio.run(loop.evaluate(None)) == []
    assert sent == []
    assert "audit alarm" in loop.last["fraud"]["v3"]["frozen_by"]
    frozen.apply(frozen.plan("clear_alarm", "fraud", None, "bob"))
    asyncio.run(loop.evaluate(None))
    assert sent == [("promote" if action == "promote" else "traffic", 3)]


def test_policy_still_rolls_back_a_failing_canary_while_frozen(monkeypatch, frozen) -> None:
    _canary_says(monkeypatch, "rollback")
    loop, sent = _loop(frozen)
    asyncio.run(loop.evaluate(None))
    assert sent == [("archive", 3)]


# -- the lineage writer's alarm, as a command the registry decides -------------------------

WRITER = keys.generate_key("lineage-writer")


def registry_agent(roles_file, registry: ModelRegistry) -> RegistryAgent:
    return RegistryAgent(
        codec=None,
        registry=registry,
        roles=RolesSource(roles_file),
        delivery=None,
        dead_letters=None,
        lifecycle_topic="driftline.lifecycle",
        audit_writer=lambda: WriterKey(WRITER.actor, WRITER.private_key.public_key()),
    )


@pytest.fixture
def agent(tmp_path, registry) -> RegistryAgent:
    roles = write_example_roles(
        tmp_path / "roles.toml", {n: k.private_key.public_key() for n, k in KEYS.items()}
    )
    return registry_agent(roles, registry)


def alarm(private_key=WRITER.private_key, actor="lineage-writer", verified_seq=5, problems=None):
    return alarm_command(
        "fraud", problems or [PROBLEM], actor, private_key, verified_seq=verified_seq
    )


def test_the_writers_alarm_becomes_the_freeze(agent, registry) -> None:
    command = alarm()
    event = agent.decide(command)
    assert (event.type, event.model, event.actor) == ("audit_alarm", "fraud", "lineage-writer")
    assert event.evidence["problems"] == [{"seq": 6, "kind": "forged", "detail": PROBLEM.detail}]
    assert event.evidence["verified_seq"] == 5
    assert event.evidence["command_id"] == command.command_id
    registry.apply(event)
    assert registry.alarm("fraud") is not None
    assert registry.answered(command.command_id)
    with pytest.raises(PromotionsFrozen):
        registry.plan("promote", "fraud", 4, "bob")


def test_one_break_is_one_command_id_and_another_break_is_another() -> None:
    assert alarm().command_id == alarm().command_id
    assert alarm().command_id != alarm(verified_seq=9).command_id


@pytest.mark.parametrize("who", ["bob", "policy", "alice"])
def test_no_actor_of_the_roles_file_may_raise_an_alarm(agent, who) -> None:
    event = agent.decide(alarm(KEYS[who].private_key, actor=who))
    assert (event.type, event.evidence["check"]) == ("command_rejected", "rbac")


def test_an_alarm_claiming_the_writers_key_without_its_signature_is_refused(agent) -> None:
    genuine = alarm()
    forged = dataclasses.replace(genuine, model="churn")  # signature no longer covers it
    event = agent.decide(forged)
    assert (event.type, event.evidence["check"]) == ("command_rejected", "signature")
    assert event.evidence["signature_verified"] is False
    impostor = dataclasses.replace(genuine, actor="bob")
    assert agent.decide(impostor).evidence["check"] == "signature"


def test_an_alarm_naming_no_problems_is_refused(agent) -> None:
    empty = dataclasses.replace(
        new_command("raise_alarm", "fraud", None, "lineage-writer", {"evidence": "{}"}),
    ).signed(WRITER.private_key)
    event = agent.decide(empty)
    assert (event.type, event.evidence["check"]) == ("command_rejected", "invalid_command")
    assert "names no problems" in event.evidence["reason"]


def test_without_the_writers_key_the_registry_accepts_no_alarm(tmp_path, registry) -> None:
    roles = write_example_roles(
        tmp_path / "roles.toml", {n: k.private_key.public_key() for n, k in KEYS.items()}
    )
    agent = registry_agent(roles, registry)
    agent._audit_writer = lambda: None
    event = agent.decide(alarm())
    assert (event.type, event.evidence["check"]) == ("command_rejected", "unknown_actor")
