"""`driftline demo`: the whole loop on the embedded stack, told as a timeline.

Starts Tansu and a worker; v1 is champion on live traffic with outcomes; v2 is
trained, registered and passes the quality gates; the policy walks its canary
through the steps and promotes it; an injected concept drift hurts v2, the
error detectors fire and the policy rolls back to v1. Then a few bad records,
the audit trail as a timeline, who served when, and the hash chains verified.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from rich.console import Console
from rich.live import Live
from rich.table import Table

from driftline.core.settings import DataSettings, Settings
from driftline.inference import train_logistic
from driftline.streams.control.identity import create_actor
from driftline.streams.control.model_commands import ModelCommands
from driftline.streams.control.store_access import audit_trail_query, query
from driftline.streams.control.validation import publish, run_gates
from driftline.streams.demo.loadgen import synthetic_records
from driftline.streams.demo.story import (
    LiveTraffic,
    print_timeline,
    wait_for_state,
    write_demo_policy,
    write_holdout,
)
from driftline.streams.embedded.stack import EmbeddedStack, http_json
from driftline.streams.kafka.clients import make_producer
from driftline.streams.kafka.topics import Topics

MODEL = "demo"
N_FEATURES = 16


def run_demo(settings: Settings, console: Console, *, records: int, rate: float) -> None:
    started = time.monotonic()
    started_ms = time.time_ns() // 1_000_000

    def step(text: str) -> None:
        console.print(f"[dim]{time.monotonic() - started:6.1f}s[/]  {text}")

    settings = _demo_settings(settings)
    write_demo_policy(settings.data.dir)
    stack = EmbeddedStack(settings, worker_env={"DRIFTLINE_POLICY_INTERVAL_S": "1"})
    step(f"starting Tansu + a worker (data in {settings.data.dir})")
    stack.start()
    traffic = None
    try:
        step(f"stack up: broker {stack.info.bootstrap}, worker {stack.worker_url}/driftline/")
        create_actor(settings, "demo-trainer", ["data-scientist"])
        create_actor(settings, "demo-approver", ["approver"])
        create_actor(settings, "demo-ci", ["ci"])
        create_actor(settings, "policy", ["policy"])
        step(
            "keys for demo-trainer, demo-approver, demo-ci and policy; every change below is a "
            "signed command checked against the roles file"
        )
        commands = ModelCommands.from_settings(settings)
        v1 = _train_and_register(commands, settings.data.dir, n_samples=20_000, step=step)
        commands.promote(MODEL, v1, "demo-approver")
        _wait_for_champion(stack, v1)
        traffic = LiveTraffic(
            settings, stack.info.bootstrap, model=MODEL, n_features=N_FEATURES, rate=rate
        ).start()
        step(
            f"v{v1} is champion; live traffic at {rate:,.0f} records/s, and every prediction "
            "gets its outcome back (wrong 10% of the time)"
        )
        _show_live(stack, settings, console, traffic, until=lambda: traffic.sent >= records // 4)

        v2 = _train_and_register(commands, settings.data.dir, n_samples=30_000, step=step)
        holdout = write_holdout(settings.data.dir / "holdout.csv", seed=1, n_features=N_FEATURES)
        validation = run_gates(settings, MODEL, v2, holdout=holdout)
        event = publish(settings, validation, "demo-ci")
        failed = [c.name for c in validation.report.failures()]
        step(f"quality gates on 5,000 holdout rows: {event.type}{f' ({failed})' if failed else ''}")
        commands.send("canary", MODEL, v2, "demo-trainer", {"percent": "5"})
        step(f"canary v{v2} at 5%; the policy steps it 5 -> 25 -> 50 -> 100% on live outcomes")
        shares = _share_reporter(commands, v2, step)
        state = wait_for_state(commands, MODEL, v2, {"champion", "archived"}, 180, on_tick=shares)
        step(f"v{v2} is {state} (decided by the policy from its guardrails and its test)")

        if state == "champion":
            # The error detectors learn v2's error rate as champion before the concept moves.
            traffic.wait_for_outcomes(v2, "champion", 1_000, timeout_s=60)
            step(f"v{v2} has served 1,000 labelled predictions as champion (10% wrong)")
            traffic.inject_drift(v2, 0.6)
            step(f"injecting concept drift: v{v2}'s outcomes are now wrong 60% of the time")
            wait_for_state(commands, MODEL, v2, {"archived"}, 180)
            step(f"the error detectors fired; the policy rolled back to v{v1}")
        traffic.stop()
        _send_bad_records(settings, stack.info.bootstrap)
        step("sent 3 bad records (garbage bytes, 15 features, a NaN): expect 3 dead letters")
        _wait_for_rows(stack, settings, traffic.sent, dead_letters=3, step=step)
        _print_results(settings, console, step)
        print_timeline(settings, console, MODEL, started_ms)
        _print_model_at(commands, console)
        report = http_json(f"{stack.worker_url}/driftline/audit/verify/", timeout=60)
        step(f"audit verify: {report['summary']}")
    finally:
        if traffic is not None:
            traffic.stop()
        step("shutting down")
        stack.stop()
    step("[green]done[/]")


def _share_reporter(commands: ModelCommands, version: int, step):
    last = {"bp": None}

    def report() -> None:
        split = commands.registry().traffic(MODEL)
        bp = next((a.traffic_bp for a in split.served if a.version == version), None)
        if bp is not None and bp != last["bp"]:
            last["bp"] = bp
            step(f"  canary v{version} serves {bp / 100:g}% of entities")

    return report


def _print_model_at(commands: ModelCommands, console: Console) -> None:
    """`driftline model at`: who served when, at each change of champion."""
    registry = commands.registry()
    table = Table(title="driftline model at: who served when")
    for column in ("time", "event", "champion", "canary"):
        table.add_column(column)
    for entry in registry.history(MODEL):
        if entry.event_type not in ("promoted", "canary_started", "rolled_back", "archived"):
            continue
        aliases = registry.aliases_at(MODEL, entry.occurred_at)
        when = time.strftime("%H:%M:%S", time.gmtime(entry.occurred_at / 1000))
        table.add_row(
            when,
            f"{entry.event_type} v{entry.version} by {entry.actor}",
            f"v{aliases['champion']}" if "champion" in aliases else "",
            f"v{aliases['canary']}" if "canary" in aliases else "",
        )
    console.print(table)


def _show_live(stack, settings, console, traffic, *, until) -> None:
    with Live(console=console, refresh_per_second=4) as live:
        while not until():
            live.update(_summary_table(stack, settings, traffic.sent))
            time.sleep(0.5)
        live.update(_summary_table(stack, settings, traffic.sent))


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


def _train_and_register(commands: ModelCommands, data_dir: Path, *, n_samples: int, step) -> int:
    # Both versions learn the same population (seed 1); v2 from more rows.
    seed = 1
    trained = train_logistic(n_features=N_FEATURES, n_samples=n_samples, seed=seed)
    path = data_dir / f"{MODEL}-{n_samples}.onnx"
    path.write_bytes(trained.onnx_bytes)
    event, _ = commands.register(path, MODEL, actor="demo-trainer")
    auc = trained.metrics.get("roc_auc", float("nan"))
    step(
        f"trained logistic regression ({n_samples:,} rows, holdout AUC {auc:.3f}); "
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


def _send_bad_records(settings: Settings, bootstrap: str) -> None:
    topic = Topics(settings.kafka.topic_prefix).features
    producer = make_producer(settings, bootstrap)
    good = next(synthetic_records(model=MODEL, count=1, entities=1, seed=99, n_features=N_FEATURES))
    from driftline.schemas import default_codec

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
