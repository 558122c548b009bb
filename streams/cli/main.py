"""The `driftline` command line. Each command reads settings once, then delegates.

Long on purpose: the whole command table, each command a few lines that hand over to
``control``, ``embedded``, ``demo`` or ``app``; the larger groups have modules of their own.
"""

from __future__ import annotations

import functools
import getpass
import signal
import sys
import time
from pathlib import Path

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from driftline.streams.cli.common import (
    DriftlineGroup,
    console,
    err_console,
    parse_time,
    print_table,
    settings_for_cli,
)
from driftline.streams.cli.data import data
from driftline.streams.cli.dataset import dataset
from driftline.streams.cli.model import model
from driftline.streams.exceptions import StreamsError


@click.group(cls=DriftlineGroup)
@click.version_option(package_name="driftline")
def main() -> None:
    """driftline: streaming inference, drift detection and auditable model governance."""


@main.command()
@click.option(
    "--broker",
    "broker_kind",
    type=click.Choice(["tansu", "kafka"]),
    default=None,
    help=(
        "tansu: the embedded in-memory broker (default); kafka: a single-node Apache "
        "Kafka with its data in the data dir, so topics survive a restart (needs java; "
        "the first start fetches the jars with Maven). Default: DRIFTLINE_KAFKA_LOCAL_BROKER."
    ),
)
def up(broker_kind: str | None) -> None:
    """Start the local stack (a broker + a worker owning chDB) until Ctrl-C.

    A worker that dies is restarted against the same broker, after 1 s, doubling
    to 30 s while it keeps dying. If the broker dies, Apache Kafka is restarted
    from its data dir; Tansu kept everything in memory, so the stack stops.
    """
    from driftline.streams.embedded.stack import EmbeddedStack

    settings = settings_for_cli()
    if settings.kafka.bootstrap:
        raise click.UsageError(
            "DRIFTLINE_KAFKA_BOOTSTRAP is set: the stack runs on that cluster; "
            "start workers with `driftline worker` instead of `driftline up`"
        )
    stop = _stop_on_signals()
    stack = EmbeddedStack(settings, broker=broker_kind)
    name = "Apache Kafka" if stack.broker_kind == "kafka" else "Tansu"
    with console.status(f"starting {name}, creating topics, starting the worker..."):
        info = stack.start()
    console.print(
        f"[green]driftline is up[/]  broker {info.bootstrap} ({name})  "
        f"worker {info.worker_url}/driftline/  store {info.clickhouse_dsn}"
    )
    console.print(
        f"live dashboard {info.worker_url}/driftline/dashboard/  metrics {info.worker_url}/metrics"
    )
    console.print(f"logs in {stack.log_dir}; Ctrl-C to stop")
    try:
        _supervise(stack, stop)
    finally:
        with console.status("stopping..."):
            stack.stop()
    console.print("stopped")


def _wait_or_stop(stop: dict, seconds: float) -> bool:
    """Sleep up to ``seconds``; True if a stop was asked for meanwhile."""
    deadline = time.monotonic() + seconds
    while not stop["now"] and time.monotonic() < deadline:
        time.sleep(0.2)
    return stop["now"]


def _supervise(stack, stop: dict) -> None:
    """Keep the stack up: restart a dead worker (with backoff) on the same broker.

    A dead Apache Kafka broker is restarted from its data dir (with its own backoff).
    Tansu holds everything in memory, so if it dies there is nothing to restart
    against: the stack stops and says so.
    """
    from driftline.streams.embedded.stack import RestartBackoff

    worker_backoff, broker_backoff = RestartBackoff(), RestartBackoff()
    broker_started_at = time.monotonic()
    while not stop["now"]:
        time.sleep(0.2)
        if not stack.broker_alive():
            if not stack.broker_keeps_data:
                err_console.print("[red]the broker died[/]; its topics were in memory: stopping")
                return
            wait = broker_backoff.after_run(time.monotonic() - broker_started_at)
            err_console.print(
                f"[red]the broker died[/]; restarting it from its data dir in {wait:.0f}s "
                f"(restart {broker_backoff.restarts})"
            )
            if _wait_or_stop(stop, wait):
                return
            try:
                stack.restart_broker()
                broker_started_at = time.monotonic()
                console.print("[green]broker restarted[/]")
            except StreamsError as exc:
                err_console.print(f"[red]the broker did not come back[/]: {exc}")
            continue
        if stack.worker_alive():
            continue
        wait = worker_backoff.after_run(time.monotonic() - stack.worker_started_at)
        err_console.print(
            f"[red]the worker exited with code {stack.worker.returncode}[/]; restarting it in "
            f"{wait:.0f}s (restart {worker_backoff.restarts}). Log tail:\n"
            f"{stack.worker_log_tail(15)}"
        )
        if _wait_or_stop(stop, wait):
            return
        try:
            stack.restart_worker()
            console.print("[green]worker restarted[/]")
        except StreamsError as exc:  # it died again while starting: the loop backs off more
            err_console.print(f"[red]the restarted worker failed[/]: {exc}")


def _stop_on_signals() -> dict:
    stop = {"now": False}

    def handler(signum, frame) -> None:
        stop["now"] = True

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    return stop


@main.command()
def topics() -> None:
    """Create driftline's topics on the cluster, each with its config, and check them all.

    Run it as the provisioner before any worker starts, on a cluster where workers may
    not create topics (see infra/kafka/acls.sh). Refuses configs that would lose
    records of truth or table state, naming the fix.
    """
    from driftline.streams.kafka.provision import provision

    settings = settings_for_cli()
    created = provision(settings)
    prefix = settings.kafka.topic_prefix
    console.print(f"created {', '.join(created)}" if created else f"every {prefix}* topic exists")
    console.print(f"topic configs checked on {settings.kafka.bootstrap}")


@main.command()
def worker() -> None:
    """Run one Faust worker (roles from DRIFTLINE_WORKER_ROLES)."""
    from driftline.streams.app.worker import run_worker

    run_worker(settings_for_cli())


@main.command()
@click.option(
    "--rate",
    type=float,
    default=1000.0,
    show_default=True,
    help="records per second; 0 = as fast as possible",
)
@click.option("--count", type=click.IntRange(min=1), default=10_000, show_default=True)
@click.option("--entities", type=click.IntRange(min=1), default=1000, show_default=True)
@click.option("--model", "model_name", default="demo", show_default=True, help="target model name")
@click.option("--features", "n_features", type=click.IntRange(min=1), default=16, show_default=True)
@click.option(
    "--seed", type=int, default=0, show_default=True, help="same seed, same records (ids included)"
)
@click.option(
    "--frame-size",
    type=click.IntRange(min=0, max=1_000_000),
    default=0,
    show_default=True,
    help="rows per FeatureFrame message; 0 sends single records",
)
def produce(
    rate: float,
    count: int,
    entities: int,
    model_name: str,
    n_features: int,
    seed: int,
    frame_size: int,
) -> None:
    """Publish seeded synthetic feature records (or frames of many rows, --frame-size N).

    --count and --rate are in rows, whatever the frame size.
    """
    from driftline.streams.demo.loadgen import (
        produce_at_rate,
        produce_frames_at_rate,
        synthetic_frames,
        synthetic_records,
    )
    from driftline.streams.embedded.stackfile import resolve_bootstrap
    from driftline.streams.kafka.producer import FeatureProducer

    settings = settings_for_cli()
    producer = FeatureProducer(settings, resolve_bootstrap(settings))
    if frame_size:
        frames = synthetic_frames(
            model=model_name,
            count=count,
            entities=entities,
            seed=seed,
            n_features=n_features,
            frame_size=frame_size,
        )
        send = functools.partial(produce_frames_at_rate, producer, frames, rate=rate)
    else:
        records = synthetic_records(
            model=model_name, count=count, entities=entities, seed=seed, n_features=n_features
        )
        send = functools.partial(produce_at_rate, producer, records, rate=rate)
    started = time.monotonic()
    with Progress(
        TextColumn("producing"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeRemainingColumn(),
        console=console,
    ) as progress:
        task = progress.add_task("produce", total=count, rate="")

        def advance(n: int) -> None:
            done = progress.tasks[0].completed + n
            elapsed = max(time.monotonic() - started, 1e-9)
            progress.update(task, advance=n, rate=f"{done / elapsed:,.0f} rec/s")

        sent = send(on_progress=advance)
    elapsed = time.monotonic() - started
    unit = f"rows in frames of {frame_size:,}" if frame_size else "records"
    console.print(f"sent {sent:,} {unit} in {elapsed:.1f}s ({sent / elapsed:,.0f} rows/s)")


@main.command()
@click.option("--model", "model_name", required=True, help="model name")
@click.option("--version", type=click.IntRange(min=1), required=True, help="candidate version")
@click.option("--from", "start", required=True, help="ISO 8601 or epoch ms (inclusive)")
@click.option("--to", "end", required=True, help="ISO 8601 or epoch ms (exclusive)")
def replay(model_name: str, version: int, start: str, end: str) -> None:
    """Re-score logged features with a candidate; store it paired with what was served."""
    from driftline.streams.cli.replay import run_replay

    settings = settings_for_cli()
    with Progress(
        TextColumn("replaying"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        console=console,
    ) as progress:  # fmt: skip
        task = progress.add_task("replay", total=None)

        def advance(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total or None)

        summary = run_replay(
            settings, model_name, version, parse_time(start), parse_time(end), advance
        )
    console.print(
        f"replay {summary['replay_id']}: {summary['rows_replayed']:,} rows re-scored with "
        f"{model_name} v{version}, {summary['rows_paired']:,} paired with the served score, "
        f"skipped {summary['skipped'] or 'none'} in {summary['seconds']:.1f}s"
    )
    console.print(f"compare: driftline replay-report {summary['replay_id']}")


@main.command("replay-report")
@click.argument("replay_id")
@click.option("--threshold", type=float, default=0.5, show_default=True, help="decision cut-off")
def replay_report_command(replay_id: str, threshold: float) -> None:
    """The paired comparison of a replay: candidate vs served scores and decisions."""
    from driftline.streams.cli.replay import report

    rows = report(settings_for_cli(), replay_id, threshold)
    print_table(["measure", "value"], [list(r) for r in rows], title=f"replay {replay_id}")


@main.group()
def lineage() -> None:
    """Where a model came from: OpenLineage export, and model -> dataset -> feature views."""


@lineage.command("export")
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="file to write (JSON lines); default: standard output",
)
def lineage_export(output: Path | None) -> None:
    """Every lifecycle event as an OpenLineage RunEvent (Kafka topics and ClickHouse tables
    as datasets)."""
    from driftline.lineage.openlineage import lineage_events, to_json_lines
    from driftline.streams.embedded.stackfile import resolve_bootstrap
    from driftline.streams.kafka.codecs import codec_for
    from driftline.streams.kafka.lifecycle_topic import read_lifecycle
    from driftline.streams.kafka.topics import TOPIC_KINDS, Topics

    settings = settings_for_cli()
    bootstrap = resolve_bootstrap(settings)
    topics = Topics(settings.kafka.topic_prefix)
    events = read_lifecycle(settings, bootstrap, codec_for(settings), topics.lifecycle)
    runs = lineage_events(
        events,
        kafka_bootstrap=bootstrap,
        topics={kind: topics.name(kind) for kind in TOPIC_KINDS},
        clickhouse_namespace=settings.clickhouse_dsn,
        clickhouse_database=settings.clickhouse.database,
        producer="https://github.com/driftline/driftline",
    )
    text = to_json_lines(runs)
    if output is None:
        click.echo(text, nl=False)
    else:
        output.write_text(text)
        console.print(f"wrote {len(runs)} OpenLineage run events to {output}")


@lineage.command("show")
@click.argument("model_name")
@click.option("--version", "version", type=click.IntRange(min=1), required=True)
def lineage_show(model_name: str, version: int) -> None:
    """Model -> training dataset -> feature views: what a version was trained and served with."""
    from driftline.streams.control.lineage_view import describe

    rows = describe(settings_for_cli(), model_name, version)
    print_table(["", ""], [list(row) for row in rows], title=f"lineage of {model_name} v{version}")


@main.group()
def keys() -> None:
    """Ed25519 keys that sign lifecycle commands."""


@keys.command("new")
@click.option("--actor", default=getpass.getuser, show_default="current user")
@click.option(
    "--roles",
    default="data-scientist,approver",
    show_default=True,
    help="comma-separated: data-scientist, approver, ci, policy, data-protection",
)
def keys_new(actor: str, roles: str) -> None:
    """Create a key pair for an actor (and, in development, grant the roles)."""
    from driftline.lineage.trust.keys import key_id
    from driftline.streams.control.identity import create_actor

    settings = settings_for_cli()
    keypair, policy = create_actor(settings, actor, [r for r in roles.split(",") if r])
    console.print(f"key {key_id(keypair.public_key)} for {actor} in {settings.key_dir}")
    console.print(policy)


@main.command()
@click.option(
    "--worker",
    "worker_url",
    default=None,
    help="the worker's URL (default: the running `driftline up` stack's worker)",
)
def status(worker_url: str | None) -> None:
    """One screen: the worker's health, throughput, lag, served models and recent decisions."""
    from driftline.streams.cli.status import render
    from driftline.streams.control.status import read_status
    from driftline.streams.embedded.stackfile import running_stack

    settings = settings_for_cli()
    if worker_url is None:
        info = running_stack(settings)
        if info is None:
            raise StreamsError(
                "no running stack found: start one with `driftline up`, or name a worker "
                "with --worker http://HOST:6066"
            )
        worker_url = info.worker_url
    render(read_status(worker_url.rstrip("/"), settings.clickhouse.database))


@main.command()
@click.argument("kind", type=click.Choice(["canary", "experiment", "drift"]))
@click.option("--model", "model_name", required=True, help="model name")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="the HTML file to write (default: KIND-MODEL.html)",
)
def report(kind: str, model_name: str, out: Path | None) -> None:
    """A self-contained HTML report with plots: a canary's steps and guardrails, an
    experiment's sequential test against its boundary, or drift statistics against
    their thresholds."""
    from driftline.streams.control.reports import report as build
    from driftline.streams.control.store_access import query

    settings = settings_for_cli()
    out = out or Path(f"{kind}-{model_name}.html")
    page = build(kind, lambda sql: query(settings, sql), settings.clickhouse.database, model_name)
    out.write_text(page, encoding="utf-8")
    console.print(f"wrote {out} ({len(page):,} bytes)")


@main.command()
@click.argument("sql")
def sql(sql: str) -> None:
    """Run a read-only ClickHouse query (through the worker while the stack is up)."""
    from driftline.streams.control.store_access import query

    columns, rows = query(settings_for_cli(), sql)
    print_table(columns, rows)


@main.command()
@click.option("--model", "model_name", default=None)
@click.option(
    "--limit",
    default=20,
    show_default=True,
    type=click.IntRange(1, 10_000),
    help="most recent events to show",
)
def drift(model_name: str | None, limit: int) -> None:
    """The latest drift events (detector, arm, feature, statistic, p-value), newest first."""
    from driftline.streams.cli.drift import drift_events_query
    from driftline.streams.control.store_access import query

    settings = settings_for_cli()
    columns, rows = query(
        settings, drift_events_query(settings.clickhouse.database, model_name, limit)
    )
    print_table(columns, rows, title="drift")


@main.group()
def audit() -> None:
    """Read and verify the hash-chained audit log."""


@audit.command("show")
@click.option("--model", "model_name", default=None)
def audit_show(model_name: str | None) -> None:
    """The audit trail, oldest first."""
    from driftline.streams.control.store_access import audit_trail_query, query

    settings = settings_for_cli()
    sql_text = audit_trail_query(settings.clickhouse.database, model_name)
    columns, rows = query(settings, sql_text)
    print_table(columns, rows, title="audit_log")


@audit.command("verify")
@click.option("--model", "model_name", default=None)
def audit_verify(model_name: str | None) -> None:
    """Check the hash chains, the signed checkpoints, their copies on the anchor topic and
    every row's source record on Kafka. Exit 0 intact, 1 NOT intact (each problem names
    the row), 3 UNVERIFIED (a check could not run, e.g. no broker reachable)."""
    from driftline.streams.cli.audit import verify_store

    # A long log takes a while: chains, checkpoints, the anchor topic, every source record.
    with console.status("verifying the audit log (chains, checkpoints, anchors, sources)..."):
        report = verify_store(settings_for_cli(), model_name)
    console.print(report.summary(), markup=False)
    sys.exit(report.exit_code)


@audit.command("clear")
@click.argument("name")
@click.option("--reason", required=True, help="what was found and repaired; recorded as evidence")
@click.option("--actor", default=getpass.getuser, show_default="current user")
def audit_clear(name: str, reason: str, actor: str) -> None:
    """Lift the audit alarm freezing NAME's promotions (a signed clear_alarm command)."""
    from driftline.streams.control.model_commands import ModelCommands

    ModelCommands.from_settings(settings_for_cli()).send(
        "clear_alarm", name, None, actor, {"reason": reason}
    )
    console.print(f"cleared the audit alarm on {name} (by {actor})")


@main.command()
@click.option(
    "--records",
    type=click.IntRange(min=100),
    default=8_000,
    show_default=True,
    help="v1 serves a quarter of these before v2 is trained; traffic runs until the end",
)
@click.option("--rate", type=click.FloatRange(min=10), default=500.0, show_default=True)
@click.option(
    "--features",
    "features_story",
    is_flag=True,
    help="instead: a model whose features come from Feast (needs driftline[feast]): dataset, "
    "lineage, training-serving skew and an erasure",
)
def demo(records: int, rate: float, features_story: bool) -> None:
    """Gates, a canary on live traffic, drift and an automatic rollback; about two minutes."""
    if features_story:
        try:
            from driftline.streams.demo.features_story import run_features_demo
        except ImportError as exc:
            raise StreamsError(
                f"the features demo needs Feast ({exc}): pip install 'driftline[feast]'"
            ) from exc

        run_features_demo(settings_for_cli(), console)
        return
    from driftline.streams.demo.timeline import run_demo

    run_demo(settings_for_cli(), console, records=records, rate=rate)


main.add_command(model)
main.add_command(data)
main.add_command(dataset)

if __name__ == "__main__":
    main()
