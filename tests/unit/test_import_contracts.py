"""The package map holds: the import-linter contracts in pyproject.toml, and the ban on the
folders' bare names (ruff TID251)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.import_contracts import REPO, lint_imports


def test_every_contract_is_kept():
    result = lint_imports()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("path", "source", "contract"),
    [
        (
            "driftline/drift/_probe.py",
            "import driftline.lineage.store.clickhouse\n",
            "Drift never imports",
        ),
        ("driftline/core/_probe.py", "import driftline.schemas\n", "Layers"),
        ("driftline/lineage/_probe.py", "import faust\n", "never import the streams layer"),
        ("driftline/schemas/_probe.py", "import driftline.streams.cli\n", "Layers"),
        (
            "driftline/inference/_probe.py",
            "import driftline.inference.router\n",
            "No import cycles",
        ),
    ],
)
def test_a_forbidden_import_breaks_its_contract(path, source, contract):
    extra = {path: source}
    if "cycles" in contract:  # router must import the probe back for a cycle
        router = (REPO / "inference" / "router.py").read_text()
        extra["driftline/inference/router.py"] = router + "\nimport driftline.inference._probe\n"
    result = lint_imports(extra)
    assert result.returncode != 0
    broken = [line for line in result.stdout.splitlines() if line.endswith("BROKEN")]
    assert any(contract in line for line in broken), result.stdout


@pytest.mark.parametrize("old", ["streams", "schemas", "inference", "drift", "lineage", "core"])
def test_the_bare_folder_names_are_banned(old):
    ruff = Path(sys.executable).with_name("ruff")
    result = subprocess.run(
        [ruff, "check", "--config", REPO / "pyproject.toml", "--stdin-filename", "probe.py"],
        input=f"from {old}.x import y\n\nprint(y)\n",
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert f"TID251 `{old}` is banned" in result.stdout
