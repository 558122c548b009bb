"""Canary rollout decisions: wait, advance step by step, promote, or roll back on a guardrail."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from driftline.lineage.exceptions import CanaryConfigError
from driftline.lineage.promotion.canary import ArmStats, CanaryConfig, CanaryDecision, decide_canary
from driftline.lineage.promotion.sequential import SequentialConfig, SequentialTest

T0 = 1_800_000_000_000
CFG = CanaryConfig()


def arm(
    arm="canary",
    *,
    version=3,
    n=2_000,
    p99=80.0,
    score=0.40,
    n_outcomes=1_000,
    errors=50,
) -> ArmStats:
    return ArmStats(version, arm, n, p99, score, 0.04, n_outcomes, errors)


def champion(n=50_000, n_outcomes=20_000, errors=1_000, **kw) -> ArmStats:
    return arm("champion", version=2, n=n, n_outcomes=n_outcomes, errors=errors, **kw)


def decide(
    canary: ArmStats,
    champ: ArmStats | None = None,
    *,
    config: CanaryConfig = CFG,
    percent=5.0,
    baked_s=120.0,
    step_samples=1_000,
    test: SequentialTest | None = None,
) -> CanaryDecision:
    return decide_canary(
        config,
        percent_now=percent,
        step_started_ms=T0,
        now_ms=T0 + int(baked_s * 1000),
        step_samples=step_samples,
        canary=canary,
        champion=champ or champion(),
        test=test or SequentialTest(config.sequential_config()),
    )


def statuses(decision: CanaryDecision) -> dict[str, str]:
    return {g.name: g.status for g in decision.guardrails}


# ---- waiting ---------------------------------------------------------------------------------


def test_waits_for_the_bake_time():
    d = decide(arm(), baked_s=23.0)
    assert d.action == "wait" and d.next_percent is None
    assert any("baking 23 s of 60 s (37 s left)" in r for r in d.reasons)
    assert set(statuses(d).values()) == {"pass"}  # healthy: only time is missing


def test_waits_for_samples_at_this_step():
    d = decide(arm(), step_samples=120)
    assert d.action == "wait"
    assert d.reasons == ("canary samples 120 < 500 at this step",)


def test_waits_while_guardrails_are_pending():
    d = decide(arm(n_outcomes=40, errors=2))  # baked, enough samples, too few outcomes
    assert d.action == "wait"
    assert statuses(d)["error_rate"] == "pending"
    assert statuses(d)["sequential_error_test"] == "pending"
    assert d.test is None  # the test is not even updated before min_outcomes
    assert any("error_rate pending: canary outcomes 40 < 100" in r for r in d.reasons)


def test_pending_while_the_champion_has_no_outcomes():
    d = decide(arm(), champion(n_outcomes=0, errors=0))
    assert d.action == "wait"
    assert statuses(d)["error_rate"] == "pending" and d.test is None


def test_pending_while_the_test_has_not_started_on_the_champion_side():
    # The champion has a few outcomes (> 0) but fewer than the test's minimum per arm.
    d = decide(arm(), champion(n_outcomes=30, errors=1))
    assert d.action == "wait"
    assert statuses(d)["sequential_error_test"] == "pending"
    assert d.test is not None and d.test["checks"] == 0


def test_latency_and_score_shift_are_pending_without_canary_traffic():
    empty = ArmStats(3, "canary", 0, math.nan, math.nan, math.nan, 0, 0)
    d = decide(empty, step_samples=0, baked_s=0)
    assert d.action == "wait"
    assert set(statuses(d).values()) == {"pending"}
    json.dumps(d.evidence(), allow_nan=False)  # NaN latency/scores become null


# ---- advancing -------------------------------------------------------------------------------


def test_advances_through_every_step_then_promotes():
    rng = np.random.default_rng(7)
    test = SequentialTest(CFG.sequential_config())
    percent, seen, canary_outcomes, canary_errors = 0.0, [], 0, 0
    champ_outcomes, champ_errors = 0, 0
    for _ in range(10):
        canary_outcomes += 400
        canary_errors += int(rng.binomial(400, 0.05))
        champ_outcomes += 8_000
        champ_errors += int(rng.binomial(8_000, 0.05))
        canary = arm(n=canary_outcomes * 2, n_outcomes=canary_outcomes, errors=canary_errors)
        champ = champion(n=champ_outcomes * 2, n_outcomes=champ_outcomes, errors=champ_errors)
        d = decide(canary, champ, percent=percent, test=test)
        assert d.action in ("advance", "promote"), d.reasons
        seen.append(d.action if d.action == "promote" else d.next_percent)
        if d.action == "promote":
            break
        percent = d.next_percent
    assert seen == [1.0, 5.0, 25.0, 50.0, "promote"]
    assert d.next_percent is None and d.percent_now == 50.0
    assert any(r.startswith("baked 120 s >= 60 s") for r in d.reasons)
    assert "canary samples 1000 >= 500" in d.reasons


def test_advance_reasons_and_evidence():
    d = decide(arm(), percent=25.0)
    assert (d.action, d.percent_now, d.next_percent) == ("advance", 25.0, 50.0)
    assert d.reasons[-1] == "advance 25% -> 50%"
    ev = d.evidence()
    text = json.dumps(ev, allow_nan=False)
    assert json.loads(text) == ev
    assert ev["action"] == "advance" and ev["next_percent"] == 50.0
    assert [g["name"] for g in ev["guardrails"]] == [
        "error_rate",
        "latency_p99_ms",
        "score_shift",
        "sequential_error_test",
    ]
    assert ev["test"]["test"] == "msprt" and ev["test"]["n_treatment"] == 1_000
    assert ev["canary"]["version"] == 3 and ev["champion"]["error_rate"] == 0.05
    assert ev["config"]["steps"] == [1.0, 5.0, 25.0, 50.0, 100.0]


def test_a_last_step_below_100_promotes():
    cfg = CanaryConfig(steps=(10, 50))
    assert decide(arm(), config=cfg, percent=10.0).next_percent == 50.0
    assert decide(arm(), config=cfg, percent=50.0).action == "promote"


# ---- rolling back ----------------------------------------------------------------------------


def test_rollback_on_error_rate():
    # 9/100 vs 5%: over the 2-point allowance, but far too few outcomes for the test to reject.
    d = decide(arm(n_outcomes=100, errors=9))
    assert d.action == "rollback" and d.next_percent is None
    assert [g.name for g in d.breaches] == ["error_rate"]
    assert d.reasons == ("error_rate breach: 0.090 > 0.050 + 0.02",)
    g = d.guardrail("error_rate")
    assert g.value == pytest.approx(0.09) and g.limit == pytest.approx(0.07)


def test_rollback_on_latency():
    d = decide(arm(p99=310.0))
    assert [g.name for g in d.breaches] == ["latency_p99_ms"]
    assert d.reasons == ("latency_p99_ms breach: 310.0 ms > 250 ms",)


def test_rollback_on_score_shift():
    d = decide(arm(score=0.62), champion(score=0.41))
    assert [g.name for g in d.breaches] == ["score_shift"]
    assert d.reasons == ("score_shift breach: |0.620 - 0.410| = 0.210 > 0.15",)


def test_rollback_beats_baking_and_samples():
    d = decide(arm(p99=900.0), baked_s=1.0, step_samples=3)
    assert d.action == "rollback"


def test_every_breach_is_named():
    d = decide(arm(p99=400.0, score=0.9, n_outcomes=100, errors=30))
    assert {g.name for g in d.breaches} >= {"error_rate", "latency_p99_ms", "score_shift"}
    assert len(d.reasons) == len(d.breaches)


def test_sequential_test_rolls_back_a_significantly_worse_canary():
    # 6.5% vs 5%: inside the 2-point allowance, but with this many outcomes clearly worse.
    rng = np.random.default_rng(11)
    canary = arm(n=20_000, n_outcomes=10_000, errors=int(rng.binomial(10_000, 0.065)))
    champ = champion(n_outcomes=50_000, errors=int(rng.binomial(50_000, 0.05)))
    d = decide(canary, champ)
    assert statuses(d)["error_rate"] == "pass"
    assert [g.name for g in d.breaches] == ["sequential_error_test"]
    assert d.action == "rollback"
    assert d.test["outcome"] == "efficacy" and d.test["winner"] == "control"
    assert d.test["p_value"] <= 0.05 and d.test["ci_low"] > 0
    assert "significantly higher" in d.reasons[0]
    json.dumps(d.evidence(), allow_nan=False)


def test_equal_canary_never_breaches_over_repeated_checks():
    rng = np.random.default_rng(5)
    test = SequentialTest(CFG.sequential_config())
    c_n = c_err = h_n = h_err = 0
    for _ in range(40):
        c_n, c_err = c_n + 250, c_err + int(rng.binomial(250, 0.05))
        h_n, h_err = h_n + 5_000, h_err + int(rng.binomial(5_000, 0.05))
        canary, champ = arm(n_outcomes=c_n, errors=c_err), champion(n_outcomes=h_n, errors=h_err)
        d = decide(canary, champ, test=test)
        assert d.action != "rollback", d.reasons
        assert statuses(d)["sequential_error_test"] == "pass"
    assert d.test["checks"] == 40


def test_a_wrongly_built_test_is_refused():
    wrong = SequentialTest(SequentialConfig(metric="binary", min_effect=0.02))  # higher is better
    with pytest.raises(CanaryConfigError, match="higher_is_better=False"):
        decide(arm(), test=wrong)


def test_bad_inputs_name_the_value():
    with pytest.raises(CanaryConfigError, match="percent_now=150"):
        decide(arm(), percent=150)
    with pytest.raises(CanaryConfigError, match="errors=11 exceeds n_outcomes=10"):
        arm(n_outcomes=10, errors=11)
    with pytest.raises(CanaryConfigError, match="arm='winner'"):
        arm("winner")
    with pytest.raises(CanaryConfigError, match="n=-1"):
        arm(n=-1)


# ---- ArmStats --------------------------------------------------------------------------------


def test_arm_stats_summaries_and_dict():
    a = ArmStats(4, "challenger", 10, 12.0, 0.5, 0.01, 4, 1, outcome_sum=10.0, outcome_sum_sq=30.0)
    assert a.error_rate == 0.25
    assert (a.error_summary().n, a.error_summary().mean) == (4, 0.25)
    s = a.outcome_summary()
    assert (s.n, s.mean) == (4, 2.5) and s.variance == pytest.approx((30 - 100 / 4) / 3)
    none = ArmStats(4, "canary", 0, None, None, None, 0, 0)  # NULL aggregates from SQL
    assert math.isnan(none.error_rate) and math.isnan(none.latency_p99_ms)
    assert none.as_dict()["error_rate"] is None and none.as_dict()["latency_p99_ms"] is None


# ---- config ----------------------------------------------------------------------------------


def test_next_percent():
    assert [CFG.next_percent(p) for p in (0, 1, 3, 5, 50, 99.9, 100)] == [
        1.0,
        5.0,
        5.0,
        25.0,
        100.0,
        100.0,
        None,
    ]
    assert CanaryConfig(steps=(10, 50)).next_percent(50) is None


def test_config_from_mapping_round_trip():
    cfg = CanaryConfig.from_mapping({"steps": [2, 10, 100], "bake_s": 30, "min_outcomes": 50})
    assert cfg.steps == (2.0, 10.0, 100.0)
    assert CanaryConfig.from_mapping(cfg.as_dict()) == cfg
    assert json.loads(json.dumps(cfg.as_dict())) == cfg.as_dict()
    assert CanaryConfig.from_mapping(None) == CanaryConfig()
    seq = cfg.sequential_config()
    assert (seq.metric, seq.higher_is_better, seq.min_samples_per_arm) == ("binary", False, 50)


@pytest.mark.parametrize(
    ("values", "match"),
    [
        ({"steps": [1, 5, 5, 100]}, "strictly increasing: 5 follows 5"),
        ({"steps": [10, 5]}, "strictly increasing: 5 follows 10"),
        ({"steps": [1, 150]}, "steps: 150 is out of range"),
        ({"steps": [0, 50]}, "steps: 0 is out of range"),
        ({"steps": []}, "steps=\\(\\) must be a non-empty"),
        ({"bake_s": -1}, "bake_s=-1 is out of range"),
        ({"min_samples": -5}, "min_samples=-5"),
        ({"min_outcomes": 1}, "min_outcomes=1"),
        ({"max_error_rate_increase": -0.01}, "max_error_rate_increase=-0.01"),
        ({"max_latency_p99_ms": 0}, "max_latency_p99_ms=0"),
        ({"max_score_shift": -0.1}, "max_score_shift=-0.1"),
        ({"alpha": 1.5}, "alpha=1.5"),
        ({"min_effect": 0}, "min_effect=0"),
        ({"stepz": [1, 100]}, "unknown key\\(s\\) \\['stepz'\\]"),
    ],
)
def test_config_errors_name_the_bad_value(values, match):
    with pytest.raises(CanaryConfigError, match=match):
        CanaryConfig.from_mapping(values)


def test_config_error_is_a_value_error():
    with pytest.raises(ValueError):
        CanaryConfig(steps=(50, 25))
