"""`driftline demo`: the whole loop on the embedded stack, told as a timeline.

Starts Tansu and a worker, trains and registers v1, promotes it, streams traffic,
hot-swaps to v2 mid-stream, sends a few bad records, waits until ClickHouse
holds every prediction, prints the audit trail and verifies the hash chains.
"""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

from rich.console import Console
from rich.live import Live
from rich.table import Table

from driftline.settings import DataSettings, Settings
from inference import train_logistic
from streams.audit_cli import audit_trail_query
from streams.identity import create_actor
from streams.kafka import make_producer
from streams.loadgen import produce_at_rate, synthetic_records
from streams.models import ModelCommands
from streams.producer import FeatureProducer
from streams.stack import EmbeddedStack, http_json
from streams.store_access import query
from streams.topics import Topics

MODEL = "demo"
N_FEATURES = 16


def run_demo(settings: Settings, console: Console, *, records: int, rate: float) -> None:
    started = time.monotonic()

    def step(text: str) -> None:
        console.print(f"[dim]{time.monotonic() - started:6.1f}s[/]  {text}")

    settings = _demo_settings(settings)
    stack = EmbeddedStack(settings)
    step(f"starting Tansu + a worker (data in {settings.data.dir})")
    stack.start()
    try:
        step(f"stack up: broker {stack.info.bootstrap}, worker {stack.worker_url}/driftline/")
        create_actor(settings, "demo-trainer", ["data-scientist"])
        create_actor(settings, "demo-approver", ["approver"])
        create_actor(settings, "policy", ["policy"])
        step(
            "keys for demo-trainer (data-scientist), demo-approver (approver) and policy; "
            "every change below is a signed command checked against the roles file"
        )
        commands = ModelCommands.from_settings(settings)
        v1 = _train_and_register(commands, settings.data.dir, seed=1, step=step)
        commands.promote(MODEL, v1, "demo-approver")
        _wait_for_champion(stack, v1)
        step(f"worker serving {MODEL} v{v1}; streaming {records:,} records at {rate:,.0f}/s")

        producer = FeatureProducer(settings, stack.info.bootstrap)
        first, second = records // 2, records - records // 2
        _stream_with_summary(stack, settings, producer, console, count=first, seed=10, rate=rate)
        v2 = _train_and_register(commands, settings.data.dir, seed=2, step=step)
        commands.promote(MODEL, v2, "demo-approver")
        step(f"promoted v{v2} mid-stream: the worker swaps without a restart")
        _stream_with_summary(stack, settings, producer, console, count=second, seed=11, rate=rate)
        _send_bad_records(settings, stack.info.bootstrap)
        step("sent 3 bad records (garbage bytes, 15 features, a NaN): expect 3 dead letters")
        _wait_for_rows(stack, settings, records, dead_letters=3, step=step)
        _print_results(settings, console, step)
        report = http_json(f"{stack.worker_url}/driftline/audit/verify/", timeout=60)
        step(f"audit verify: {report['summary']}")
    finally:
        step("shutting down")
        stack.stop()
    step("[green]done[/]")


def _demo_settings(settings: Settings) -> Settings:
    """A fresh, private data dir and the embedded store: the demo never touches yours."""
    demo_dir = (settings.data.dir / "demo").resolve()
    shutil.rmtree(demo_dir, ignore_errors=True)
    return settings.model_copy(
        update={
            "data": DataSettings(dir=demo_dir),
            "kafka": settings.kafka.model_copy(update={"bootstrap": None}),
            "clickhouse": settings.clickhouse.model_copy(update={"dsn": None}),
        }
    )


def _train_and_register(commands: ModelCommands, data_dir: Path, *, seed: int, step) -> int:
    trained = train_logistic(n_features=N_FEATURES, n_samples=20_000, seed=seed)
    path = data_dir / f"{MODEL}-seed{seed}.onnx"
    path.write_bytes(trained.onnx_bytes)
    event, _ = commands.register(path, MODEL, actor="demo-trainer")
    auc = trained.metrics.get("roc_auc", float("nan"))
    step(
        f"trained logistic regression (seed {seed}, holdout AUC {auc:.3f}); "
        f"registered {MODEL} v{event.version}"
    )
    return event.version


def _wait_for_champion(stack: EmbeddedStack, version: int, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        loaded = http_json(stack.worker_url + "/driftline/models/")
        if loaded.get(MODEL, {}).get("version") == version:
            return
        time.sleep(0.1)
    raise TimeoutError(f"the worker did not load {MODEL} v{version} in {timeout_s:.0f}s")


def _summary_table(stack: EmbeddedStack, settings: Settings, produced: int) -> Table:
    stats = http_json(stack.worker_url + "/driftline/stats/")
    db = settings.clickhouse.database
    _, rows = query(
        settings,
        f"SELECT count(), quantile(0.5)(latency_ms), quantile(0.99)(latency_ms) "
        f"FROM {db}.predictions WHERE scored_at > now64(3) - INTERVAL 5 SECOND",
    )
    _, total = query(settings, f"SELECT count() FROM {db}.predictions FINAL")
    recent, p50, p99 = rows[0]
    table = Table(title="live", show_header=True)
    for column in (
        "produced",
        "scored",
        "records/s (last 5s)",
        "p50 ms",
        "p99 ms",
        "rows in ClickHouse",
        "dead letters",
    ):
        table.add_column(column, justify="right")
    table.add_row(
        f"{produced:,}",
        f"{stats['predictions_out']:,}",
        f"{recent / 5:,.0f}",
        f"{p50 or 0:.1f}",
        f"{p99 or 0:.1f}",
        f"{total[0][0]:,}",
        f"{sum(stats['dead_letters'].values())}",
    )
    return table


def _stream_with_summary(
    stack, settings, producer, console, *, count: int, seed: int, rate: float
) -> None:
    sent = {"n": 0}
    records = synthetic_records(
        model=MODEL, count=count, entities=500, seed=seed, n_features=N_FEATURES
    )

    def run() -> None:
        produce_at_rate(
            producer, records, rate=rate, on_progress=lambda n: sent.__setitem__("n", sent["n"] + n)
        )

    thread = threading.Thread(target=run, name="demo-producer", daemon=True)
    thread.start()
    with Live(console=console, refresh_per_second=4) as live:
        while thread.is_alive():
            live.update(_summary_table(stack, settings, sent["n"]))
            time.sleep(0.5)
        live.update(_summary_table(stack, settings, sent["n"]))
    thread.join()


def _send_bad_records(settings: Settings, bootstrap: str) -> None:
    topic = Topics(settings.kafka.topic_prefix).features
    producer = make_producer(settings, bootstrap)
    good = next(synthetic_records(model=MODEL, count=1, entities=1, seed=99, n_features=N_FEATURES))
    from schemas import default_codec

    codec = default_codec()
    short = dict(good, record_id="bad-short", features=good["features"][:15])
    nan = dict(good, record_id="bad-nan", features=[float("nan")] + good["features"][1:])
    producer.produce(topic, b"\x00\x00not avro at all", key=b"bad-bytes")
    producer.produce(topic, codec.encode("FeatureRecord", short), key=b"bad-short")
    producer.produce(topic, codec.encode("FeatureRecord", nan), key=b"bad-nan")
    producer.flush(10)


def _wait_for_rows(
    stack, settings, expected: int, *, dead_letters: int, step, timeout_s: float = 60.0
) -> None:
    db = settings.clickhouse.database
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        _, rows = query(settings, f"SELECT uniqExact(prediction_id) FROM {db}.predictions")
        _, dead = query(settings, f"SELECT count() FROM {db}.deadletters")
        if rows[0][0] >= expected and dead[0][0] >= dead_letters:
            step(f"ClickHouse holds all {rows[0][0]:,} predictions and {dead[0][0]} dead letters")
            return
        time.sleep(0.3)
    raise TimeoutError(
        f"ClickHouse has {rows[0][0]} of {expected} predictions after "
        f"{timeout_s:.0f}s; see {stack.log_dir / 'worker.log'}"
    )


def _print_results(settings: Settings, console: Console, step) -> None:
    db = settings.clickhouse.database
    columns, rows = query(
        settings,
        f"SELECT version, count() AS predictions, round(avg(score), 3) AS mean_score, "
        f"round(quantile(0.5)(latency_ms), 1) AS p50_ms, "
        f"round(quantile(0.99)(latency_ms), 1) AS p99_ms "
        f"FROM {db}.predictions FINAL GROUP BY version ORDER BY version",
    )
    _table(console, "predictions by model version", columns, rows)
    columns, rows = query(settings, f"SELECT reason, detail FROM {db}.deadletters ORDER BY offset")
    _table(console, "dead letters", columns, rows)
    sql = audit_trail_query(db)
    console.print(f"[bold]audit trail[/]  [dim]{sql}[/]")
    columns, rows = query(settings, sql)
    _table(console, None, columns, rows)


def _table(console: Console, title: str | None, columns: list, rows: list) -> None:
    table = Table(title=title)
    for column in columns:
        table.add_column(str(column))
    for row in rows:
        table.add_row(*(str(v) for v in row))
    console.print(table)
