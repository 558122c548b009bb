"""driftline lineage: model registry, artifact store, audit log and ClickHouse sinks.

Plain Python over dataclasses and clickhouse-connect; no Faust, no Kafka client.
OpenLineage export lives in :mod:`driftline.lineage.openlineage`, imported only where used
(the client library is slow to import and most processes never need it).
"""

from driftline.lineage.artifacts import Artifact, ArtifactStore, sha256_hex
from driftline.lineage.audit import AuditLogWriter, AuditProblem, AuditReport, chain_hash, verify
from driftline.lineage.commands import LifecycleCommand, new_command
from driftline.lineage.events import EventType, LifecycleEvent
from driftline.lineage.exceptions import (
    ArtifactNotFound,
    DigestMismatch,
    IllegalTransition,
    InvalidRecord,
    LineageError,
    StoreError,
    UnknownModel,
    UnknownVersion,
)
from driftline.lineage.keys import (
    KeyPair,
    KeyRing,
    generate_key,
    key_id,
    load_keypair,
    load_private_key,
    parse_public_key,
    save_keypair,
)
from driftline.lineage.metadata import ArtifactMetadata, InputSchema
from driftline.lineage.policy import Policy, write_example_roles
from driftline.lineage.rbac import CommandAuthority
from driftline.lineage.registry import ACTIONS as REGISTRY_ACTIONS
from driftline.lineage.registry import HistoryEntry, ModelRegistry, ModelVersion, State
from driftline.lineage.sinks import DeadLetterSink, PredictionSink
from driftline.lineage.store import create_tables, open_client

__all__ = [
    "REGISTRY_ACTIONS",
    "Artifact",
    "ArtifactMetadata",
    "ArtifactNotFound",
    "ArtifactStore",
    "AuditLogWriter",
    "AuditProblem",
    "AuditReport",
    "CommandAuthority",
    "DeadLetterSink",
    "DigestMismatch",
    "EventType",
    "HistoryEntry",
    "IllegalTransition",
    "InputSchema",
    "InvalidRecord",
    "KeyPair",
    "KeyRing",
    "LifecycleCommand",
    "LifecycleEvent",
    "LineageError",
    "ModelRegistry",
    "ModelVersion",
    "Policy",
    "PredictionSink",
    "State",
    "StoreError",
    "UnknownModel",
    "UnknownVersion",
    "chain_hash",
    "create_tables",
    "generate_key",
    "key_id",
    "load_keypair",
    "load_private_key",
    "new_command",
    "open_client",
    "parse_public_key",
    "save_keypair",
    "sha256_hex",
    "verify",
    "write_example_roles",
]
