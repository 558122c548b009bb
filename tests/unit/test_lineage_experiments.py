"""Champion vs challenger experiments: promote, keep the champion, or keep collecting."""

from __future__ import annotations

import json

import numpy as np
import pytest

from driftline.lineage.exceptions import ExperimentConfigError
from driftline.lineage.promotion.canary import ArmStats
from driftline.lineage.promotion.experiments import (
    ExperimentConfig,
    ExperimentDecision,
    decide_experiment,
)
from driftline.lineage.promotion.sequential import SequentialConfig, SequentialTest


def binary_arm(arm: str, version: int, n: int, errors: int) -> ArmStats:
    return ArmStats(version, arm, n, 20.0, 0.4, 0.05, n, errors)


def continuous_arm(arm: str, version: int, values: np.ndarray) -> ArmStats:
    n = len(values)
    total, total_sq = float(values.sum()), float((values**2).sum())
    return ArmStats(version, arm, n, 20.0, 0.4, 0.05, n, 0, total, total_sq)


def decide(config: ExperimentConfig, champ: ArmStats, chall: ArmStats) -> ExperimentDecision:
    test = SequentialTest(config.sequential_config())
    return decide_experiment(config, champion=champ, challenger=chall, test=test)


def test_clearly_better_challenger_is_promoted_automatically():
    cfg = ExperimentConfig()
    d = decide(cfg, binary_arm("champion", 1, 5_000, 500), binary_arm("challenger", 2, 5_000, 300))
    assert (d.outcome, d.winner_version, d.actionable) == ("promote", 2, True)
    assert d.test["winner"] == "treatment" and d.test["p_value"] <= 0.05
    ev = d.evidence()
    assert json.loads(json.dumps(ev, allow_nan=False)) == ev
    assert ev["reason"].startswith("challenger significantly better")
    assert "\n" not in ev["reason"]
    assert ev["challenger"]["error_rate"] == 0.06 and ev["config"]["mode"] == "auto"


def test_manual_mode_only_recommends():
    cfg = ExperimentConfig(mode="manual")
    d = decide(cfg, binary_arm("champion", 1, 5_000, 500), binary_arm("challenger", 2, 5_000, 300))
    assert (d.outcome, d.winner_version, d.actionable) == ("promote", 2, False)
    assert d.reason.startswith("recommendation (manual mode)")
    assert d.evidence()["actionable"] is False


def test_clearly_worse_challenger_keeps_the_champion():
    cfg = ExperimentConfig()
    d = decide(cfg, binary_arm("champion", 1, 5_000, 500), binary_arm("challenger", 2, 5_000, 700))
    assert (d.outcome, d.winner_version, d.actionable) == ("keep_champion", 1, True)
    assert d.test["winner"] == "control"
    assert d.reason.startswith("champion significantly better")


def test_equal_arms_stop_for_futility():
    rng = np.random.default_rng(3)
    n = 50_000
    champ = binary_arm("champion", 1, n, int(rng.binomial(n, 0.10)))
    chall = binary_arm("challenger", 2, n, int(rng.binomial(n, 0.10)))
    d = decide(ExperimentConfig(min_effect=0.02), champ, chall)
    assert (d.outcome, d.winner_version, d.actionable) == ("keep_champion", None, True)
    assert d.test["outcome"] == "futility"
    assert d.test["ci_low"] > -0.02 and d.test["ci_high"] < 0.02
    assert "futility" in d.reason


def test_too_few_samples_continue():
    cfg = ExperimentConfig()
    d = decide(cfg, binary_arm("champion", 1, 150, 15), binary_arm("challenger", 2, 150, 1))
    assert (d.outcome, d.winner_version, d.actionable) == ("continue", None, False)
    assert "fewer than 200 per arm" in d.reason
    json.dumps(d.evidence(), allow_nan=False)  # the unbounded CI is null


def test_sample_cap_keeps_the_champion():
    cfg = ExperimentConfig(min_effect=0.001, tau=0.02, max_samples_per_arm=300)
    d = decide(cfg, binary_arm("champion", 1, 300, 30), binary_arm("challenger", 2, 300, 29))
    assert (d.outcome, d.winner_version) == ("keep_champion", None)
    assert d.test["outcome"] == "max_samples" and "sample cap 300" in d.reason


def test_continuous_metric_promotes_a_higher_mean():
    rng = np.random.default_rng(1)
    champ = continuous_arm("champion", 1, rng.normal(1.0, 1.0, 5_000))
    chall = continuous_arm("challenger", 2, rng.normal(1.2, 1.0, 5_000))
    cfg = ExperimentConfig(metric="outcome", min_effect=0.05)
    d = decide(cfg, champ, chall)
    assert (d.outcome, d.winner_version) == ("promote", 2)
    assert d.test["config"]["metric"] == "continuous"
    assert d.test["mean_treatment"] == pytest.approx(chall.outcome_sum / 5_000)


def test_continuous_metric_respects_lower_is_better():
    rng = np.random.default_rng(2)
    champ = continuous_arm("champion", 1, rng.normal(1.0, 1.0, 5_000))
    chall = continuous_arm("challenger", 2, rng.normal(1.2, 1.0, 5_000))
    cfg = ExperimentConfig(metric="outcome", higher_is_better=False, min_effect=0.05)
    d = decide(cfg, champ, chall)
    assert (d.outcome, d.winner_version) == ("keep_champion", 1)


def test_error_rate_ignores_higher_is_better():
    cfg = ExperimentConfig(metric="error_rate", higher_is_better=True)
    assert cfg.sequential_config().higher_is_better is False


def test_a_mismatched_test_is_refused():
    cfg = ExperimentConfig()
    wrong = SequentialTest(SequentialConfig(metric="binary", min_effect=0.02))  # higher is better
    with pytest.raises(ExperimentConfigError, match="higher_is_better"):
        decide_experiment(
            cfg,
            champion=binary_arm("champion", 1, 500, 50),
            challenger=binary_arm("challenger", 2, 500, 50),
            test=wrong,
        )


def test_config_round_trip():
    raw = {"metric": "outcome", "higher_is_better": False, "min_samples_per_arm": 500}
    cfg = ExperimentConfig.from_mapping(raw)
    assert ExperimentConfig.from_mapping(cfg.as_dict()) == cfg
    seq = cfg.sequential_config()
    assert (seq.metric, seq.higher_is_better, seq.min_samples_per_arm) == ("continuous", False, 500)
    assert json.loads(json.dumps(cfg.as_dict())) == cfg.as_dict()


@pytest.mark.parametrize(
    ("values", "match"),
    [
        ({"metric": "auc"}, "metric='auc'"),
        ({"mode": "yolo"}, "mode='yolo'"),
        ({"alpha": 1.5}, "alpha=1.5"),
        ({"min_samples_per_arm": 1}, "min_samples_per_arm=1"),
        ({"max_samples_per_arm": 10}, "max_samples_per_arm=10"),
        ({"higher_is_better": "yes"}, "higher_is_better='yes'"),
        ({"winner": 2}, "unknown key\\(s\\) \\['winner'\\]"),
    ],
)
def test_config_errors_name_the_bad_value(values, match):
    with pytest.raises(ExperimentConfigError, match=match):
        ExperimentConfig.from_mapping(values)
