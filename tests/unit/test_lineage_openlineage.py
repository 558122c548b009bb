import json
import uuid

import pytest
from openlineage.client.event_v2 import InputDataset, OutputDataset, RunEvent, RunState
from openlineage.client.serde import Serde

from driftline.lineage.events import LifecycleEvent
from driftline.lineage.exceptions import LineageError
from driftline.lineage.openlineage import (
    clean_namespace,
    iso_millis,
    kafka_namespace,
    lineage_events,
    run_id,
    to_json_lines,
)

DIGEST = "ab" * 32
PRODUCER = "https://example.org/driftline/v0.3"
TOPICS = {
    kind: f"driftline.{kind}"
    for kind in ("features", "predictions", "outcomes", "drift", "lifecycle", "commands")
}
T0 = 1_714_564_800_123  # 2024-05-01T12:00:00.123Z


def _event(n: int, type: str, version: int | None = 1, **kwargs) -> LifecycleEvent:
    return LifecycleEvent(
        event_id=f"evt-{n}",
        type=type,
        model="fraud",
        version=version,
        actor=kwargs.pop("actor", "alice@example.org"),
        occurred_at=T0 + n,
        **kwargs,
    )


HISTORY = [
    _event(
        0,
        "registered",
        state="registered",
        attributes={"digest": DIGEST, "artifact": f"sha256/ab/{DIGEST}.onnx"},
    ),
    _event(1, "validated", evidence={"auc": 0.91, "n": 5000}),
    _event(2, "promoted", state="champion", previous_state="registered", actor="bob"),
    _event(3, "rolled_back", state="archived", previous_state="champion"),
    _event(4, "archived", state="archived"),
    _event(5, "command_rejected", version=None, evidence={"reason": "bad signature"}),
]


def _export(events=HISTORY, **overrides) -> list[RunEvent]:
    arguments = {
        "kafka_bootstrap": "broker-1:9092,broker-2:9092",
        "topics": TOPICS,
        "clickhouse_namespace": "clickhouse://ch.internal:8123",
        "producer": PRODUCER,
    }
    return lineage_events(events, **{**arguments, **overrides})


def _names(datasets) -> list[tuple[str, str]]:
    return [(d.namespace, d.name) for d in datasets]


def test_one_complete_run_per_lifecycle_event() -> None:
    runs = _export()
    assert len(runs) == len(HISTORY)
    assert all(isinstance(r, RunEvent) and r.eventType == RunState.COMPLETE for r in runs)
    assert [r.job.name for r in runs] == [
        "driftline.register.fraud",
        "driftline.validate.fraud",
        "driftline.score.fraud",
        "driftline.score.fraud",
        "driftline.archive.fraud",
        "driftline.command_rejected.fraud",
    ]
    assert {r.job.namespace for r in runs} == {"driftline"}
    assert runs[0].eventTime == "2024-05-01T12:00:00.123Z"
    assert [r.eventTime for r in runs[1:3]] == [iso_millis(T0 + 1), iso_millis(T0 + 2)]
    assert all(r.producer == PRODUCER for r in runs)


def test_datasets_and_namespaces() -> None:
    register, validate, score = _export()[:3]
    kafka, ch = "kafka://broker-1:9092", "clickhouse://ch.internal:8123"
    assert _names(register.inputs) == [(kafka, "driftline.commands")]
    assert _names(register.outputs) == [(kafka, "driftline.lifecycle"), (ch, "driftline.audit_log")]
    assert _names(validate.inputs) == [(kafka, "driftline.lifecycle")]
    assert _names(score.inputs) == [(kafka, "driftline.features"), (kafka, "driftline.lifecycle")]
    assert _names(score.outputs) == [
        (kafka, "driftline.predictions"),
        (kafka, "driftline.lifecycle"),
        (ch, "driftline.predictions"),
        (ch, "driftline.audit_log"),
    ]
    assert all(isinstance(d, InputDataset) for d in score.inputs)
    assert all(isinstance(d, OutputDataset) for d in score.outputs)
    assert score.job.facets["jobType"].processingType == "STREAMING"
    assert register.job.facets["jobType"].processingType == "BATCH"


def test_run_ids_are_stable_uuids() -> None:
    first, second = _export(), _export()
    ids = [r.run.runId for r in first]
    assert ids == [r.run.runId for r in second]
    assert len(set(ids)) == len(ids)
    assert ids == [str(run_id(e.event_id)) for e in HISTORY]
    assert all(uuid.UUID(i).version == 5 for i in ids)
    assert to_json_lines(first) == to_json_lines(second)


def test_lifecycle_facet_carries_the_event() -> None:
    promote = _export()[2]
    facet = promote.run.facets["driftline_lifecycle"]
    assert (facet.eventId, facet.type, facet.actor, facet.version) == (
        "evt-2",
        "promoted",
        "bob",
        1,
    )
    assert (facet.state, facet.previousState) == ("champion", "registered")
    validate = Serde.to_dict(_export()[1])["run"]["facets"]["driftline_lifecycle"]
    assert validate["evidence"] == {"auc": 0.91, "n": 5000}
    assert validate["_producer"] == PRODUCER
    assert validate["_schemaURL"].startswith(PRODUCER + "#")


def test_json_lines_have_the_required_fields() -> None:
    text = to_json_lines(_export())
    lines = text.splitlines()
    assert text.endswith("\n") and len(lines) == len(HISTORY)
    for line, event in zip(lines, HISTORY, strict=True):
        body = json.loads(line)
        assert body["eventType"] == "COMPLETE"
        assert body["eventTime"] == iso_millis(event.occurred_at)
        assert body["producer"] == PRODUCER
        assert body["schemaURL"].startswith("https://openlineage.io/spec/")
        assert uuid.UUID(body["run"]["runId"]) == run_id(event.event_id)
        assert body["job"]["namespace"] == "driftline"
        assert body["job"]["name"].endswith(".fraud")
        for dataset in body["inputs"] + body["outputs"]:
            assert dataset["namespace"].split("://")[0] in ("kafka", "clickhouse")
            assert dataset["facets"]["dataSource"]["uri"] == dataset["namespace"]
    assert to_json_lines([]) == ""


def test_artifact_datasets_are_versioned_by_digest() -> None:
    runs = _export(artifact_namespace="file://models.internal", clickhouse_database="prod")
    artifact = ("file://models.internal", f"sha256/ab/{DIGEST}.onnx")
    register, validate, score = runs[:3]
    assert artifact in _names(register.outputs)
    assert artifact in _names(validate.inputs) and artifact in _names(score.inputs)
    dataset = next(d for d in score.inputs if d.namespace == "file://models.internal")
    assert dataset.facets["version"].datasetVersion == DIGEST
    assert ("clickhouse://ch.internal:8123", "prod.audit_log") in _names(register.outputs)
    # Without a registered event in the list, nothing is invented.
    alone = _export([HISTORY[2]], artifact_namespace="file://models.internal")[0]
    assert "file://models.internal" not in {d.namespace for d in alone.inputs}


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("clickhouse://ch:8123", "clickhouse://ch:8123"),
        ("https://writer:s3cret@ch.internal:8443/?database=x", "clickhouse://ch.internal:8443"),
        ("chdb:///var/lib/driftline/chdb/", "chdb:///var/lib/driftline/chdb"),
    ],
)
def test_clickhouse_namespace_is_cleaned(uri: str, expected: str) -> None:
    assert clean_namespace(uri) == expected
    run = _export(HISTORY[:1], clickhouse_namespace=uri)[0]
    assert expected in {d.namespace for d in run.outputs}
    assert "s3cret" not in to_json_lines([run])


def test_kafka_namespace() -> None:
    assert kafka_namespace("SASL_SSL://b1.example:9093,b2:9093") == "kafka://b1.example:9093"
    assert kafka_namespace("[::1]:9092") == "kafka://[::1]:9092"
    for bad in ("", "broker", "b1:port", "a b:1"):
        with pytest.raises(LineageError, match="host:port"):
            kafka_namespace(bad)


def test_bad_arguments_are_named() -> None:
    with pytest.raises(LineageError, match=r"\['features', 'predictions'\]"):
        _export(topics={"lifecycle": "l", "commands": "c"})
    with pytest.raises(LineageError, match="producer"):
        _export(producer="")
    with pytest.raises(LineageError, match="not a URI"):
        _export(clickhouse_namespace="ch.internal:8123")
    # Only the topics the given events need are required.
    assert len(_export(HISTORY[:1], topics={"lifecycle": "l", "commands": "c"})) == 1
