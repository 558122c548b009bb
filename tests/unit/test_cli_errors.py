"""How the CLI reports a driftline error: one line, exit code 2, the message verbatim."""

from __future__ import annotations

import click
import pytest

from driftline.core.errors import DriftlineError
from driftline.streams.cli.common import DriftlineGroup


@click.group(cls=DriftlineGroup)
def cli() -> None:
    pass


@cli.command()
@click.argument("message")
def fail(message: str) -> None:
    raise DriftlineError(message)


@pytest.mark.parametrize(
    "message",
    [
        "install it: pip install 'driftline[feast]'",  # brackets that are not rich markup
        "[bold]not bold[/] and [red]",
        "a long message " * 20,  # not wrapped at the terminal's width
    ],
)
def test_an_error_is_printed_verbatim_on_one_line_with_exit_code_2(message, capsys):
    with pytest.raises(SystemExit) as exited:
        cli(["fail", message])
    assert exited.value.code == 2
    assert capsys.readouterr().err == f"error: {message}\n"
