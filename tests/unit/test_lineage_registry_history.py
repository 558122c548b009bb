"""History, time travel, replay and rebuilding the registry from the audit log's bytes."""

import dataclasses
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from driftline.lineage import events as ev
from driftline.lineage.events import LifecycleEvent
from driftline.lineage.exceptions import IllegalTransition, UnknownModel
from driftline.lineage.registry.lifecycle import ALIASES, State
from driftline.lineage.registry.model_registry import ModelRegistry
from driftline.schemas import default_codec

DESCRIPTION = {"input_name": "features", "input_shape": json.dumps([None, 4])}
T0 = 1_700_000_000_000


def digest(n: int) -> str:
    return f"{n:064x}"


class Driver:
    """Plans, stamps (at chosen times) and applies events, keeping the log."""

    def __init__(self) -> None:
        self.registry = ModelRegistry()
        self.log: list[LifecycleEvent] = []

    def _emit(self, event: LifecycleEvent, at: int | None) -> LifecycleEvent:
        if at is not None:
            event = dataclasses.replace(event, occurred_at=at)
        self.log.append(event)
        self.registry.apply(event)
        return event

    def register(self, name: str, n: int, at: int | None = None) -> LifecycleEvent:
        planned = self.registry.plan_register(name, DESCRIPTION, digest(n), f"{n}.onnx", "ci")
        assert isinstance(planned, LifecycleEvent)
        return self._emit(planned, at)

    def act(
        self, action: str, name: str, version: int | None, at: int | None = None, **kw
    ) -> LifecycleEvent:
        return self._emit(self.registry.plan(action, name, version, "bob", **kw), at)


def timeline() -> Driver:
    """fraud: v1 champion at T0+10, v2 challenger then champion at T0+40, rolled back at T0+50."""
    d = Driver()
    d.register("fraud", 1, at=T0)
    d.register("fraud", 2, at=T0 + 1)
    d.act("promote", "fraud", 1, at=T0 + 10)
    d.act("validate", "fraud", 2, at=T0 + 20, evidence={"auc": 0.91})
    d.act("challenger", "fraud", 2, at=T0 + 30)
    d.act("promote", "fraud", 2, at=T0 + 40, evidence={"p_value": 0.01})
    d.act("rollback", "fraud", None, at=T0 + 50, evidence={"reason": "drift on f2"})
    return d


def test_history_is_in_log_order_with_states_and_aliases() -> None:
    d = timeline()
    rows = [
        (h.event_type, h.version, h.from_state, h.to_state, h.aliases, h.also_moved)
        for h in d.registry.history("fraud")
    ]
    assert rows == [
        ("registered", 1, None, "registered", {}, ()),
        ("registered", 2, None, "registered", {}, ()),
        ("promoted", 1, "registered", "champion", {"champion": 1}, ()),
        ("validated", 2, "registered", "validated", {"champion": 1}, ()),
        ("challenger_assigned", 2, "validated", "challenger", {"challenger": 2, "champion": 1}, ()),
        ("promoted", 2, "challenger", "champion", {"champion": 2}, ((1, "champion", "archived"),)),
        ("rolled_back", 2, "champion", "archived", {"champion": 1}, ((1, "archived", "champion"),)),
    ]
    history = d.registry.history("fraud")
    assert [h.occurred_at - T0 for h in history] == [0, 1, 10, 20, 30, 40, 50]
    assert [h.event_id for h in history] == [e.event_id for e in d.log]
    assert {h.actor for h in history} == {"ci", "bob"}
    assert history[3].evidence == {"auc": 0.91}
    assert history[-1].evidence == {"reason": "drift on f2"}


@pytest.mark.parametrize(
    ("offset", "expected"),
    [
        (-1, {}),  # before registration
        (0, {}),  # registered, nothing serving yet
        (9, {}),
        (10, {"champion": 1}),
        (35, {"champion": 1, "challenger": 2}),
        (40, {"champion": 2}),  # between the promotion and the rollback
        (49, {"champion": 2}),
        (50, {"champion": 1}),  # after the rollback
        (10**9, {"champion": 1}),
    ],
)
def test_aliases_at(offset: int, expected: dict[str, int]) -> None:
    assert timeline().registry.aliases_at("fraud", T0 + offset) == expected


def test_aliases_at_never_reports_a_state_the_log_did_not_pass_through() -> None:
    # A producer with a slow clock logs an event "earlier" than the one before it.
    d = Driver()
    for n in (1, 2, 3):
        d.register("m", n, at=T0)
    d.act("promote", "m", 1, at=T0 + 100)
    d.act("promote", "m", 2, at=T0 + 300)
    d.act("validate", "m", 3, at=T0 + 200)
    # At 250 the promotion of v2 (logged first, at 300) had not happened, so
    # nothing logged after it had either: v1 was serving.
    assert d.registry.aliases_at("m", T0 + 250) == {"champion": 1}
    assert d.registry.aliases_at("m", T0 + 299) == {"champion": 1}
    assert d.registry.aliases_at("m", T0 + 300) == {"champion": 2}
    assert d.registry.history("m")[-1].occurred_at == T0 + 200  # recorded as logged


def test_models_are_kept_apart_and_unknown_names_are_refused() -> None:
    d = timeline()
    d.register("churn", 1, at=T0 + 5)
    d.act("promote", "churn", 1, at=T0 + 45)
    assert d.registry.aliases_at("churn", T0 + 44) == {}
    assert d.registry.aliases_at("fraud", T0 + 44) == {"champion": 2}
    assert len(d.registry.history("churn")) == 2
    with pytest.raises(UnknownModel, match="'frad'.*known models: churn, fraud"):
        d.registry.history("frad")
    with pytest.raises(UnknownModel):
        d.registry.aliases_at("frad", T0)


def test_rejected_commands_are_history_even_for_unregistered_models() -> None:
    d = Driver()
    refused = ev.new_event(
        "command_rejected", "ghost", 3, "mallory", evidence={"why": "bad signature"}
    )
    assert d.registry.apply(refused) is False
    [entry] = d.registry.history("ghost")
    assert (entry.event_type, entry.version, entry.from_state, entry.to_state) == (
        "command_rejected",
        3,
        None,
        None,
    )
    assert d.registry.models() == []
    with pytest.raises(UnknownModel):
        d.registry.versions("ghost")
    d.register("fraud", 1)
    refused = ev.new_event("command_rejected", "fraud", 1, "eve")
    d.registry.apply(refused)
    last = d.registry.history("fraud")[-1]
    assert (last.from_state, last.to_state, last.actor) == ("registered", "registered", "eve")


# -- replay ------------------------------------------------------------------------

ACTIONS_DRAWN = ["register", "validate", "validate", "reject", "challenger", "canary"] + [
    "promote",
    "promote",
    "archive",
    "rollback",
    "rollback",
]


def run(data) -> list[LifecycleEvent]:
    """Drive a registry the way the registry agent does: plan, publish, apply.

    Versions are drawn from those registered, so most commands are ones the
    planner can accept; refused ones are simply not published.
    """
    registry = ModelRegistry()
    log: list[LifecycleEvent] = []
    clock = T0
    registered = 0
    for _ in range(data.draw(st.integers(5, 60))):
        name = data.draw(st.sampled_from(["a", "b"]))
        action = data.draw(st.sampled_from(ACTIONS_DRAWN))
        clock += data.draw(st.integers(0, 20))  # several events may share a millisecond
        known = [v.version for v in registry.versions(name)] if name in registry.models() else []
        try:
            if action == "register" or not known:
                registered += 1
                planned = registry.plan_register(
                    name, DESCRIPTION, digest(registered), f"{registered}.onnx", "ci"
                )
            else:
                version = data.draw(st.sampled_from(known))
                planned = registry.plan(action, name, version, "ci")
        except IllegalTransition:
            continue
        planned = dataclasses.replace(planned, occurred_at=clock)
        log.append(planned)
        assert registry.apply(planned), planned
    return log


def view(registry: ModelRegistry, times: list[int]) -> tuple:
    """Everything a registry answers, for comparing two of them."""
    names = registry.models()
    return (
        registry.snapshot(),
        {name: registry.history(name) for name in names},
        {name: registry.aliases(name) for name in names},
        {name: [registry.aliases_at(name, t) for t in times] for name in names},
        registry.skipped,
    )


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_replay_with_duplicates_rebuilds_the_same_registry(data) -> None:
    log = run(data)
    times = sorted({e.occurred_at + d for e in log for d in (-1, 0, 1)})
    original = ModelRegistry.from_events(log)
    assert not original.skipped
    redelivered: list[LifecycleEvent] = []
    for i, event in enumerate(log):
        redelivered.append(event)
        if data.draw(st.booleans()):
            redelivered.append(log[data.draw(st.integers(0, i))])
    assert view(ModelRegistry.from_events(redelivered), times) == view(original, times)
    for name in original.models():
        versions = {v.version: v for v in original.versions(name)}
        aliases = original.aliases(name)
        # An alias is held by a version in the state of that name; only challengers may
        # be several (A/B/n), and the alias then names one of them.
        for alias in ALIASES:
            holders = [n for n, v in versions.items() if v.state == alias]
            if alias == State.CHALLENGER and holders:
                assert aliases[alias] in holders, (name, alias)
            else:
                assert holders == ([aliases[alias]] if alias in aliases else []), (name, alias)
        assert {v.state for v in versions.values()} <= set(State)
        history = original.history(name)
        assert len(history) == sum(e.model == name for e in log)
        # The last entry's aliases are the current ones.
        assert history[-1].aliases == aliases


# -- rebuild from the audit log ----------------------------------------------------


def test_registry_rebuilt_from_canonical_bytes_equals_one_from_avro() -> None:
    d = timeline()
    d.register("fraud", 3, at=T0 + 60)
    d.act("validate", "fraud", 3, at=T0 + 61)
    d.act("canary", "fraud", 3, at=T0 + 62, evidence={"weight": 0.05, "ids": ["a", "ü"]})
    d.register("churn", 1, at=T0 + 63)
    d.act("reject", "churn", 1, at=T0 + 64, evidence={"auc": 0.5, "nan": None})
    d._emit(ev.new_event("command_rejected", "churn", 1, "eve"), at=T0 + 65)
    codec = default_codec()
    from_avro = ModelRegistry.from_events(
        LifecycleEvent.from_avro(
            codec.decode_as("LifecycleEvent", codec.encode("LifecycleEvent", e.to_avro()))
        )
        for e in d.log
    )
    # What audit_log.canonical stores: the canonical bytes, as UTF-8 text.
    stored = [e.canonical_json().decode("utf-8") for e in d.log]
    from_audit = ModelRegistry.from_events(LifecycleEvent.from_canonical(s) for s in stored)
    from_bytes = ModelRegistry.from_events(
        LifecycleEvent.from_canonical(e.canonical_json()) for e in d.log
    )
    times = list(range(T0 - 1, T0 + 67))
    assert view(from_audit, times) == view(from_avro, times) == view(from_bytes, times)
    assert view(from_audit, times) != view(ModelRegistry(), times)
    assert from_audit.aliases_at("fraud", T0 + 62) == {"canary": 3, "champion": 1}
    assert [h.event_type for h in from_audit.history("churn")][-1] == "command_rejected"
