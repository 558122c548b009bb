"""Zero trust on the broker: SASL/SCRAM-SHA-512 over TLS, the StandardAuthorizer, and
driftline's ACL table (streams/kafka/acls.py), one principal per worker role and client.

One Apache Kafka node for the module, with a throwaway CA. Every driftline part talks
to it on the SASL_SSL listener as its own principal, holding only its ACLs: the
provisioner creates the topics, each worker role runs as a real `driftline worker`,
producers, dashboards and people with the CLI use the library as they would.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaConnectionError
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import (
    AdminClient,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialUpsertion,
)

from driftline.lineage.events import EventType, new_event
from driftline.streams.control.model_commands import ModelCommands
from driftline.streams.demo.loadgen import synthetic_records
from driftline.streams.embedded.kafka_local import BrokerSecurity, KafkaBroker
from driftline.streams.exceptions import StreamsError
from driftline.streams.kafka.acls import PRINCIPALS
from driftline.streams.kafka.clients import make_producer
from driftline.streams.kafka.codecs import codec_for
from driftline.streams.kafka.lifecycle_topic import (
    LifecycleWatcher,
    load_registry,
    publish_lifecycle,
    read_lifecycle,
)
from driftline.streams.kafka.producer import FeatureProducer
from tests.integration.helpers import forged_promotion, tamper_store, wait_until, write_model
from tests.integration.secure_kafka import (
    ADMIN,
    Deployment,
    SecureKafka,
    deploy,
    make_tls,
    start_workers,
    stop_workers,
)
from tests.integration.test_policy import drift_event

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def kafka_secure_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureKafka]:
    """One KRaft node with a SASL_SSL listener and the StandardAuthorizer; a SCRAM user
    (random password) per principal of streams/kafka/acls.py, with no ACLs yet."""
    directory = tmp_path_factory.mktemp("kafka-secure")
    ca_file, keystore = make_tls(directory)
    passwords = {ADMIN: secrets.token_urlsafe(16)}
    security = BrokerSecurity(
        keystore_pem=keystore, super_users=(ADMIN,), scram_users=dict(passwords)
    )
    with KafkaBroker(directory / "node", security=security) as broker:
        secure = SecureKafka(broker, ca_file, passwords)
        users = {p.user(): secrets.token_urlsafe(16) for p in PRINCIPALS}
        admin = AdminClient(secure.client_config(ADMIN))
        futures = admin.alter_user_scram_credentials(
            [
                UserScramCredentialUpsertion(
                    user, ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 8192), password.encode()
                )
                for user, password in users.items()
            ]
        )
        for future in futures.values():
            future.result(30)
        passwords.update(users)
        yield secure


@pytest.fixture(scope="module")
def deployment(kafka_secure_broker: SecureKafka, tmp_path_factory) -> Deployment:
    return deploy(kafka_secure_broker, tmp_path_factory.mktemp("secure-data"))


def test_every_role_works_with_only_its_acls(deployment: Deployment, tmp_path: Path):
    """Each worker role as a real `driftline worker` and its own principal: people register
    and promote through the registry, the inference role serves what it decides, a
    producer's features are scored and a dashboard reads the predictions, a drift event
    makes the policy sign a rollback, and the lineage role stores and anchors it all."""
    topics = deployment.topics
    started = time.monotonic()
    roles = ["registry", "inference", "policy", "lineage"]
    workers = start_workers(deployment, roles, tmp_path)
    print(f"four workers ready in {time.monotonic() - started:.1f}s")
    try:
        # Each joins a consumer group of its own, <prefix>worker-<role> (see Topics.group);
        # "ready" does not wait for the join.
        admin = AdminClient(deployment.kafka.client_config(ADMIN))

        def groups() -> set[str]:
            return {g.group_id for g in admin.list_consumer_groups().result().valid}

        wanted_groups = {topics.group({role}) for role in roles}
        wait_until(lambda: wanted_groups <= groups(), what=lambda: f"groups: {groups()}")
        started = time.monotonic()
        operator = ModelCommands.from_settings(deployment.settings("operator"))
        registered, _ = operator.register(write_model(tmp_path, seed=1), "demo", actor="alice")
        operator.promote("demo", registered.version, actor="bob")
        inference = workers["inference"]
        wait_until(
            lambda: inference.get("/driftline/models/").get("demo", {}).get("version") == 1,
            what=lambda: f"v1 served ({inference.get('/driftline/models/')})",
        )
        print(f"registered, promoted and served in {time.monotonic() - started:.1f}s")

        producer = FeatureProducer(deployment.settings("producer"), deployment.kafka.bootstrap)
        count = 200
        for record in synthetic_records(
            model="demo", count=count, entities=50, seed=3, n_features=16
        ):
            producer.send(record)
        producer.close()

        dashboard = Consumer(
            deployment.kafka.client_config("driftline-dashboard")
            | {"group.id": f"{deployment.prefix}dashboard-grafana", "auto.offset.reset": "earliest"}
        )
        scored = set()
        try:
            codec = codec_for(deployment.settings("dashboard"))
            dashboard.subscribe([topics.predictions])
            deadline = time.monotonic() + 30
            while len(scored) < count and time.monotonic() < deadline:
                for message in dashboard.consume(500, timeout=0.5):
                    assert message.error() is None, message.error()
                    scored.add(codec.decode_as("Prediction", message.value())["record_id"])
        finally:
            dashboard.close()
        assert len(scored) == count, inference.get("/driftline/stats/")

        # The inference role's drift detector on the champion's errors (its principal may
        # write drift) -> the policy signs a rollback command -> the registry decides it:
        # with no earlier champion to restore, a signed, audited refusal.
        watcher = LifecycleWatcher(
            deployment.settings("operator"), deployment.kafka.bootstrap, topics.lifecycle
        )
        drift = make_producer(deployment.settings("inference"), deployment.kafka.bootstrap)
        trigger = drift_event("demo", 1, "champion", "error")
        drift.produce(topics.name("drift"), codec.encode("DriftEvent", trigger), key=b"demo")
        assert drift.flush(10) == 0
        answer = watcher.wait_until(codec, lambda e: e.actor == "policy", 30)
        assert answer is not None, workers["policy"].log_tail()
        assert answer.type == "command_rejected", answer
        assert answer.evidence["action"] == "rollback", answer.evidence
        assert answer.evidence["signature_verified"] is True, answer.evidence

        started = time.monotonic()
        lineage = workers["lineage"]
        db = deployment.settings("lineage").clickhouse.database

        def stored() -> tuple:
            predictions = lineage.sql(f"SELECT uniqExact(record_id) FROM {db}.predictions")[0][0]
            types = {row[0] for row in lineage.sql(f"SELECT event_type FROM {db}.audit_log")}
            anchored = lineage.get("/driftline/stats/")["rows_stored"].get("audit_checkpoints", 0)
            return predictions, types, anchored

        wanted = {"registered", "promoted", "command_rejected", "drift_detected"}
        wait_until(
            lambda: (lambda found: found[0] == count and wanted <= found[1] and found[2])(stored()),
            what=lambda: f"{count} predictions, {wanted} and checkpoints stored: {stored()}",
        )
        print(f"lineage stored and anchored it all {time.monotonic() - started:.1f}s later")
        verdict = lineage.get("/driftline/audit/verify/")
        assert verdict["ok"], verdict["summary"]

        # An audit alarm under the ACLs: the lineage principal may not write lifecycle, so
        # it sends the registry an alarm signed with its checkpoint key, and the registry
        # (the one lifecycle writer) publishes it. A forged promotion in the store:
        stop_workers({"lineage": lineage})
        tamper_store(deployment.settings("lineage"), forged_promotion("demo", 1))
        watcher = LifecycleWatcher(
            deployment.settings("operator"), deployment.kafka.bootstrap, topics.lifecycle
        )
        workers["lineage"] = start_workers(deployment, ["lineage"], tmp_path)["lineage"]
        answered = ("audit_alarm", "command_rejected")
        alarm = watcher.wait_until(codec, lambda e: e.type in answered, 90)
        assert alarm is not None, workers["lineage"].log_tail() + workers["registry"].log_tail()
        writer = deployment.settings("lineage").audit.writer_key
        assert (alarm.type, alarm.model, alarm.actor) == ("audit_alarm", "demo", writer), alarm
        assert [p["kind"] for p in alarm.evidence["problems"]] == ["forged"], alarm.evidence
        registry = load_registry(
            deployment.settings("operator"), deployment.kafka.bootstrap, codec, topics.lifecycle
        )
        assert registry.alarm("demo") is not None
    finally:
        stop_workers(workers)
    for worker in workers.values():
        assert "authoriz" not in worker.log().lower(), worker.log_tail()


def test_a_producer_cannot_write_lifecycle_and_nothing_reaches_the_registry(
    deployment: Deployment,
):
    """The producer principal forges a registration and a promotion: the broker refuses
    both (TOPIC_AUTHORIZATION_FAILED), and the lifecycle topic, the registry's only
    source, is unchanged. Its own topics, features and outcomes, it may write."""
    settings = deployment.settings("producer")
    bootstrap = deployment.kafka.bootstrap
    topics = deployment.topics
    codec = codec_for(settings)
    operator = deployment.settings("operator")
    before = [e.event_id for e in read_lifecycle(operator, bootstrap, codec, topics.lifecycle)]

    for forged in (
        new_event(EventType.REGISTERED, "forged", 1, "mallory", state="registered"),
        new_event(EventType.PROMOTED, "forged", 1, "mallory", state="champion"),
    ):
        with pytest.raises(StreamsError, match="TOPIC_AUTHORIZATION_FAILED"):
            publish_lifecycle(settings, bootstrap, codec, topics.lifecycle, forged)

    after = read_lifecycle(operator, bootstrap, codec, topics.lifecycle)
    assert [e.event_id for e in after] == before
    assert not any(e.model == "forged" for e in after)
    assert "forged" not in load_registry(operator, bootstrap, codec, topics.lifecycle).models()

    producer = FeatureProducer(settings, bootstrap)
    record = next(synthetic_records(model="demo", count=1, entities=1, seed=5, n_features=16))
    producer.send(record)
    producer.send_outcome("some-prediction", 1.0)
    producer.close()  # raises if either was refused


def test_a_wrong_password_is_refused(deployment: Deployment, caplog: pytest.LogCaptureFixture):
    """Both client libraries driftline uses fail to authenticate with a wrong password."""
    kafka = deployment.kafka
    errors: list[KafkaError] = []
    reports: list[KafkaError | None] = []
    producer = Producer(
        kafka.client_config("driftline-producer", password="not-the-password")
        | {"error_cb": errors.append}
    )
    producer.produce(deployment.topics.features, b"x", on_delivery=lambda e, _m: reports.append(e))
    deadline = time.monotonic() + 15
    while not errors and time.monotonic() < deadline:
        producer.poll(0.1)
    # Never delivered: no report yet. (len(producer) also counts librdkafka's own queued
    # requests and events, so it is not a count of undelivered messages.)
    assert reports == []
    producer.purge()
    deadline = time.monotonic() + 5
    while not reports and time.monotonic() < deadline:
        producer.poll(0.1)  # serves the purged message's report
    assert [e.code() for e in reports] == [KafkaError._PURGE_QUEUE], reports
    assert any(e.code() == KafkaError._AUTHENTICATION for e in errors), errors
    assert "invalid credentials" in str(errors[0]), errors

    # aiokafka, which Faust and the lifecycle follower use.
    settings = deployment.settings(
        "inference", DRIFTLINE_KAFKA_SASL_PASSWORD="not-the-password"
    ).kafka

    async def connect() -> None:
        consumer = AIOKafkaConsumer(bootstrap_servers=kafka.bootstrap, **settings.aiokafka_config())
        try:
            await consumer.start()
        finally:
            await consumer.stop()

    with pytest.raises(KafkaConnectionError, match="Unable to bootstrap"):
        asyncio.run(connect())
    assert "SaslAuthenticationFailed" in caplog.text
    assert "invalid credentials" in caplog.text


# Who may write and read each topic, said again here by hand: the broker must agree with
# this, so a change to streams/kafka/acls.py that breaks the rules fails here.
WRITERS = {
    "features": {"producer"},
    "outcomes": {"producer"},
    "lifecycle": {"registry"},
    "commands": {"policy", "operator", "lineage"},
    "predictions": {"inference"},
    # lineage: the training-serving skew check's DriftEvents.
    "drift": {"inference", "lineage"},
    "deadletter": {"inference", "lineage", "registry", "policy"},
    "audit-checkpoints": {"lineage"},
    "worker-drift-summaries": {"inference"},
    "worker-served-features": {"inference"},
}
READERS = {
    "features": {"inference", "lineage"},
    "outcomes": {"inference", "lineage"},
    "lifecycle": {"inference", "lineage", "registry", "policy", "dashboard", "operator"},
    "commands": {"registry"},
    "predictions": {"lineage", "dashboard"},
    "drift": {"lineage", "policy", "dashboard", "operator"},
    "deadletter": {"lineage"},
    "audit-checkpoints": {"lineage", "operator"},
    "worker-drift-summaries": {"inference"},
    "worker-served-features": {"inference", "lineage"},
}
ROLES = [p.role for p in PRINCIPALS]


def test_the_broker_enforces_who_writes_and_reads_each_topic(
    kafka_secure_broker: SecureKafka, tmp_path: Path
):
    kafka = kafka_secure_broker
    deployed = deploy(kafka, tmp_path / "data", command=True)
    names = {kind: deployed.prefix + kind for kind in WRITERS}

    writes: dict[str, dict[str, KafkaError | None]] = {role: {} for role in ROLES}
    producers = []
    for role in ROLES:
        producer = Producer(kafka.client_config(f"driftline-{role}") | {"linger.ms": 0})
        for kind, name in names.items():
            producer.produce(
                name,
                b"x",
                partition=0,
                on_delivery=lambda err, _m, role=role, kind=kind: writes[role].update({kind: err}),
            )
        producers.append(producer)
    for producer in producers:
        assert producer.flush(20) == 0
        producer.close()
    for role in ROLES:
        allowed = {kind for kind, err in writes[role].items() if err is None}
        assert allowed == {kind for kind, who in WRITERS.items() if role in who}, role
        refused = {err.code() for err in writes[role].values() if err is not None}
        assert refused <= {KafkaError.TOPIC_AUTHORIZATION_FAILED}, (role, refused)

    # Every topic holds a record now: each has a writer.
    consumers = {}
    reads: dict[str, dict[str, bool]] = {role: {} for role in ROLES}
    for role in ROLES:
        consumer = Consumer(
            kafka.client_config(f"driftline-{role}")
            | {"group.id": f"{deployed.prefix}dashboard-{role}", "enable.auto.commit": False}
        )
        # A topic the principal may not even describe cannot be read; the rest are fetched.
        described = consumer.list_topics(timeout=10).topics
        hidden = {kind for kind, name in names.items() if name not in described}
        reads[role] = dict.fromkeys(hidden, False)
        consumer.assign(
            [TopicPartition(names[kind], 0, OFFSET_BEGINNING) for kind in names.keys() - hidden]
        )
        consumers[role] = consumer
    kinds = {name: kind for kind, name in names.items()}
    deadline = time.monotonic() + 20
    try:
        while time.monotonic() < deadline and any(len(r) < len(names) for r in reads.values()):
            for role, consumer in consumers.items():
                for message in consumer.consume(100, timeout=0.05):
                    kind = kinds.get(message.topic() or "")
                    if kind is None:
                        continue  # a group error: only the dashboard may use these groups
                    if message.error() is None:
                        reads[role][kind] = True
                    elif message.error().code() == KafkaError.TOPIC_AUTHORIZATION_FAILED:
                        reads[role][kind] = False
    finally:
        for consumer in consumers.values():
            consumer.close()
    for role in ROLES:
        assert reads[role].keys() == names.keys(), (role, reads[role])
        allowed = {kind for kind, ok in reads[role].items() if ok}
        assert allowed == {kind for kind, who in READERS.items() if role in who}, role
