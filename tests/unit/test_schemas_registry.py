"""The registry client's logic that needs no registry: the schema text it registers and its
errors before any answer. Everything that talks to a registry runs against a real one,
Apicurio Registry, in tests/integration/test_schema_registry.py."""

from __future__ import annotations

import json
import re
import socket
import time

import pytest

from driftline.schemas import SCHEMA_NAMES, SchemaRegistryError, catalog, codec_from_registry
from driftline.schemas.registry import REQUEST_TIMEOUT_S, _config, schema_text

# What Apicurio Registry 3.x rewrites before parsing (AvroContentAccepter.removeQuotedBrackets).
APICURIO_QUOTED_BRACKETS = re.compile(r': *"\{}"')


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_registered_text_is_the_catalog_schema(name):
    for schema in catalog.history(name).values():
        text = schema_text(schema)
        assert json.loads(text) == schema
        assert not APICURIO_QUOTED_BRACKETS.search(text)


def test_only_quoted_empty_object_values_are_escaped():
    schema = {
        "type": "record",
        "name": "R",
        "doc": 'keeps ": "{}" inside a string',
        "fields": [
            {"name": "a", "type": "string", "default": "{}"},
            {"name": "b", "type": "string", "default": "{} "},
            {"name": "c", "type": {"type": "map", "values": "string"}, "default": {}},
        ],
    }
    text = schema_text(schema)
    assert json.loads(text) == schema
    assert text.count("\\u007b") == 1
    assert text.replace('"\\u007b}"', '"{}"') == json.dumps(schema)


def test_unreachable_registry_names_the_url():
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    with pytest.raises(SchemaRegistryError, match=f"driftline.v1.FeatureRecord v1 at {url}"):
        codec_from_registry(url, max_retries=0)


def test_bad_settings_are_a_registry_error():
    with pytest.raises(SchemaRegistryError, match="invalid schema registry settings"):
        codec_from_registry("http://127.0.0.1:1", no_such_setting=1)


def test_a_registry_that_never_answers_is_an_error_not_a_hang():
    # Accepts the connection (the kernel's backlog does) and never replies.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        started = time.monotonic()
        with pytest.raises(SchemaRegistryError, match=f"at {url} failed"):
            codec_from_registry(url, timeout=0.5, max_retries=0)
        assert time.monotonic() - started < 10


def test_requests_have_a_default_timeout():
    assert _config("http://registry:8081", {})["timeout"] == REQUEST_TIMEOUT_S
    assert _config("http://registry:8081", {"timeout": 3})["timeout"] == 3
