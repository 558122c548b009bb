"""The `driftline` command line. Each command reads settings once, then delegates."""

from __future__ import annotations

import functools
import getpass
import signal
import sys
import time
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from driftline.errors import DriftlineError
from driftline.settings import Settings, load_settings
from driftline.telemetry import configure_telemetry, shutdown_telemetry

console = Console()
err_console = Console(stderr=True)


class DriftlineGroup(click.Group):
    """Turns every driftline error into one readable line and exit code 2."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except DriftlineError as exc:
            err_console.print(f"[bold red]error:[/] {exc}", highlight=False)
            sys.exit(2)
        finally:
            shutdown_telemetry()


def _settings() -> Settings:
    settings = load_settings()
    configure_telemetry(settings.telemetry)
    return settings


def _print_table(columns: list[str], rows: list[list], title: str | None = None) -> None:
    table = Table(title=title)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*(str(value) for value in row))
    console.print(table)


@click.group(cls=DriftlineGroup)
@click.version_option(package_name="driftline")
def main() -> None:
    """driftline: streaming inference, drift detection and auditable model governance."""


@main.command()
def up() -> None:
    """Start the embedded stack (Tansu broker + worker owning chDB) until Ctrl-C."""
    from streams.stack import EmbeddedStack

    settings = _settings()
    if settings.kafka.bootstrap:
        raise click.UsageError(
            "DRIFTLINE_KAFKA_BOOTSTRAP is set: the stack runs on that cluster; "
            "start workers with `driftline worker` instead of `driftline up`"
        )
    stop = _stop_on_signals()
    stack = EmbeddedStack(settings)
    with console.status("starting Tansu, creating topics, starting the worker..."):
        info = stack.start()
    console.print(
        f"[green]driftline is up[/]  broker {info.bootstrap}  "
        f"worker {info.worker_url}/driftline/  store {info.clickhouse_dsn}"
    )
    console.print(f"logs in {stack.log_dir}; Ctrl-C to stop")
    try:
        while not stop["now"] and stack.alive():
            time.sleep(0.2)
        if not stop["now"]:
            err_console.print(
                "[red]a stack process died[/]; worker log tail:\n" + stack.worker_log_tail()
            )
    finally:
        with console.status("stopping..."):
            stack.stop()
    console.print("stopped")


def _stop_on_signals() -> dict:
    stop = {"now": False}

    def handler(signum, frame) -> None:
        stop["now"] = True

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    return stop


@main.command()
def worker() -> None:
    """Run one Faust worker (roles from DRIFTLINE_WORKER_ROLES)."""
    from streams.worker import run_worker

    run_worker(_settings())


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
    from streams.loadgen import (
        produce_at_rate,
        produce_frames_at_rate,
        synthetic_frames,
        synthetic_records,
    )
    from streams.producer import FeatureProducer
    from streams.stackfile import resolve_bootstrap

    settings = _settings()
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
    from streams.replay_cli import run_replay

    settings = _settings()
    with Progress(
        TextColumn("replaying"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        console=console,
    ) as progress:  # fmt: skip
        task = progress.add_task("replay", total=None)

        def advance(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total or None)

        summary = run_replay(
            settings, model_name, version, _parse_time(start), _parse_time(end), advance
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
    from streams.replay_cli import report

    rows = report(_settings(), replay_id, threshold)
    _print_table(["measure", "value"], [list(r) for r in rows], title=f"replay {replay_id}")


@main.group()
def model() -> None:
    """Register, promote and list models."""


@model.command("register")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--name", required=True, help="model name, e.g. fraud")
@click.option("--actor", default=getpass.getuser, show_default="current user")
@click.option(
    "--training-data",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help=".npy float matrix the model was trained on: its reference "
    "profile (per-feature quantiles, histograms) is kept with the artifact",
)
def model_register(path: Path, name: str, actor: str, training_data: Path | None) -> None:
    """Store an ONNX file content-addressed and publish a `registered` event."""
    from streams.models import ModelCommands

    result, created = ModelCommands.from_settings(_settings()).register(
        path, name, actor, training_data=training_data
    )
    if created:
        console.print(
            f"registered {name} v{result.version} sha256:{result.attributes['digest'][:16]}..."
        )
    else:
        console.print(
            f"{name} v{result.version} already holds this artifact "
            f"(sha256:{result.digest[:16]}...); nothing published"
        )


@model.command("promote")
@click.argument("name")
@click.option("--version", "version", type=click.IntRange(min=1), required=True)
@click.option("--actor", default=getpass.getuser, show_default="current user")
def model_promote(name: str, version: int, actor: str) -> None:
    """Make a registered version the champion (workers swap without a restart)."""
    from streams.models import ModelCommands

    ModelCommands.from_settings(_settings()).promote(name, version, actor)
    console.print(f"promoted {name} v{version} to champion (approved by {actor})")


def _traffic_options(command):
    command = click.option(
        "--experiment",
        default=None,
        help="experiment id (salts the sticky assignment); default: the running experiment",
    )(command)
    return click.option(
        "--percent",
        default=None,
        help="share of entities this version serves, 0-100 (challenger 10, canary 1 if unset)",
    )(command)


def _model_action(action: str, help_text: str, *, needs_version: bool = True, traffic=False):
    @click.argument("name")
    @click.option(
        "--version", "version", type=click.IntRange(min=1), required=needs_version, default=None
    )
    @click.option("--reason", default=None, help="recorded as evidence")
    @click.option("--actor", default=getpass.getuser, show_default="current user")
    def command(
        name: str,
        version: int | None,
        reason: str | None,
        actor: str,
        percent: str | None = None,
        experiment: str | None = None,
    ) -> None:
        from streams.models import ModelCommands

        given = {"reason": reason, "percent": percent, "experiment": experiment}
        arguments = {k: v for k, v in given.items() if v is not None} or None
        event = ModelCommands.from_settings(_settings()).send(
            action, name, version, actor, arguments
        )
        share = event.attributes.get("traffic_bp")
        served = f", {int(share) / 100:g}% of entities" if share is not None else ""
        experiment_id = event.attributes.get("experiment_id")
        in_experiment = f" in experiment {experiment_id}" if experiment_id else ""
        console.print(
            f"{event.type}: {name} v{event.version} ({event.previous_state} -> {event.state})"
            f"{served}{in_experiment}"
        )

    if traffic:
        command = _traffic_options(command)
    model.command(action, help=help_text)(command)


for _action, _help, _traffic in [
    ("reject", "Reject a registered version.", False),
    ("shadow", "Score every record with a version too, never serving it (arm=shadow).", False),
    ("challenger", "Make a version a challenger: an A/B/n arm with --percent of entities.", True),
    ("canary", "Make a version the canary, serving --percent of entities.", True),
    ("traffic", "Change a challenger's or canary's share (a canary step).", True),
    ("archive", "Archive a version.", False),
]:
    _model_action(_action, _help, traffic=_traffic)
_model_action("rollback", "Bring back the previous champion.", needs_version=False)


@model.command("validate")
@click.argument("name")
@click.option("--version", "version", type=click.IntRange(min=1), required=True)
@click.option(
    "--holdout",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="labelled rows, CSV or Parquet (default: [gates] holdout in the policy file)",
)
@click.option("--label-column", default=None, help="the holdout's 0/1 label column [label]")
@click.option(
    "--policy",
    "policy_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="policy TOML with the [gates] thresholds (default: DRIFTLINE_POLICY_FILE)",
)
@click.option("--dry-run", is_flag=True, help="print the gates' results; publish nothing")
@click.option("--actor", default=getpass.getuser, show_default="current user")
def model_validate(
    name: str,
    version: int,
    holdout: Path | None,
    label_column: str | None,
    policy_file: Path | None,
    dry_run: bool,
    actor: str,
) -> None:
    """Run the quality gates; publish `validated` or `rejected` with every number.

    Exit status 0 when the gates pass, 3 when they fail (so a CI job fails too).
    """
    from streams.validate_cli import publish, run_gates

    settings = _settings()
    validation = run_gates(
        settings, name, version, holdout=holdout, label_column=label_column, policy_file=policy_file
    )
    for line in validation.report.summary_lines():
        console.print(line, markup=False, highlight=False)
    if not dry_run:
        event = publish(settings, validation, actor)
        console.print(f"{event.type}: {name} v{version} ({event.previous_state} -> {event.state})")
    if not validation.report.passed:
        sys.exit(3)


@model.command("history")
@click.argument("name")
def model_history(name: str) -> None:
    """Every lifecycle event of a model, with state changes and aliases after each."""
    from streams.models import ModelCommands

    registry = ModelCommands.from_settings(_settings()).registry()
    rows = [
        [
            _when(h.occurred_at),
            h.event_type,
            h.version,
            h.actor,
            f"{h.from_state} -> {h.to_state}",
            _aliases(h.aliases),
        ]
        for h in registry.history(name)
    ]
    _print_table(["time (UTC)", "event", "version", "actor", "state", "aliases after"], rows)


@model.command("at")
@click.argument("name")
@click.option(
    "--time",
    "when",
    required=True,
    help="ISO 8601 (e.g. 2026-11-22T21:53:50Z) or epoch milliseconds",
)
def model_at(name: str, when: str) -> None:
    """Which version held each alias at a point in time."""
    from streams.models import ModelCommands

    time_ms = _parse_time(when)
    registry = ModelCommands.from_settings(_settings()).registry()
    aliases = registry.aliases_at(name, time_ms)
    _print_table(
        ["alias", "version"],
        [[alias, v] for alias, v in sorted(aliases.items())],
        title=f"{name} at {_when(time_ms)}",
    )


def _parse_time(text: str) -> int:
    import datetime as dt

    if text.isdigit():
        return int(text)
    try:
        parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise click.BadParameter(f"{text!r} is neither ISO 8601 nor epoch ms") from exc
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return int(parsed.timestamp() * 1000)


def _when(ms: int) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def _aliases(aliases: dict) -> str:
    return ", ".join(f"{alias}=v{v}" for alias, v in sorted(aliases.items())) or "-"


@model.command("list")
def model_list() -> None:
    """Every model version, from the lifecycle topic."""
    from streams.models import ModelCommands

    registry = ModelCommands.from_settings(_settings()).registry()
    rows = [
        [v.name, v.version, v.state, v.digest[:16], v.registered_by, v.input_shape]
        for name in registry.models()
        for v in registry.versions(name)
    ]
    _print_table(["model", "version", "state", "digest", "registered by", "input shape"], rows)


@main.group()
def lineage() -> None:
    """OpenLineage export of the model lifecycle."""


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
    from lineage.openlineage import lineage_events, to_json_lines
    from streams.codecs import codec_for
    from streams.lifecycle import read_lifecycle
    from streams.stackfile import resolve_bootstrap
    from streams.topics import TOPIC_KINDS, Topics

    settings = _settings()
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


@main.group()
def keys() -> None:
    """Ed25519 keys that sign lifecycle commands."""


@keys.command("new")
@click.option("--actor", default=getpass.getuser, show_default="current user")
@click.option(
    "--roles",
    default="data-scientist,approver",
    show_default=True,
    help="comma-separated: data-scientist, approver, ci, policy",
)
def keys_new(actor: str, roles: str) -> None:
    """Create a key pair for an actor (and, in development, grant the roles)."""
    from lineage.keys import key_id
    from streams.identity import create_actor

    settings = _settings()
    keypair, policy = create_actor(settings, actor, [r for r in roles.split(",") if r])
    console.print(f"key {key_id(keypair.public_key)} for {actor} in {settings.key_dir}")
    console.print(policy)


@main.command()
@click.argument("sql")
def sql(sql: str) -> None:
    """Run a read-only ClickHouse query (through the worker while the stack is up)."""
    from streams.store_access import query

    columns, rows = query(_settings(), sql)
    _print_table(columns, rows)


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
    from streams.drift_cli import drift_events_query
    from streams.store_access import query

    settings = _settings()
    columns, rows = query(
        settings, drift_events_query(settings.clickhouse.database, model_name, limit)
    )
    _print_table(columns, rows, title="drift")


@main.group()
def audit() -> None:
    """Read and verify the hash-chained audit log."""


@audit.command("show")
@click.option("--model", "model_name", default=None)
def audit_show(model_name: str | None) -> None:
    """The audit trail, oldest first."""
    from streams.audit_cli import audit_trail_query
    from streams.store_access import query

    settings = _settings()
    sql_text = audit_trail_query(settings.clickhouse.database, model_name)
    columns, rows = query(settings, sql_text)
    _print_table(columns, rows, title="audit_log")


@audit.command("verify")
@click.option("--model", "model_name", default=None)
def audit_verify(model_name: str | None) -> None:
    """Walk every hash chain; exit 1 and name the first bad row if any."""
    from streams.audit_cli import verify_store

    report = verify_store(_settings(), model_name)
    console.print(report.summary())
    if not report.ok:
        sys.exit(1)


@main.command()
@click.option(
    "--records",
    type=click.IntRange(min=100),
    default=8_000,
    show_default=True,
    help="v1 serves a quarter of these before v2 is trained; traffic runs until the end",
)
@click.option("--rate", type=click.FloatRange(min=10), default=500.0, show_default=True)
def demo(records: int, rate: float) -> None:
    """Gates, a canary on live traffic, drift and an automatic rollback; about two minutes."""
    from streams.demo import run_demo

    run_demo(_settings(), console, records=records, rate=rate)


if __name__ == "__main__":
    main()
