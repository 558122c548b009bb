"""The positional counts a benchmark takes, with ``--help`` and errors that name the value.

``python -m bench.bench_audit 100000 50`` reads as before; ``--help`` prints the
benchmark's first paragraph and each count's meaning and default, and ``abc`` or ``0``
ends with a usage error naming the argument and the value, not a traceback.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Count:
    name: str
    default: float
    help: str
    minimum: float = 1
    kind: type = int


def parser_for(prog: str, doc: str | None, counts: Sequence[Count]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"python -m {prog}",
                                     description=(doc or "").split("\n\n")[0])  # fmt: skip
    for count in counts:
        parser.add_argument(count.name, nargs="?", type=count.kind, default=count.default,
                            help=f"{count.help} (default {count.default:,})")  # fmt: skip
    return parser


def checked(parser: argparse.ArgumentParser, args: argparse.Namespace,
            counts: Sequence[Count]) -> argparse.Namespace:  # fmt: skip
    for count in counts:
        value = getattr(args, count.name)
        if value < count.minimum:
            parser.error(f"{count.name}={value:,}: need at least {count.minimum:,}")
    return args


def read_counts(prog: str, doc: str | None, argv: Sequence[str] | None,
                *counts: Count) -> argparse.Namespace:  # fmt: skip
    """The counts from ``argv`` (the command line when None), defaults for those left out."""
    parser = parser_for(prog, doc, counts)
    return checked(parser, parser.parse_args(argv), counts)
