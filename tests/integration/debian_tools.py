"""Debian's Prometheus, Alertmanager and Chromium for the tests.

Prometheus and Alertmanager are unpacked into ``.cache/`` once; Chromium, which needs
about 130 libraries, is installed with apt (``make browser``, as root).

``install()`` (``make prometheus``, a step of ``make test``, or
``python -m tests.integration.debian_tools install``) asks apt for the pinned packages'
``.deb`` files (``apt-get download``: no root, nothing installed system-wide) and unpacks
each with ``dpkg-deb -x`` into ``.cache/debian/<package>-<version>/``. Both are static Go
binaries, so they run from there. A binary already on ``PATH`` at the pinned major
version is used instead, and an unpacked one is never fetched again.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
CACHE = REPO_ROOT / ".cache" / "debian"
_COMPLETE = ".complete"  # written last: a folder without it is an unpack that did not finish

# package -> (pinned Debian version, the binaries the tests run)
PACKAGES = {
    "prometheus": ("2.42.0+ds-5+deb12u1", ("prometheus", "promtool")),
    "prometheus-alertmanager": ("0.25.0-1+b4", ("prometheus-alertmanager", "amtool")),
}


# Debian builds Alertmanager to read its notification templates from this fixed path.
ALERTMANAGER_TEMPLATES = Path("/usr/share/prometheus/alertmanager")


class ToolUnavailable(RuntimeError):
    """A Debian tool cannot be found or fetched; the message says what to install."""


def unpacked(package: str) -> Path:
    version, _ = PACKAGES[package]
    return CACHE / f"{package}-{version.replace('+', '_')}"


def binary(name: str) -> Path:
    """The path of ``name`` (``promtool``, ``prometheus``, ``prometheus-alertmanager``...)."""
    for package, (_, binaries) in PACKAGES.items():
        if name in binaries:
            found = unpacked(package) / "usr" / "bin" / name
            if (unpacked(package) / _COMPLETE).exists() and found.exists():
                return found
            on_path = shutil.which(name)
            if on_path:
                return Path(on_path)
            raise ToolUnavailable(
                f"{name} is not installed: run `make prometheus` (it fetches Debian's {package} "
                f"{PACKAGES[package][0]} with apt-get download into .cache/debian), or "
                f"`apt-get install {package}`"
            )
    raise ToolUnavailable(f"{name} is none of the tools this module installs")


def alertmanager_templates() -> None:
    """Put the unpacked Alertmanager's templates where Debian's build reads them (once)."""
    if (ALERTMANAGER_TEMPLATES / "default.tmpl").exists():
        return
    source = unpacked("prometheus-alertmanager") / "usr/share/prometheus/alertmanager"
    try:
        ALERTMANAGER_TEMPLATES.mkdir(parents=True, exist_ok=True)
        for template in source.glob("*.tmpl"):
            shutil.copy2(template, ALERTMANAGER_TEMPLATES / template.name)
    except OSError as exc:
        raise ToolUnavailable(
            f"Debian's Alertmanager reads its templates from {ALERTMANAGER_TEMPLATES}, which "
            f"cannot be written ({exc}): run `make prometheus` once as root, or "
            "`apt-get install prometheus-alertmanager`"
        ) from exc


def install(package: str) -> Path:
    """Fetch and unpack ``package`` once; returns where it is unpacked."""
    version, _ = PACKAGES[package]
    target = unpacked(package)
    if (target / _COMPLETE).exists():
        if package == "prometheus-alertmanager":
            alertmanager_templates()
        return target
    for tool in ("apt-get", "dpkg-deb"):
        if shutil.which(tool) is None:
            raise ToolUnavailable(
                f"{tool} not found: the tests fetch {package} from Debian's archive; on a "
                f"non-Debian machine install {package} {version.split('+')[0]} and put its "
                "binaries on PATH"
            )
    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
        fetched = _download(package, version, tmp)
        if fetched.returncode != 0 and os.geteuid() == 0:
            # A fresh machine may not have read the archive's package lists yet.
            subprocess.run(["apt-get", "update", "-qq"], capture_output=True)
            fetched = _download(package, version, tmp)
        debs = list(Path(tmp).glob("*.deb"))
        if fetched.returncode != 0 or not debs:
            raise ToolUnavailable(
                f"apt-get download {package}={version} failed: {fetched.stderr.strip()[-500:]}"
                " (is the Debian archive reachable, and `apt-get update` run?)"
            )
        if target.exists():
            shutil.rmtree(target)
        subprocess.run(["dpkg-deb", "-x", str(debs[0]), str(target)], check=True)
    (target / _COMPLETE).write_text(version + "\n")
    if package == "prometheus-alertmanager":
        alertmanager_templates()
    return target


def _download(package: str, version: str, where: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["apt-get", "download", f"{package}={version}"], cwd=where, capture_output=True, text=True
    )


def chromium() -> Path:
    """Debian's Chromium, for the browser tests: on PATH, or installed with apt (as root)."""
    found = shutil.which("chromium")
    if found:
        return Path(found)
    raise ToolUnavailable(
        "chromium is not installed: run `make browser` (as root it runs "
        "`apt-get install --no-install-recommends chromium`), or install Debian's chromium"
    )


def install_chromium() -> Path:
    """Install Debian's Chromium once (it brings ~130 libraries, so apt, not an unpack)."""
    if shutil.which("chromium"):
        return Path(shutil.which("chromium"))
    if os.geteuid() != 0:
        raise ToolUnavailable(
            "installing chromium needs root: run `sudo apt-get install --no-install-recommends "
            "chromium` once"
        )
    env = os.environ | {"DEBIAN_FRONTEND": "noninteractive"}
    command = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "chromium"]
    installed = subprocess.run(command, env=env, capture_output=True, text=True)
    if installed.returncode != 0:
        subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True)
        installed = subprocess.run(command, env=env, capture_output=True, text=True)
    if installed.returncode != 0:
        raise ToolUnavailable(f"apt-get install chromium failed: {installed.stderr[-500:]}")
    return chromium()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["install-chromium"]:
        try:
            print(f"chromium: {install_chromium()}")
        except ToolUnavailable as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        return 0
    if args[:1] != ["install"]:
        print(
            "usage: python -m tests.integration.debian_tools install [PACKAGE ...] | "
            "install-chromium"
        )
        return 2
    for package in args[1:] or list(PACKAGES):
        try:
            where = install(package)
        except ToolUnavailable as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        print(f"{package} {PACKAGES[package][0]}: {os.path.relpath(where, REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
