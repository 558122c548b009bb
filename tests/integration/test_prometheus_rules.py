"""The alert rules in infra/prometheus/alerts.yml, checked and unit-tested by Debian's promtool.

Each rule gets a scenario that must fire it, with the labels and the rendered annotations
(runbook included) it must carry, and a quiet one that must not. The promtool test file
is written from these scenarios, so the runbook text lives once, in the rules.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.integration.debian_tools import binary

pytestmark = pytest.mark.integration

RULES = Path(__file__).resolve().parents[2] / "infra" / "prometheus" / "alerts.yml"
W1 = {"instance": "w1", "job": "driftline"}

# alert -> (firing series, quiet series, eval minutes, labels the alert carries, $value)
SCENARIOS = {
    "DriftlineChampionDrift": (
        [('driftline_drift_alarms_total{model="fraud",arm="champion",detector="ks",'
          'feature="amount",instance="w1",job="driftline"}', "_ _ 1 1 1 1")],
        [('driftline_drift_alarms_total{model="fraud",arm="canary",detector="ks",'
          'feature="amount",instance="w1",job="driftline"}', "0 0 1 1 1 1")],
        5,
        {"severity": "page", "model": "fraud", "detector": "ks", "feature": "amount"},
        None,
    ),
    "DriftlineRollbackPerformed": (
        [('driftline_policy_decisions_total{decision="rollback",instance="w1",job="driftline"}',
          "_ _ 1 1")],
        [('driftline_policy_decisions_total{decision="promote",instance="w1",job="driftline"}',
          "0 0 1 1")],
        3,
        {"severity": "page", "instance": "w1"},
        None,
    ),
    "DriftlineCanaryHalted": (
        [('driftline_policy_decisions_total{decision="pause",instance="w1",job="driftline"}',
          "0 0 1 1")],
        [('driftline_policy_decisions_total{decision="traffic",instance="w1",job="driftline"}',
          "0 0 1 1")],
        3,
        {"severity": "ticket", "instance": "w1"},
        None,
    ),
    "DriftlineDeadLetterRate": (
        [('driftline_dead_letters_total{reason="non_finite",instance="w1",job="driftline"}',
          "0+60x30"),
         ('driftline_records_consumed_total{instance="w1",job="driftline"}', "0+3000x30")],
        [('driftline_dead_letters_total{reason="non_finite",instance="w1",job="driftline"}',
          "0+6x30"),
         ('driftline_records_consumed_total{instance="w1",job="driftline"}', "0+3000x30")],
        20,
        {"severity": "ticket", "instance": "w1"},
        None,
    ),
    "DriftlineConsumerLag": (
        [('driftline_consumer_lag_records{topic="driftline.features",partition="0",'
          'instance="w1",job="driftline"}', "150000+0x10")],
        [('driftline_consumer_lag_records{topic="driftline.features",partition="0",'
          'instance="w1",job="driftline"}', "5000+0x10")],
        8,
        {"severity": "page", "instance": "w1", "topic": "driftline.features"},
        "150000",
    ),
    "DriftlineLatencySLOBurn": (
        [('driftline_prediction_latency_seconds_bucket{le="0.25",instance="w1",job="driftline"}',
          "0+50x70"),
         ('driftline_prediction_latency_seconds_count{instance="w1",job="driftline"}',
          "0+100x70")],
        [('driftline_prediction_latency_seconds_bucket{le="0.25",instance="w1",job="driftline"}',
          "0+99.9x70"),
         ('driftline_prediction_latency_seconds_count{instance="w1",job="driftline"}',
          "0+100x70")],
        65,
        {"severity": "page"},
        None,
    ),
    "DriftlineAuditChainBroken": (
        [('driftline_audit_chain_intact{model="fraud",instance="w1",job="driftline"}',
          "1 1 0 0")],
        [('driftline_audit_chain_intact{model="fraud",instance="w1",job="driftline"}',
          "1 1 1 1")],
        3,
        {"severity": "page", "model": "fraud", **W1},
        None,
    ),
    "DriftlineNoCheckpoint": (
        [('driftline_audit_checkpoint_age_seconds{model="fraud",instance="w1",job="driftline"}',
          "4000+0x10")],
        [('driftline_audit_checkpoint_age_seconds{model="fraud",instance="w1",job="driftline"}',
          "100+0x10")],
        8,
        {"severity": "ticket", "model": "fraud", **W1},
        None,
    ),
    "DriftlineWorkerDown": (
        [('up{job="driftline",instance="w1"}', "1 0 0 0 0")],
        [('up{job="driftline",instance="w1"}', "1 1 1 1 1")],
        4,
        {"severity": "page", **W1},
        None,
    ),
}  # fmt: skip


def _rules() -> dict[str, dict]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return {rule["alert"]: rule for group in groups for rule in group["rules"]}


def _render(template: str, labels: dict[str, str], value: str | None) -> str:
    def fill(match: re.Match) -> str:
        name = match.group(1)
        return value if name == "$value" else labels[name.removeprefix("$labels.")]

    return re.sub(r"\{\{\s*(\$value|\$labels\.\w+)\s*\}\}", fill, template)


def _test_file(tmp_path: Path, expectations: dict) -> Path:
    rules = _rules()
    tests = []
    for alert, (firing, quiet, minutes, labels, value) in SCENARIOS.items():
        rule = rules[alert]
        annotations = {k: _render(v, labels, value) for k, v in rule["annotations"].items()}
        expected = expectations.get(alert, {"exp_labels": labels, "exp_annotations": annotations})
        for series, alerts in ((firing, [expected]), (quiet, [])):
            tests.append(
                {
                    "name": f"{alert} {'fires' if alerts else 'stays quiet'}",
                    "interval": "1m",
                    "input_series": [{"series": s, "values": v} for s, v in series],
                    "alert_rule_test": [
                        {"eval_time": f"{minutes}m", "alertname": alert, "exp_alerts": alerts}
                    ],
                }
            )
    path = tmp_path / "alerts_test.yml"
    path.write_text(yaml.safe_dump({"rule_files": [str(RULES)], "tests": tests}, sort_keys=False))
    return path


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(binary("promtool")), *args], capture_output=True, text=True)


def test_the_rules_parse():
    checked = _promtool("check", "rules", str(RULES))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(SCENARIOS)} rules found" in checked.stdout


def test_every_rule_has_a_scenario_a_severity_and_a_runbook():
    rules = _rules()
    assert set(rules) == set(SCENARIOS)
    for name, rule in rules.items():
        assert rule["labels"]["severity"] in ("page", "ticket"), name
        assert len(rule["annotations"]["runbook"]) > 100, name
        assert rule["annotations"]["summary"], name


def test_each_rule_fires_on_its_scenario_and_stays_quiet_otherwise(tmp_path):
    tested = _promtool("test", "rules", str(_test_file(tmp_path, {})))
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_a_wrong_expectation_fails(tmp_path):
    wrong = {"DriftlineWorkerDown": {"exp_labels": {"severity": "ticket", **W1}}}
    tested = _promtool("test", "rules", str(_test_file(tmp_path, wrong)))
    assert tested.returncode != 0
    assert "DriftlineWorkerDown" in tested.stdout + tested.stderr


def test_the_example_prometheus_and_alertmanager_configs_are_valid():
    prometheus = _promtool("check", "config", str(RULES.with_name("prometheus.yml")))
    assert prometheus.returncode == 0, prometheus.stdout + prometheus.stderr
    amtool = subprocess.run(
        [str(binary("amtool")), "check-config", str(RULES.with_name("alertmanager.yml"))],
        capture_output=True,
        text=True,
    )
    assert amtool.returncode == 0, amtool.stdout + amtool.stderr
    assert "3 receivers" in amtool.stdout
