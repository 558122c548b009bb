"""driftline and a real schema registry: Apicurio Registry's Confluent-compatible API.

driftline registers its schemas there and writes with Apicurio's ids; stock Confluent clients
(``SchemaRegistryClient``, ``AvroSerializer``/``AvroDeserializer``) read and write alongside
it. The registry is a real Apicurio Registry process (tests/integration/apicurio.py).
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import time
from typing import Any

import pytest
from confluent_kafka.schema_registry import (
    Schema,
    SchemaRegistryClient,
    record_subject_name_strategy,
)
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.schema_registry.error import SchemaRegistryError as ClientError
from confluent_kafka.serialization import MessageField, SerializationContext

from driftline.core.settings import load_settings
from driftline.schemas import (
    SCHEMA_NAMES,
    SchemaCodec,
    SchemaRegistryError,
    UnknownSchemaId,
    catalog,
    codec_from_registry,
    wire,
)
from driftline.schemas.catalog import SchemaEntry
from driftline.schemas.compat import check_backward
from driftline.schemas.registry import schema_text
from driftline.schemas.testing import sample
from driftline.streams.demo.loadgen import produce_at_rate, synthetic_records
from driftline.streams.kafka.codecs import codec_for
from driftline.streams.kafka.producer import FeatureProducer
from driftline.streams.kafka.topics import Topics
from tests.integration.helpers import read_topic, serve_model, wait_until

pytest_plugins = ["tests.integration.apicurio"]
pytestmark = pytest.mark.integration

PINNED_MAX = max(i for ids in catalog.pinned_ids().values() for i in ids.values())


def _client(url: str, **conf: Any) -> SchemaRegistryClient:
    # The stock client waits forever on a request by default; a registry that
    # stops answering must fail this test with the request named, not hang it.
    return SchemaRegistryClient({"url": url, "timeout": 30, **conf})


def _plain(value: Any) -> Any:
    """A stock deserializer's record with timestamps back as epoch milliseconds."""
    if isinstance(value, dt.datetime):
        return round(value.timestamp() * 1000)
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value


def _logged(registry, method: str, path: str) -> int:
    """Requests the access log shows, once it has caught up with the last answer."""
    deadline = time.monotonic() + 5
    while registry.requests_to(method, path) == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    return registry.requests_to(method, path)


def test_driftline_registers_its_schemas_in_apicurio(apicurio_registry):
    url = apicurio_registry.ccompat_url
    codec = codec_from_registry(url)
    client = _client(url)
    subjects = set(client.get_subjects())
    assert {catalog.subject(name) for name in SCHEMA_NAMES} <= subjects
    for name in SCHEMA_NAMES:
        subject = catalog.subject(name)
        for version, schema in catalog.history(name).items():
            found = client.lookup_schema(subject, Schema(schema_text(schema), "AVRO"))
            assert found.version == version  # released versions, registered in order
            if version == catalog.latest_version(name):
                # Apicurio's id, not the pinned one: other subjects took the first ids.
                assert codec.schema_id(name) == found.schema_id > PINNED_MAX
        # The registry holds exactly the catalog's schema under that id.
        stored = client.get_schema(codec.schema_id(name))
        assert json.loads(stored.schema_str) == catalog.latest_schema(name)


def test_registering_again_returns_the_same_ids_and_adds_no_versions(apicurio_registry):
    url = apicurio_registry.ccompat_url
    first = codec_from_registry(url)
    versions = {name: _client(url).get_versions(catalog.subject(name)) for name in SCHEMA_NAMES}
    second = codec_from_registry(url)
    assert [first.schema_id(n) for n in SCHEMA_NAMES] == [second.schema_id(n) for n in SCHEMA_NAMES]
    assert versions == {n: _client(url).get_versions(catalog.subject(n)) for n in SCHEMA_NAMES}


def test_stock_confluent_clients_read_and_write_with_driftline(apicurio_registry):
    url = apicurio_registry.ccompat_url
    codec = codec_from_registry(url)
    deserializer = AvroDeserializer(_client(url))
    context = SerializationContext("driftline.any", MessageField.VALUE)
    for name in SCHEMA_NAMES:
        payload = codec.encode(name, sample(name))
        assert wire.split(payload)[0] == codec.schema_id(name)
        assert codec.decode(payload) == (name, sample(name))
        assert _plain(deserializer(payload, context)) == sample(name), name

    # A stock serializer registering the Outcome schema itself lands on driftline's id.
    serializer = AvroSerializer(
        _client(url),
        json.dumps(catalog.latest_schema("Outcome")),
        conf={"subject.name.strategy": record_subject_name_strategy},
    )
    payload = serializer(sample("Outcome"), SerializationContext("outcomes", MessageField.VALUE))
    assert wire.split(payload)[0] == codec.schema_id("Outcome")
    assert codec.decode(payload) == ("Outcome", sample("Outcome"))


def _outcome_with(**field: Any) -> dict[str, Any]:
    schema = copy.deepcopy(catalog.latest_schema("Outcome"))
    schema["fields"].append({"doc": "added by a newer producer", **field})
    return schema


def test_newer_version_from_another_producer_is_fetched_once_and_resolved(apicurio_registry):
    url = apicurio_registry.ccompat_url
    codec = codec_from_registry(url)
    # Another producer registers Outcome v2 (one more field, with a default): BACKWARD allows it.
    v2 = _outcome_with(name="channel", type="string", default="web")
    v2_id = _client(url).register_schema(catalog.subject("Outcome"), Schema(json.dumps(v2)))
    assert v2_id > codec.schema_id("Outcome")
    producer = SchemaCodec.from_entries([SchemaEntry("Outcome", 2, v2_id, v2)])
    payload = producer.encode("Outcome", {**sample("Outcome"), "channel": "app"})

    for _ in range(3):
        assert codec.decode(payload) == ("Outcome", sample("Outcome"))
    assert _logged(apicurio_registry, "GET", f"/schemas/ids/{v2_id}") == 1


def test_unregistered_id_is_unknown_and_asked_once(apicurio_registry):
    url = apicurio_registry.ccompat_url
    codec = codec_from_registry(url)
    for _ in range(3):
        with pytest.raises(UnknownSchemaId, match=f"schema id 4242 is not registered at {url}"):
            codec.decode(wire.frame(4242, b"\x00"))
    assert _logged(apicurio_registry, "GET", "/schemas/ids/4242") == 1


def test_foreign_record_id_is_unknown(apicurio_registry):
    url = apicurio_registry.ccompat_url
    codec = codec_from_registry(url)
    other = {"type": "record", "name": "Click", "namespace": "acme", "fields": []}
    other_id = _client(url).register_schema("acme.Click", Schema(json.dumps(other)))
    with pytest.raises(UnknownSchemaId, match="acme.Click, not a driftline record"):
        codec.decode(wire.frame(other_id, b""))


def _add_region(default: bool) -> Any:
    def change(schema: dict[str, Any]) -> None:
        extra = {"default": "eu"} if default else {}
        schema["fields"].append({"name": "region", "type": "string", "doc": "x", **extra})

    return change


def _retype_value(schema: dict[str, Any]) -> None:
    next(f for f in schema["fields"] if f["name"] == "value")["type"] = "string"


def _drop_label(schema: dict[str, Any]) -> None:
    schema["fields"] = [f for f in schema["fields"] if f["name"] != "label"]


@pytest.mark.parametrize(
    "change",
    [_add_region(default=True), _add_region(default=False), _retype_value, _drop_label],
    ids=["new-field-with-default", "new-field-without-default", "type-changed", "field-dropped"],
)
def test_apicurio_and_driftline_agree_on_backward_compatibility(apicurio_registry, change):
    url = apicurio_registry.ccompat_url
    codec_from_registry(url)
    client = _client(url)
    subject = catalog.subject("Outcome")
    latest = json.loads(client.get_latest_version(subject).schema.schema_str)
    changed = copy.deepcopy(latest)
    change(changed)
    driftline_ok = not check_backward(changed, latest)
    assert client.test_compatibility(subject, Schema(json.dumps(changed))) is driftline_ok
    if not driftline_ok:  # and the registry refuses to store it
        with pytest.raises(ClientError) as refused:
            client.register_schema(subject, Schema(json.dumps(changed)))
        assert refused.value.http_status_code == 409


def test_registration_refused_by_the_registry_names_the_subject(start_apicurio):
    # A registry whose Outcome subject holds a schema driftline's Outcome v1 cannot read
    # (no prediction_id): BACKWARD refuses driftline's registration, and the error says which.
    registry = start_apicurio()
    url = registry.ccompat_url
    theirs = catalog.latest_schema("Outcome")
    theirs["fields"] = [f for f in theirs["fields"] if f["name"] != "prediction_id"]
    _client(url).register_schema(catalog.subject("Outcome"), Schema(json.dumps(theirs)))
    assert check_backward(catalog.latest_schema("Outcome"), theirs)  # driftline agrees

    with pytest.raises(SchemaRegistryError, match=f"driftline.v1.Outcome v1 at {url}.*409"):
        codec_from_registry(url)


def test_basic_auth_settings_are_passed_through(start_apicurio, monkeypatch):
    registry = start_apicurio(
        {
            "apicurio.authn.enabled": "true",
            "quarkus.http.auth.basic": "true",
            "quarkus.security.users.embedded.enabled": "true",
            "quarkus.security.users.embedded.plain-text": "true",
            "quarkus.security.users.embedded.users.svc-driftline": "s3cret",
            "quarkus.security.users.embedded.roles.svc-driftline": "sr-admin",
        }
    )
    url = registry.ccompat_url
    # Through the settings, as a worker builds its codec.
    monkeypatch.setenv("DRIFTLINE_SCHEMA_REGISTRY_URL", url)
    monkeypatch.setenv("DRIFTLINE_SCHEMA_REGISTRY_USERNAME", "svc-driftline")
    monkeypatch.setenv("DRIFTLINE_SCHEMA_REGISTRY_PASSWORD", "s3cret")
    assert codec_for(load_settings()).schema_id("Outcome") > 0
    with pytest.raises(
        SchemaRegistryError, match=rf"driftline\.v1\.FeatureRecord v1 at {url}.*401"
    ):
        codec_from_registry(url, basic_auth_user_info="svc-driftline:wrong")


def test_registry_outage_is_not_an_unknown_id(start_apicurio):
    # A registry that cannot be asked must not send good messages to the dead-letter topic.
    registry = start_apicurio()
    url = registry.ccompat_url
    codec = codec_from_registry(url, max_retries=0)
    registry.stop()
    with pytest.raises(SchemaRegistryError, match=f"schema id 4243 at {url}") as raised:
        codec.decode(wire.frame(4243, b"\x00"))
    assert not isinstance(raised.value, UnknownSchemaId)
    # Known ids still decode: the codec needs the registry only for ids it has not seen.
    assert codec.decode(codec.encode("Outcome", sample("Outcome")))[0] == "Outcome"


def test_worker_predictions_decode_with_a_stock_confluent_deserializer(
    apicurio_registry, stack_env, start_worker, tmp_path
):
    url = apicurio_registry.ccompat_url
    settings = stack_env.settings(DRIFTLINE_SCHEMA_REGISTRY_URL=url)
    worker = start_worker(DRIFTLINE_SCHEMA_REGISTRY_URL=url)
    version = serve_model(settings, worker, tmp_path)
    records = list(synthetic_records(model="demo", count=300, entities=30, seed=3, n_features=16))
    sent = produce_at_rate(FeatureProducer(settings, stack_env.bootstrap), iter(records), rate=0)

    topics = Topics(stack_env.prefix)
    messages: list = []

    def all_scored() -> bool:
        messages[:] = read_topic(stack_env.bootstrap, topics.predictions, 2)
        return len(messages) >= sent

    wait_until(all_scored, what=lambda: f"{sent} predictions (have {len(messages)})")

    client = _client(url)
    prediction_id = client.get_latest_version(catalog.subject("Prediction")).schema_id
    assert prediction_id > PINNED_MAX  # Apicurio's id, not the pinned one
    assert {wire.split(m.value())[0] for m in messages} == {prediction_id}
    deserializer = AvroDeserializer(client)
    decoded = [
        deserializer(m.value(), SerializationContext(topics.predictions, MessageField.VALUE))
        for m in messages
    ]
    assert sorted(p["record_id"] for p in decoded) == sorted(r["record_id"] for r in records)
    assert {(p["model"], p["version"], p["arm"]) for p in decoded} == {
        ("demo", version, "champion")
    }
    assert all(0.0 <= p["score"] <= 1.0 for p in decoded)
    by_record = {r["record_id"]: r for r in records}
    assert all(p["entity_id"] == by_record[p["record_id"]]["entity_id"] for p in decoded)
    # The features driftline sent carry Apicurio's FeatureRecord id too.
    features = read_topic(stack_env.bootstrap, topics.features, 2)
    feature_id = client.get_latest_version(catalog.subject("FeatureRecord")).schema_id
    assert {wire.split(m.value())[0] for m in features} == {feature_id}
