"""An A/B experiment decided by the always-valid sequential test, on live traffic."""

from __future__ import annotations

from tests.integration.test_canary import deploy_candidate, policy_events, serve_with_outcomes

POLICY = """
[experiment]
metric = "error_rate"
alpha = 0.05
min_effect = 0.05
min_samples_per_arm = 100
mode = "{mode}"
"""


def start(stack_env, start_worker, tmp_path, mode: str):
    policy = POLICY.format(mode=mode)
    return deploy_candidate(stack_env, start_worker, tmp_path, policy, "challenger", "50")


def test_a_better_challenger_is_promoted_with_its_evidence(stack_env, start_worker, tmp_path):
    settings, worker, commands, v2 = start(stack_env, start_worker, tmp_path, "auto")

    def promoted() -> bool:
        return commands.registry().get("demo", v2).state == "champion"

    # The champion is wrong 30% of the time, the challenger 5%.
    assert serve_with_outcomes(
        settings, stack_env, worker, promoted, canary_wrong=0.05, arm_wrong={"champion": 0.3}
    ), f"not promoted; policy: {worker.get('/driftline/policy/')}"
    [event] = policy_events(commands, v2)
    assert event.event_type == "promoted"
    test = event.evidence["test"]
    assert test["outcome"] == "efficacy" and test["p_value"] <= 0.05
    assert test["n_control"] >= 100 and test["n_treatment"] >= 100
    assert event.evidence["winner_version"] == v2


def test_manual_mode_only_recommends(stack_env, start_worker, tmp_path):
    settings, worker, commands, v2 = start(stack_env, start_worker, tmp_path, "manual")

    def recommended() -> bool:
        decision = worker.get("/driftline/policy/")["decisions"].get("demo", {}).get(f"v{v2}")
        return bool(decision) and decision.get("action") == "promote"

    assert serve_with_outcomes(
        settings, stack_env, worker, recommended, canary_wrong=0.05, arm_wrong={"champion": 0.3}
    )
    decision = worker.get("/driftline/policy/")["decisions"]["demo"][f"v{v2}"]
    assert decision["actionable"] is False
    assert policy_events(commands, v2) == []  # nothing published; an approver decides
    assert commands.registry().get("demo", v2).state == "challenger"
