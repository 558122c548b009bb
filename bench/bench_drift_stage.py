"""What the drift stage costs the frames path: the same worker with drift off and on.

In one run, on one broker, for the 16-feature logistic model:

1. no Kafka: decode + score + encode of the same frames, without and with
   the arm monitor (KS + PSI over 16 features, score KS);
2. end to end: a worker (inference role) scoring a pre-filled topic of
   frames with ``DRIFTLINE_DRIFT_ENABLED=false`` and then ``true``
   (monitors, state snapshots to the changelog, pending entries for the
   outcomes join and the join agent consuming them), alternated three times;
   medians compared.

Target: with drift on, the frames path keeps >= 70% of its throughput.

Usage: python -m bench.bench_drift_stage [ROWS]   (default 600,000 rows per run)
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

from bench.bench_frames import FRAME_ROWS, fill_frames, new_topics, steady_rate
from bench.bench_single_record import spawn_worker
from drift.config import DriftConfig
from drift.monitor import ArmMonitor, MonitorKey
from driftline.settings import TelemetrySettings
from driftline.telemetry import configure_telemetry
from inference import LoadedModel, SyntheticFeatures, train_logistic
from inference.frames import Frame, pack_frame, score_frame
from inference.routing import RoutingTable
from lineage.profile import ReferenceProfile
from schemas import default_codec
from streams.embedded import TansuBroker, stop_child
from streams.stack import http_json

ROUNDS = 3  # drift off and on, alternated: runs on a 2-core machine vary by +-30%


def in_process(data: bytes, seconds: float = 2.0) -> tuple[float, float]:
    """rows/s of decode + score + encode (no Kafka), and with the monitor on every row."""
    import hashlib

    model = LoadedModel.load(
        data, name="bench", version=1, expected_digest=hashlib.sha256(data).hexdigest()
    )
    table, codec = RoutingTable.champion_only(model), default_codec()
    features = SyntheticFeatures(16, seed=2)
    names = list(features.feature_names)
    payloads = [
        codec.encode(
            "FeatureFrame",
            pack_frame(f"f{i}", "bench", [f"e{j}" for j in range(FRAME_ROWS)],
                       [0] * FRAME_ROWS, names, features.rows(FRAME_ROWS)),
        )
        for i in range(8)
    ]  # fmt: skip
    reference = ReferenceProfile.from_matrix(features.rows(20_000), names)

    def rate(monitor: ArmMonitor | None) -> float:
        rows, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            for payload in payloads:
                frame = Frame.from_avro(codec.decode_as("FeatureFrame", payload))
                scored = score_frame(table, frame)
                codec.encode_many("PredictionFrame", scored.parts)
                if monitor is not None:
                    scores = np.frombuffer(scored.parts[0]["score"], dtype="<f8")
                    monitor.observe(frame.matrix, scores)
                rows += FRAME_ROWS
        return rows / (time.perf_counter() - started)

    monitor = ArmMonitor(MonitorKey("bench", 1, "champion"), tuple(names), reference, DriftConfig())
    return rate(None), rate(monitor)


def end_to_end(broker, workdir: Path, data: bytes, rows: int, drift: bool) -> tuple[float, dict]:
    env = new_topics(broker, workdir, data)
    fill_frames(broker, rows)
    proc, url = spawn_worker(
        env,
        workdir,
        f"drift-{drift}-{uuid.uuid4().hex[:4]}",
        DRIFTLINE_WORKER_BATCH_SIZE="64",
        DRIFTLINE_DRIFT_ENABLED="true" if drift else "false",
    )
    try:
        rate = steady_rate([url], rows)
        stats = http_json(url, timeout=5)
    finally:
        stop_child(proc, name="worker")
    return rate, stats


def main() -> None:
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 2_000_000
    configure_telemetry(TelemetrySettings(log_level="WARNING"))
    workdir = Path(tempfile.mkdtemp(prefix="driftline-bench-drift-"))
    data = train_logistic(n_features=16, n_samples=5_000, seed=1).onnx_bytes
    plain, watched = in_process(data)
    print(f"no Kafka, decode + score + encode: {plain:,.0f} rows/s; with the drift monitor "
          f"{watched:,.0f} rows/s ({watched / plain:.1%})")  # fmt: skip
    rates: dict[bool, list[float]] = {False: [], True: []}
    with TansuBroker(log_file=workdir / "tansu.log") as broker:
        for drift in (False, True) * ROUNDS:
            rate, stats = end_to_end(broker, workdir, data, rows, drift)
            rates[drift].append(rate)
            extra = ""
            if drift:
                timing = stats.get("timing_s", {})
                extra = (
                    f" (drift stage {timing.get('drift_s', 0):.2f} s of "
                    f"{timing.get('score_s', 0):.2f} s scoring; snapshots "
                    f"{stats.get('drift_snapshot_bytes', 0) / 1e6:.1f} MB)"
                )
            state = "on " if drift else "off"
            print(f"frames end to end, drift {state}: {rate:,.0f} rows/s{extra}", flush=True)
    off, on = statistics.median(rates[False]), statistics.median(rates[True])
    print(f"\nframes path with drift on: median {on:,.0f} rows/s (runs {min(rates[True]):,.0f}-"
          f"{max(rates[True]):,.0f}) = {on / off:.1%} of drift off, median {off:,.0f} rows/s "
          f"(runs {min(rates[False]):,.0f}-{max(rates[False]):,.0f}); target >= 70%")  # fmt: skip


if __name__ == "__main__":
    main()
