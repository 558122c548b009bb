"""What every `driftline` command shares: the consoles, error handling, settings, tables, times."""

from __future__ import annotations

import datetime as dt
import sys

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from driftline.core.errors import DriftlineError
from driftline.core.settings import Settings, load_settings
from driftline.core.telemetry import configure_telemetry, shutdown_telemetry

console = Console()
err_console = Console(stderr=True)


class DriftlineGroup(click.Group):
    """Turns every driftline error into one readable line and exit code 2."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except DriftlineError as exc:
            # escape: a message may hold brackets (driftline[feast]) that are not markup;
            # soft_wrap: one line however narrow the terminal, so it greps and copies whole.
            err_console.print(
                f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True
            )
            sys.exit(2)
        finally:
            shutdown_telemetry()


def settings_for_cli() -> Settings:
    settings = load_settings()
    configure_telemetry(settings.telemetry)
    return settings


def print_table(columns: list[str], rows: list[list], title: str | None = None) -> None:
    table = Table(title=title)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*(str(value) for value in row))
    console.print(table)


def parse_time(text: str) -> int:
    if text.isdigit():
        return int(text)
    try:
        parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise click.BadParameter(f"{text!r} is neither ISO 8601 nor epoch ms") from exc
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return int(parsed.timestamp() * 1000)


def format_time(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
