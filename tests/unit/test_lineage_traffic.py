"""Traffic splits as a projection of lifecycle events: shares, experiments, shadows."""

import json

import pytest

from driftline.lineage.exceptions import IllegalTransition
from driftline.lineage.registry.model_registry import ModelRegistry
from driftline.lineage.registry.traffic import ServedArm, percent_to_bp

DESCRIPTION = {"input_name": "features", "input_shape": json.dumps([None, 4])}


def fraud(n_versions: int) -> ModelRegistry:
    registry = ModelRegistry()
    for n in range(1, n_versions + 1):
        planned = registry.plan_register("fraud", DESCRIPTION, f"{n:064x}", f"{n}.onnx", "alice")
        registry.apply(planned)
        registry.apply(registry.plan("validate", "fraud", n, "alice"))
    return registry


def do(registry: ModelRegistry, action: str, version: int, **arguments: str):
    event = registry.plan(action, "fraud", version, "bob", arguments=arguments)
    assert registry.apply(event), (action, version)
    return event


def test_champion_alone_serves_everything_with_no_experiment() -> None:
    registry = fraud(1)
    do(registry, "promote", 1)
    split = registry.traffic("fraud")
    assert split.served == (ServedArm("champion", 1, 10_000),)
    assert split.experiment_id is None and split.shadows == ()


def test_abn_canary_and_shadow_shares_add_up() -> None:
    registry = fraud(5)
    do(registry, "promote", 1)
    do(registry, "challenger", 2, percent="20", experiment="exp-42")
    do(registry, "challenger", 3, percent="12.5")
    do(registry, "canary", 4, percent="5")
    do(registry, "shadow", 5)
    split = registry.traffic("fraud")
    assert split.served == (
        ServedArm("canary", 4, 500),
        ServedArm("challenger", 2, 2000),
        ServedArm("challenger", 3, 1250),
        ServedArm("champion", 1, 6250),
    )
    assert split.experiment_id == "exp-42"  # later arms join the running experiment
    assert split.shadows == (5,)


def test_traffic_moves_a_share_without_moving_the_version() -> None:
    registry = fraud(2)
    do(registry, "promote", 1)
    do(registry, "canary", 2)
    assert registry.traffic("fraud").share(2) == 100  # default canary: 1%
    step = do(registry, "traffic", 2, percent="25")
    assert (step.type, step.previous_state, step.state) == ("traffic_changed", "canary", "canary")
    assert step.attributes["previous_traffic_bp"] == "100"
    assert registry.traffic("fraud").share(2) == 2500
    assert registry.traffic("fraud").share(1) == 7500
    assert registry.history("fraud")[-1].event_type == "traffic_changed"


def test_experiment_ends_when_the_last_arm_leaves() -> None:
    registry = fraud(3)
    do(registry, "promote", 1)
    do(registry, "challenger", 2, experiment="first")
    do(registry, "archive", 2)
    assert registry.traffic("fraud").experiment_id is None
    do(registry, "challenger", 3)
    assert registry.traffic("fraud").experiment_id == "fraud-v3-challenger"


def test_rebuilding_from_events_gives_the_same_split() -> None:
    registry = fraud(3)
    log: list = []
    original = registry.apply
    registry.apply = lambda event: log.append(event) or original(event)  # record what lands
    do(registry, "promote", 1)
    do(registry, "challenger", 2, percent="30")
    do(registry, "canary", 3, percent="2")
    do(registry, "traffic", 3, percent="10")
    rebuilt = fraud(3)
    for event in log:
        rebuilt.apply(event)
    assert rebuilt.traffic("fraud") == registry.traffic("fraud")
    assert rebuilt.traffic("fraud").share(3) == 1000


@pytest.mark.parametrize(
    ("value", "fragment"),
    [("abc", "'abc'"), ("101", "'101'"), ("-1", "'-1'"), ("nan", "'nan'"), ("0.001", "0.01%")],
)
def test_bad_percent_names_the_value(value: str, fragment: str) -> None:
    with pytest.raises(IllegalTransition, match="percent") as err:
        percent_to_bp(value, what="cannot canary fraud v2")
    assert fragment in str(err.value)


def test_shares_over_100_percent_are_refused_with_what_to_do() -> None:
    registry = fraud(3)
    do(registry, "promote", 1)
    do(registry, "challenger", 2, percent="60")
    with pytest.raises(IllegalTransition, match=r"50% on top of the 60%.*lower --percent"):
        registry.plan("canary", "fraud", 3, "bob", arguments={"percent": "50"})


def test_only_challengers_and_canaries_take_traffic_changes() -> None:
    registry = fraud(2)
    do(registry, "promote", 1)
    with pytest.raises(IllegalTransition, match="only a challenger's or canary's share"):
        registry.plan("traffic", "fraud", 1, "bob", arguments={"percent": "5"})
    do(registry, "challenger", 2)
    with pytest.raises(IllegalTransition, match="traffic needs --percent"):
        registry.plan("traffic", "fraud", 2, "bob", arguments={})


def test_a_traffic_event_for_a_version_that_left_is_skipped_not_applied() -> None:
    registry = fraud(2)
    do(registry, "promote", 1)
    do(registry, "challenger", 2)
    stale = registry.plan("traffic", "fraud", 2, "bob", arguments={"percent": "40"})
    do(registry, "archive", 2)
    assert registry.apply(stale) is False
    assert registry.traffic("fraud").served == (ServedArm("champion", 1, 10_000),)
