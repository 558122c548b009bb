"""OpenLineage export of the lifecycle history.

Each lifecycle event becomes one OpenLineage run (eventType COMPLETE, eventTime
= when the event occurred) of a job named ``driftline.<verb>.<model>``:

- ``registered`` -> ``register``: reads the commands topic; writes the artifact
- ``validated``/``rejected`` -> ``validate``: reads the lifecycle topic and the artifact
- ``promoted``/``rolled_back`` -> ``score``: reads features, lifecycle and the
  artifact; writes the predictions topic and ClickHouse table
- ``archived`` -> ``archive``; anything else -> its own type as the verb,
  reading the commands topic.

Every run also writes the lifecycle topic and the ClickHouse audit log, where
its event lands. Kafka topics are datasets in namespace ``kafka://host:port``
(the first bootstrap server, as the OpenLineage naming spec says); ClickHouse
tables are ``database.table`` in the given namespace (credentials and query
strings are stripped, so a DSN can be passed as is). The run id is a uuid5 of
the lifecycle event id, so exporting the same history twice gives the same
runs. The lifecycle event itself (actor, states, attributes, evidence) travels
in a custom run facet, ``driftline_lifecycle``.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import attr
from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
from openlineage.client.facet_v2 import (
    RunFacet,
    dataset_version_dataset,
    datasource_dataset,
    job_type_job,
)
from openlineage.client.serde import Serde

from driftline.lineage.events import EventType, LifecycleEvent
from driftline.lineage.exceptions import LineageError

# Fixed forever: changing it would give every exported run a new id.
RUN_ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:driftline:lifecycle-event")
JOB_NAMESPACE = "driftline"
FACET_NAME = "driftline_lifecycle"
_HOST_PORT = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+):\d{1,5}$")


@dataclass(frozen=True)
class _Shape:
    verb: str
    processing: str  # OpenLineage JobTypeJobFacet.processingType
    in_topics: tuple[str, ...]
    out_topics: tuple[str, ...]
    out_tables: tuple[str, ...]
    artifact: str  # "in" | "out"


_REGISTER = _Shape("register", "BATCH", ("commands",), ("lifecycle",), ("audit_log",), "out")
_VALIDATE = _Shape("validate", "BATCH", ("lifecycle",), ("lifecycle",), ("audit_log",), "in")
_SCORE = _Shape(
    "score",
    "STREAMING",
    ("features", "lifecycle"),
    ("predictions", "lifecycle"),
    ("predictions", "audit_log"),
    "in",
)
_SHAPES: dict[str, _Shape] = {
    EventType.REGISTERED: _REGISTER,
    EventType.VALIDATED: _VALIDATE,
    EventType.REJECTED: _VALIDATE,
    EventType.PROMOTED: _SCORE,
    EventType.ROLLED_BACK: _SCORE,
}


def _shape(event_type: str) -> _Shape:
    if event_type in _SHAPES:
        return _SHAPES[event_type]
    verb = "archive" if event_type == EventType.ARCHIVED else event_type
    return _Shape(verb, "BATCH", ("commands",), ("lifecycle",), ("audit_log",), "in")


@attr.define
class LifecycleRunFacet(RunFacet):
    """The driftline lifecycle event behind a run (custom facet ``driftline_lifecycle``)."""

    eventId: str
    type: str
    model: str
    actor: str
    occurredAt: int
    version: int | None = attr.field(default=None)
    state: str | None = attr.field(default=None)
    previousState: str | None = attr.field(default=None)
    attributes: dict[str, str] = attr.field(factory=dict)
    evidence: dict[str, Any] = attr.field(factory=dict)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        # A custom facet's schema URL is anchored on its producer, like the spec's own.
        self._schemaURL = f"{self._producer}#/$defs/LifecycleRunFacet"


def lineage_events(
    lifecycle_events: Iterable[LifecycleEvent],
    *,
    kafka_bootstrap: str,
    topics: Mapping[str, str],
    clickhouse_namespace: str,
    producer: str,
    clickhouse_database: str = "driftline",
    artifact_namespace: str | None = None,
    job_namespace: str = JOB_NAMESPACE,
) -> list[RunEvent]:
    """One COMPLETE OpenLineage run event per lifecycle event, in the same order.

    ``topics`` maps topic kinds (``features``, ``predictions``, ``lifecycle``,
    ``commands``) to topic names. With ``artifact_namespace`` (e.g.
    ``file://host``), model artifacts appear as datasets named by their store
    path, versioned by digest (taken from the ``registered`` event seen earlier
    in the same list).
    """
    events = list(lifecycle_events)
    if not producer or "://" not in producer:
        raise LineageError(f"OpenLineage producer must be a URI naming driftline, got {producer!r}")
    kafka_ns = kafka_namespace(kafka_bootstrap)
    ch_ns = clean_namespace(clickhouse_namespace)
    needed = {
        kind for e in events for kind in (*_shape(e.type).in_topics, *_shape(e.type).out_topics)
    }
    missing = sorted(needed - set(topics))
    if missing:
        raise LineageError(
            f"topics lacks the kinds {missing} needed to export these events; pass a mapping "
            f"of every kind to its topic name (got {sorted(topics)})"
        )
    artifacts: dict[tuple[str, int | None], tuple[str, str]] = {}
    out: list[RunEvent] = []
    for event in events:
        shape = _shape(event.type)
        key = (event.model, event.version)
        if "artifact" in event.attributes and "digest" in event.attributes:
            artifacts[key] = (event.attributes["artifact"], event.attributes["digest"])
        inputs = [_dataset(InputDataset, kafka_ns, topics[k], producer) for k in shape.in_topics]
        outputs = [_dataset(OutputDataset, kafka_ns, topics[k], producer) for k in shape.out_topics]
        outputs += [
            _dataset(OutputDataset, ch_ns, f"{clickhouse_database}.{table}", producer)
            for table in shape.out_tables
        ]
        if artifact_namespace is not None and key in artifacts:
            relpath, digest = artifacts[key]
            kind = InputDataset if shape.artifact == "in" else OutputDataset
            dataset = _dataset(kind, artifact_namespace, relpath, producer)
            dataset.facets["version"] = dataset_version_dataset.DatasetVersionDatasetFacet(
                datasetVersion=digest, producer=producer
            )
            (inputs if shape.artifact == "in" else outputs).append(dataset)
        if event.type == EventType.REGISTERED and "dataset" in event.attributes:
            inputs += _training_inputs(event.attributes["dataset"], producer)
        out.append(
            RunEvent(
                eventType=RunState.COMPLETE,
                eventTime=iso_millis(event.occurred_at),
                producer=producer,
                run=Run(
                    runId=str(run_id(event.event_id)),
                    facets={FACET_NAME: _lifecycle_facet(event, producer)},
                ),
                job=Job(
                    namespace=job_namespace,
                    name=f"driftline.{shape.verb}.{event.model}",
                    facets={
                        "jobType": job_type_job.JobTypeJobFacet(
                            processingType=shape.processing,
                            integration="DRIFTLINE",
                            producer=producer,
                        )
                    },
                ),
                inputs=inputs,
                outputs=outputs,
            )
        )
    return out


def to_json_lines(events: Iterable[RunEvent]) -> str:
    """Newline-delimited JSON, one event a line, via the client's serialiser."""
    return "".join(Serde.to_json(event) + "\n" for event in events)


def run_id(event_id: str) -> uuid.UUID:
    """The stable OpenLineage run id of a lifecycle event."""
    return uuid.uuid5(RUN_ID_NAMESPACE, event_id)


def iso_millis(ms: int) -> str:
    """ISO-8601 UTC with milliseconds (``2024-05-01T12:00:00.123Z``) for int epoch ms."""
    # Integer arithmetic: float seconds could round a millisecond away.
    instant = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)
    return instant.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def kafka_namespace(bootstrap: str) -> str:
    """``kafka://host:port`` of the first bootstrap server (a ``SCHEME://`` prefix is dropped)."""
    first = bootstrap.split(",")[0].strip() if isinstance(bootstrap, str) else ""
    first = first.rpartition("://")[2]
    if not _HOST_PORT.match(first):
        raise LineageError(
            f"Kafka bootstrap {bootstrap!r} is not host:port[,host:port]; pass the brokers' "
            "addresses, e.g. 'broker-1:9092'"
        )
    return f"kafka://{first}"


def clean_namespace(uri: str) -> str:
    """A dataset namespace from a URI/DSN: no credentials, query or trailing slash.

    ``http(s)://`` ClickHouse DSNs become ``clickhouse://``; ``chdb:///path`` stays.
    """
    parts = urlsplit(uri) if isinstance(uri, str) else None
    if parts is None or not parts.scheme or "://" not in uri:
        raise LineageError(
            f"namespace {uri!r} is not a URI; use e.g. 'clickhouse://host:8123' or "
            "'chdb:///abs/path'"
        )
    scheme = "clickhouse" if parts.scheme in ("http", "https") else parts.scheme
    host = parts.netloc.rpartition("@")[2]
    return f"{scheme}://{host}{parts.path.rstrip('/')}"


def _training_inputs(summary_json: str, producer: str) -> list[Any]:
    """The training dataset (versioned by its content fingerprint) and the feature views
    it was built from (versioned by their definition hashes), as a registration's inputs."""
    try:
        summary = json.loads(summary_json)
        path, fingerprint = summary["path"], summary["fingerprint"]
        service, views = summary["feature_service"], summary["views"]
    except (ValueError, KeyError, TypeError) as exc:
        raise LineageError(
            f"the registered event's dataset attribute is unreadable: {exc}"
        ) from exc
    dataset = _dataset(InputDataset, "file", path, producer)
    dataset.facets["version"] = dataset_version_dataset.DatasetVersionDatasetFacet(
        datasetVersion=fingerprint, producer=producer
    )
    inputs = [dataset]
    for view in views:
        feature_view = _dataset(
            InputDataset, "feast", f"{service.split('@')[0]}.{view['name']}", producer
        )
        feature_view.facets["version"] = dataset_version_dataset.DatasetVersionDatasetFacet(
            datasetVersion=view["version"], producer=producer
        )
        inputs.append(feature_view)
    return inputs


def _dataset(cls: type, namespace: str, name: str, producer: str) -> Any:
    source = datasource_dataset.DatasourceDatasetFacet(
        name=namespace, uri=namespace, producer=producer
    )
    return cls(namespace=namespace, name=name, facets={"dataSource": source})


def _lifecycle_facet(event: LifecycleEvent, producer: str) -> LifecycleRunFacet:
    return LifecycleRunFacet(
        eventId=event.event_id,
        type=event.type,
        model=event.model,
        actor=event.actor,
        occurredAt=event.occurred_at,
        version=event.version,
        state=event.state,
        previousState=event.previous_state,
        attributes=dict(event.attributes),
        evidence=event.evidence,
        producer=producer,
    )
