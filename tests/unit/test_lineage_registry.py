import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from driftline.lineage import events as ev
from driftline.lineage.events import LifecycleEvent
from driftline.lineage.exceptions import (
    IllegalTransition,
    InvalidRecord,
    UnknownModel,
    UnknownVersion,
)
from driftline.lineage.registry.model_registry import ModelRegistry
from driftline.lineage.registry.versions import ModelVersion

DESCRIPTION = {
    "input_name": "features",
    "input_shape": json.dumps([None, 16]),
    "feature_names": json.dumps([f"f{i}" for i in range(16)]),
    "metadata_props": json.dumps({"trained_on": "2024-01-01"}),
}


def digest(n: int) -> str:
    return f"{n:064x}"


def register(registry: ModelRegistry, name: str, n: int, actor: str = "alice") -> LifecycleEvent:
    planned = registry.plan_register(
        name, DESCRIPTION, digest(n), f"sha256/00/{digest(n)}.onnx", actor
    )
    assert isinstance(planned, LifecycleEvent)
    assert registry.apply(planned)
    return planned


def test_register_parses_attributes() -> None:
    registry = ModelRegistry()
    event = register(registry, "fraud", 1)
    assert event.type == "registered" and event.version == 1
    v = registry.get("fraud", 1)
    assert v == ModelVersion(
        name="fraud",
        version=1,
        digest=digest(1),
        artifact=f"sha256/00/{digest(1)}.onnx",
        input_name="features",
        input_shape=(None, 16),
        feature_names=tuple(f"f{i}" for i in range(16)),
        metadata_props={"trained_on": "2024-01-01"},
        state="registered",
        registered_by="alice",
        registered_at=event.occurred_at,
    )
    assert registry.models() == ["fraud"]
    assert registry.champion("fraud") is None


def test_feature_names_and_metadata_are_optional() -> None:
    registry = ModelRegistry()
    attrs = {"input_name": "x", "input_shape": "[null, 4]"}
    registry.apply(registry.plan_register("m", attrs, digest(1), "a.onnx", "ci"))
    v = registry.get("m", 1)
    assert v.feature_names is None and v.metadata_props == {}


def test_next_version_counts_from_one_per_model() -> None:
    registry = ModelRegistry()
    assert registry.next_version("fraud") == 1
    register(registry, "fraud", 1)
    register(registry, "fraud", 2)
    register(registry, "churn", 3)
    assert registry.next_version("fraud") == 3
    assert registry.next_version("churn") == 2
    assert [v.version for v in registry.versions("fraud")] == [1, 2]


def test_same_digest_returns_existing_version() -> None:
    registry = ModelRegistry()
    register(registry, "fraud", 7)
    again = registry.plan_register("fraud", DESCRIPTION, digest(7), "elsewhere.onnx", "bob")
    assert isinstance(again, ModelVersion)
    assert again.version == 1 and again.registered_by == "alice"
    # The same bytes under another name are a new model.
    assert isinstance(
        registry.plan_register("churn", DESCRIPTION, digest(7), "x", "bob"), LifecycleEvent
    )
    assert registry.find_by_digest("fraud", digest(7)) == again
    assert registry.find_by_digest("fraud", digest(8)) is None


def test_plan_register_refuses_bad_descriptions() -> None:
    registry = ModelRegistry()
    with pytest.raises(InvalidRecord, match="input_shape"):
        registry.plan_register("m", {"input_name": "x"}, digest(1), "a", "ci")
    with pytest.raises(InvalidRecord, match="input_shape must be a JSON list"):
        registry.plan_register("m", {"input_name": "x", "input_shape": "16"}, digest(1), "a", "ci")
    with pytest.raises(InvalidRecord, match="digest"):
        registry.plan_register("m", DESCRIPTION | {"digest": digest(2)}, digest(1), "a", "ci")
    assert registry.models() == []


def test_promote_archives_the_previous_champion() -> None:
    registry = ModelRegistry()
    register(registry, "fraud", 1)
    register(registry, "fraud", 2)
    first = registry.plan_promote("fraud", 1, "bob")
    assert first.previous_state == "registered" and "previous_champion" not in first.attributes
    registry.apply(first)
    assert registry.champion("fraud").version == 1
    second = registry.plan_promote("fraud", 2, "bob", evidence={"p_value": 0.001})
    assert second.attributes == {"previous_champion": "1"}
    assert second.evidence == {"p_value": 0.001}
    registry.apply(second)
    assert registry.champion("fraud").version == 2
    assert registry.get("fraud", 1).state == "archived"
    # An archived version cannot be promoted again; a rollback returns it.
    with pytest.raises(IllegalTransition, match="fraud v1 is archived"):
        registry.plan_promote("fraud", 1, "carol")
    rollback = registry.plan("rollback", "fraud", None, "carol")
    assert rollback.type == "rolled_back" and rollback.version == 2
    assert (rollback.previous_state, rollback.state) == ("champion", "archived")
    registry.apply(rollback)
    assert [v.state for v in registry.versions("fraud")] == ["champion", "archived"]


def test_promoting_the_champion_is_illegal() -> None:
    registry = ModelRegistry()
    register(registry, "fraud", 1)
    registry.apply(registry.plan_promote("fraud", 1, "bob"))
    with pytest.raises(IllegalTransition) as err:
        registry.plan_promote("fraud", 1, "bob")
    assert str(err.value) == (
        "cannot promote fraud v1: fraud v1 is already champion; allowed moves from champion: "
        "archive"
    )


def test_unknown_model_and_version_messages() -> None:
    registry = ModelRegistry()
    with pytest.raises(UnknownModel, match="known models: none yet"):
        registry.get("fraud", 1)
    register(registry, "fraud", 1)
    register(registry, "fraud", 2)
    register(registry, "churn", 3)
    with pytest.raises(UnknownModel, match="'frad'.*known models: churn, fraud"):
        registry.versions("frad")
    with pytest.raises(UnknownVersion, match="no version 9; known versions: 1, 2"):
        registry.plan_promote("fraud", 9, "bob")
    assert registry.champion("frad") is None


def test_apply_is_idempotent_on_event_id() -> None:
    registry = ModelRegistry()
    reg = register(registry, "fraud", 1)
    promote = registry.plan_promote("fraud", 1, "bob")
    assert registry.apply(promote) is True
    before = registry.snapshot()
    assert registry.apply(reg) is False
    assert registry.apply(promote) is False
    assert registry.snapshot() == before


def test_apply_ignores_what_does_not_fit() -> None:
    registry = ModelRegistry()
    stray = ev.promoted("fraud", 4, "bob", previous_state="registered", previous_champion=None)
    assert registry.apply(stray) is False  # no raise: the log is replayed as it is
    assert registry.skipped == [(stray.event_id, "promoted for unknown version 4")]
    reg = register(registry, "fraud", 1)
    duplicate_version = ev.registered("fraud", 1, "mallory", reg.attributes)
    assert registry.apply(duplicate_version) is False
    assert registry.get("fraud", 1).registered_by == "alice"
    broken = ev.registered("fraud", 2, "ci", {"digest": digest(2)})
    assert registry.apply(broken) is False
    assert "attributes lack" in registry.skipped[-1][1]
    # A type this code does not know is history, not state.
    assert registry.apply(ev.new_event("retrained", "fraud", 1, "ci")) is False
    assert registry.get("fraud", 1).state == "registered"
    assert registry.history("fraud")[-1].event_type == "retrained"


# -- replay ------------------------------------------------------------------------

commands = st.lists(
    st.tuples(
        st.sampled_from(["register", "promote"]), st.sampled_from(["a", "b"]), st.integers(1, 6)
    ),
    max_size=30,
)


def run_commands(cmds) -> list[LifecycleEvent]:
    """Drive a registry the way the registry agent does: plan, publish, apply."""
    registry = ModelRegistry()
    log: list[LifecycleEvent] = []
    for action, name, n in cmds:
        try:
            if action == "register":
                planned = registry.plan_register(name, DESCRIPTION, digest(n), f"{n}.onnx", "ci")
            else:
                planned = registry.plan_promote(name, n, "ci")
        except (UnknownModel, UnknownVersion, IllegalTransition):
            continue
        if isinstance(planned, LifecycleEvent):
            log.append(planned)
            registry.apply(planned)
    return log


@settings(max_examples=100, deadline=None)
@given(cmds=commands, data=st.data())
def test_replay_rebuilds_the_same_registry(cmds, data) -> None:
    log = run_commands(cmds)
    original = ModelRegistry.from_events(log)
    assert ModelRegistry.from_events(log).snapshot() == original.snapshot()
    # At-least-once delivery: repeats of earlier events change nothing.
    redelivered: list[LifecycleEvent] = []
    for i, event in enumerate(log):
        redelivered.append(event)
        if data.draw(st.booleans()):
            redelivered.append(log[data.draw(st.integers(0, i))])
    assert ModelRegistry.from_events(redelivered).snapshot() == original.snapshot()
    for name, versions in original.snapshot().items():
        assert sum(v.state == "champion" for v in versions) <= 1, name
        assert [v.version for v in versions] == list(range(1, len(versions) + 1))


def test_registry_remembers_which_commands_are_answered() -> None:
    from driftline.lineage.events import new_event

    registry = ModelRegistry()
    answer = new_event(
        "command_rejected",
        "fraud",
        None,
        "alice",
        evidence={"command_id": "c-1", "check": "rbac", "reason": "no"},
    )
    assert not registry.answered("c-1")
    registry.apply(answer)
    assert registry.answered("c-1") and not registry.answered("c-2")
