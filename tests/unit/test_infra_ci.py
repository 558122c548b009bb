"""The CI examples in infra/ci stay runnable: the trainer, the policy file, the commands."""

import re
from pathlib import Path

import yaml
from click.testing import CliRunner

from driftline.lineage.promotion.holdout import Holdout
from driftline.lineage.promotion.policy import PromotionPolicy
from driftline.streams.cli.main import main

CI = Path(__file__).resolve().parents[2] / "infra" / "ci"


def test_example_trainer_writes_model_training_matrix_and_holdout(tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("train_example", CI / "train_example.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = module.main(["--out", str(tmp_path), "--rows", "3000"])
    assert (out / "model.onnx").stat().st_size > 0
    holdout = Holdout.from_csv(out / "holdout.csv")
    assert holdout.rows == 5_000 and len(holdout.feature_names) == 16
    assert 0 < holdout.label_positive_rate < 1


def test_example_policy_file_loads():
    policy = PromotionPolicy.load(CI / "policy.toml")
    assert policy.gates.thresholds["auc"] == 0.70
    assert [r.name for r in policy.drift_rules] == ["champion-errors", "candidate-drift"]


def test_pipelines_parse_and_call_real_commands():
    runner = CliRunner()
    for name in ("github-actions.yml", "gitlab-ci.yml"):
        text = (CI / name).read_text()
        assert yaml.safe_load(text)
        commands = set(re.findall(r"driftline (model \w+)", text))
        assert {"model register", "model validate", "model canary"} <= commands
        for command in commands:
            result = runner.invoke(main, [*command.split(), "--help"])
            assert result.exit_code == 0, (name, command, result.output)
