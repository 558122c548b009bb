"""codec_from_registry against a small real HTTP server speaking the Confluent API subset
the client uses: POST /subjects/{subject}/versions and GET /schemas/ids/{id}."""

from __future__ import annotations

import base64
import copy
import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlparse

import pytest

from schemas import (
    SCHEMA_NAMES,
    SchemaCodec,
    SchemaRegistryError,
    UnknownSchemaId,
    catalog,
    codec_from_registry,
    wire,
)
from schemas.catalog import SchemaEntry
from schemas.testing import sample

FIRST_ID = 1001  # far from the pinned ids, so a pinned id cannot pass by accident


class FakeRegistry:
    """In-memory state of the registry; ids are global and deduplicated like Confluent's."""

    def __init__(self, credentials: str | None = None) -> None:
        self.credentials = credentials
        self.lock = threading.Lock()
        self.ids_by_schema: dict[str, int] = {}
        self.schemas: dict[int, str] = {}
        self.subjects: dict[str, list[int]] = {}
        self.requests: list[tuple[str, str]] = []
        self.fail_lookups = False

    def register(self, subject: str, schema_str: str) -> int:
        key = json.dumps(json.loads(schema_str), sort_keys=True)
        with self.lock:
            schema_id = self.ids_by_schema.get(key)
            if schema_id is None:
                schema_id = FIRST_ID + 7 * len(self.ids_by_schema)
                self.ids_by_schema[key] = schema_id
                self.schemas[schema_id] = schema_str
            versions = self.subjects.setdefault(subject, [])
            if schema_id not in versions:
                versions.append(schema_id)
            return schema_id


def _handler(registry: FakeRegistry) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # keep test output clean
            pass

        def _reply(self, status: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _authorised(self) -> bool:
            if registry.credentials is None:
                return True
            token = base64.b64encode(registry.credentials.encode()).decode()
            if self.headers.get("Authorization") == f"Basic {token}":
                return True
            self._reply(401, {"error_code": 401, "message": "Unauthorized"})
            return False

        def do_POST(self) -> None:
            path = urlparse(self.path).path
            registry.requests.append(("POST", path))
            parts = path.strip("/").split("/")
            if not self._authorised():
                return
            if len(parts) != 3 or parts[0] != "subjects" or parts[2] != "versions":
                self._reply(404, {"error_code": 404, "message": f"no route POST {path}"})
                return
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if body.get("schemaType", "AVRO") != "AVRO":
                self._reply(422, {"error_code": 42201, "message": "only AVRO here"})
                return
            self._reply(200, {"id": registry.register(unquote(parts[1]), body["schema"])})

        def do_GET(self) -> None:
            path = urlparse(self.path).path
            registry.requests.append(("GET", path))
            parts = path.strip("/").split("/")
            if not self._authorised():
                return
            if len(parts) != 3 or parts[:2] != ["schemas", "ids"]:
                self._reply(404, {"error_code": 404, "message": f"no route GET {path}"})
                return
            if registry.fail_lookups:
                self._reply(500, {"error_code": 50001, "message": "backend store down"})
                return
            schema = registry.schemas.get(int(parts[2]))
            if schema is None:
                self._reply(404, {"error_code": 40403, "message": "Schema not found"})
                return
            self._reply(200, {"schema": schema})

    return Handler


def _serve(registry: FakeRegistry) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(registry))
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


@pytest.fixture
def registry() -> FakeRegistry:
    return FakeRegistry()


@pytest.fixture
def url(registry: FakeRegistry) -> Iterator[str]:
    yield from _serve(registry)


def _assert_only_known_endpoints(registry: FakeRegistry) -> None:
    for method, path in registry.requests:
        parts = path.strip("/").split("/")
        assert (method, parts[0]) in {("POST", "subjects"), ("GET", "schemas")}, path


def test_ids_come_from_the_registry(registry, url):
    codec = codec_from_registry(url)
    assert set(registry.subjects) == {f"driftline.v1.{name}" for name in SCHEMA_NAMES}
    for name in SCHEMA_NAMES:
        versions = registry.subjects[f"driftline.v1.{name}"]
        assert len(versions) == catalog.latest_version(name)
        assert codec.schema_id(name) == versions[-1] >= FIRST_ID
        # The registry stored exactly the catalog's schema under that id.
        assert json.loads(registry.schemas[versions[-1]]) == catalog.latest_schema(name)
    _assert_only_known_endpoints(registry)


def test_registry_codec_round_trips_every_record(url):
    codec = codec_from_registry(url)
    for name in SCHEMA_NAMES:
        payload = codec.encode(name, sample(name))
        assert wire.split(payload)[0] == codec.schema_id(name)
        assert codec.decode(payload) == (name, sample(name))


def test_registering_again_returns_the_same_ids(url):
    first, second = codec_from_registry(url), codec_from_registry(url)
    assert [first.schema_id(n) for n in SCHEMA_NAMES] == [second.schema_id(n) for n in SCHEMA_NAMES]


def test_newer_versions_are_fetched_once_and_resolved(registry, url):
    codec = codec_from_registry(url)
    # A newer producer registered Outcome v2 (one more field, with a default).
    v2 = copy.deepcopy(catalog.latest_schema("Outcome"))
    v2["fields"].append({"name": "channel", "type": "string", "default": "web", "doc": "x"})
    v2_id = registry.register("driftline.v1.Outcome", json.dumps(v2))
    producer = SchemaCodec.from_entries([SchemaEntry("Outcome", 2, v2_id, v2)])
    payload = producer.encode("Outcome", {**sample("Outcome"), "channel": "app"})

    for _ in range(3):
        assert codec.decode(payload) == ("Outcome", sample("Outcome"))
    assert registry.requests.count(("GET", f"/schemas/ids/{v2_id}")) == 1
    _assert_only_known_endpoints(registry)


def test_unregistered_id_is_unknown_and_asked_once(registry, url):
    codec = codec_from_registry(url)
    for _ in range(3):
        with pytest.raises(UnknownSchemaId, match=f"schema id 4242 is not registered at {url}"):
            codec.decode(wire.frame(4242, b"\x00"))
    assert registry.requests.count(("GET", "/schemas/ids/4242")) == 1


def test_foreign_record_id_is_unknown(registry, url):
    codec = codec_from_registry(url)
    other = {"type": "record", "name": "Click", "namespace": "acme", "fields": []}
    other_id = registry.register("acme.Click", json.dumps(other))
    with pytest.raises(UnknownSchemaId, match="acme.Click, not a driftline record"):
        codec.decode(wire.frame(other_id, b""))


def test_registry_outage_is_not_an_unknown_id(registry, url):
    # A 5xx must not send good messages to the dead-letter topic: it is a registry error.
    codec = codec_from_registry(url, max_retries=0)
    registry.fail_lookups = True
    with pytest.raises(SchemaRegistryError, match=f"schema id 4243 at {url}.*backend store down"):
        codec.decode(wire.frame(4243, b"\x00"))


def test_basic_auth_settings_are_passed_through():
    registry = FakeRegistry(credentials="svc-driftline:s3cret")
    for url in _serve(registry):
        codec = codec_from_registry(url, basic_auth_user_info="svc-driftline:s3cret")
        assert codec.schema_id("Outcome") >= FIRST_ID
        with pytest.raises(
            SchemaRegistryError, match=rf"driftline\.v1\.FeatureRecord v1 at {url}.*Unauthorized"
        ):
            codec_from_registry(url, basic_auth_user_info="svc-driftline:wrong")


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
