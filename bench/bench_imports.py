"""Worker start-up imports: how long a fresh interpreter takes to import what a worker
imports, and which heavy libraries come with it.

Each run is a new ``python -X importtime`` process (the OS page cache is warm after the
first); the figure is the cumulative time of the imported modules as Python reports it,
and the wall time of the whole process. The baseline in the same run is a bare
interpreter (``import sys``). Usage::

    python -m bench.bench_imports [--runs 7] [--code "import driftline.streams.app.worker"]

``--cwd`` runs from another checkout (an older layout imports ``streams.worker``), so
two trees can be compared on one machine with one venv.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

WORKER = (
    "import driftline.streams.app.worker, driftline.streams.app.faust_app\n"
    "from driftline.drift.catalog import DETECTORS, make_detector\n"
    "[make_detector(name) for name in DETECTORS]"
)
HEAVY = ("sklearn", "skl2onnx", "pandas", "river", "scipy", "clickhouse_connect", "cryptography")


def measure(code: str, cwd: Path) -> tuple[float, float, list[str]]:
    """(cumulative import ms, wall ms, heavy modules loaded) for one fresh process."""
    probe = f"{code}\nimport sys\nprint(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", probe],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
    )
    wall = (time.perf_counter() - started) * 1000
    total_us = 0
    for line in result.stderr.splitlines():
        if line.startswith("import time:") and "cumulative" not in line:
            _, cumulative, name = line.split("|", 2)
            if not name.startswith("  "):  # top level: its cumulative includes its children
                total_us += int(cumulative)
    heavy = [m for m in result.stdout.strip().split(",") if m]
    return total_us / 1000, wall, heavy


def report(label: str, code: str, cwd: Path, runs: int) -> float:
    samples = [measure(code, cwd) for _ in range(runs)]
    imports = [s[0] for s in samples]
    walls = [s[1] for s in samples]
    print(
        f"{label:<12} imports {min(imports):7.0f} / {statistics.median(imports):7.0f} ms "
        f"(min / median)   process {min(walls):7.0f} / {statistics.median(walls):7.0f} ms   "
        f"heavy: {', '.join(samples[-1][2]) or 'none'}"
    )
    return statistics.median(walls)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--code", default=WORKER)
    parser.add_argument("--cwd", type=Path, default=Path.cwd())
    args = parser.parse_args()
    print(f"{args.runs} fresh processes each, on {sys.version.split()[0]}, from {args.cwd}")
    bare = report("bare python", "import sys", args.cwd, args.runs)
    worker = report("worker", args.code, args.cwd, args.runs)
    print(f"worker start-up imports cost {worker - bare:.0f} ms of process time over a bare one")


if __name__ == "__main__":
    main()
