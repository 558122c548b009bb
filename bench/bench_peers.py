"""driftline beside peer stream processors: single records, one broker, one topic, one model.

For each broker (a fresh single-node Apache Kafka, then a fresh Tansu, as
``bench.bench_brokers`` starts them), in one run, after a 3 s broker hop and one
unreported pass of the hand-written loop's latency phase that warm the broker for every
path alike (``--no-warm-pass`` skips the pass):

1. latency first, on empty topics: each path gets its own input and output topics, is
   started, is sent a probe record every 0.25 s until its first prediction comes back
   (start-up and group join left out), and then single records at a steady 2,000/s; the
   produce-to-prediction latency (receipt of the Prediction minus the record's
   event_time) after a warm-up at the same rate, p50 and p99;
2. one topic pre-filled with N FeatureRecords (16 features, 2 partitions, the project's
   own producer and synthetic data), read whole by each path in turn, each writing one
   Prediction per record to its own output topic (the second worker run reads a copy
   filled with the same seed: see ``run_broker``); the bench reads the output topic as
   it fills, samples the count and the path's CPU seconds (/proc, its process and
   children) every 50 ms and reports the rate and CPU per record over the stretch from
   5% to 95% of N (start-up, group join and the tail left out); then it decodes what it
   read and checks that the output holds exactly N predictions, one per record, and
   that every score equals the first path's. This runs in rounds (two by default), on
   freshly filled topics, every other round in reverse path order; each path's rate and
   CPU per record are the median of its rounds (a 100,000-record read lasts 1-2 s, and
   this machine's speed drifts between runs).

Paths (``--paths``, default all):

- ``driftline-kafka``, ``driftline-faust``: the real worker (``python -m driftline.streams.cli
  worker``, inference role, drift off), the model registered and promoted on its
  lifecycle topic as the other benchmarks do, with DRIFTLINE_WORKER_FEATURES_CONSUMER
  ``kafka`` and ``faust``; ``driftline-kafka-drift``: the first with drift on (the
  drift stage on every batch, and the drift decider);
- ``confluent``: a hand-written confluent-kafka at-least-once loop
  (bench/peers/confluent_loop.py);
- ``quix-apply``, ``quix-batch``: Quix Streams, one ONNX Runtime call per message via
  ``apply``, and a ``BatchingSink`` (bench/peers/quix_app.py);
- ``bytewax``: Bytewax, a batch map (bench/peers/bytewax_flow.py), with recovery
  (source offsets snapshotted every second).

The peers decode, score and encode with one shared implementation (bench/peers/core.py):
the same Avro Prediction in the Confluent wire format, the same prediction ids, the same
ONNX Runtime session options. Quix Streams and Bytewax run in venvs of their own under
.cache/bench-venvs/ (created on first use; ``python -m bench.peers.venvs``).

Usage: python -m bench.bench_peers [--broker kafka|tansu|both] [--quick] [--paths a,b,...]
       [--records N] [--rounds R] [--warmup-s S] [--no-warm-pass]
(full: 100,000 records in 2 rounds and 10 s of latency per path; --quick: 50,000 in 1
round and 3 s, about 2.5
minutes on Kafka and 5 on Tansu, whose confluent-kafka group joins take about 24 s each,
once the venvs exist)
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import math
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from statistics import median

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from bench.bench_brokers import kafka as kafka_broker
from bench.bench_brokers import tansu as tansu_broker
from bench.bench_frames import new_topics
from bench.bench_single_record import PARTITIONS, fill, spawn_worker
from bench.broker_hop import broker_hop, quantiles
from bench.peers import venvs
from bench.procstat import cpu_seconds
from driftline.core.settings import TelemetrySettings, load_settings
from driftline.core.telemetry import configure_telemetry
from driftline.inference import train_logistic
from driftline.schemas import default_codec
from driftline.streams.demo.loadgen import produce_at_rate, synthetic_records
from driftline.streams.embedded.processes import stop_child
from driftline.streams.embedded.stack import http_json
from driftline.streams.kafka.offsets import watermarks
from driftline.streams.kafka.producer import FeatureProducer
from driftline.streams.kafka.topics import Topics

ROOT = Path(__file__).resolve().parents[1]
PATHS = (
    "driftline-kafka",
    "driftline-faust",
    "driftline-kafka-drift",
    "confluent",
    "quix-apply",
    "quix-batch",
    "bytewax",
)
PEERS = ("confluent", "quix-apply", "quix-batch", "bytewax")
LABELS = {
    "driftline": "driftline worker",
    "driftline-kafka": "driftline worker, confluent-kafka batch consumer",
    "driftline-faust": "driftline worker, Faust agent",
    "driftline-kafka-drift": "driftline worker, confluent-kafka batch consumer, drift on",
    "confluent": "hand-written confluent-kafka loop",
    "quix-apply": "Quix Streams, apply (1 ORT call/msg)",
    "quix-batch": "Quix Streams, BatchingSink",
    "bytewax": "Bytewax, flat_map_batch",
}
BROKERS = {"kafka": ("Apache Kafka", kafka_broker), "tansu": ("Tansu", tansu_broker)}
SAMPLE_S = 0.05
BYTEWAX_SNAPSHOT_S = 1
NAN = float("nan")


@dataclass(frozen=True)
class Counts:
    records: int
    latency_s: float
    warmup_s: float
    rate: float = 2_000
    rounds: int = 1  # reads of the throughput topic per path; the figures are the median


FULL = Counts(records=100_000, latency_s=10, warmup_s=2, rounds=2)
QUICK = Counts(records=50_000, latency_s=3, warmup_s=1)
# Records keep coming this long after the measured stretch, so that it ends in the steady
# state: a path that flushes on a timer or on the next poll is not judged by its tail.
COOLDOWN_S = 1.0


# ---------------------------------------------------------------- pure helpers (tested)


def steady_stretch(
    samples: Sequence[tuple[float, int, float]], n: int, lo: float = 0.05, hi: float = 0.95
) -> tuple[float, float, float]:
    """Records/s, CPU µs per record and seconds over the samples from ``lo`` to ``hi`` of n.

    ``samples`` are (seconds, outputs so far, CPU seconds so far). The stretch runs from
    the first sample at or past ``lo * n`` to the first at or past ``hi * n``; NaNs when
    fewer than two samples lie in it.
    """
    start = next((i for i, s in enumerate(samples) if s[1] >= lo * n), None)
    end = next((i for i, s in enumerate(samples) if s[1] >= hi * n), None)
    if start is None or end is None or end <= start:
        return NAN, NAN, NAN
    (t0, c0, cpu0), (t1, c1, cpu1) = samples[start], samples[end]
    if c1 <= c0 or t1 <= t0:
        return NAN, NAN, NAN
    return (c1 - c0) / (t1 - t0), (cpu1 - cpu0) / (c1 - c0) * 1e6, t1 - t0


def best_of(values: dict[str, float], peers: Sequence[str], higher_is_better: bool) -> float:
    """The best finite value among ``peers``; NaN when none has one."""
    found = [values[p] for p in peers if p in values and math.isfinite(values[p])]
    if not found:
        return NAN
    return max(found) if higher_is_better else min(found)


def _cell(value: float, fmt: str) -> str:
    return format(value, fmt) if math.isfinite(value) else "-"


def _ratio(value: float, best: float) -> str:
    if not (math.isfinite(value) and math.isfinite(best)) or best == 0:
        return "-"
    return f"{value / best:.2f}x"


def markdown_table(results: dict[str, dict], peers: Sequence[str] = PEERS) -> str:
    """One row per path: records/s, CPU µs/record, p50 and p99 latency, each with its
    ratio to the best peer of the same run (highest rate, lowest CPU and latency), and
    the output check. ``results[path]`` has ``rate``, ``cpu_us``, ``p50``, ``p99``
    (NaN when not measured) and ``check`` (a short string)."""
    columns = {
        "rate": ("records/s", ",.0f", True),
        "cpu_us": ("CPU µs/record", ".1f", False),
        "p50": ("p50 ms", ".1f", False),
        "p99": ("p99 ms", ".1f", False),
    }
    best = {
        key: best_of({p: r.get(key, NAN) for p, r in results.items()}, peers, higher)
        for key, (_, _, higher) in columns.items()
    }
    head = ["path"]
    for title, _, _ in columns.values():
        head += [title, "vs best peer"]
    head.append("check")
    lines = ["| " + " | ".join(head) + " |", "| --- |" + " ---: |" * (len(head) - 2) + " --- |"]
    for path, r in results.items():
        row = [LABELS.get(path, path)]
        for key, (_, fmt, _) in columns.items():
            value = r.get(key, NAN)
            row += [_cell(value, fmt), _ratio(value, best[key])]
        row.append(r.get("check", ""))
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


# ---------------------------------------------------------------- processes and topics


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of ``pid`` and its live descendants (their threads included)."""
    total, stack = 0.0, [pid]
    while stack:
        current = stack.pop()
        try:
            total += cpu_seconds(current)
            for task in Path(f"/proc/{current}/task").iterdir():
                stack += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, ValueError):
            continue
    return total


@dataclass
class Target:
    """Where a path reads and writes, and what it scores with."""

    bootstrap: str
    env: dict  # the driftline settings of the topic prefix (DRIFTLINE_KAFKA_*, data dir)
    features: str
    output: str
    model_path: Path
    workdir: Path
    group: str


def peer_env(target: Target, **extra: str) -> dict:
    return (
        os.environ
        | {
            "PYTHONPATH": str(ROOT),
            "PEER_BOOTSTRAP": target.bootstrap,
            "PEER_INPUT": target.features,
            "PEER_OUTPUT": target.output,
            "PEER_GROUP": target.group,
            "PEER_MODEL": str(target.model_path),
        }
        | extra
    )


def start_path(path: str, target: Target) -> subprocess.Popen:
    if path.startswith("driftline"):
        consumer, _, drift = path.removeprefix("driftline-").partition("-")
        extra = {"DRIFTLINE_WORKER_FEATURES_CONSUMER": consumer}
        if drift:  # the drift stage and decider too: the figure the issue asks for
            extra["DRIFTLINE_DRIFT_ENABLED"] = "true"
        proc, url = spawn_worker(target.env, target.workdir, path, **extra)
        proc.stats_url = url  # for a diagnosis when it sends nothing
        return proc
    if path == "confluent":
        command = [sys.executable, "-m", "bench.peers.confluent_loop"]
        env = peer_env(target)
    elif path.startswith("quix"):
        command = [str(venvs.python_of("quix")), "-m", "bench.peers.quix_app"]
        env = peer_env(target, PEER_MODE=path.removeprefix("quix-"))
    elif path == "bytewax":
        # With recovery, so that it is at-least-once too: source offsets are snapshotted
        # every second (on resume it replays at most that much), as Quix commits per
        # checkpoint. Without it Bytewax keeps no progress at all.
        python = str(venvs.python_of("bytewax"))
        recovery = Path(tempfile.mkdtemp(prefix="bytewax-recovery-", dir=target.workdir))
        subprocess.run([python, "-m", "bytewax.recovery", str(recovery), "1"], check=True,
                       capture_output=True)  # fmt: skip
        command = [python, "-m", "bytewax.run", "bench.peers.bytewax_flow:flow",
                   "-r", str(recovery), "-s", str(BYTEWAX_SNAPSHOT_S), "-b", "0"]  # fmt: skip
        env = peer_env(target)
    else:
        raise ValueError(f"unknown path {path!r}")
    log = open(target.workdir / f"{path}.log", "ab")  # noqa: SIM115 - the child keeps it
    return subprocess.Popen(command, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)


def worker_stats(proc: subprocess.Popen) -> str:
    """A driftline worker's counters, for an error message; empty for a peer."""
    url = getattr(proc, "stats_url", None)
    if url is None:
        return ""
    try:
        stats = http_json(url, timeout=2)
    except OSError as exc:
        return f"; its stats: {exc}"
    keys = ("ready", "records_in", "predictions_out", "batches", "dead_letters")
    return "; its stats: " + ", ".join(f"{k} {stats.get(k)}" for k in keys)


def output_topic(path: str, prefix: str) -> str:
    """The worker writes its prefix's predictions topic; each peer a topic of its own."""
    return Topics(prefix).predictions if path.startswith("driftline") else f"{prefix}{path}.out"


def create_topic(bootstrap: str, name: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(name, PARTITIONS, 1)])[name].result()


class Offsets:
    """End offsets of a topic's partitions, asked of the broker each time (not cached)."""

    def __init__(self, bootstrap: str) -> None:
        self._consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-peers"})

    def ends(self, topic: str) -> list[int]:
        return [watermarks(self._consumer, topic, p)[1] for p in range(PARTITIONS)]

    def count(self, topic: str, since: Sequence[int]) -> int:
        return sum(end - start for end, start in zip(self.ends(topic), since, strict=True))

    def close(self) -> None:
        self._consumer.close()


def drain(consumer: Consumer, most: int, wait_s: float = 0.05) -> list:
    """What librdkafka has fetched (up to ``most``), else the first message within ``wait_s``.

    ``consume(n, timeout)`` alone waits for n messages or the whole timeout, which would
    add up to the timeout to every receipt time the bench takes.
    """
    messages = consumer.consume(most, 0)
    if not messages:
        first = consumer.poll(wait_s)
        messages = [] if first is None else [first, *consumer.consume(most - 1, 0)]
    return messages


class Collector(threading.Thread):
    """Reads an output topic from its beginning and keeps every message value, counting.

    The bench counts outputs by reading them, not by end offsets: on Tansu a partition's
    end offset is its last batch's base offset + 1 (see README, embedded broker). Only
    messages stamped at or after ``min_timestamp_ms`` count (the two worker runs share
    their prefix's predictions topic; the worker's producer stamps the send time).
    """

    def __init__(self, bootstrap: str, topic: str, min_timestamp_ms: int = 0) -> None:
        super().__init__(daemon=True)
        self.values: list[bytes] = []
        self._min = min_timestamp_ms
        self._done = threading.Event()
        config = {"bootstrap.servers": bootstrap, "group.id": "bench-peers",
                  "enable.auto.commit": False, "fetch.wait.max.ms": 20}  # fmt: skip
        self._consumer = Consumer(config)
        self._consumer.assign(
            [TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(PARTITIONS)]
        )
        self.start()

    @property
    def count(self) -> int:
        return len(self.values)

    def run(self) -> None:
        try:
            while not self._done.is_set():
                for message in drain(self._consumer, 10_000):
                    if not message.error() and message.timestamp()[1] >= self._min:
                        self.values.append(message.value())
        finally:
            self._consumer.close()

    def finish(self, quiet_s: float = 1.0) -> list[bytes]:
        """Read on until nothing came for ``quiet_s``, then stop; every value read."""
        last, since = self.count, time.monotonic()
        while time.monotonic() - since < quiet_s:
            time.sleep(0.1)
            if self.count != last:
                last, since = self.count, time.monotonic()
        self._done.set()
        self.join(10)
        return self.values


def tally(values: Sequence[bytes]) -> dict[str, tuple[int, float]]:
    """record_id -> (how many predictions, last score) of encoded Predictions."""
    decode = default_codec().decode
    seen: dict[str, tuple[int, float]] = {}
    for value in values:
        name, record = decode(value)
        if name != "Prediction":
            raise RuntimeError(f"the output holds a {name}, not a Prediction")
        count, _ = seen.get(record["record_id"], (0, 0.0))
        seen[record["record_id"]] = (count + 1, record["score"])
    return seen


def check(seen: dict[str, tuple[int, float]], n: int, reference: dict[str, float] | None) -> str:
    total = sum(count for count, _ in seen.values())
    verdict = "ok" if total == n and len(seen) == n else "WRONG"
    line = f"{verdict}: {total:,} predictions of {len(seen):,} records"
    if reference is not None:
        diffs = [abs(score - reference[r]) for r, (_, score) in seen.items() if r in reference]
        line += f", max score diff {max(diffs, default=NAN):.1e}"
    return line


# ---------------------------------------------------------------- the two phases


def say_since(started: float) -> Callable[[str], None]:
    def say(line: str) -> None:
        print(f"  [{time.monotonic() - started:5.0f} s] {line}", flush=True)

    return say


def throughput(path: str, target: Target, n: int, say) -> tuple[dict, dict]:
    """Read the pre-filled topic with ``path``: its figures and record_id -> score."""
    # The worker runs share a predictions topic; the peers' topics are their own (and Quix
    # stamps an output with its input's timestamp, so no filter there).
    since_ms = int(time.time() * 1000) if path.startswith("driftline") else 0
    collector = Collector(target.bootstrap, target.output, since_ms)
    proc = start_path(path, target)
    samples: list[tuple[float, int, float]] = []
    started = time.monotonic()
    deadline, shown, failure = started + 120 + n / 500, started, ""
    try:
        while True:
            count = collector.count
            samples.append((time.monotonic(), count, tree_cpu_seconds(proc.pid)))
            if count >= n:
                break
            if proc.poll() is not None:
                failure = f"exited with {proc.returncode} after {count:,} predictions"
                break
            if time.monotonic() > deadline:
                failure = f"only {count:,} of {n:,} predictions in {deadline - started:.0f} s"
                break
            if time.monotonic() - shown >= 5:
                shown = time.monotonic()
                say(f"{path}: {count:,} of {n:,} predictions")
            time.sleep(SAMPLE_S)
    finally:
        stop_child(proc, grace_s=10, name=path, quiet=True)
        values = collector.finish()
    rate, cpu_us, seconds = steady_stretch(samples, n)
    seen = tally(values)
    scores = {record_id: score for record_id, (_, score) in seen.items()}
    result = {"rate": rate, "cpu_us": cpu_us, "steady_s": seconds, "seen": seen,
              "failure": failure}  # fmt: skip
    return result, scores


def latency(path: str, broker, workdir: Path, model: bytes, counts: Counts, say) -> tuple:
    """p50, p99 (ms) and count of produce-to-prediction latency at ``counts.rate``/s."""
    env = new_topics(broker, workdir, model)  # fresh topics; the model registered and promoted
    prefix = env["DRIFTLINE_KAFKA_TOPIC_PREFIX"]
    target = Target(broker.bootstrap, env, Topics(prefix).features, output_topic(path, prefix),
                    workdir / f"{prefix}onnx", workdir, f"{prefix}{path}")  # fmt: skip
    if not path.startswith("driftline"):
        create_topic(broker.bootstrap, target.output)
    offsets = Offsets(broker.bootstrap)
    producer = FeatureProducer(load_settings(), broker.bootstrap)
    proc = start_path(path, target)
    try:
        # Probes until the first prediction: start-up and the group join are left out.
        since, started = offsets.ends(target.output), time.monotonic()
        probes = synthetic_records(model="bench", count=10_000, entities=100, seed=5,
                                   n_features=16)  # fmt: skip
        while offsets.count(target.output, since) == 0:
            if proc.poll() is not None or time.monotonic() - started > 180:
                raise RuntimeError(
                    f"{path} sent no prediction in {time.monotonic() - started:.0f}"
                    f" s (exit code {proc.poll()}{worker_stats(proc)}); see {workdir}/{path}.log"
                )
            produce_at_rate(producer, iter([next(probes)]), rate=0)
            time.sleep(0.25)
        say(
            f"{path}: first prediction after {time.monotonic() - started:.1f} s; "
            f"{counts.rate:,.0f} records/s: {counts.warmup_s:.0f} s warm-up, "
            f"{counts.latency_s:.0f} s measured, {COOLDOWN_S:.0f} s more"
        )
        time.sleep(0.5)
        expected = int(counts.rate * (counts.warmup_s + counts.latency_s + COOLDOWN_S))
        phase_ms = time.time() * 1000
        out: list[tuple[float, float, float]] = []
        reader = threading.Thread(target=_receive, args=(broker.bootstrap, target.output,
                                  offsets.ends(target.output), phase_ms, expected, out,
                                  counts.latency_s + 60))  # fmt: skip
        reader.start()
        records = synthetic_records(model="bench", count=expected, entities=10_000, seed=3,
                                    n_features=16)  # fmt: skip
        produce_at_rate(producer, records, rate=counts.rate)
        reader.join()
    finally:
        stop_child(proc, grace_s=10, name=path, quiet=True)
        offsets.close()
        producer.close()
    begin = phase_ms + counts.warmup_s * 1000
    end = begin + counts.latency_s * 1000
    steady = [ms for event_ms, ms, _ in out if begin <= event_ms < end]
    say(f"{path}: {slowest_stalls(out, phase_ms)}")
    if len(out) < expected:
        say(f"{path}: only {len(out):,} of {expected:,} predictions came back")
    return (*quantiles(steady), len(steady))


def slowest_stalls(out: list[tuple[float, float, float]], phase_ms: float, shown: int = 5) -> str:
    """Where a p99 comes from: the slowest prediction of each of the worst 100 ms stretches
    of sending, and how much of its latency came before it was scored (the record's trip
    to the path and its wait there) and after (the prediction's trip back)."""
    worst: dict[int, tuple[float, float, float]] = {}
    for event_ms, ms, scored_ms in out:
        stretch = int((event_ms - phase_ms) // 100)
        if stretch not in worst or ms > worst[stretch][1]:
            worst[stretch] = (event_ms, ms, scored_ms)
    slowest = sorted(worst.values(), key=lambda row: -row[1])[:shown]
    shown_rows = ", ".join(
        f"{(e - phase_ms) / 1000:.2f}: {ms:.0f} ({scored:.0f})" for e, ms, scored in slowest
    )
    return (
        f"slowest predictions (s into the phase: ms, of which before it was scored): {shown_rows}"
    )


def _receive(bootstrap, topic, since, phase_ms, expected, out, timeout_s) -> None:
    """(event_time, receipt minus event_time, scored_at minus event_time; in ms) for each
    prediction of the phase."""
    codec = default_codec()
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-peers-latency",
                         "enable.auto.commit": False, "fetch.wait.max.ms": 5})  # fmt: skip
    consumer.assign([TopicPartition(topic, p, since[p]) for p in range(PARTITIONS)])
    deadline = time.monotonic() + timeout_s
    try:
        while len(out) < expected and time.monotonic() < deadline:
            messages = drain(consumer, 1_000)
            now = time.time() * 1000
            for message in messages:
                if message.error():
                    continue
                prediction = codec.decode(message.value())[1]
                event_ms = prediction["event_time"]
                if event_ms >= phase_ms:  # probes went out before the phase
                    out.append((event_ms, now - event_ms, prediction["scored_at"] - event_ms))
    finally:
        consumer.close()


# ---------------------------------------------------------------- one broker


def run_broker(name: str, broker, workdir: Path, paths: list[str], counts: Counts,
               model: bytes, *, warm_pass: bool = True) -> dict[str, dict]:  # fmt: skip
    say = say_since(time.monotonic())
    results: dict[str, dict] = {path: {} for path in paths}
    # Not measured: a fresh JVM broker's first seconds (JIT, coordinators loading) are not
    # its steady state; Tansu gets the same (as in bench_brokers).
    broker_hop(broker.bootstrap, seconds=3)
    if warm_pass:
        # Nor its first minute of this workload: its JIT compiler threads still took up to
        # half a core through the first path's phase, which then measured a fresh broker
        # and every later path a warmer one. One unreported pass of the hand-written loop's
        # phase (group joins, commits, idempotent produce) warms it for every path alike.
        try:
            latency("confluent", broker, workdir, model, counts, lambda line: None)
        except Exception as exc:  # measure the paths anyway, and say so
            say(f"the warm-up pass failed ({exc}); the first path meets a colder broker")
    say(f"{name} warmed up")
    for path in paths:
        try:
            p50, p99, measured = latency(path, broker, workdir, model, counts, say)
            results[path].update(p50=p50, p99=p99)
            say(f"{path}: latency p50 {p50:.1f} ms, p99 {p99:.1f} ms ({measured:,} records)")
        except Exception as exc:  # report it and go on with the other paths
            results[path]["failure"] = f"latency: {exc}"
            say(f"{path}: latency not measured: {exc}")

    # One topic for every path. Each run of the worker has its own prefix, though: its
    # consumer group is named after the prefix, and on Tansu a Faust worker cannot join a
    # group that the confluent-kafka consumer (cooperative-sticky) used before it
    # (InconsistentGroupProtocolError). The second worker run reads a copy filled with
    # the same seed: the same records, ids, keys and partitions.
    def filled() -> dict:
        env = new_topics(broker, workdir, model)
        features = Topics(env["DRIFTLINE_KAFKA_TOPIC_PREFIX"]).features
        say(f"filling {features} with {counts.records:,} records (16 features, 2 partitions)...")
        say(f"  produced at {fill(load_settings(), broker.bootstrap, counts.records):,.0f} "
            f"records/s")  # fmt: skip
        return env

    reference: dict[str, float] | None = None
    for turn in range(counts.rounds):
        # Every other round in reverse order: no path always meets the broker first.
        order = paths if turn % 2 == 0 else paths[::-1]
        if counts.rounds > 1:
            say(f"throughput, round {turn + 1} of {counts.rounds}: {', '.join(order)}")
        shared, envs = filled(), {}
        for path in [p for p in order if p.startswith("driftline")][1:]:
            envs[path] = filled()
        for path in order:
            reference = throughput_round(path, envs.get(path, shared), broker, workdir,
                                         counts, results[path], reference, say)  # fmt: skip
    for path, result in results.items():
        if len(result.get("rates", [])) > 1:
            result.update(rate=median(result["rates"]), cpu_us=median(result["cpu_uses"]))
            say(f"{path}: rounds at " + ", ".join(f"{r:,.0f}" for r in result["rates"])
                + f" records/s; median {result['rate']:,.0f}")  # fmt: skip
        elif result.get("rates"):
            result.update(rate=result["rates"][0], cpu_us=result["cpu_uses"][0])
    return results


Scores = dict[str, float]


def throughput_round(path: str, env: dict, broker, workdir: Path, counts: Counts, result: dict,
                     reference: Scores | None, say) -> Scores | None:  # fmt: skip
    """One read of the filled topic by ``path``, added to ``result``; the first good
    path's scores, which every later path's must equal."""
    prefix = env["DRIFTLINE_KAFKA_TOPIC_PREFIX"]
    target = Target(broker.bootstrap, env, Topics(prefix).features, output_topic(path, prefix),
                    workdir / f"{prefix}onnx", workdir, f"{prefix}{path}")  # fmt: skip
    try:
        if not path.startswith("driftline"):
            create_topic(broker.bootstrap, target.output)
        measured, scores = throughput(path, target, counts.records, say)
    except Exception as exc:
        result["failure"] = f"throughput: {exc}"
        say(f"{path}: throughput not measured: {exc}")
        return reference
    result.setdefault("rates", []).append(measured["rate"])
    result.setdefault("cpu_uses", []).append(measured["cpu_us"])
    checked = check(measured["seen"], counts.records, reference)
    if measured["failure"]:
        checked += f" ({measured['failure']})"
    # A round that loses or doubles a record marks the path, whatever the other rounds saw.
    if not result.get("check", "ok").startswith("ok") and checked.startswith("ok"):
        checked = result["check"]
    result["check"] = checked
    say(
        f"{path}: {measured['rate']:,.0f} records/s, {measured['cpu_us']:.1f} µs CPU a "
        f"record over {measured['steady_s']:.1f} s; {checked}"
    )
    return scores if reference is None and checked.startswith("ok") else reference


def choose_paths(asked: str | None) -> list[str]:
    paths = list(PATHS) if not asked else [p.strip() for p in asked.split(",") if p.strip()]
    unknown = [p for p in paths if p not in PATHS]
    if unknown:
        raise SystemExit(f"unknown path(s) {unknown}; choose from {', '.join(PATHS)}")
    return list(dict.fromkeys(paths))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_peers",
                                     description=__doc__.split("\n\n")[0])  # fmt: skip
    parser.add_argument("--broker", choices=["kafka", "tansu", "both"], default="both")
    parser.add_argument("--quick", action="store_true",
                        help="50,000 records and 3 s of latency per path")  # fmt: skip
    parser.add_argument("--paths", help=f"comma-separated, of: {', '.join(PATHS)}")
    parser.add_argument("--records", type=int,
                        help="records in the throughput topic (a longer steady stretch, e.g. "
                        "to profile a path)")  # fmt: skip
    parser.add_argument("--rounds", type=int,
                        help="reads of the throughput topic per path, every other one in "
                        "reverse path order; the median is reported (default 2; 1 with "
                        "--quick)")  # fmt: skip
    parser.add_argument("--no-warm-pass", action="store_true",
                        help="skip the unreported pass that warms each broker before the "
                        "first measured path")  # fmt: skip
    parser.add_argument("--warmup-s", type=float,
                        help="seconds at the latency rate before measuring (default 2; 1 "
                        "with --quick)")  # fmt: skip
    args = parser.parse_args(argv)
    counts = QUICK if args.quick else FULL
    if args.records:
        counts = dataclasses.replace(counts, records=args.records)
    if args.warmup_s is not None:
        counts = dataclasses.replace(counts, warmup_s=args.warmup_s)
    if args.rounds is not None:
        if args.rounds < 1:
            raise SystemExit(f"--rounds {args.rounds}: need at least 1 read per path")
        counts = dataclasses.replace(counts, rounds=args.rounds)
    paths = choose_paths(args.paths)
    configure_telemetry(TelemetrySettings(log_level="WARNING"))
    started = time.monotonic()
    for peer in {"quix" for p in paths if p.startswith("quix")} | ({"bytewax"} & set(paths)):
        venvs.ensure(peer, quiet=True)
        print(f"{peer} venv: {venvs.versions(peer)}")
    root = Path(tempfile.mkdtemp(prefix="driftline-bench-peers-"))
    load = os.getloadavg()
    model = train_logistic(n_features=16, n_samples=5_000, seed=1).onnx_bytes
    print(f"{os.cpu_count()} cores, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; "
          f"{counts}; paths {', '.join(paths)}; logistic model "
          f"{hashlib.sha256(model).hexdigest()[:12]}; logs in {root}", flush=True)  # fmt: skip
    tables = {}
    for key in ["kafka", "tansu"] if args.broker == "both" else [args.broker]:
        name, make = BROKERS[key]
        workdir = root / key
        workdir.mkdir()
        print(f"\n{name}:", flush=True)
        with make(workdir) as broker:
            tables[name] = run_broker(
                name, broker, workdir, paths, counts, model, warm_pass=not args.no_warm_pass
            )
        shutil.rmtree(workdir / "kafka" / "log", ignore_errors=True)
    os.environ.pop("DRIFTLINE_KAFKA_BOOTSTRAP", None)
    for name, results in tables.items():
        print(
            f"\n### {name}: {counts.records:,} records; latency at {counts.rate:,.0f} "
            f"records/s over {counts.latency_s:.0f} s after {counts.warmup_s:.0f} s\n"
        )
        print(markdown_table(results))
        for path, r in results.items():
            if r.get("failure"):
                print(f"\n{path}: {r['failure']}")
    load = os.getloadavg()
    print(f"\n{time.monotonic() - started:,.0f} s in all; load average at the end "
          f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
