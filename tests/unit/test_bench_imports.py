"""bench/bench_imports.py measures a fresh interpreter and names the heavy modules it loads."""

from __future__ import annotations

from pathlib import Path

from bench.bench_imports import measure


def test_one_fresh_process_is_measured_and_its_heavy_imports_named():
    imports_ms, wall_ms, heavy = measure("import pandas", Path.cwd())
    assert 0 < imports_ms < wall_ms
    assert "pandas" in heavy and "sklearn" not in heavy
    bare_ms, _, bare_heavy = measure("import sys", Path.cwd())
    assert bare_heavy == [] and bare_ms < imports_ms
