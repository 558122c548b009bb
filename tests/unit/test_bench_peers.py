"""bench_peers' pure helpers, and the peers' shared scorer against the worker's."""

from __future__ import annotations

import hashlib
import math
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from bench.bench_peers import (
    best_of,
    choose_paths,
    markdown_table,
    slowest_stalls,
    steady_stretch,
)
from bench.peers.core import Scorer, prediction_id
from driftline.inference import LoadedModel, score_records, train_logistic
from driftline.inference import prediction_id as worker_prediction_id
from driftline.schemas import default_codec
from driftline.streams.demo.loadgen import synthetic_records

ROOT = Path(__file__).resolve().parents[2]


def test_this_checkouts_worker_is_benchmarked_with_both_consumers() -> None:
    # A check for old checkouts read driftline/settings.py, which moved to core/: the
    # benchmark stopped here at start-up with FileNotFoundError.
    assert choose_paths("driftline-kafka,driftline-faust,confluent") == [
        "driftline-kafka",
        "driftline-faust",
        "confluent",
    ]


def test_the_peers_code_runs_where_driftline_is_not_installed(tmp_path: Path) -> None:
    # A peer venv (Quix Streams, Bytewax) has the repository on PYTHONPATH and numpy, fastavro
    # and onnxruntime, but not driftline: after the packages moved under driftline.<folder>,
    # every peer stopped at `from driftline.schemas import ...`. Reproduced here: this
    # interpreter's site-packages without its .pth files, so driftline's install is not seen.
    site_packages = sysconfig.get_paths()["purelib"]
    code = (
        f"import sys; sys.path.append({site_packages!r})\n"
        "import importlib.util\n"
        "assert importlib.util.find_spec('driftline').origin.startswith(sys.argv[1])\n"
        "import bench.peers.confluent_loop\n"
        "from bench.peers.core import default_codec\n"
        "print(type(default_codec()).__name__)\n"
    )
    run = subprocess.run(
        [sys.executable, "-S", "-c", code, str(ROOT)],
        env={"PYTHONPATH": str(ROOT), "PATH": os.environ.get("PATH", "")},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr


def test_the_steady_stretch_runs_from_5_to_95_percent() -> None:
    # 1 s of start-up with nothing, then 1,000 records/s at 10 µs of CPU each.
    samples = [(t / 10, 0, 0.5) for t in range(10)]
    samples += [(1 + t / 10, 100 * t, 0.5 + 100 * t * 10e-6) for t in range(11)]
    rate, cpu_us, seconds = steady_stretch(samples, 1_000)
    assert rate == pytest.approx(1_000)
    assert cpu_us == pytest.approx(10)
    assert seconds == pytest.approx(0.9)  # 100 (>= 50) to 1,000 (>= 950)


def test_a_run_that_never_got_far_has_no_steady_stretch() -> None:
    samples = [(t / 10, 10 * t, 0.0) for t in range(5)]
    assert all(math.isnan(x) for x in steady_stretch(samples, 1_000))


def test_best_peer_ignores_driftline_and_missing_figures() -> None:
    values = {"driftline": 99.0, "confluent": 10.0, "bytewax": float("nan"), "quix-apply": 4.0}
    peers = ("confluent", "bytewax", "quix-apply")
    assert best_of(values, peers, higher_is_better=True) == 10.0
    assert best_of(values, peers, higher_is_better=False) == 4.0
    assert math.isnan(best_of({"driftline": 1.0}, peers, higher_is_better=True))


def test_the_table_gives_each_figure_as_a_ratio_to_the_best_peer() -> None:
    nan = float("nan")
    results = {
        "driftline": {"rate": 20_000, "cpu_us": 30.0, "p50": 20.0, "p99": 40.0, "check": "ok"},
        "confluent": {"rate": 40_000, "cpu_us": 10.0, "p50": 10.0, "p99": 50.0, "check": "ok"},
        "bytewax": {"rate": 10_000, "cpu_us": nan, "p50": 40.0, "p99": 20.0, "check": "ok"},
    }
    lines = markdown_table(results, peers=("confluent", "bytewax")).splitlines()
    assert lines[0].startswith("| path | records/s | vs best peer | CPU µs/record")
    assert len(lines) == 5
    driftline = [cell.strip() for cell in lines[2].split("|")[1:-1]]
    assert driftline[:9] == ["driftline worker", "20,000", "0.50x", "30.0", "3.00x",
                             "20.0", "2.00x", "40.0", "2.00x"]  # fmt: skip
    bytewax = [cell.strip() for cell in lines[4].split("|")[1:-1]]
    assert bytewax[3:5] == ["-", "-"]  # no CPU figure, no ratio


def test_the_peers_publish_the_predictions_the_worker_does(tmp_path: Path) -> None:
    data = train_logistic(n_features=16, n_samples=500, seed=1).onnx_bytes
    codec = default_codec()
    records = list(synthetic_records(model="bench", count=50, entities=10, seed=2, n_features=16))
    digest = hashlib.sha256(data).hexdigest()
    model = LoadedModel.load(data, name="bench", version=1, expected_digest=digest)
    worker = score_records(model, records).predictions

    path = tmp_path / "model.onnx"
    path.write_bytes(data)
    values = Scorer(str(path)).score_values([codec.encode("FeatureRecord", r) for r in records])
    peers = [codec.decode(value) for value in values]
    assert [name for name, _ in peers] == ["Prediction"] * 50
    for (_, peer), mine in zip(peers, worker, strict=True):
        assert peer["prediction_id"] == mine["prediction_id"]
        assert peer["score"] == pytest.approx(mine["score"], abs=1e-6)
        for key in ("record_id", "entity_id", "model", "version", "arm", "event_time"):
            assert peer[key] == mine[key]


def test_the_copied_prediction_id_matches_the_workers() -> None:
    assert prediction_id("r-1", b"|bench|served") == worker_prediction_id("r-1", "bench", "served")


def test_the_slowest_predictions_are_one_per_stall_split_before_and_after_scoring() -> None:
    phase = 1_000_000.0
    # One stall at 0.5 s (three predictions of it, one 300 ms late, most of it before it
    # was scored), another at 2 s (after scoring), and a quiet spread.
    out = [(phase + 500 + i, 300.0 - i, 280.0) for i in range(3)]
    out += [(phase + 2000, 150.0, 10.0)] + [(phase + 100 * i, 5.0, 2.0) for i in range(30)]
    line = slowest_stalls(out, phase, shown=3)
    assert line.endswith("0.50: 300 (280), 2.00: 150 (10), 0.00: 5 (2)")
