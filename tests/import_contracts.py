"""Check the import-linter contracts in pyproject.toml: ``python -m tests.import_contracts``.

grimp, which builds import-linter's graph, walks one directory per root package. In the
source tree ``driftline.streams`` lives in ``streams/``, not under ``driftline/``, so the
check runs over a copy of the modules laid out as a wheel installs them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def installed_layout(into: Path) -> Path:
    """Copy every package's modules to where an install puts them; return the root."""
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    for package, folder in config["package-dir"].items():
        source, target = REPO / folder, into.joinpath(*package.split("."))
        for module in source.rglob("*.py"):
            if "__pycache__" in module.parts:
                continue
            destination = target / module.relative_to(source)
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(module, destination)
    return into


def lint_imports(extra: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run lint-imports; ``extra`` adds modules (installed path -> source), for tests."""
    with tempfile.TemporaryDirectory(prefix="driftline-layers-") as tmp:
        root = installed_layout(Path(tmp))
        for path, source in (extra or {}).items():
            (root / path).write_text(source)
        return subprocess.run(
            [
                str(Path(sys.executable).with_name("lint-imports")),
                "--no-logo",
                "--no-cache",
                str(REPO / "pyproject.toml"),
            ],
            cwd=root,
            env=os.environ | {"PYTHONPATH": str(root)},
            capture_output=True,
            text=True,
        )


if __name__ == "__main__":
    result = lint_imports()
    print(result.stdout, result.stderr, sep="", end="")
    sys.exit(result.returncode)
