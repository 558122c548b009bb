"""Memory and lag over a sustained load on Apache Kafka.

A single-node Apache Kafka 4.1.1 (its log in a temp dir, 1 GiB kept per partition), one
``driftline worker`` running every role (inference, lineage into chDB, registry, policy)
with drift on, or with ``--split`` the production layout: one ``inference`` worker and
one ``lineage,policy,registry`` worker. A model is registered and promoted through the
registry with signed commands. Frames of 2,000 rows x 16 features go out at ``--rate``
rows/s (default 200,000), and for 1 row in 100 (``--outcome-every``) of every
PredictionFrame that comes back an outcome (a delayed label) goes to the outcomes topic,
one record each, so the outcomes join and the error detectors run too.

Every ``--every`` seconds (default 10) it samples each worker's and the broker's
resident set and CPU, the scoring lag on the features topic, the store's lag on the
predictions topic (the lineage role's group), and rows/s in and scored. At the
end it prints the curve and the figures, and checks:

- each worker's resident set stays under 1 GiB;
- it grows by at most 5% over the last 5 minutes (a least-squares line through the
  samples, so one GC or merge does not decide);
- the features, predictions and feature-log lags are bounded: each line rises by less
  than 5 s of input over the last 5 minutes (a worker that scores 1.7% less than comes
  in fails it; the lag also saws by up to a commit interval of input, about 3 s, as
  offsets are committed).

Exits 1 when a check fails. Not part of the test suite.

Usage: python -m bench.soak [--minutes 10] [--rate 200000] [--every 10] [--outcome-every 100]
                            [--split] [--keep]
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from confluent_kafka import OFFSET_END, Consumer, TopicPartition

from bench.bench_frames import FRAME_ROWS, wait_ready
from bench.bench_policy import create_actors, new_champion
from bench.bench_single_record import PARTITIONS, spawn_worker
from bench.procstat import cpu_seconds, resident_mib
from driftline.core.settings import WORKER_ROLES, TelemetrySettings, load_settings
from driftline.core.telemetry import configure_telemetry
from driftline.inference.frames import unpack_prediction_frame
from driftline.streams.control.model_commands import ModelCommands
from driftline.streams.demo.loadgen import produce_frames_at_rate, synthetic_frames
from driftline.streams.embedded.kafka_local import KafkaBroker
from driftline.streams.embedded.processes import stop_child
from driftline.streams.embedded.stack import http_json
from driftline.streams.kafka.codecs import codec_for
from driftline.streams.kafka.offsets import watermarks
from driftline.streams.kafka.producer import FeatureProducer
from driftline.streams.kafka.provision import prepare_topics
from driftline.streams.kafka.topics import Topics

RSS_LIMIT_MIB = 1024
RSS_GROWTH_LIMIT_PCT = 5.0
LAG_TOLERANCE_S = 5.0  # the features lag may rise by this much input over the window
WINDOW_S = 300.0  # the last 5 minutes
MODEL = "bench"
SEED = 1  # the model's training data and the frames share it: no drift to find


ALL_ROLES = ",".join(sorted(WORKER_ROLES))
SPLIT_ROLES = "lineage,policy,registry"


@dataclass
class Sample:
    at_s: float  # since the load started
    worker_rss_mib: dict[str, float]  # by worker label
    broker_rss_mib: float
    worker_cpu: dict[str, float]  # cores busy since the previous sample
    broker_cpu: float
    rows_in_per_s: float
    rows_scored_per_s: float
    features_lag_rows: int
    predictions_lag_rows: int
    feature_log_lag_rows: int  # the lineage role's feature log
    outcomes_joined: int
    # Where an outcome's time goes: the load's delay from a prediction's broker timestamp to
    # its outcome's send (the labeller keeping up), then the scoring worker's Faust group's
    # lag on the outcomes topic (routing) and on the join topic (joining), in messages.
    outcome_delay_s: float = 0.0
    outcomes_lag: int = 0
    join_lag: int = 0
    join_state_mib: float = 0.0  # the join's changelogged table (bounded: see _compact)
    join_waiting: int = 0  # outcomes waiting there for their prediction


def fitted_ends(points: Sequence[tuple[float, float]]) -> tuple[float, float]:
    """The least-squares line through ``(t, y)`` points: its values at the first and last t."""
    if len(points) < 2:
        raise ValueError(f"need at least 2 points for a trend, got {len(points)}")
    t = np.array([p[0] for p in points], dtype=float)
    y = np.array([p[1] for p in points], dtype=float)
    slope, intercept = np.polyfit(t, y, 1)
    return float(intercept + slope * t[0]), float(intercept + slope * t[-1])


def last_window(points: Sequence[tuple[float, float]], window_s: float) -> list:
    """The points in the last ``window_s`` seconds of the run."""
    end = points[-1][0]
    return [p for p in points if p[0] >= end - window_s]


def growth_pct(points: Sequence[tuple[float, float]], window_s: float = WINDOW_S) -> float:
    """How much the fitted line rises over the last ``window_s``, in % of where it starts."""
    start, end = fitted_ends(last_window(points, window_s))
    return (end - start) / start * 100


def rise(points: Sequence[tuple[float, float]], window_s: float = WINDOW_S) -> float:
    """How much the fitted line rises over the last ``window_s`` (negative: it falls)."""
    start, end = fitted_ends(last_window(points, window_s))
    return end - start


def soak_broker(workdir: Path) -> KafkaBroker:
    overrides = {
        "message.max.bytes": str(16 << 20),
        "group.initial.rebalance.delay.ms": "3000",  # Kafka's default
        # 200k rows/s is ~30 MB/s of frames: keep the disk bounded as production would,
        # which also makes the broker delete segments during the run.
        "log.retention.bytes": str(1 << 30),
        "log.segment.bytes": str(128 << 20),
        "log.retention.check.interval.ms": "30000",
    }
    return KafkaBroker(workdir / "kafka", overrides=overrides)


class Load:
    """Frames at a steady rate, and outcomes for a sample of the predictions coming back."""

    def __init__(self, settings, bootstrap: str, rate: float, outcome_every: int) -> None:
        self.settings, self.bootstrap, self.rate = settings, bootstrap, rate
        self.outcome_every = outcome_every
        self.stop = threading.Event()
        self.rows_sent = 0
        self.outcomes_sent = 0
        self.outcome_delay_s = 0.0  # of the last prediction frame labelled
        self.errors: list[BaseException] = []
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        ready = threading.Event()
        for target in (lambda: self._outcomes(ready), self._frames):
            thread = threading.Thread(target=self._guarded(target), daemon=True)
            thread.start()
            self._threads.append(thread)
            ready.wait(30)  # the outcomes reader is at the end before frames go out

    def close(self) -> None:
        self.stop.set()
        for thread in self._threads:
            thread.join(60)

    def _guarded(self, target):
        def run() -> None:
            try:
                target()
            except BaseException as exc:  # reported by the main loop
                self.errors.append(exc)
                self.stop.set()

        return run

    def _pool(self) -> Iterator[dict]:
        """Frames with fresh ids, their rows drawn from a pool of 200 frames of the model's
        training distribution (stationary inputs)."""
        pool = list(synthetic_frames(model=MODEL, count=200 * FRAME_ROWS, entities=10_000,
                                     seed=SEED, n_features=16, frame_size=FRAME_ROWS))  # fmt: skip
        for frame in itertools.cycle(pool):
            if self.stop.is_set():
                return
            yield frame | {"frame_id": uuid.uuid4().hex}

    def _frames(self) -> None:
        producer = FeatureProducer(self.settings, self.bootstrap)

        def sent(rows: int) -> None:
            self.rows_sent += rows

        produce_frames_at_rate(producer, self._pool(), rate=self.rate, on_progress=sent)
        producer.close()

    def _outcomes(self, ready: threading.Event) -> None:
        topic = Topics(self.settings.kafka.topic_prefix).predictions
        consumer = Consumer(self.settings.kafka.librdkafka_config(self.bootstrap) | {
            "group.id": f"soak-outcomes-{uuid.uuid4().hex[:6]}", "enable.auto.commit": False,
        })  # fmt: skip
        consumer.assign([TopicPartition(topic, p, OFFSET_END) for p in range(PARTITIONS)])
        producer, codec = FeatureProducer(self.settings, self.bootstrap), codec_for(self.settings)
        rng = np.random.default_rng(11)
        ready.set()
        try:
            while not self.stop.is_set():
                for message in consumer.consume(500, timeout=0.5):
                    if message.error() is not None:
                        continue
                    name, record = codec.decode(message.value())
                    if name != "PredictionFrame":
                        continue
                    _, produced_ms = message.timestamp()
                    self.outcome_delay_s = max(0.0, time.time() - produced_ms / 1000)
                    columns = unpack_prediction_frame(record)
                    rows, scores = columns["rows"], columns["score"]
                    for i in range(0, len(rows), self.outcome_every):
                        # The truth agrees with the model 90% of the time, steadily.
                        truth = (scores[i] >= 0.5) != (rng.random() < 0.1)
                        producer.send_outcome(
                            f"{record['prediction_frame_id']}:{rows[i]}", float(truth)
                        )
                        self.outcomes_sent += 1
                producer.poll()
        finally:
            consumer.close()
            producer.close()


class LagProbe:
    """A consumer group's committed offsets against the end offsets, per topic."""

    def __init__(self, settings, bootstrap: str, group: str) -> None:
        self._consumer = Consumer(settings.kafka.librdkafka_config(bootstrap) | {
            "group.id": group, "enable.auto.commit": False,
        })  # fmt: skip

    def messages_behind(self, topic: str) -> int:
        partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        committed = self._consumer.committed(partitions, timeout=10)
        behind = 0
        for tp in committed:
            low, high = watermarks(self._consumer, tp.topic, tp.partition)
            behind += high - max(tp.offset, low)  # nothing committed yet: from the start
        return behind

    def close(self) -> None:
        self._consumer.close()


@dataclass
class Worker:
    label: str
    roles: str
    proc: subprocess.Popen
    stats_url: str


def layout(split: bool) -> dict[str, str]:
    """Worker label -> roles: one worker with every role, or the production split."""
    return {"inference": "inference", "store": SPLIT_ROLES} if split else {"worker": ALL_ROLES}


def with_role(workers: list[Worker], role: str) -> Worker:
    return next(w for w in workers if role in w.roles.split(","))


class Probes:
    """The scoring lag (features, the inference worker's scoring group) and the store's
    lags (predictions and the feature log, the lineage worker's group)."""

    def __init__(self, settings, bootstrap: str, workers: list[Worker]) -> None:
        topics = Topics(settings.kafka.topic_prefix)
        scoring_roles = with_role(workers, "inference").roles.split(",")
        agents_group, scoring_group = topics.worker_groups(scoring_roles, features_consumer=True)
        store_group = topics.group(with_role(workers, "lineage").roles.split(","))
        self.features = LagProbe(settings, bootstrap, scoring_group)
        self.store = LagProbe(settings, bootstrap, store_group)
        self.outcomes = LagProbe(settings, bootstrap, agents_group)  # route and join agents
        self.routing = self.outcomes  # the route agent's group, or the outcomes consumer's
        if settings.worker.outcomes_consumer == "kafka":
            self.routing = LagProbe(settings, bootstrap, f"{agents_group}.outcomes")

    def close(self) -> None:
        self.features.close()
        self.store.close()
        self.outcomes.close()
        if self.routing is not self.outcomes:
            self.routing.close()


def sample_loop(workers: list[Worker], broker_pid: int, load: Load, lag: Probes,
                topics: Topics, seconds: float, every_s: float) -> list[Sample]:  # fmt: skip
    samples: list[Sample] = []
    scorer = with_role(workers, "inference")
    started = time.monotonic()

    def cpu_now() -> dict[str, float]:
        return {w.label: cpu_seconds(w.proc.pid) for w in workers} | {
            "broker": cpu_seconds(broker_pid)
        }

    last = (started, 0, 0, cpu_now())
    labels = [w.label for w in workers]
    print(f"{'t (s)':>6}" + "".join(f"{w[:9] + ' MiB':>14}" for w in labels)
          + f"{'broker MiB':>11}" + "".join(f"{w[:9] + ' CPU':>14}" for w in labels)
          + f"{'broker CPU':>11}{'rows/s in':>11}{'scored/s':>11}{'lag rows':>11}"
          f"{'pred. lag':>11}{'log lag':>11}{'joined':>10}{'label s':>8}{'out. lag':>9}"
          f"{'join lag':>9}{'join MiB':>9}{'waiting':>9}")  # fmt: skip
    while time.monotonic() - started < seconds and not load.stop.is_set():
        time.sleep(every_s - (time.monotonic() - started) % every_s)
        now = time.monotonic()
        stats: dict = {}
        with contextlib.suppress(OSError):
            stats = http_json(scorer.stats_url, timeout=5)
        scored = stats.get("predictions_out", last[2])
        cpu = cpu_now()
        dt = now - last[0]
        busy = {label: (cpu[label] - last[3][label]) / dt for label in cpu}
        sample = Sample(
            at_s=now - started,
            worker_rss_mib={w.label: resident_mib(w.proc.pid) for w in workers},
            broker_rss_mib=resident_mib(broker_pid),
            worker_cpu={label: busy[label] for label in labels},
            broker_cpu=busy["broker"],
            rows_in_per_s=(load.rows_sent - last[1]) / dt,
            rows_scored_per_s=(scored - last[2]) / dt,
            features_lag_rows=lag.features.messages_behind(topics.features) * FRAME_ROWS,
            predictions_lag_rows=lag.store.messages_behind(topics.predictions) * FRAME_ROWS,
            feature_log_lag_rows=lag.store.messages_behind(topics.features) * FRAME_ROWS,
            outcomes_joined=stats.get("outcomes", {}).get("joined", 0),
            outcome_delay_s=load.outcome_delay_s,
            outcomes_lag=lag.routing.messages_behind(topics.name("outcomes")),
            join_lag=lag.outcomes.messages_behind(topics.outcome_join),
            join_state_mib=stats.get("outcome_join", {}).get("state_bytes", 0) / 2**20,
            join_waiting=stats.get("outcome_join", {}).get("waiting_outcomes", 0),
        )
        last = (now, load.rows_sent, scored, cpu)
        samples.append(sample)
        s = sample
        print(f"{s.at_s:>6.0f}" + "".join(f"{s.worker_rss_mib[w]:>14,.0f}" for w in labels)
              + f"{s.broker_rss_mib:>11,.0f}" + "".join(f"{s.worker_cpu[w]:>14.2f}" for w in labels)
              + f"{s.broker_cpu:>11.2f}{s.rows_in_per_s:>11,.0f}"
              f"{s.rows_scored_per_s:>11,.0f}{s.features_lag_rows:>11,}"
              f"{s.predictions_lag_rows:>11,}{s.feature_log_lag_rows:>11,}"
              f"{s.outcomes_joined:>10,}{s.outcome_delay_s:>8.1f}{s.outcomes_lag:>9,}"
              f"{s.join_lag:>9,}{s.join_state_mib:>9.1f}{s.join_waiting:>9,}",
              flush=True)  # fmt: skip
    return samples


def verdict(samples: list[Sample], rate: float) -> list[tuple[str, str, bool]]:
    """(check, figure, passed) for each check on the curve: per worker, its RSS and its
    growth; then the scoring lag and the store's lag."""
    window = min(WINDOW_S, samples[-1].at_s / 2)
    tolerance = rate * LAG_TOLERANCE_S
    checks = []
    for label in samples[0].worker_rss_mib:
        rss = [(s.at_s, s.worker_rss_mib[label]) for s in samples]
        max_rss = max(r for _, r in rss)
        growth = growth_pct(rss, window)
        checks += [
            (f"{label} RSS < {RSS_LIMIT_MIB:,} MiB", f"max {max_rss:,.0f} MiB",
             max_rss < RSS_LIMIT_MIB),
            (f"{label} RSS growth <= {RSS_GROWTH_LIMIT_PCT:.0f}% over the last "
             f"{window / 60:.1f} min", f"{growth:+.1f}%", growth <= RSS_GROWTH_LIMIT_PCT),
        ]  # fmt: skip
    for what, rows in (("features (scoring)", lambda s: s.features_lag_rows),
                       ("predictions (store)", lambda s: s.predictions_lag_rows),
                       ("feature log (store)", lambda s: s.feature_log_lag_rows)):  # fmt: skip
        lag = [(s.at_s, float(rows(s))) for s in samples]
        lag_rise = rise(lag, window)
        checks.append(
            (f"{what} lag bounded over the last {window / 60:.1f} min (fitted rise < "
             f"{tolerance:,.0f} rows, {LAG_TOLERANCE_S:.0f} s of input)",
             f"rise {lag_rise:+,.0f} rows, max {max(rows(s) for s in samples):,}",
             lag_rise < tolerance)
        )  # fmt: skip
    return checks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak",
                                     description=__doc__.split("\n\n")[0])  # fmt: skip
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=200_000, help="frame rows/s")
    parser.add_argument("--every", type=float, default=10.0, help="seconds between samples")
    parser.add_argument("--outcome-every", type=int, default=100,
                        help="one outcome per this many scored rows")  # fmt: skip
    parser.add_argument("--split", action="store_true",
                        help=f"an inference worker and a {SPLIT_ROLES} worker")  # fmt: skip
    parser.add_argument("--keep", action="store_true",
                        help="keep the broker log and the chDB store (GBs)")  # fmt: skip
    args = parser.parse_args(argv)
    configure_telemetry(TelemetrySettings(log_level="WARNING"))
    workdir = Path(tempfile.mkdtemp(prefix="driftline-soak-"))
    load_avg = os.getloadavg()
    roles = layout(args.split)
    print(f"{os.cpu_count()} cores, load average {load_avg[0]:.2f} {load_avg[1]:.2f} "
          f"{load_avg[2]:.2f}; {args.minutes:g} min at {args.rate:,.0f} rows/s; workers "
          f"{roles}; logs in {workdir}", flush=True)  # fmt: skip
    with soak_broker(workdir) as broker:
        env = {
            "DRIFTLINE_KAFKA_BOOTSTRAP": broker.bootstrap,
            "DRIFTLINE_KAFKA_TOPIC_PREFIX": f"soak{uuid.uuid4().hex[:6]}.",
            "DRIFTLINE_KAFKA_PARTITIONS": str(PARTITIONS),
            "DRIFTLINE_DATA_DIR": str(workdir / "data"),
            "DRIFTLINE_TELEMETRY_LOG_LEVEL": "WARNING",
        }
        os.environ.update(env)
        settings = load_settings()
        prepare_topics(settings, broker.bootstrap)
        create_actors(settings)
        workers = []
        for label, worker_roles in roles.items():
            proc, url = spawn_worker(
                env, workdir, label,
                DRIFTLINE_WORKER_ROLES=worker_roles,
                DRIFTLINE_WORKER_REQUIRE_SIGNED_ARTIFACTS="true",
                DRIFTLINE_DRIFT_ENABLED="true",
                DRIFTLINE_WORKER_BATCH_SIZE="64",
            )  # fmt: skip
            workers.append(Worker(label, worker_roles, proc, url))
        load = Load(load_settings(), broker.bootstrap, args.rate, args.outcome_every)
        lag = Probes(load_settings(), broker.bootstrap, workers)
        scorer, store = with_role(workers, "inference"), with_role(workers, "lineage")
        try:
            for worker in workers:
                wait_ready(worker.stats_url.removesuffix("stats/") + "health/")
            version = new_champion(ModelCommands.from_settings(settings), workdir, seed=SEED,
                                   name=MODEL)  # fmt: skip
            deadline = time.monotonic() + 60
            models_url = scorer.stats_url.removesuffix("stats/") + "models/"
            while http_json(models_url, timeout=5).get(MODEL, {}).get("version") != version:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the worker does not serve {MODEL} v{version}; see "
                                       f"{workdir}/{scorer.label}.log")  # fmt: skip
                time.sleep(0.5)
            print(f"serving {MODEL} v{version} (registered and promoted by signed commands); "
                  f"load starts", flush=True)  # fmt: skip
            load.start()
            samples = sample_loop(workers, broker.proc.pid, load, lag,
                                  Topics(settings.kafka.topic_prefix), args.minutes * 60,
                                  args.every)  # fmt: skip
            stats = http_json(scorer.stats_url, timeout=10)
            stored = http_json(store.stats_url, timeout=10)
        finally:
            load.close()
            lag.close()
            for worker in workers:
                stop_child(worker.proc, name=worker.label, grace_s=30)
    if not args.keep:  # 10 minutes leave about 13 GB in chDB and 2 GB of broker log
        shutil.rmtree(workdir / "kafka" / "log", ignore_errors=True)
        shutil.rmtree(workdir / "data" / "clickhouse", ignore_errors=True)
    if load.errors:
        print(f"the load stopped: {load.errors[0]!r}", file=sys.stderr)
        return 1
    if len(samples) < 4:
        print("too few samples to judge: run for longer", file=sys.stderr)
        return 1
    checks = verdict(samples, args.rate)
    late = samples[len(samples) // 2 :]
    print(f"\nrows sent {load.rows_sent:,}, scored {stats['predictions_out']:,}; outcomes sent "
          f"{load.outcomes_sent:,}, joined {stats['outcomes']}; drift events "
          f"{stats['drift_events']}; dead letters {stats['dead_letters'] or 'none'}; rows "
          f"stored {stored['rows_stored']}; scoring seconds by stage "
          f"{stats['timing_s']}")  # fmt: skip
    rss = ", ".join(f"{w.label} {max(s.worker_rss_mib[w.label] for s in samples):,.0f} MiB"
                    for w in workers)  # fmt: skip
    cpu = ", ".join(f"{w.label} {np.mean([s.worker_cpu[w.label] for s in late]):.2f}"
                    for w in workers)  # fmt: skip
    print(f"max RSS: {rss}, broker {max(s.broker_rss_mib for s in samples):,.0f} MiB; mean "
          f"CPU over the second half: {cpu}, broker "
          f"{np.mean([s.broker_cpu for s in late]):.2f} cores; max lag: features "
          f"{max(s.features_lag_rows for s in samples):,} rows, predictions "
          f"{max(s.predictions_lag_rows for s in samples):,} rows, feature log "
          f"{max(s.feature_log_lag_rows for s in samples):,} rows")  # fmt: skip
    for check, figure, passed in checks:
        print(f"  {check}: {figure}: {'passed' if passed else 'FAILED'}")
    return 0 if all(passed for _, _, passed in checks) else 1


if __name__ == "__main__":
    raise SystemExit(main())
