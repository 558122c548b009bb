"""BACKWARD compatibility checks with the Apache ``avro`` package's own checker.

BACKWARD (the Confluent registry's default) means a consumer on the new
schema can read everything written with the old one, so consumers can be
upgraded before producers. Checked per consecutive pair of released versions.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import avro.errors
import avro.schema
from avro.compatibility import (
    ReaderWriterCompatibilityChecker,
    SchemaCompatibilityResult,
    SchemaCompatibilityType,
    SchemaIncompatibilityType,
)

from driftline.schemas import catalog
from driftline.schemas.exceptions import IncompatibleSchema, SchemaError

_EXPLAIN = {
    SchemaIncompatibilityType.reader_field_missing_default_value: (
        "field {message!r} is new and has no default, so old records cannot be read: "
        "give it a default"
    ),
    SchemaIncompatibilityType.type_mismatch: "{message}: old values cannot be read",
    SchemaIncompatibilityType.name_mismatch: "record renamed ({message}): add an alias",
    SchemaIncompatibilityType.missing_union_branch: "{message}: keep the old union branches",
    SchemaIncompatibilityType.missing_enum_symbols: (
        "enum symbols {message} were removed: keep them or set an enum default"
    ),
    SchemaIncompatibilityType.fixed_size_mismatch: "fixed size changed ({message})",
}


def _parse(schema: str | Mapping[str, Any], role: str) -> avro.schema.Schema:
    text = schema if isinstance(schema, str) else json.dumps(schema)
    try:
        return avro.schema.parse(text)
    except (avro.errors.AvroException, ValueError) as exc:
        raise SchemaError(f"the {role} schema is not valid Avro: {exc}") from exc


def _describe(result: SchemaCompatibilityResult) -> list[str]:
    kinds = sorted(set(result.incompatibilities), key=lambda kind: kind.value)
    where = ", ".join(sorted(result.locations))
    if len(kinds) == 1:
        template = _EXPLAIN.get(kinds[0], "{message}")
        return [f"{template.format(message=m)} (at {where})" for m in sorted(result.messages)]
    # Several kinds: the checker merges them into unordered sets of messages and
    # locations, so each message is listed with all kinds and locations.
    names = ", ".join(kind.value for kind in kinds)
    return [f"{m} ({names}; at {where})" for m in sorted(result.messages)]


def check_backward(
    new_schema_json: str | Mapping[str, Any], old_schema_json: str | Mapping[str, Any]
) -> list[str]:
    """Return why data written with the old schema cannot be read with the new one.

    An empty list means the new schema is BACKWARD compatible with the old.
    """
    reader = _parse(new_schema_json, "new")
    writer = _parse(old_schema_json, "old")
    result = ReaderWriterCompatibilityChecker().get_compatibility(reader, writer)
    if result.compatibility is SchemaCompatibilityType.compatible:
        return []
    return _describe(result)


def assert_backward(
    new_schema_json: str | Mapping[str, Any],
    old_schema_json: str | Mapping[str, Any],
    *,
    what: str = "new schema",
) -> None:
    """Raise IncompatibleSchema, with every reason, unless the change is BACKWARD compatible."""
    problems = check_backward(new_schema_json, old_schema_json)
    if problems:
        raise IncompatibleSchema(
            f"{what} cannot read data written with the previous version: " + "; ".join(problems)
        )


def check_catalog() -> list[str]:
    """Check every released version of every record against the version before it.

    Returns one message per problem, each naming the record and versions.
    """
    problems = []
    for name in catalog.SCHEMA_NAMES:
        versions = catalog.history(name)
        ordered = sorted(versions)
        for old, new in zip(ordered, ordered[1:], strict=False):
            for problem in check_backward(versions[new], versions[old]):
                problems.append(f"{name} v{new} vs v{old}: {problem}")
    return problems
