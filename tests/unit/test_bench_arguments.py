"""Every benchmark that takes counts explains them on --help and names a bad one."""

from __future__ import annotations

import importlib

import pytest

# module, its command-line entry, a value each count refuses
BENCHMARKS = [
    ("bench.bench_audit", "main", ["0"]),
    ("bench.bench_device", "cli", ["-3"]),
    ("bench.bench_drift_stage", "main", ["lots"]),
    ("bench.bench_enrichment", "main", ["0"]),
    ("bench.bench_frames", "main", ["5"]),
    ("bench.bench_metrics", "main", ["100", "0"]),
    ("bench.bench_policy", "main", ["ten"]),
    ("bench.bench_single_record", "main", ["-1"]),
    ("bench.broker_hop", "main", ["2"]),
]


@pytest.mark.parametrize(("module", "entry", "bad"), BENCHMARKS)
def test_help_and_a_bad_count(module, entry, bad, capsys) -> None:
    main = getattr(importlib.import_module(module), entry)
    with pytest.raises(SystemExit) as asked:
        main(["--help"])
    out = capsys.readouterr().out
    assert asked.value.code == 0
    assert f"python -m {module}" in out and "default" in out
    with pytest.raises(SystemExit) as refused:
        main(bad)
    err = capsys.readouterr().err
    assert refused.value.code == 2, err
    assert any(value in err for value in bad if value not in ("100",)), err


def test_counts_left_out_take_their_defaults() -> None:
    from bench.arguments import Count, read_counts

    counts = read_counts("bench.x", "A benchmark.", ["7"], Count("rows", 10, "rows"),
                         Count("models", 3, "models"))  # fmt: skip
    assert (counts.rows, counts.models) == (7, 3)
