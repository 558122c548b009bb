"""driftline installs as one namespace, ``driftline.*``, in every kind of install.

Each install goes into a fresh venv outside the repository. The venv borrows the
project venv's third-party packages through a ``.pth`` line, and so installs nothing
else. That ``.pth`` is a plain path, so the project's own editable finder (run only
from a site directory's ``__editable__`` hook) does not come with it. Imports run from a
directory holding none of the repository's folders, so a module found there came from
the install under test.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SUBPACKAGES = ["core", "schemas", "inference", "drift", "features", "lineage", "streams"]
# What an install must never put at the top of site-packages: the folder names.
OLD_TOP_LEVEL = ["streams", "schemas", "inference", "drift", "features", "lineage", "core"]

IMPORT_EVERYTHING = f"""
import importlib, pkgutil, importlib.util
import driftline
for old in {OLD_TOP_LEVEL!r}:
    assert importlib.util.find_spec(old) is None, f"{{old}} is importable at the top level"
names = ["driftline." + name for name in {SUBPACKAGES!r}]
for package in list(names):
    module = importlib.import_module(package)
    names += [info.name for info in pkgutil.walk_packages(module.__path__, package + ".")]
for name in names:
    if name.endswith(".__main__"):
        continue
    importlib.import_module(name)
from driftline.schemas import default_codec
assert default_codec().encode  # the Avro schemas came with the install
from driftline.streams.app.dashboard import STATIC
assert all((STATIC / f).is_file() for f in ("index.html", "app.js", "style.css"))
from driftline.lineage.store.clickhouse import ddl_text
assert "audit_log" in ddl_text("driftline")
print(len(names), "modules from", driftline.__file__)
"""


def _python(venv_dir: Path) -> Path:
    return venv_dir / "bin" / "python"


def _clean_venv(where: Path) -> Path:
    """A venv with pip and the project's third-party packages, but no driftline."""
    venv.create(where, with_pip=True)
    purelib = subprocess.run(
        [_python(where), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    Path(purelib, "project_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return where


def _pip(venv_dir: Path, *args: str) -> None:
    subprocess.run(
        [_python(venv_dir), "-m", "pip", "install", "--quiet", "--no-deps", *args],
        check=True,
        cwd=venv_dir,
        env=os.environ | {"PIP_DISABLE_PIP_VERSION_CHECK": "1"},
    )


def _check_install(venv_dir: Path, elsewhere: Path, expected_root: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    imported = subprocess.run(
        [_python(venv_dir), "-c", IMPORT_EVERYTHING],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
    )
    assert imported.returncode == 0, imported.stderr
    loaded_from = Path(imported.stdout.split(" from ")[-1].strip())
    assert loaded_from.is_relative_to(expected_root), imported.stdout
    cli = subprocess.run(
        [venv_dir / "bin" / "driftline", "--help"], cwd=elsewhere, env=env, capture_output=True
    )
    assert cli.returncode == 0, cli.stderr.decode()
    assert b"Usage: driftline" in cli.stdout


def _source_copy(tmp_path: Path) -> Path:
    """The tracked files only, so an install sees what a clean clone has."""
    copy = tmp_path / "src"
    tracked = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True
    ).stdout.split(b"\0")
    for name in filter(None, tracked):
        source = REPO / name.decode()
        if source.is_file():
            target = copy / name.decode()
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    return copy


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _source_copy(tmp_path_factory.mktemp("packaging"))


def test_the_wheel_installs_only_driftline_and_runs_from_anywhere(source, tmp_path):
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", dist, source],
        check=True,
    )
    (wheel,) = dist.glob("driftline-*.whl")
    top_level = {name.split("/")[0] for name in zipfile.ZipFile(wheel).namelist()}
    assert {name for name in top_level if not name.endswith(".dist-info")} == {"driftline"}

    installed = _clean_venv(tmp_path / "venv")
    _pip(installed, str(wheel))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    _check_install(installed, elsewhere, expected_root=installed)


@pytest.mark.parametrize("mode", ["lenient", "strict"])
def test_editable_installs_resolve_the_namespace(source, tmp_path, mode):
    installed = _clean_venv(tmp_path / "venv")
    _pip(installed, "--config-settings", f"editable_mode={mode}", "-e", str(source))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    _check_install(installed, elsewhere, expected_root=source)
