"""driftline lineage: model registry, artifact store, audit log and ClickHouse sinks.

Plain Python over dataclasses and clickhouse-connect; no Faust, no Kafka client.
"""

from lineage.artifacts import Artifact, ArtifactStore, sha256_hex
from lineage.audit import AuditLogWriter, AuditProblem, AuditReport, chain_hash, verify
from lineage.events import EventType, LifecycleEvent
from lineage.exceptions import (
    ArtifactNotFound,
    DigestMismatch,
    IllegalTransition,
    InvalidRecord,
    LineageError,
    StoreError,
    UnknownModel,
    UnknownVersion,
)
from lineage.registry import ModelRegistry, ModelVersion, State
from lineage.sinks import DeadLetterSink, PredictionSink
from lineage.store import create_tables, open_client

__all__ = [
    "Artifact",
    "ArtifactNotFound",
    "ArtifactStore",
    "AuditLogWriter",
    "AuditProblem",
    "AuditReport",
    "DeadLetterSink",
    "DigestMismatch",
    "EventType",
    "IllegalTransition",
    "InvalidRecord",
    "LifecycleEvent",
    "LineageError",
    "ModelRegistry",
    "ModelVersion",
    "PredictionSink",
    "State",
    "StoreError",
    "UnknownModel",
    "UnknownVersion",
    "chain_hash",
    "create_tables",
    "open_client",
    "sha256_hex",
    "verify",
]
