"""The schema catalog: the ``.avsc`` files shipped in this package.

Layout (read through importlib.resources so it works from a wheel too)::

    avro/<snake_name>.avsc              current schema of each record
    avro/history/<Name>/v<N>.avsc       every released version, never edited
    pinned_ids.json                     {"<Name>": {"<N>": schema_id}}

The current file must equal the highest history version; a schema change is a
new ``v<N+1>.avsc`` plus a new pinned id, checked for BACKWARD compatibility.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib.resources import files
from importlib.resources.abc import Traversable
from typing import Any

from driftline.schemas.exceptions import SchemaError, UnknownRecordName

NAMESPACE = "driftline.v1"

# Order is the order of pinned ids; new records go at the end.
SCHEMA_NAMES: tuple[str, ...] = (
    "FeatureRecord",
    "FeatureFrame",
    "Prediction",
    "Outcome",
    "DriftEvent",
    "LifecycleEvent",
    "LifecycleCommand",
    "DeadLetter",
    "PredictionFrame",
)

_VERSION_FILE = re.compile(r"^v([1-9][0-9]*)\.avsc$")


@dataclass(frozen=True)
class SchemaEntry:
    """One released schema version and the Confluent id it is registered under."""

    name: str
    version: int
    schema_id: int
    schema: dict[str, Any] = field(hash=False, repr=False)

    @property
    def fullname(self) -> str:
        """The record's full Avro name, also its registry subject (RecordNameStrategy)."""
        return f"{self.schema.get('namespace', NAMESPACE)}.{self.schema['name']}"


def snake_name(name: str) -> str:
    """``FeatureRecord`` -> ``feature_record``, the stem of the current ``.avsc`` file."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def subject(name: str) -> str:
    """Registry subject of a record under RecordNameStrategy, e.g. ``driftline.v1.Outcome``."""
    return f"{NAMESPACE}.{_check(name)}"


def _check(name: str) -> str:
    if name not in SCHEMA_NAMES:
        raise UnknownRecordName(
            f"unknown record name {name!r}: expected one of {', '.join(SCHEMA_NAMES)}"
        )
    return name


def _avro_dir() -> Traversable:
    return files("driftline.schemas") / "avro"


def _load(resource: Traversable) -> dict[str, Any]:
    try:
        return json.loads(resource.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SchemaError(f"cannot read schema file {resource}: {exc}") from exc


@cache
def _current(name: str) -> str:
    return (_avro_dir() / f"{snake_name(name)}.avsc").read_text(encoding="utf-8")


def latest_schema(name: str) -> dict[str, Any]:
    """Return the current schema of ``name`` (a fresh dict each call)."""
    _check(name)
    try:
        return json.loads(_current(name))
    except (OSError, ValueError) as exc:
        raise SchemaError(f"cannot read the current schema of {name}: {exc}") from exc


@cache
def _history(name: str) -> tuple[tuple[int, str], ...]:
    folder = _avro_dir() / "history" / name
    versions = []
    for resource in folder.iterdir():
        match = _VERSION_FILE.match(resource.name)
        if match:
            versions.append((int(match.group(1)), resource.read_text(encoding="utf-8")))
    if not versions:
        raise SchemaError(f"no released versions of {name}: add avro/history/{name}/v1.avsc")
    return tuple(sorted(versions))


def history(name: str) -> dict[int, dict[str, Any]]:
    """Return every released version of ``name`` as ``{version: schema}``, oldest first."""
    _check(name)
    return {version: json.loads(text) for version, text in _history(name)}


def latest_version(name: str) -> int:
    """Return the highest released version of ``name``."""
    _check(name)
    return _history(name)[-1][0]


@cache
def _pinned_text() -> str:
    return (files("driftline.schemas") / "pinned_ids.json").read_text(encoding="utf-8")


def pinned_ids() -> dict[str, dict[int, int]]:
    """Return the pinned Confluent schema ids as ``{name: {version: id}}``."""
    raw = json.loads(_pinned_text())
    return {name: {int(v): int(i) for v, i in versions.items()} for name, versions in raw.items()}


def entries(ids: Mapping[str, Mapping[int, int]] | None = None) -> list[SchemaEntry]:
    """Return every released (name, version, id, schema), ids from ``ids`` or the pinned map.

    Every released version needs an id: a version without one would be
    undecodable, so it fails here, at start-up, rather than on the first message.
    """
    ids = pinned_ids() if ids is None else ids
    result = []
    for name in SCHEMA_NAMES:
        by_version = {int(v): int(i) for v, i in ids.get(name, {}).items()}
        for version, schema in history(name).items():
            if version not in by_version:
                raise SchemaError(
                    f"no schema id for {name} v{version}: add it to schemas/pinned_ids.json "
                    "(or register it in the schema registry)"
                )
            result.append(SchemaEntry(name, version, by_version[version], schema))
    return result
