"""The TypedDicts in driftline.schemas.records follow the .avsc contracts field for field."""

from __future__ import annotations

import typing

import pytest

from driftline.schemas.catalog import SCHEMA_NAMES, latest_schema
from driftline.schemas.records import RECORDS
from driftline.schemas.testing import sample

AVRO_TYPES = {
    "string": str,
    "int": int,
    "long": int,
    "double": float,
    "float": float,
    "bytes": bytes,
    "boolean": bool,
}


def _python_type(avro_type):
    if isinstance(avro_type, list):
        members = [_python_type(t) for t in avro_type if t != "null"]
        (member,) = members
        return member | None if "null" in avro_type else member
    if isinstance(avro_type, dict):
        kind = avro_type["type"]
        if kind == "array":
            return list[_python_type(avro_type["items"])]
        if kind == "map":
            return dict[str, _python_type(avro_type["values"])]
        return AVRO_TYPES[kind]
    return AVRO_TYPES[avro_type]


def test_every_schema_has_its_record_type():
    assert set(RECORDS) == set(SCHEMA_NAMES)


@pytest.mark.parametrize("name", sorted(SCHEMA_NAMES))
def test_fields_and_types_match_the_contract(name):
    schema = latest_schema(name)
    hints = typing.get_type_hints(RECORDS[name])
    assert list(hints) == [field["name"] for field in schema["fields"]]
    for field in schema["fields"]:
        assert hints[field["name"]] == _python_type(field["type"]), field["name"]


@pytest.mark.parametrize("name", sorted(SCHEMA_NAMES))
def test_a_sample_record_has_exactly_the_typed_keys(name):
    assert set(sample(name)) == set(typing.get_type_hints(RECORDS[name]))
