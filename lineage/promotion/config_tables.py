"""Reading a policy-file table into a config dataclass: one rule for every section.

A table that is not a table, or a key the dataclass does not have, is an error
naming it and the keys there are: a typo in a policy must not go unnoticed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from typing import Any


def table_arguments(
    cls: type, mapping: Any, *, what: str, error: type[Exception], noun: str = "key"
) -> dict[str, Any]:
    """``mapping`` (None = empty) as keyword arguments for the dataclass ``cls``."""
    mapping = {} if mapping is None else mapping
    if not isinstance(mapping, Mapping):
        raise error(f"{what} must be a table, got {mapping!r}")
    known = [f.name for f in fields(cls)]
    unknown = sorted(set(mapping) - set(known))
    if unknown:
        raise error(f"{what}: unknown {noun}(s) {unknown}; known: {known}")
    return dict(mapping)
