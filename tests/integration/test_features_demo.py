"""`driftline demo --features`, the README's Feast story, run as a user runs it."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration


def test_the_features_demo_tells_the_whole_story(tmp_path):
    env = os.environ | {"DRIFTLINE_DATA_DIR": str(tmp_path / "data"), "COLUMNS": "240"}
    env.pop("DRIFTLINE_KAFKA_BOOTSTRAP", None)  # the demo starts its own broker
    done = subprocess.run(
        [sys.executable, "-m", "driftline.streams.cli", "demo", "--features"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-6000:]
    # Every step of the story, with the figures it states.
    assert re.search(r"dataset build --feature-service scoring: 1,000 rows point in time", out)
    assert re.search(r"2,000 predictions, each recording feature service scoring@[0-9a-f]{12}", out)
    assert "20 dead letters 'feature_missing'" in out
    assert re.search(r"dataset fingerprint\s+│ sha256:", out)  # lineage show's table
    assert re.search(r"feature view\s+│ customer_profile@[0-9a-f]{12}", out)
    skewed = re.findall(r"training_serving_skew on (f\d\d)", out)
    assert skewed == ["f03"], out[-4000:]  # the broken feature, and only it
    assert re.search(r"erased customer-00007 as dpo: .*'predictions': 5.*online store 12 rows", out)
    assert "customer-00007" not in out.split("erased customer-00007", 1)[1].split("\n", 1)[1]
    assert "audit log intact" in out
    # Feast's registry refreshes stay out of the story.
    assert "Registry cache expired" not in out
