"""`driftline model ...`: register, validate, move through the lifecycle, and read history."""

from __future__ import annotations

import getpass
import sys
from pathlib import Path

import click

from driftline.streams.cli.common import (
    console,
    format_time,
    parse_time,
    print_table,
    settings_for_cli,
)


@click.group()
def model() -> None:
    """Register, promote and list models."""


def _feature_defaults(_ctx, _param, values: tuple[str, ...]) -> dict[str, float]:
    out = {}
    for text in values:
        name, sep, value = text.partition("=")
        try:
            out[name.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep or not name.strip():
            raise click.BadParameter(f"{text!r}: write NAME=NUMBER, e.g. f03=0.5")
    return out


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
@click.option(
    "--feature-service",
    default=None,
    help="Feast feature service the worker fetches the features from that records do not "
    "carry (its version is recorded); default: the --dataset's service, if any",
)
@click.option(
    "--feature-repo",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="the Feast repository; default: DRIFTLINE_FEATURES_REPO",
)
@click.option(
    "--missing-features",
    type=click.Choice(["dead_letter", "defaults", "retry"]),
    default="dead_letter",
    show_default=True,
    help="what a row gets when the store lacks its entity or is down",
)
@click.option(
    "--feature-default",
    "feature_defaults",
    multiple=True,
    callback=_feature_defaults,
    help="NAME=VALUE used by --missing-features defaults (others default to 0.0); repeatable",
)
@click.option(
    "--dataset",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="training dataset from `driftline dataset build`: its manifest is checked and "
    "recorded (metadata, audit chain, OpenLineage), and it gives the reference profile",
)
def model_register(
    path: Path,
    name: str,
    actor: str,
    training_data: Path | None,
    feature_service: str | None,
    feature_repo: Path | None,
    missing_features: str,
    feature_defaults: dict[str, float],
    dataset: Path | None,
) -> None:
    """Store an ONNX file content-addressed and publish a `registered` event."""
    from driftline.streams.control.model_commands import ModelCommands, resolve_provenance

    settings = settings_for_cli()
    provenance = resolve_provenance(
        settings,
        feature_service=feature_service,
        feature_repo=feature_repo,
        missing_rule=missing_features,
        defaults=feature_defaults,
        dataset=dataset,
    )
    result, created = ModelCommands.from_settings(settings).register(
        path, name, actor, training_data=training_data, features=provenance
    )
    if created:
        console.print(
            f"registered {name} v{result.version} sha256:{result.attributes['digest'][:16]}..."
        )
        for key in ("feature_service", "dataset"):
            if key in result.attributes:
                console.print(f"  {key}: {result.attributes[key]}")
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
    from driftline.streams.control.model_commands import ModelCommands

    ModelCommands.from_settings(settings_for_cli()).promote(name, version, actor)
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
        from driftline.streams.control.model_commands import ModelCommands

        given = {"reason": reason, "percent": percent, "experiment": experiment}
        arguments = {k: v for k, v in given.items() if v is not None} or None
        event = ModelCommands.from_settings(settings_for_cli()).send(
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
    from driftline.streams.control.validation import publish, run_gates

    settings = settings_for_cli()
    # Loading both models, scoring the holdout and timing them takes seconds: show it.
    with console.status(f"running the quality gates on {name} v{version}..."):
        validation = run_gates(
            settings,
            name,
            version,
            holdout=holdout,
            label_column=label_column,
            policy_file=policy_file,
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
    from driftline.streams.control.model_commands import ModelCommands

    registry = ModelCommands.from_settings(settings_for_cli()).registry()
    rows = [
        [
            format_time(h.occurred_at),
            h.event_type,
            h.version,
            h.actor,
            f"{h.from_state} -> {h.to_state}",
            _aliases(h.aliases),
        ]
        for h in registry.history(name)
    ]
    print_table(["time (UTC)", "event", "version", "actor", "state", "aliases after"], rows)


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
    from driftline.streams.control.model_commands import ModelCommands

    time_ms = parse_time(when)
    registry = ModelCommands.from_settings(settings_for_cli()).registry()
    aliases = registry.aliases_at(name, time_ms)
    print_table(
        ["alias", "version"],
        [[alias, v] for alias, v in sorted(aliases.items())],
        title=f"{name} at {format_time(time_ms)}",
    )


def _aliases(aliases: dict) -> str:
    return ", ".join(f"{alias}=v{v}" for alias, v in sorted(aliases.items())) or "-"


@model.command("list")
def model_list() -> None:
    """Every model version, from the lifecycle topic."""
    from driftline.streams.control.model_commands import ModelCommands

    registry = ModelCommands.from_settings(settings_for_cli()).registry()
    rows = [
        [v.name, v.version, v.state, v.digest[:16], v.registered_by, v.input_shape]
        for name in registry.models()
        for v in registry.versions(name)
    ]
    print_table(["model", "version", "state", "digest", "registered by", "input shape"], rows)
