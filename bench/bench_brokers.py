"""Apache Kafka beside Tansu: the same benchmarks, in one run, on a fresh broker of each.

For each broker (a single-node Apache Kafka 4.1.1 with its log in a temp dir, then
a fresh in-memory Tansu), with the measurements of the other benchmarks:

1. one broker hop, producer to consumer at 2k messages/s (``bench.broker_hop``);
2. produce-to-prediction latency, single records at 2k/s (worker defaults, then a
   5 ms fetch wait) and frames at 200k rows/s, p50/p99 after a 2 s warm-up
   (``bench.bench_frames.latency``), measured first, on the fresh broker;
3. single records: a raw consumer, a no-work Faust agent and the driftline worker
   over the same topic (``bench.bench_single_record.three_paths``);
4. frames of 2,000 rows on 6 partitions: a raw consumer, then one worker scoring
   the 16-feature logistic model and the 100-tree GBM, and one, two and three
   workers on the GBM (``bench.bench_frames.end_to_end``, the steady rate while
   every worker scores);
5. over the steady stretch of the frames runs, the CPU seconds of the broker and
   of each worker (from /proc) per row, and their largest resident sets.

Then the targets on Apache Kafka, met or missed, and where the time goes for each
one missed. Runs on a 2-core machine vary by up to 30% between identical runs.

Usage: python -m bench.bench_brokers [--quick]   (full: about 9 minutes; --quick: about 4,
with small counts and without the 5 ms fetch wait and three-worker runs, to check it works)
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import shutil
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench.bench_frames import (
    FRAME_ROWS,
    LOW_LATENCY,
    end_to_end,
    fill_frames,
    latency,
    new_topics,
)
from bench.bench_single_record import raw_consumer, three_paths
from bench.broker_hop import broker_hop
from bench.procstat import cpu_seconds, resident_mib
from driftline.core.settings import TelemetrySettings
from driftline.core.telemetry import configure_telemetry
from driftline.inference import train_gbm, train_logistic
from driftline.streams.embedded.kafka_local import KafkaBroker
from driftline.streams.embedded.tansu import TansuBroker
from driftline.streams.kafka.topics import Topics

FRAME_PARTITIONS = 6  # one, two and three workers all get an equal share
CORES = os.cpu_count() or 1
# Each single record crosses the broker five times in three_paths: written once, then
# read by the raw consumer, the no-work agent and the worker, and its prediction written.
RECORD_CROSSINGS = 5


@dataclass(frozen=True)
class Counts:
    hop_s: float
    record_latency_s: float
    frames_latency_s: float
    records: int
    logistic_rows: int
    gbm_rows: int  # per worker
    variants: bool = True  # the 5 ms fetch wait and three GBM workers; --quick skips them


FULL = Counts(hop_s=15, record_latency_s=15, frames_latency_s=10, records=100_000,
              logistic_rows=3_000_000, gbm_rows=1_500_000)  # fmt: skip
QUICK = Counts(hop_s=3, record_latency_s=3, frames_latency_s=3, records=10_000,
               logistic_rows=400_000, gbm_rows=400_000, variants=False)  # fmt: skip
SKIPPED = (float("nan"), float("nan"), 0)


def kafka(workdir: Path) -> KafkaBroker:
    overrides = {
        # 16 MB messages, as the integration suite's broker: the worker's own limits decide.
        "message.max.bytes": str(16 << 20),
        # Kafka's own default (KafkaBroker sets 0 for the tests): workers started together
        # join one generation. At 0 the first gets every partition and the second's join
        # waits out the 60 s rebalance timeout while the first is still starting up.
        "group.initial.rebalance.delay.ms": "3000",
    }
    return KafkaBroker(workdir / "kafka", overrides=overrides)


def tansu(workdir: Path) -> TansuBroker:
    return TansuBroker(log_file=workdir / "tansu.log")


BROKERS = {"Apache Kafka": kafka, "Tansu": tansu}


def measure(broker, workdir: Path, counts: Counts, logistic: bytes, gbm: bytes) -> dict:
    """Every figure for one broker, latency first while its topics are empty."""
    started = time.monotonic()

    def say(line: str) -> None:
        print(f"  [{time.monotonic() - started:4.0f} s] {line}", flush=True)

    # Warm-up, not measured: a fresh JVM broker's first seconds (JIT, coordinators loading)
    # are not its steady state; Tansu gets the same, so each starts from the same point.
    broker_hop(broker.bootstrap, seconds=3)
    out: dict = {"hop": broker_hop(broker.bootstrap, seconds=counts.hop_s)}
    say(f"one hop: p50 {out['hop'][0]:.1f} ms, p99 {out['hop'][1]:.1f} ms")
    for key, frames, rate, seconds, env in (
        ("record_latency", False, 2_000, counts.record_latency_s, {}),
        ("record_latency_5ms", False, 2_000, counts.record_latency_s, LOW_LATENCY),
        ("frames_latency", True, 200_000, counts.frames_latency_s, {}),
    ):
        if env and not counts.variants:
            out[key], out[f"{key}_detail"] = SKIPPED, {}
            say(f"{key}: skipped (--quick)")
            continue
        detail: dict = {}
        out[key] = latency(broker, workdir, logistic, frames=frames, rate=rate, seconds=seconds,
                           detail=detail, **env)  # fmt: skip
        out[f"{key}_detail"] = detail
        say(f"{key}: p50 {out[key][0]:.1f} ms, p99 {out[key][1]:.1f} ms")

    cpu_before = cpu_seconds(broker.proc.pid)
    out["single"] = three_paths(broker.bootstrap, counts.records, workdir)
    out["single_broker_cpu_us"] = (
        (cpu_seconds(broker.proc.pid) - cpu_before) / (RECORD_CROSSINGS * counts.records) * 1e6
    )
    say(f"single records: worker {out['single']['scoring']:,.0f} rec/s, no-work agent "
        f"{out['single']['noop']:,.0f} rec/s")  # fmt: skip

    env = new_topics(broker, workdir, logistic, FRAME_PARTITIONS)
    fill_frames(broker, counts.logistic_rows)
    topic = Topics(env["DRIFTLINE_KAFKA_TOPIC_PREFIX"]).features
    frames = counts.logistic_rows // FRAME_ROWS
    out["raw_frames"] = FRAME_ROWS * asyncio.run(
        raw_consumer(broker.bootstrap, topic, frames, FRAME_PARTITIONS)
    )
    say(f"raw consumer: {out['raw_frames']:,.0f} rows/s")
    runs = [("logistic", logistic, 1)] + [("gbm", gbm, n) for n in (1, 2, 3)]
    for label, data, workers in runs:
        if workers == 3 and not counts.variants:
            out[f"{label}_x{workers}"] = (float("nan"), {})
            say(f"{label}, {workers} worker(s): skipped (--quick)")
            continue
        usage: dict = {}
        rows = (counts.logistic_rows if label == "logistic" else counts.gbm_rows) * workers
        try:
            rate = end_to_end(broker, workdir, data, rows, workers, partitions=FRAME_PARTITIONS,
                              usage=usage)  # fmt: skip
        except RuntimeError as exc:  # e.g. no stretch with every worker scoring: report it
            rate = float("nan")
            say(f"{label}, {workers} worker(s): not measured: {exc}")
        out[f"{label}_x{workers}"] = (rate, usage)
        say(f"{label}, {workers} worker(s): {rate:,.0f} rows/s")
    out["broker_rss_end"] = resident_mib(broker.proc.pid)
    return out


NAN = float("nan")


def per_row_us(usage: dict, name: str) -> float:
    return usage["cpu_s"][name] / usage["rows"] * 1e6 if usage else NAN


def workers_cpu_us(usage: dict) -> float:
    if not usage:
        return NAN
    return sum(per_row_us(usage, name) for name in usage["cpu_s"] if name != "broker")


def busy(usage: dict, name: str) -> float:
    """Cores the process kept busy over the measured stretch."""
    return usage["cpu_s"][name] / usage["seconds"]


def worker_rss(usage: dict) -> float:
    if not usage:
        return NAN
    return max(mib for name, mib in usage["rss_mib"].items() if name != "broker")


def rows_of_table(f: dict) -> list[tuple[str, float, str]]:
    """(label, value, format) per figure, in the order printed."""
    single, lg, g1 = f["single"], f["logistic_x1"][1], f["gbm_x1"][1]
    return [
        ("one broker hop at 2k msg/s, p50 (ms)", f["hop"][0], ".1f"),
        ("one broker hop at 2k msg/s, p99 (ms)", f["hop"][1], ".1f"),
        ("single records: raw consumer (rec/s)", single["ceiling"], ",.0f"),
        ("single records: no-work Faust agent (rec/s)", single["noop"], ",.0f"),
        ("single records: driftline worker (rec/s)", single["scoring"], ",.0f"),
        ("single records: worker / no-work agent", single["scoring"] / single["noop"], ".1%"),
        ("single records at 2k/s, p50 (ms)", f["record_latency"][0], ".1f"),
        ("single records at 2k/s, p99 (ms)", f["record_latency"][1], ".1f"),
        ("  the same, 5 ms fetch wait, p50 (ms)", f["record_latency_5ms"][0], ".1f"),
        ("  the same, 5 ms fetch wait, p99 (ms)", f["record_latency_5ms"][1], ".1f"),
        ("frames: raw consumer (rows/s)", f["raw_frames"], ",.0f"),
        ("frames, logistic, one worker (rows/s)", f["logistic_x1"][0], ",.0f"),
        ("  logistic / raw consumer", f["logistic_x1"][0] / f["raw_frames"], ".1%"),
        ("frames, GBM 100 trees, one worker (rows/s)", f["gbm_x1"][0], ",.0f"),
        ("  GBM / raw consumer", f["gbm_x1"][0] / f["raw_frames"], ".1%"),
        ("frames at 200k rows/s, p50 (ms)", f["frames_latency"][0], ".1f"),
        ("frames at 200k rows/s, p99 (ms)", f["frames_latency"][1], ".1f"),
        ("GBM, two workers / one", f["gbm_x2"][0] / f["gbm_x1"][0], ".2f"),
        ("GBM, three workers / one", f["gbm_x3"][0] / f["gbm_x1"][0], ".2f"),
        ("broker CPU per row, logistic frames (us)", per_row_us(lg, "broker"), ".3f"),
        ("worker CPU per row, logistic frames (us)", workers_cpu_us(lg), ".3f"),
        ("broker CPU per row, GBM frames (us)", per_row_us(g1, "broker"), ".3f"),
        ("broker CPU per single record moved (us)", f["single_broker_cpu_us"], ".2f"),
        ("worker RSS, logistic frames (MiB)", worker_rss(lg), ",.0f"),
        ("worker RSS, GBM frames (MiB)", worker_rss(g1), ",.0f"),
        ("broker RSS, logistic frames (MiB)", lg["rss_mib"]["broker"] if lg else NAN, ",.0f"),
        ("broker RSS at the end of its run (MiB)", f["broker_rss_end"], ",.0f"),
    ]


def print_table(figures: dict[str, dict]) -> None:
    names = list(figures)
    tables = {name: rows_of_table(figures[name]) for name in names}
    print(f"\n{'measure':<46}" + "".join(f"{name:>16}" for name in names) + f"{'ratio':>10}")
    for i, (label, _, fmt) in enumerate(tables[names[0]]):
        values = [tables[name][i][1] for name in names]
        cells = "".join(f"{value:>16{fmt}}" if value == value else f"{'-':>16}"
                        for value in values)  # fmt: skip
        ratio = values[0] / values[1] if len(values) == 2 and values[1] else NAN
        print(f"{label:<46}{cells}" + (f"{ratio:>9.2f}x" if ratio == ratio else ""))
    if len(names) == 2:
        print(f"(ratio: {names[0]} / {names[1]})")


def latency_breakdown(f: dict, key: str) -> str:
    p50, p99, _ = f[key]
    scored, stats = f[f"{key}_detail"]["to_scored"], f[f"{key}_detail"]["stats"]
    timing, batches = stats.get("timing_s", {}), max(stats.get("batches", 0), 1)
    return (
        f"    event time -> scored_at: p50 {scored[0]:.1f} ms, p99 {scored[1]:.1f} ms (the hop in, "
        f"the fetch wait, the batch gathering and scoring); scored_at -> received: the rest of "
        f"p50 {p50:.1f} / p99 {p99:.1f} ms (encoding, the producer's 5 ms linger, the hop out)\n"
        f"    one broker hop alone: p50 {f['hop'][0]:.1f}, p99 {f['hop'][1]:.1f} ms (a prediction "
        f"crosses twice)\n"
        f"    worker: {stats.get('records_in', 0):,} messages in {batches:,} batches "
        f"({stats.get('records_in', 0) / batches:,.1f} a batch); scoring "
        f"{timing.get('score_s', 0) / batches * 1000:.2f} ms a batch, waiting on delivery "
        f"{timing.get('backpressure_s', 0) / batches * 1000:.2f} ms a batch"
    )


def throughput_breakdown(usage: dict, rate: float) -> str:
    if not usage:
        return "    not measured (see above)"
    broker_us, worker_us = per_row_us(usage, "broker"), workers_cpu_us(usage)
    cores = ", ".join(f"{name} {busy(usage, name):.2f}" for name in usage["cpu_s"])
    stage = "; ".join(f"{s['timing_s']}" for s in usage.get("stats", []))
    return (
        f"    cores busy over the steady {usage['seconds']:.1f} s: {cores} (of {CORES})\n"
        f"    CPU per row: worker(s) {worker_us:.3f} us + broker {broker_us:.3f} us = "
        f"{worker_us + broker_us:.3f} us: {CORES} cores carry at most "
        f"{CORES / (worker_us + broker_us) * 1e6:,.0f} rows/s at these costs "
        f"(measured {rate:,.0f})\n"
        f"    worker seconds by stage: {stage}"
    )


def check_targets(f: dict) -> list[str]:
    """Print the targets on Apache Kafka; returns the ones missed."""
    targets = [
        ("single-record p99 <= 25 ms at 2k/s", f["record_latency"][1] <= 25,
         f"p99 {f['record_latency'][1]:.1f} ms", lambda: latency_breakdown(f, "record_latency")),
        ("frames p99 <= 100 ms at 200k rows/s", f["frames_latency"][1] <= 100,
         f"p99 {f['frames_latency'][1]:.1f} ms", lambda: latency_breakdown(f, "frames_latency")),
        ("logistic frames >= 3M rows/s end to end", f["logistic_x1"][0] >= 3e6,
         f"{f['logistic_x1'][0]:,.0f} rows/s",
         lambda: throughput_breakdown(f["logistic_x1"][1], f["logistic_x1"][0])),
        ("GBM two workers >= 1.6x one worker", f["gbm_x2"][0] >= 1.6 * f["gbm_x1"][0],
         f"{f['gbm_x2'][0] / f['gbm_x1'][0]:.2f}x",
         lambda: "    one worker:\n" + throughput_breakdown(f["gbm_x1"][1], f["gbm_x1"][0])
         + "\n    two workers:\n" + throughput_breakdown(f["gbm_x2"][1], f["gbm_x2"][0])),
    ]  # fmt: skip
    missed = []
    print(f"\ntargets on Apache Kafka ({CORES} cores):")
    for label, met, value, why in targets:
        print(f"  {label}: {value}: {'met' if met else 'MISSED'}")
        if not met:
            missed.append(label)
            print(why())
    return missed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_brokers", description=__doc__
                                     .split("\n\n")[0])  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="small counts: checks it works")
    parser.add_argument("--broker", choices=list(BROKERS), action="append",
                        help="run only this broker (repeatable; default both)")  # fmt: skip
    args = parser.parse_args(argv)
    counts = QUICK if args.quick else FULL
    configure_telemetry(TelemetrySettings(log_level="WARNING"))
    root = Path(tempfile.mkdtemp(prefix="driftline-bench-brokers-"))
    load = os.getloadavg()
    print(f"{CORES} cores, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; "
          f"{'quick' if args.quick else 'full'} counts {counts}; logs in {root}")  # fmt: skip
    started = time.monotonic()
    logistic = train_logistic(n_features=16, n_samples=5_000, seed=1).onnx_bytes
    gbm = train_gbm(n_features=16, n_trees=100, seed=1).onnx_bytes
    print(f"models: logistic {hashlib.sha256(logistic).hexdigest()[:12]}, "
          f"GBM {hashlib.sha256(gbm).hexdigest()[:12]}")  # fmt: skip
    figures: dict[str, dict] = {}
    loads = []
    for name in args.broker or list(BROKERS):
        workdir = root / name.replace(" ", "-").lower()
        workdir.mkdir()
        print(f"\n{name}:", flush=True)
        with BROKERS[name](workdir) as broker:
            figures[name] = measure(broker, workdir, counts, logistic, gbm)
        shutil.rmtree(workdir / "kafka" / "log", ignore_errors=True)  # GBs of frames
        loads.append(os.getloadavg()[1])
    # The bench process's own environment pointed at the last broker; leave nothing stale.
    os.environ.pop("DRIFTLINE_KAFKA_BOOTSTRAP", None)
    print_table(figures)
    print(f"\n{time.monotonic() - started:,.0f} s in all; 5-minute load average after each "
          f"broker: {', '.join(f'{x:.2f}' for x in loads)} (median "
          f"{statistics.median(loads):.2f})")  # fmt: skip
    if "Apache Kafka" in figures:
        check_targets(figures["Apache Kafka"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
