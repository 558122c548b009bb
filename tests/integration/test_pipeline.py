"""A feature record becomes an audited prediction: real Tansu, real worker, real chDB."""

from __future__ import annotations

from pathlib import Path

import pytest

from driftline.schemas import default_codec
from driftline.streams.control.model_commands import ModelCommands
from driftline.streams.demo.loadgen import produce_at_rate, synthetic_records
from driftline.streams.kafka.producer import FeatureProducer
from driftline.streams.kafka.topics import Topics
from tests.integration.helpers import read_topic, scrape_metrics, wait_until, write_model

pytestmark = pytest.mark.integration


def _register_and_promote(settings, tmp_path, *, seed: int, name: str = "demo") -> int:
    commands = ModelCommands.from_settings(settings)
    event, created = commands.register(write_model(tmp_path, seed=seed), name, actor="alice")
    assert created
    commands.promote(name, event.version, actor="bob")
    return event.version


def _wait_serving(worker, name: str, version: int) -> None:
    wait_until(
        lambda: worker.get("/driftline/models/").get(name, {}).get("version") == version,
        timeout_s=30,
        what=f"{name} v{version} to be served",
    )


def test_records_become_stored_predictions_and_audited_events(stack_env, start_worker, tmp_path):
    settings = stack_env.settings()
    worker = start_worker()
    version = _register_and_promote(settings, tmp_path, seed=1)
    _wait_serving(worker, "demo", version)

    producer = FeatureProducer(settings, stack_env.bootstrap)
    sent = produce_at_rate(
        producer,
        synthetic_records(model="demo", count=2000, entities=50, seed=3, n_features=16),
        rate=0,
    )
    db = settings.clickhouse.database
    wait_until(
        lambda: worker.sql(f"SELECT count() FROM {db}.predictions")[0][0] >= sent,
        what="predictions in ClickHouse",
    )
    count, unique, versions, arms = worker.sql(
        f"SELECT count(), uniqExact(record_id), groupUniqArray(version), groupUniqArray(arm) "
        f"FROM {db}.predictions FINAL"
    )[0]
    assert (count, unique, versions, arms) == (sent, sent, [version], ["champion"])
    # The worker's Prometheus counters agree with the store.
    metrics = scrape_metrics(worker.url)
    labels = frozenset({"model": "demo", "version": str(version), "arm": "champion"}.items())
    assert metrics[("driftline_predictions_total", labels)] == count
    assert metrics[("driftline_records_consumed_total", frozenset())] == sent
    assert metrics[("driftline_prediction_latency_seconds_count", frozenset())] == count

    predictions = read_topic(stack_env.bootstrap, Topics(stack_env.prefix).predictions, 2)
    assert len(predictions) == sent
    decoded = default_codec().decode_as("Prediction", predictions[0].value())
    assert 0.0 <= decoded["score"] <= 1.0 and decoded["model"] == "demo"

    audit = worker.sql(
        f"SELECT event_type, version, actor, seq FROM {db}.audit_log "
        f"WHERE model = 'demo' ORDER BY seq"
    )
    assert audit == [["registered", version, "alice", 1], ["promoted", version, "bob", 2]]
    assert worker.get("/driftline/audit/verify/")["ok"] is True


def test_promotion_swaps_model_mid_stream_without_loss_or_double_scoring(
    stack_env, start_worker, tmp_path
):
    settings = stack_env.settings()
    worker = start_worker()
    v1 = _register_and_promote(settings, tmp_path, seed=1)
    _wait_serving(worker, "demo", v1)
    producer = FeatureProducer(settings, stack_env.bootstrap)
    records = synthetic_records(model="demo", count=6000, entities=100, seed=5, n_features=16)

    first = produce_at_rate(producer, (next(records) for _ in range(3000)), rate=3000)
    v2 = _register_and_promote(settings, tmp_path, seed=2)
    second = produce_at_rate(producer, records, rate=3000)
    _wait_serving(worker, "demo", v2)
    total = first + second

    db = settings.clickhouse.database
    wait_until(
        lambda: worker.sql(f"SELECT count() FROM {db}.predictions")[0][0] >= total,
        what="all predictions stored",
    )
    rows, unique_records, served = worker.sql(
        f"SELECT count(), uniqExact(record_id), groupUniqArray(version) FROM {db}.predictions"
    )[0]
    assert rows == unique_records == total  # nothing lost, nothing scored twice
    assert sorted(served) == [v1, v2]
    # Within each partition the swap happens once: no record after a v2 one gets v1.
    messages = read_topic(stack_env.bootstrap, Topics(stack_env.prefix).predictions, 2)
    codec = default_codec()
    for partition in (0, 1):
        versions = [
            codec.decode_as("Prediction", m.value())["version"]
            for m in sorted(messages, key=lambda m: m.offset())
            if m.partition() == partition
        ]
        assert versions == sorted(versions)


def _flip_last_byte(artifact: Path, digest: str) -> None:
    artifact.write_bytes(artifact.read_bytes()[:-1] + b"\x00")  # one byte changed on disk


def _drop_signature(artifact: Path, digest: str) -> None:
    artifact.with_name(f"{digest}.sig").unlink()


@pytest.mark.parametrize(
    ("spoil", "reason"),
    [(_flip_last_byte, "sha256"), (_drop_signature, "is not signed")],
    ids=["tampered-bytes", "missing-signature"],
)
def test_worker_refuses_a_spoiled_artifact_and_keeps_serving(
    stack_env, start_worker, tmp_path, spoil, reason
):
    settings = stack_env.settings()
    worker = start_worker()
    v1 = _register_and_promote(settings, tmp_path, seed=1)
    _wait_serving(worker, "demo", v1)
    commands = ModelCommands.from_settings(settings)
    event, _ = commands.register(write_model(tmp_path, seed=2), "demo", actor="alice")
    assert event.attributes["signed_by"]  # the registering actor's key id
    spoil(settings.data.artifacts / event.attributes["artifact"], event.attributes["digest"])
    commands.promote("demo", event.version, actor="bob")

    wait_until(lambda: worker.get("/driftline/stats/")["models_refused"], what="a refusal")
    (refusal,) = worker.get("/driftline/stats/")["models_refused"]
    assert refusal["version"] == event.version and reason in refusal["reason"]
    assert worker.get("/driftline/models/")["demo"]["version"] == v1
