"""Drift rules: which drift events make the policy act, and the command it sends."""

import itertools
import json

import pytest

from driftline.lineage.exceptions import DriftRuleError, PolicyFileError
from driftline.lineage.promotion.drift_rules import (
    DEFAULT_RULES,
    DriftResponder,
    DriftRule,
    DriftSignal,
)
from driftline.lineage.promotion.policy import PromotionPolicy

NOW = 1_800_000_000_000


_ids = itertools.count()


def signal(version=2, arm="champion", stream="error", detector="adwin", at=NOW):
    event_id = f"e{next(_ids)}"
    return DriftSignal(event_id, "fraud", version, arm, detector, "", stream, 0.2, None, at)


def test_champion_error_drift_rolls_back_once():
    responder = DriftResponder(DEFAULT_RULES)
    first = signal()
    [action] = responder.observe(first, NOW)
    assert action.command() == ("rollback", None, {})
    evidence = action.evidence()
    assert evidence["drift_event_ids"] == [first.event_id]
    assert evidence["policy_rule"]["name"] == "champion-errors"
    json.dumps(evidence, allow_nan=False)
    assert responder.observe(signal(), NOW) == []  # fired already for this version


def test_input_drift_on_the_champion_alone_does_nothing_by_default():
    assert DriftResponder(DEFAULT_RULES).observe(signal(stream="input", detector="ks"), NOW) == []


def test_canary_error_drift_pauses_it():
    [action] = DriftResponder(DEFAULT_RULES).observe(signal(arm="canary"), NOW)
    assert action.command() == ("traffic", 2, {"percent": "0"})


def test_world_shift_on_every_arm_is_not_the_canarys_fault():
    responder = DriftResponder(DEFAULT_RULES)
    assert responder.observe(signal(version=1, stream="score", detector="ks"), NOW) == []
    assert responder.observe(signal(arm="canary", stream="score", detector="ks"), NOW) == []
    # ...but its own errors are.
    [action] = responder.observe(signal(arm="canary", stream="error"), NOW)
    assert [t.stream for t in action.triggers] == ["error"]


def test_min_events_within_the_window():
    rule = DriftRule("two", "rollback", arms=("canary",), min_events=2, within_s=60)
    responder = DriftResponder([rule])
    assert responder.observe(signal(arm="canary", at=NOW - 120_000), NOW) == []
    assert responder.observe(signal(arm="canary"), NOW) == []  # the first one is too old
    [action] = responder.observe(signal(arm="canary"), NOW)
    assert action.command() == ("archive", 2, {})
    assert len(action.triggers) == 2


def test_detector_patterns_and_shadow():
    rule = DriftRule("hddm", "rollback", arms=("any",), detectors=("hddm_*",))
    responder = DriftResponder([rule])
    assert responder.observe(signal(detector="adwin"), NOW) == []
    assert responder.observe(signal(arm="shadow", detector="hddm_a"), NOW) == []
    assert len(responder.observe(signal(detector="hddm_a"), NOW)) == 1


def test_pause_never_applies_to_a_champion():
    rule = DriftRule("p", "pause_canary", arms=("any",))
    assert DriftResponder([rule]).observe(signal(arm="champion"), NOW) == []


def test_signal_from_a_drift_event_record():
    record = {
        "event_id": "x1", "model": "m", "version": 3, "arm": "canary", "detector": "ks",
        "feature": "f01", "statistic": 0.3, "p_value": 1e-9, "detected_at": NOW,
        "evidence": json.dumps({"stream": "input"}),
    }  # fmt: skip
    parsed = DriftSignal.from_record(record)
    assert (parsed.stream, parsed.version, parsed.feature) == ("input", 3, "f01")


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        ({"name": "r", "action": "explode"}, "action 'explode'"),
        ({"name": "r", "action": "rollback", "arms": ["boss"]}, "arms ['boss']"),
        ({"name": "r", "action": "rollback", "streams": ["errors"]}, "streams ['errors']"),
        ({"name": "r", "action": "rollback", "min_events": 0}, "min_events 0"),
        ({"name": "r", "action": "rollback", "scope": "galaxy"}, "scope 'galaxy'"),
        ({"name": "r", "action": "rollback", "colour": "red"}, "unknown key(s) ['colour']"),
    ],
)
def test_bad_rules_name_the_value(raw, words):
    with pytest.raises(DriftRuleError, match=None) as excinfo:
        DriftRule.from_mapping(raw)
    assert words in str(excinfo.value)


def test_policy_file_round_trip(tmp_path):
    (tmp_path / "policy.toml").write_text(
        """
[gates]
holdout = "holdout.csv"
latency_budget_ms = 20
thresholds = { auc = 0.7 }

[[drift_rules]]
name = "only-canary"
action = "pause_canary"
arms = ["canary"]
"""
    )
    policy = PromotionPolicy.load(tmp_path / "policy.toml")
    assert policy.holdout == tmp_path / "holdout.csv"
    assert policy.gates.latency_budget_ms == 20
    assert policy.gates.thresholds == {"auc": 0.7}
    assert policy.gates.max_regression == {"auc": 0.02}  # default kept
    assert [r.name for r in policy.drift_rules] == ["only-canary"]
    assert PromotionPolicy.load(tmp_path / "missing.toml").source == "built-in defaults"


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("[gatez]\n", "unknown section(s) ['gatez']"),
        ("[gates]\nlatency_budget_ms = -1\n", "latency_budget_ms"),
        ("[[drift_rules]]\nname='a'\naction='rollback'\n[[drift_rules]]\nname='a'\naction='rollback'\n",
         "repeat"),
        ("not toml [", "cannot read policy file"),
    ],
)  # fmt: skip
def test_bad_policy_files_say_what_is_wrong(tmp_path, text, words):
    path = tmp_path / "policy.toml"
    path.write_text(text)
    with pytest.raises(PolicyFileError) as excinfo:
        PromotionPolicy.load(path)
    assert words in str(excinfo.value)


def test_a_rule_can_act_on_training_serving_skew_and_the_defaults_do_not():
    """The skew check's DriftEvents (detector training_serving_skew, stream input) reach the
    rules like any other: none of the defaults acts on them, a rule naming the detector does."""
    import numpy as np

    from driftline.features.skew import DETECTOR, FeatureSkew, SkewLimits
    from driftline.streams.stages.skew_check import ServedRows, SkewChecker
    from driftline.streams.stats import WorkerStats

    checker = SkewChecker(client=None, database="driftline", store=None, limits=SkewLimits(),
                          rows=100, stats=WorkerStats())  # fmt: skip
    served = ServedRows("fraud", 2, "canary", "scoring@abc", ["f03"], ["c1"],
                        np.zeros(1, np.int64), np.zeros((1, 1), np.float32))  # fmt: skip
    feature = FeatureSkew("f03", compared=40, skewed=20, rate=0.5, mean_abs_diff=75.0,
                          max_abs_diff=99.0, served_mean=80.0, offline_mean=0.8,
                          no_offline_value=0)  # fmt: skip
    record = checker._event(served, "scoring@abc", feature)
    skew = DriftSignal.from_record(record)
    assert (skew.detector, skew.stream, skew.version, skew.arm) == (DETECTOR, "input", 2, "canary")
    now = record["detected_at"]
    assert DriftResponder(DEFAULT_RULES).observe(skew, now) == []
    rule = DriftRule("skewed-canary", "pause_canary", arms=("canary",), detectors=(DETECTOR,))
    [action] = DriftResponder([rule]).observe(skew, now)
    assert action.command() == ("traffic", 2, {"percent": "0"})
    assert action.evidence()["drift_event_ids"] == [record["event_id"]]
