"""BACKWARD compatibility of released versions, with the avro package's checker."""

from __future__ import annotations

import copy
import json

import pytest

from driftline.schemas import SCHEMA_NAMES, IncompatibleSchema, SchemaError, catalog
from driftline.schemas.compat import assert_backward, check_backward, check_catalog


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_each_version_reads_its_predecessor(name):
    versions = catalog.history(name)
    for version in sorted(versions)[1:]:
        assert check_backward(versions[version], versions[version - 1]) == []
    # A schema is always compatible with itself (also covers records with only v1).
    assert check_backward(versions[1], versions[1]) == []


def test_catalog_check_is_clean():
    assert check_catalog() == []


def _outcome() -> dict:
    return copy.deepcopy(catalog.latest_schema("Outcome"))


def test_adding_a_field_without_default_is_detected():
    new = _outcome()
    new["fields"].append({"name": "channel", "type": "string"})
    problems = check_backward(json.dumps(new), json.dumps(_outcome()))
    assert len(problems) == 1
    assert "'channel' is new and has no default" in problems[0]
    with pytest.raises(IncompatibleSchema, match="Outcome v2 cannot read.*'channel'"):
        assert_backward(new, _outcome(), what="Outcome v2")


def test_adding_a_field_with_default_and_removing_one_are_backward_compatible():
    new = _outcome()
    new["fields"].append({"name": "channel", "type": "string", "default": "web"})
    new["fields"] = [f for f in new["fields"] if f["name"] != "label"]
    assert check_backward(new, _outcome()) == []
    assert_backward(new, _outcome())


def test_narrowing_a_type_is_detected_and_widening_is_not():
    narrowed = copy.deepcopy(catalog.latest_schema("DeadLetter"))
    offset = next(f for f in narrowed["fields"] if f["name"] == "offset")
    offset["type"] = "int"  # long -> int loses data
    problems = check_backward(narrowed, catalog.latest_schema("DeadLetter"))
    assert problems and "reader type: int not compatible with writer type: long" in problems[0]

    widened = copy.deepcopy(catalog.latest_schema("DeadLetter"))
    partition = next(f for f in widened["fields"] if f["name"] == "partition")
    partition["type"] = "long"  # int -> long is a promotion
    assert check_backward(widened, catalog.latest_schema("DeadLetter")) == []


def test_dropping_a_union_branch_is_detected():
    new = _outcome()
    label = next(f for f in new["fields"] if f["name"] == "label")
    label["type"] = "string"
    label.pop("default")
    problems = check_backward(new, _outcome())
    assert problems and "writer type: null" in problems[0]


def test_several_problems_are_all_reported():
    new = _outcome()
    next(f for f in new["fields"] if f["name"] == "value")["type"] = "int"
    new["fields"].append({"name": "channel", "type": "string"})
    problems = " | ".join(check_backward(new, _outcome()))
    assert "channel" in problems and "reader type: int" in problems


def test_unparsable_schema_is_a_schema_error():
    with pytest.raises(SchemaError, match="new schema is not valid Avro"):
        check_backward('{"type": "record"', json.dumps(_outcome()))
    with pytest.raises(SchemaError, match="old schema is not valid Avro"):
        check_backward(_outcome(), {"type": "nonsense"})
