"""The lifecycle state machine: every legal and illegal move, aliases and rollback."""

import json

import pytest

from driftline.lineage import events as ev
from driftline.lineage.events import LifecycleEvent
from driftline.lineage.exceptions import IllegalTransition, UnknownModel, UnknownVersion
from driftline.lineage.registry.lifecycle import ACTIONS, TRANSITIONS, State
from driftline.lineage.registry.model_registry import ModelRegistry

DESCRIPTION = {"input_name": "features", "input_shape": json.dumps([None, 4])}

# Written out by hand, not derived from TRANSITIONS, so a change to the table fails here.
LEGAL = {
    "registered": {"validate", "reject", "promote"},
    "validated": {"shadow", "challenger", "canary", "promote"},
    "shadow": {"challenger", "canary", "promote", "archive"},
    "rejected": set(),
    "challenger": {"canary", "promote", "archive"},
    "canary": {"promote", "archive"},
    "champion": {"archive"},
    "archived": set(),
}
ALLOWED_TEXT = {
    "registered": "validate, reject, promote",
    "validated": "shadow, challenger, canary, promote",
    "shadow": "challenger, canary, promote, archive",
    "rejected": "none",
    "challenger": "canary, promote, archive",
    "canary": "promote, archive",
    "champion": "archive",
    "archived": "none (a rollback of the model can return its previous champion)",
}
TARGET = {
    "validate": "validated",
    "reject": "rejected",
    "shadow": "shadow",
    "challenger": "challenger",
    "canary": "canary",
    "promote": "champion",
    "archive": "archived",
}
EVENT_TYPE = {
    "validate": "validated",
    "reject": "rejected",
    "shadow": "shadow_started",
    "challenger": "challenger_assigned",
    "canary": "canary_started",
    "promote": "promoted",
    "archive": "archived",
}
# Commands that bring a fresh version (v1, or v2 where another version is involved) to a state.
PATHS = {
    "registered": [],
    "validated": [("validate", 1)],
    "rejected": [("reject", 1)],
    "shadow": [("validate", 1), ("shadow", 1)],
    "challenger": [("validate", 1), ("challenger", 1)],
    "canary": [("validate", 1), ("canary", 1)],
    "champion": [("validate", 1), ("promote", 1)],
    "archived": [("validate", 1), ("promote", 1), ("validate", 2), ("promote", 2)],
}


def digest(n: int) -> str:
    return f"{n:064x}"


def register(registry: ModelRegistry, name: str, n: int) -> LifecycleEvent:
    planned = registry.plan_register(name, DESCRIPTION, digest(n), f"{n}.onnx", "alice")
    assert isinstance(planned, LifecycleEvent)
    assert registry.apply(planned)
    return planned


def do(registry: ModelRegistry, action: str, version: int | None, **kw) -> LifecycleEvent:
    event = registry.plan(action, "fraud", version, "bob", **kw)
    assert registry.apply(event), (action, version)
    return event


def fraud(n_versions: int) -> ModelRegistry:
    registry = ModelRegistry()
    for n in range(1, n_versions + 1):
        register(registry, "fraud", n)
    return registry


def state_of(registry: ModelRegistry) -> dict[int, str]:
    return {v.version: v.state for v in registry.versions("fraud")}


def test_the_table_is_the_documented_one() -> None:
    assert set(TRANSITIONS) == set(State) == set(LEGAL)
    for state, targets in TRANSITIONS.items():
        assert {t for t in targets} == {TARGET[a] for a in LEGAL[state]}, state
    assert ACTIONS == (
        "validate",
        "reject",
        "shadow",
        "challenger",
        "canary",
        "traffic",
        "promote",
        "archive",
        "rollback",
        "raise_alarm",
        "clear_alarm",
    )


@pytest.mark.parametrize("state", list(PATHS))
@pytest.mark.parametrize("action", list(TARGET))
def test_every_move_from_every_state(state: str, action: str) -> None:
    registry = fraud(2)
    for step, n in PATHS[state]:
        do(registry, step, n)
    assert registry.get("fraud", 1).state == state
    if action in LEGAL[state]:
        event = registry.plan(action, "fraud", 1, "bob", evidence={"note": "ok"})
        assert event.type == EVENT_TYPE[action]
        assert (event.model, event.version, event.actor) == ("fraud", 1, "bob")
        assert (event.previous_state, event.state) == (state, TARGET[action])
        assert event.evidence == {"note": "ok"}
        assert registry.apply(event) is True
        assert registry.get("fraud", 1).state == TARGET[action]
    else:
        with pytest.raises(IllegalTransition) as err:
            registry.plan(action, "fraud", 1, "bob")
        already = "already " if TARGET[action] == state else ""
        assert str(err.value) == (
            f"cannot {action} fraud v1: fraud v1 is {already}{state}; "
            f"allowed moves from {state}: {ALLOWED_TEXT[state]}"
        )
        assert registry.get("fraud", 1).state == state


def test_rejected_message_matches_the_brief() -> None:
    registry = fraud(3)
    do(registry, "reject", 3, evidence={"auc": 0.51})
    with pytest.raises(IllegalTransition, match="fraud v3 is rejected; allowed moves from "):
        registry.plan("validate", "fraud", 3, "bob")
    with pytest.raises(IllegalTransition, match="allowed moves from rejected: none$"):
        registry.plan("promote", "fraud", 3, "bob")


def test_plan_refuses_unknown_things_with_clear_messages() -> None:
    registry = fraud(2)
    with pytest.raises(UnknownModel, match="'churn'.*known models: fraud"):
        registry.plan("validate", "churn", 1, "bob")
    with pytest.raises(UnknownVersion, match="no version 7; known versions: 1, 2"):
        registry.plan("validate", "fraud", 7, "bob")
    with pytest.raises(IllegalTransition, match="unknown lifecycle action 'promte'.*validate, "):
        registry.plan("promte", "fraud", 1, "bob")
    with pytest.raises(IllegalTransition, match="cannot promote fraud: no version given"):
        registry.plan("promote", "fraud", None, "bob")
    with pytest.raises(UnknownModel):
        registry.plan("rollback", "churn", None, "bob")


def test_unvalidated_promotion_is_allowed_and_visible() -> None:
    registry = fraud(1)
    event = do(registry, "promote", 1)
    assert event.previous_state == "registered"
    entry = registry.history("fraud")[-1]
    assert (entry.from_state, entry.to_state) == ("registered", "champion")


# -- aliases -----------------------------------------------------------------------


def test_promoting_archives_the_old_champion_and_clears_the_promoted_alias() -> None:
    registry = fraud(3)
    for n in (1, 2, 3):
        do(registry, "validate", n)
    do(registry, "promote", 1)
    assert registry.aliases("fraud") == {"champion": 1}
    assign = do(registry, "challenger", 2)
    assert assign.attributes == {"traffic_bp": "1000", "experiment_id": "fraud-v2-challenger"}
    do(registry, "canary", 3)
    assert registry.aliases("fraud") == {"canary": 3, "challenger": 2, "champion": 1}
    promote = do(registry, "promote", 2, evidence={"p_value": 0.004})
    assert promote.attributes == {"previous_champion": "1"}
    assert promote.previous_state == "challenger"
    assert registry.aliases("fraud") == {"canary": 3, "champion": 2}
    assert state_of(registry) == {1: "archived", 2: "champion", 3: "canary"}
    assert registry.champion("fraud").version == 2
    assert registry.by_alias("fraud", "challenger") is None
    assert registry.by_alias("fraud", "canary").version == 3
    entry = registry.history("fraud")[-1]
    assert entry.also_moved == ((1, "champion", "archived"),)
    assert entry.evidence == {"p_value": 0.004}


def test_a_new_canary_archives_the_old_one_but_challengers_share() -> None:
    registry = fraud(4)
    for n in (1, 2, 3, 4):
        do(registry, "validate", n)
    do(registry, "challenger", 1)
    second = do(registry, "challenger", 2)
    assert "previous_challenger" not in second.attributes
    assert second.attributes["experiment_id"] == "fraud-v1-challenger"  # joins the experiment
    assert state_of(registry)[1] == "challenger"  # A/B/n: both challengers serve
    do(registry, "canary", 3)
    third = do(registry, "canary", 4)
    assert third.attributes["previous_canary"] == "3"
    assert state_of(registry) == {1: "challenger", 2: "challenger", 3: "archived", 4: "canary"}
    assert registry.aliases("fraud") == {"canary": 4, "challenger": 2}
    do(registry, "archive", 2)
    assert registry.aliases("fraud") == {"canary": 4, "challenger": 1}


def test_challenger_to_canary_moves_the_alias_and_archive_clears_it() -> None:
    registry = fraud(2)
    do(registry, "validate", 1)
    do(registry, "challenger", 1)
    do(registry, "canary", 1)
    assert registry.aliases("fraud") == {"canary": 1}
    do(registry, "archive", 1)
    assert registry.aliases("fraud") == {}
    assert registry.champion("fraud") is None


def test_archiving_the_champion_leaves_no_champion() -> None:
    registry = fraud(1)
    do(registry, "promote", 1)
    do(registry, "archive", 1, evidence={"reason": "retired"})
    assert registry.champion("fraud") is None and registry.aliases("fraud") == {}
    with pytest.raises(IllegalTransition, match="fraud has no champion to roll back"):
        registry.plan("rollback", "fraud", None, "bob")


# -- rollback ----------------------------------------------------------------------


def test_rollback_walks_back_through_the_champions_it_replaced() -> None:
    registry = fraud(3)
    for n in (1, 2, 3):
        do(registry, "promote", n)
    assert state_of(registry) == {1: "archived", 2: "archived", 3: "champion"}
    back = do(registry, "rollback", None, evidence={"reason": "psi 0.41 on f3"})
    assert (back.type, back.version, back.previous_state, back.state) == (
        "rolled_back",
        3,
        "champion",
        "archived",
    )
    assert back.attributes == {"restored_champion": "2"}
    assert back.evidence == {"reason": "psi 0.41 on f3"}
    assert state_of(registry) == {1: "archived", 2: "champion", 3: "archived"}
    entry = registry.history("fraud")[-1]
    assert (entry.version, entry.from_state, entry.to_state) == (3, "champion", "archived")
    assert entry.also_moved == ((2, "archived", "champion"),)
    assert entry.aliases == {"champion": 2}
    again = do(registry, "rollback", 2)  # naming the champion is fine
    assert again.evidence == {"reason": "manual rollback"}
    assert registry.champion("fraud").version == 1
    with pytest.raises(IllegalTransition) as err:
        registry.plan("rollback", "fraud", None, "bob")
    assert str(err.value) == (
        "cannot rollback fraud: champion v1 replaced no earlier champion, so there is "
        "nothing to return to; promote another version instead"
    )


def test_rollback_after_a_new_promotion_returns_the_restored_champion() -> None:
    registry = fraud(3)
    do(registry, "promote", 1)
    do(registry, "promote", 2)
    do(registry, "rollback", None)  # 1 champion again
    do(registry, "promote", 3)  # replaces 1
    do(registry, "rollback", None)
    assert state_of(registry) == {1: "champion", 2: "archived", 3: "archived"}


def test_rollback_refusals() -> None:
    registry = fraud(2)
    with pytest.raises(IllegalTransition, match="no champion to roll back"):
        registry.plan("rollback", "fraud", None, "bob")
    do(registry, "promote", 1)
    with pytest.raises(IllegalTransition, match="champion v1 replaced no earlier champion"):
        registry.plan("rollback", "fraud", None, "bob")
    do(registry, "promote", 2)
    with pytest.raises(IllegalTransition, match="fraud v1 is archived, not the champion"):
        registry.plan("rollback", "fraud", 1, "bob")
    with pytest.raises(UnknownVersion):
        registry.plan("rollback", "fraud", 5, "bob")


def test_projection_skips_rollbacks_that_do_not_fit() -> None:
    registry = fraud(2)
    lonely = ev.new_event("rolled_back", "fraud", None, "bob")
    assert registry.apply(lonely) is False
    assert "has no champion" in registry.skipped[-1][1]
    do(registry, "promote", 1)
    do(registry, "promote", 2)
    stale = ev.new_event("rolled_back", "fraud", 1, "bob")
    assert registry.apply(stale) is False
    assert registry.skipped[-1] == (stale.event_id, "rolled_back names v1 but the champion is v2")
    # Without the attribute the projection finds the replaced champion itself.
    bare = ev.new_event("rolled_back", "fraud", None, "bob")
    assert registry.apply(bare) is True
    assert registry.champion("fraud").version == 1


def test_log_outranks_the_rule_book() -> None:
    registry = fraud(1)
    do(registry, "reject", 1)
    # A promotion planned by someone else, from a state this projection forbids.
    forced = ev.promoted("fraud", 1, "mallory", previous_state="validated", previous_champion=None)
    assert registry.apply(forced) is True
    assert registry.champion("fraud").version == 1
    entry = registry.history("fraud")[-1]
    assert (entry.from_state, entry.to_state, entry.actor) == ("rejected", "champion", "mallory")
    # A repeat of a move already made changes nothing and says so.
    repeat = ev.promoted("fraud", 1, "bob", previous_state="champion", previous_champion=None)
    assert registry.apply(repeat) is False
    assert registry.skipped[-1] == (repeat.event_id, "fraud v1 is already champion")
