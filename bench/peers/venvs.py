"""The peer libraries' own venvs for ``bench.bench_peers``, under ``.cache/bench-venvs/``.

Quix Streams and Bytewax pin their own confluent-kafka, so neither goes into the project's
venv (they are bench-only, never runtime dependencies). Each venv gets the peer library and
the same numpy, fastavro and onnxruntime versions as the project's venv, so the decode,
score and encode the peers share (``bench.peers.core``) run on the same code. A venv that
exists and imports its library is kept.

Usage: python -m bench.peers.venvs [quix] [bytewax]   (default both; ``make bench-peers-venvs``)
"""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
VENVS = ROOT / ".cache" / "bench-venvs"

# Peer library pins: Quix Streams, the latest 3.x when written; Bytewax 0.21.x.
PEERS = {
    "quix": ("quixstreams==3.28.1", "quixstreams"),
    "bytewax": ("bytewax[kafka]==0.21.1", "bytewax"),
}
SHARED = ("numpy", "fastavro", "onnxruntime")


def python_of(name: str) -> Path:
    return VENVS / name / "bin" / "python"


def _imports(python: Path, module: str) -> bool:
    if not python.exists():
        return False
    probe = subprocess.run([str(python), "-c", f"import {module}"], capture_output=True)
    return probe.returncode == 0


def ensure(name: str, *, quiet: bool = False) -> Path:
    """The venv's python for peer ``name``, creating the venv when it is missing."""
    spec, module = PEERS[name]
    python = python_of(name)
    if _imports(python, module):
        return python
    VENVS.mkdir(parents=True, exist_ok=True)
    pins = [f"{package}=={metadata.version(package)}" for package in SHARED]
    print(f"creating {python.parent.parent} with {spec} {' '.join(pins)}...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(python.parent.parent)], check=True)
    pip = [str(python), "-m", "pip", "install", "--disable-pip-version-check"]
    subprocess.run(pip + (["--quiet"] if quiet else []) + [spec, *pins], check=True)
    if not _imports(python, module):
        raise SystemExit(f"{python} cannot import {module} after installing {spec}")
    return python


def versions(name: str) -> dict[str, str]:
    """Package versions installed in the peer venv (the library and what it pins)."""
    code = (
        "import json, importlib.metadata as m; print(json.dumps({p: m.version(p) for p in "
        f"{[PEERS[name][1], 'confluent-kafka', *SHARED]!r}}}))"
    )
    out = subprocess.run([str(python_of(name)), "-c", code], capture_output=True, text=True)
    import json

    return json.loads(out.stdout) if out.returncode == 0 else {}


def main(argv: list[str] | None = None) -> int:
    names = (argv if argv is not None else sys.argv[1:]) or list(PEERS)
    for name in names:
        if name not in PEERS:
            raise SystemExit(f"unknown peer {name!r}; expected one of {list(PEERS)}")
        print(f"{name}: {ensure(name)} {versions(name)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
