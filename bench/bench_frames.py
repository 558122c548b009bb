"""Frames path throughput and latency, against ceilings measured in the same run.

For a 16-feature logistic regression and a 100-tree gradient-boosted model:

1. compute-only ceiling: ``LoadedModel.predict`` on the same frames, no Kafka;
2. frames end to end: a worker (inference role) scoring a pre-filled topic;
3. two workers on two partitions vs one, for each model;
4. latency, produce to prediction on the topic: frames at 200k rows/s and
   single records at 2k records/s, p50/p99 over every row after a 2 s warm-up,
   measured first, on the fresh broker, beside the floor the broker sets: one
   producer-to-consumer hop at the same rate (``bench.broker_hop``);
5. the predictions sink: PredictionFrames into chDB, column-wise (Arrow) vs
   the row-wise sink as baseline.

Usage: python -m bench.bench_frames [ROWS]   (default 3,000,000 logistic rows)
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition

from bench.arguments import Count, read_counts
from bench.bench_single_record import (
    PARTITIONS,
    raw_consumer,
    register_and_promote,
    spawn_worker,
)
from bench.broker_hop import broker_hop, quantiles
from bench.procstat import process_usage
from driftline.core.settings import TelemetrySettings, load_settings
from driftline.core.telemetry import configure_telemetry
from driftline.inference import LoadedModel, SyntheticFeatures, train_gbm, train_logistic
from driftline.inference.frames import Frame, pack_frame, score_frame, unpack_prediction_frame
from driftline.inference.routing import RoutingTable
from driftline.schemas import default_codec
from driftline.streams.demo.loadgen import (
    produce_at_rate,
    produce_frames_at_rate,
    synthetic_frames,
    synthetic_records,
)
from driftline.streams.embedded.processes import stop_child
from driftline.streams.embedded.stack import http_json
from driftline.streams.embedded.tansu import TansuBroker
from driftline.streams.kafka.producer import FeatureProducer
from driftline.streams.kafka.provision import prepare_topics
from driftline.streams.kafka.topics import Topics

FRAME_ROWS = 2000
# The latency profile in the README: a shorter fetch wait (the batch window matters little
# at light load: the scoring agent hands a batch over once its queue runs dry).
LOW_LATENCY = {"DRIFTLINE_WORKER_FETCH_MAX_WAIT_MS": "5"}


def compute_ceiling(model: LoadedModel, seconds: float = 2.0) -> tuple[float, float]:
    """rows/s of predict alone, and of decode + route + score + encode (still no Kafka)."""
    features = SyntheticFeatures(16, seed=2)
    matrices = [features.rows(FRAME_ROWS) for _ in range(8)]
    rows, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        for matrix in matrices:
            model.predict(matrix)
            rows += FRAME_ROWS
    predict_rate = rows / (time.perf_counter() - started)

    codec, table = default_codec(), RoutingTable.champion_only(model)
    names = list(features.feature_names)
    payloads = [
        codec.encode(
            "FeatureFrame",
            pack_frame(f"f{i}", model.name, [f"e{j}" for j in range(FRAME_ROWS)],
                       [0] * FRAME_ROWS, names, m),
        )
        for i, m in enumerate(matrices)
    ]  # fmt: skip
    rows, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        for payload in payloads:
            frame = Frame.from_avro(codec.decode_as("FeatureFrame", payload))
            codec.encode_many("PredictionFrame", score_frame(table, frame).parts)
            rows += FRAME_ROWS
    return predict_rate, rows / (time.perf_counter() - started)


def start_worker(env: dict, workdir: Path, label: str) -> tuple[subprocess.Popen, str]:
    return spawn_worker(env, workdir, label, DRIFTLINE_WORKER_BATCH_SIZE="64")


def steady_rate(
    urls: list[str],
    rows: int,
    timeout_s: float = 300,
    every_s: float = 0.1,
    *,
    pids: dict[str, int] | None = None,
    usage: dict | None = None,
) -> float:
    """rows/s over the longest stretch in which every worker's count kept rising.

    Start-up, the consumer-group join and any rebalance while the workers find
    their partitions are left out, and so is the tail after one worker ran dry.
    With ``pids`` (name -> process id) and ``usage``, ``usage`` receives what those
    processes used over the same stretch (:func:`window_usage`).
    """
    samples: list[tuple[float, list[int]]] = []
    probes: list[dict[str, tuple[float, float]]] = []
    deadline = time.monotonic() + timeout_s
    counts = [0] * len(urls)
    while sum(counts) < rows:
        if time.monotonic() > deadline:
            raise RuntimeError(f"workers scored {counts} of {rows} rows in {timeout_s}s")
        for i, url in enumerate(urls):
            with contextlib.suppress(OSError):
                counts[i] = http_json(url, timeout=2).get("predictions_out", 0)
        samples.append((time.monotonic(), list(counts)))
        if pids:
            probes.append(process_usage(pids))
        time.sleep(every_s)
    start, end = steady_window(samples)
    if usage is not None and probes:
        usage.update(window_usage(samples, probes, start, end))
    return _rate(samples, start, end)


def steady_window(samples: list[tuple[float, list[int]]]) -> tuple[int, int]:
    """First and last index of the longest run of samples ``(time, per-worker counts)`` in
    which every worker's count rose from each sample to the next."""
    best, run_start = (0.0, 0, 0), 0
    for i in range(1, len(samples)):
        rising = all(b > a for a, b in zip(samples[i - 1][1], samples[i][1], strict=True))
        if not rising:
            run_start = i
            continue
        best = max(best, (samples[i][0] - samples[run_start][0], run_start, i))
    if best[0] == 0:
        raise RuntimeError("no interval with every worker scoring: too few rows to measure")
    return best[1], best[2]


def _rate(samples: list[tuple[float, list[int]]], start: int, end: int) -> float:
    (t0, c0), (t1, c1) = samples[start], samples[end]
    return (sum(c1) - sum(c0)) / (t1 - t0)


def rate_while_all_rising(samples: list[tuple[float, list[int]]]) -> float:
    """Total rate over the longest run of samples ``(time, per-worker counts)`` in which
    every worker's count rose from each sample to the next."""
    return _rate(samples, *steady_window(samples))


def window_usage(samples, probes, start: int, end: int) -> dict:
    """Rows and seconds of the window, each process's CPU seconds in it and its largest
    resident set (MiB) sampled in it."""
    names = probes[start].keys()
    return {
        "seconds": samples[end][0] - samples[start][0],
        "rows": sum(samples[end][1]) - sum(samples[start][1]),
        "cpu_s": {name: probes[end][name][0] - probes[start][name][0] for name in names},
        "rss_mib": {
            name: max(probe[name][1] for probe in probes[start : end + 1]) for name in names
        },
    }


def wait_ready(url: str, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            if http_json(url, timeout=2).get("ready"):
                return
        time.sleep(0.2)
    raise RuntimeError(f"worker at {url} not ready in {timeout_s}s")


def new_topics(broker, workdir: Path, model_bytes: bytes, partitions: int = PARTITIONS) -> dict:
    prefix = f"bench{uuid.uuid4().hex[:6]}."
    env = {
        "DRIFTLINE_KAFKA_BOOTSTRAP": broker.bootstrap,
        "DRIFTLINE_KAFKA_TOPIC_PREFIX": prefix,
        "DRIFTLINE_KAFKA_PARTITIONS": str(partitions),
        "DRIFTLINE_DATA_DIR": str(workdir / prefix),
    }
    os.environ.update(env)
    settings = load_settings()
    prepare_topics(settings, broker.bootstrap)
    path = workdir / f"{prefix}onnx"
    path.write_bytes(model_bytes)
    register_and_promote(settings, broker.bootstrap, path, "bench")
    return env


def fill_frames(broker, rows: int) -> None:
    producer = FeatureProducer(load_settings(), broker.bootstrap)
    frames = synthetic_frames(
        model="bench", count=rows, entities=10_000, seed=1, n_features=16, frame_size=FRAME_ROWS
    )
    try:
        produce_frames_at_rate(producer, frames, rate=0)
    finally:
        producer.close()  # else it outlives its broker and retries the address


def end_to_end(
    broker,
    workdir,
    model_bytes: bytes,
    rows: int,
    workers: int,
    *,
    partitions: int = PARTITIONS,
    usage: dict | None = None,
) -> float:
    """Steady rows/s of ``workers`` workers over a fresh topic pre-filled with ``rows``.

    With ``usage``, it also receives the broker's and each worker's CPU seconds and
    largest resident set over the measured stretch, and each worker's ``stats``.
    """
    env = new_topics(broker, workdir, model_bytes, partitions)
    fill_frames(broker, rows)
    started = [start_worker(env, workdir, f"w{i}-{uuid.uuid4().hex[:4]}") for i in range(workers)]
    urls = [url for _, url in started]
    try:
        if usage is None:
            return steady_rate(urls, rows)
        pids = {"broker": broker.proc.pid} | {
            f"worker {i}": proc.pid for i, (proc, _) in enumerate(started)
        }
        rate = steady_rate(urls, rows, pids=pids, usage=usage)
        usage["stats"] = [http_json(url, timeout=5) for url in urls]
        return rate
    finally:
        for proc, _ in started:
            stop_child(proc, name="worker")


async def _latencies(
    bootstrap: str, topic: str, expected: int, timeout_s: float, scored: list[float] | None = None
) -> list[float]:
    """Receive time minus event_time for every scored row on the predictions topic; with
    ``scored``, scored_at minus event_time (the part before the prediction is sent) too."""
    codec = default_codec()
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, fetch_max_wait_ms=5)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(partitions)
        await consumer.seek_to_end(*partitions)
        out, to_scored = [], [] if scored is None else scored
        deadline = time.monotonic() + timeout_s
        while len(out) < expected and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=100)
            now = time.time() * 1000
            for records in batches.values():
                for record in records:
                    name, value = codec.decode(record.value)
                    if name == "PredictionFrame":
                        event_times = unpack_prediction_frame(value)["event_times"]
                        out += (now - event_times).tolist()
                        to_scored += (value["scored_at"] - event_times).tolist()
                    else:
                        out.append(now - value["event_time"])
                        to_scored.append(value["scored_at"] - value["event_time"])
        return out
    finally:
        await consumer.stop()


def wait_scoring(settings, bootstrap: str, url: str, timeout_s: float = 120) -> None:
    """Send a probe record every 0.25 s until the worker has scored one: "ready" means its
    registry is caught up, but its features consumer may still be joining its group (on
    Tansu, for seconds), and records sent meanwhile would time the join, not the path."""
    producer = FeatureProducer(settings, bootstrap)
    probes = synthetic_records(model="bench", count=10_000, entities=10, seed=99, n_features=16)
    deadline = time.monotonic() + timeout_s
    try:
        for probe in probes:
            producer.send(probe)
            producer.flush()
            time.sleep(0.25)
            if http_json(url, timeout=2).get("records_in", 0) > 0:
                time.sleep(1.0)  # probes still on their way are scored before timing starts
                return
            if time.monotonic() > deadline:
                break
    finally:
        producer.close()
    raise RuntimeError(f"worker at {url} scored no probe record in {timeout_s:.0f}s")


def latency(broker, workdir, model_bytes: bytes, *, frames: bool, rate: float, seconds: float,
            warmup_s: float = 2.0, detail: dict | None = None, **worker_env: str):  # fmt: skip
    """p50, p99 and count of produce-to-prediction latency at a steady ``rate``, measured
    over ``seconds`` after ``warmup_s`` at the same rate (connections, first fetches).

    With ``detail``, it also receives ``to_scored``: p50 and p99 of event time to scored_at
    (what comes before the prediction is sent), and the worker's ``stats`` at the end."""
    env = new_topics(broker, workdir, model_bytes)
    proc, url = start_worker(env | worker_env, workdir, f"lat-{uuid.uuid4().hex[:4]}")
    try:
        settings = load_settings()
        wait_ready(url.replace("stats", "health"))
        wait_scoring(settings, broker.bootstrap, url)
        count = int(rate * (seconds + warmup_s))
        topic = Topics(settings.kafka.topic_prefix).predictions
        result: list[float] = []
        scored: list[float] = []
        reader = threading.Thread(
            target=lambda: result.extend(
                asyncio.run(_latencies(broker.bootstrap, topic, count, seconds + 30, scored))
            )
        )
        reader.start()
        time.sleep(1.0)  # the reader is positioned before the first record goes out
        # Closed here: left to the garbage collector it outlived its broker in
        # bench_brokers and retried the stopped one's address through the next run.
        producer = FeatureProducer(settings, broker.bootstrap)
        try:
            if frames:
                batches = synthetic_frames(model="bench", count=count, entities=10_000, seed=3,
                                           n_features=16, frame_size=1000)  # fmt: skip
                produce_frames_at_rate(producer, batches, rate=rate)
            else:
                records = synthetic_records(
                    model="bench", count=count, entities=10_000, seed=3, n_features=16
                )
                produce_at_rate(producer, records, rate=rate)
        finally:
            producer.close()
        reader.join()
        if detail is not None:
            detail["to_scored"] = quantiles(scored[int(rate * warmup_s) :])
            detail["stats"] = http_json(url, timeout=5)
    finally:
        stop_child(proc, name="worker")
    steady = result[int(rate * warmup_s) :]
    p50, p99 = quantiles(steady)
    return p50, p99, len(steady)


def sink_rates(rows: int = 400_000) -> tuple[float, float]:
    import clickhouse_connect

    from driftline.lineage.store.clickhouse import create_tables
    from driftline.lineage.store.frame_sinks import PredictionFrameSink
    from driftline.lineage.store.sinks import PredictionSink

    model = LoadedModel.load(
        (data := train_logistic(16, 3000, seed=1).onnx_bytes),
        name="bench",
        version=1,
        expected_digest=__import__("hashlib").sha256(data).hexdigest(),
    )
    client = clickhouse_connect.get_client(dsn=f"chdb://{tempfile.mkdtemp()}")
    create_tables(client, "bench")
    features = SyntheticFeatures(16, seed=4)
    table, names = RoutingTable.champion_only(model), list(features.feature_names)
    parts = [
        score_frame(table, Frame.from_avro(pack_frame(
            f"s{i}", "bench", [f"e{j}" for j in range(FRAME_ROWS)], [1] * FRAME_ROWS, names,
            features.rows(FRAME_ROWS))), now_ms=lambda: 2).parts[0]
        for i in range(rows // FRAME_ROWS)
    ]  # fmt: skip
    frame_sink = PredictionFrameSink(client, "bench")
    started = time.perf_counter()
    for start in range(0, len(parts), 50):  # 100k-row flushes, like the lineage agent
        for part in parts[start : start + 50]:
            frame_sink.add(part)
        frame_sink.flush()
    columnar = rows / (time.perf_counter() - started)

    row_sink = PredictionSink(client, "bench", "predictions")
    records = [
        {"prediction_id": f"r{i}", "record_id": f"r{i}", "entity_id": "e", "model": "bench",
         "version": 1, "arm": "champion", "experiment_id": None, "score": 0.5,
         "scores": [0.5, 0.5], "event_time": 1, "scored_at": 2, "latency_ms": 1.0,
         "model_latency_ms": 0.1}
        for i in range(rows // 4)
    ]  # fmt: skip
    started = time.perf_counter()
    for start in range(0, len(records), 25_000):
        row_sink.add_many(records[start : start + 25_000])
        row_sink.flush()
    return columnar, len(records) / (time.perf_counter() - started)


def main(argv: list[str] | None = None) -> None:
    rows = read_counts("bench.bench_frames", __doc__, argv,
                       Count("rows", 3_000_000, "logistic rows in the throughput topic",
                             minimum=FRAME_ROWS)).rows  # fmt: skip
    configure_telemetry(TelemetrySettings(log_level="WARNING"))
    workdir = Path(tempfile.mkdtemp(prefix="driftline-bench-frames-"))
    logistic = train_logistic(n_features=16, n_samples=5_000, seed=1).onnx_bytes
    print("training the 100-tree GBM...")
    gbm = train_gbm(n_features=16, n_trees=100, seed=1).onnx_bytes
    import hashlib

    def loaded(data: bytes) -> LoadedModel:
        digest = hashlib.sha256(data).hexdigest()
        return LoadedModel.load(data, name="bench", version=1, expected_digest=digest)

    results = []
    with TansuBroker(log_file=workdir / "tansu.log") as broker:
        # Latency first, while the in-memory broker holds little: Tansu's fetches slow
        # down as a partition's stored batches grow (see README, embedded broker).
        hop = broker_hop(broker.bootstrap)
        frame_lat = latency(broker, workdir, logistic, frames=True, rate=200_000, seconds=10)
        record_lat = latency(broker, workdir, logistic, frames=False, rate=2_000, seconds=15)
        quick = latency(broker, workdir, logistic, frames=False, rate=2_000, seconds=15,
                        **LOW_LATENCY)  # fmt: skip
        env = new_topics(broker, workdir, logistic)
        fill_frames(broker, rows)
        ceiling = asyncio.run(raw_consumer(broker.bootstrap, Topics(env[
            "DRIFTLINE_KAFKA_TOPIC_PREFIX"]).features, rows // FRAME_ROWS))  # fmt: skip
        print(f"raw consumer: {ceiling * FRAME_ROWS:,.0f} rows/s ({ceiling:,.0f} frames/s)")
        models = [("logistic, 16 f", logistic, rows), ("GBM 100 trees", gbm, rows // 3)]
        for label, data, n in models:
            predict_rate, pipeline_rate = compute_ceiling(loaded(data))
            one = end_to_end(broker, workdir, data, n, workers=1)
            two = end_to_end(broker, workdir, data, 2 * n, workers=2)  # long enough to measure
            results.append((label, predict_rate, pipeline_rate, one, two))
            print(f"{label}: ceiling {predict_rate:,.0f}, pipeline {pipeline_rate:,.0f}, "
                  f"frames e2e {one:,.0f} rows/s, two workers {two:,.0f} rows/s")  # fmt: skip
    columnar, row_wise = sink_rates()

    print()
    print(f"{'model':<18}{'ceiling rows/s':>16}{'no-Kafka pipeline':>19}{'frames e2e':>13}"
          f"{'vs ceiling':>12}{'vs pipeline':>13}")  # fmt: skip
    for label, predict_rate, pipeline_rate, one, _ in results:
        print(f"{label:<18}{predict_rate:>16,.0f}{pipeline_rate:>19,.0f}{one:>13,.0f}"
              f"{one / predict_rate:>12.1%}{one / pipeline_rate:>13.1%}")  # fmt: skip
    for label, _, _, one, two in results:
        print(f"two workers, two partitions ({label}): {two:,.0f} rows/s = "
              f"{two / one:.2f}x one worker")  # fmt: skip
    print()
    print(f"one broker hop, producer to consumer at 2k messages/s (the floor; a prediction "
          f"crosses the broker twice): p50 {hop[0]:.1f} ms, p99 {hop[1]:.1f} ms")  # fmt: skip
    print(f"latency, frames at 200k rows/s: p50 {frame_lat[0]:.1f} ms, p99 {frame_lat[1]:.1f} ms "
          f"({frame_lat[2]:,} rows)")  # fmt: skip
    print(f"latency, single records at 2k/s: p50 {record_lat[0]:.1f} ms, "
          f"p99 {record_lat[1]:.1f} ms ({record_lat[2]:,} records)")  # fmt: skip
    print(f"latency, single records at 2k/s, fetch wait 5 ms: "
          f"p50 {quick[0]:.1f} ms, p99 {quick[1]:.1f} ms ({quick[2]:,} records)")  # fmt: skip
    print(f"predictions sink into chDB: frames column-wise {columnar:,.0f} rows/s, "
          f"row-wise baseline {row_wise:,.0f} rows/s ({columnar / row_wise:.1f}x)")  # fmt: skip


if __name__ == "__main__":
    main()
