"""`driftline model ...`: signed lifecycle commands, answered by the registry agent."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from opentelemetry import trace
from opentelemetry.trace import SpanKind

from driftline.core.settings import Settings
from driftline.drift.profile import ReferenceProfile
from driftline.features.configured import open_feature_store
from driftline.features.datasets import DatasetManifest, load_dataset
from driftline.features.enrichment import EnrichmentPolicy
from driftline.features.store import FeatureServiceRef
from driftline.inference import describe_onnx
from driftline.inference.signature import positional_names
from driftline.lineage.artifacts.crypto import sha256_hex
from driftline.lineage.artifacts.metadata import ArtifactMetadata, InputSchema
from driftline.lineage.events import LifecycleEvent
from driftline.lineage.registry.model_registry import ModelRegistry
from driftline.lineage.registry.versions import ModelVersion
from driftline.lineage.trust.commands import new_command
from driftline.lineage.trust.keys import key_id, load_private_key
from driftline.streams.artifact_store import artifact_store, region_refusal
from driftline.streams.embedded.stackfile import resolve_bootstrap
from driftline.streams.exceptions import CommandRejected, StreamsError
from driftline.streams.kafka.clients import make_producer
from driftline.streams.kafka.codecs import codec_for
from driftline.streams.kafka.lifecycle_topic import LifecycleWatcher, load_registry
from driftline.streams.kafka.topics import Topics
from driftline.streams.kafka.tracing import trace_headers

tracer = trace.get_tracer(__name__)


@dataclass(frozen=True)
class ModelCommands:
    settings: Settings
    bootstrap: str

    @classmethod
    def from_settings(cls, settings: Settings) -> ModelCommands:
        return cls(settings, resolve_bootstrap(settings))

    @property
    def _topics(self) -> Topics:
        return Topics(self.settings.kafka.topic_prefix)

    def registry(self) -> ModelRegistry:
        return load_registry(
            self.settings, self.bootstrap, codec_for(self.settings), self._topics.lifecycle
        )

    def _private_key(self, actor: str) -> Ed25519PrivateKey:
        key_path = self.settings.key_dir / f"{actor}.key"
        if not key_path.exists():
            raise StreamsError(
                f"no private key for actor {actor!r} at {key_path}: create one "
                f"with `driftline keys new --actor {actor}`"
            )
        return load_private_key(key_path)

    def send(
        self,
        action: str,
        name: str,
        version: int | None,
        actor: str,
        arguments: dict[str, str] | None = None,
    ) -> LifecycleEvent:
        """Sign a command as `actor`, publish it, and return the event that answers it."""
        command = new_command(action, name, version, actor, arguments).signed(
            self._private_key(actor)
        )
        codec = codec_for(self.settings)
        watcher = LifecycleWatcher(self.settings, self.bootstrap, self._topics.lifecycle)
        producer = make_producer(self.settings, self.bootstrap)
        with tracer.start_as_current_span(f"send {action} command", kind=SpanKind.PRODUCER):
            producer.produce(
                self._topics.name("commands"),
                codec.encode("LifecycleCommand", command.to_avro()),
                key=name.encode(),
                headers=trace_headers(),
            )
        if producer.flush(30):
            raise StreamsError(
                f"command {command.command_id} was not acknowledged by {self.bootstrap}"
            )
        event = watcher.wait_for(
            codec, command.command_id, self.settings.registry.command_timeout_s
        )
        if event.type == "command_rejected":
            raise CommandRejected(
                f"{action} {name}{f' v{version}' if version else ''} refused "
                f"({event.evidence.get('check')}): {event.evidence.get('reason')}"
            )
        return event

    def register(
        self,
        path: Path,
        name: str,
        actor: str,
        *,
        training_data: Path | None = None,
        features: Provenance | None = None,
    ) -> tuple[ModelVersion | LifecycleEvent, bool]:
        """Store the artifact, then ask the registry to record it; returns (result, created)."""
        data = path.read_bytes()
        description = describe_onnx(data)
        features = features or Provenance()
        private_key = self._private_key(actor)
        refusal = region_refusal(self.settings)
        if refusal is not None:
            # Nothing is stored, but the attempt is audited: the agent refuses it on record.
            self.send(
                "register",
                name,
                None,
                actor,
                {
                    "region": str(self.settings.data.region),
                    "digest": sha256_hex(data),
                    "refused": refusal,
                },
            )
        store = artifact_store(self.settings)
        metadata = artifact_metadata(description, training_data, features)
        artifact = store.put_bytes(data, metadata=metadata)
        existing = self.registry().find_by_digest(name, artifact.digest)
        if existing is not None:
            return existing, False
        # The registering actor signs the digest; workers check it before any load.
        store.sign_artifact(artifact.digest, private_key)
        attributes = (
            description.to_attributes()
            | {
                "signed_by": key_id(private_key.public_key()),
                # Pins the metadata sidecar (profile, metrics, parameters) in the audit chain.
                "metadata_sha256": metadata.sha256(),
            }
            | features.attributes()
        )
        arguments = {
            "digest": artifact.digest,
            "artifact": artifact.relpath,
            "attributes": json.dumps(attributes, sort_keys=True),
        }
        return self.send("register", name, None, actor, arguments), True

    def promote(self, name: str, version: int, actor: str) -> LifecycleEvent:
        return self.send("promote", name, version, actor)


@dataclass(frozen=True)
class Provenance:
    """Where a model's features come from: the feature service it is served with (and
    its rule for rows the store cannot complete), and the dataset it was trained on."""

    policy: EnrichmentPolicy | None = None
    service: FeatureServiceRef | None = None
    dataset: DatasetManifest | None = None
    dataset_table: pa.Table | None = None

    def metadata(self) -> dict:
        out: dict = {}
        if self.policy is not None:
            out["features"] = self.policy.as_metadata() | {
                "service_ref": None if self.service is None else self.service.as_dict()
            }
        if self.dataset is not None:
            out["dataset"] = json.loads(self.dataset.to_json())
        return out

    def attributes(self) -> dict[str, str]:
        """What the ``registered`` event, and so the audit chain, records."""
        out = {}
        if self.service is not None:
            out["feature_service"] = self.service.label
        if self.policy is not None:
            out["missing_features"] = self.policy.rule.value
        if self.dataset is not None:
            out["dataset"] = json.dumps(self.dataset.summary(), sort_keys=True)
        return out

    def training_matrix(self, names: tuple[str, ...]) -> np.ndarray | None:
        """The dataset's columns in the model's order, when it holds them all."""
        table = self.dataset_table
        if table is None or not all(n in table.column_names for n in names):
            return None
        columns = [table.column(n).to_numpy(zero_copy_only=False) for n in names]
        return np.column_stack(columns).astype(np.float32)


def artifact_metadata(
    description, training_data: Path | None, features: Provenance | None = None
) -> ArtifactMetadata:
    """What the registry keeps beside an artifact: provenance, metrics, reference profile.

    ONNX metadata_props written by driftline's trainer (or any exporter) supply the
    fingerprint and metrics; a training matrix (.npy) supplies the reference profile
    that drift and skew checks compare serving data against.
    """
    props = dict(description.metadata_props)
    fingerprint = props.pop("training_data_sha256", "")
    try:
        metrics = json.loads(props.pop("metrics", "{}"))
    except ValueError:
        metrics = {}
    props.pop("feature_names", None)
    profile = None
    features = features or Provenance()
    names = description.feature_names or positional_names(description.n_features)
    dataset_matrix = features.training_matrix(tuple(names))
    if training_data is None and dataset_matrix is not None:
        # The feature-store dataset is the training data: its profile is the reference.
        fingerprint = features.dataset.fingerprint
        profile = ReferenceProfile.from_matrix(dataset_matrix, names)
    if training_data is not None:
        matrix = np.load(training_data, allow_pickle=False).astype(np.float32, copy=False)
        if matrix.ndim != 2 or matrix.shape[1] != description.n_features:
            raise StreamsError(
                f"training data {training_data} has shape {matrix.shape}; the model takes "
                f"{description.n_features} features per row"
            )
        fingerprint = hashlib.sha256(np.ascontiguousarray(matrix).tobytes()).hexdigest()
        # The training matrix's columns are the ONNX input's, in order: named by the model,
        # or positionally exactly as the serving side names them.
        names = description.feature_names or positional_names(matrix.shape[1])
        profile = ReferenceProfile.from_matrix(matrix, names)
    return ArtifactMetadata(
        training_data_fingerprint=fingerprint or "unknown",
        parameters=props,
        offline_metrics={k: v for k, v in metrics.items() if isinstance(v, int | float)},
        input_schema=InputSchema(
            description.input_name,
            tuple(description.input_shape),
            tuple(description.feature_names) if description.feature_names else None,
        ),
        reference_profile=profile,
        **features.metadata(),
    )


def resolve_provenance(
    settings: Settings,
    *,
    feature_service: str | None,
    feature_repo: Path | None = None,
    missing_rule: str = "dead_letter",
    defaults: dict[str, float] | None = None,
    dataset: Path | None = None,
) -> Provenance:
    """Check the feature service against the store and the dataset against its manifest."""
    table = manifest = None
    if dataset is not None:
        table, manifest = load_dataset(dataset)
        if feature_service is None:  # a dataset names the service it was built from
            feature_service = manifest.feature_service["name"]
    if feature_service is None:
        return Provenance(dataset=manifest, dataset_table=table)
    store = open_feature_store(feature_repo or settings.features.repo)
    if store is None:
        raise StreamsError(
            f"--feature-service {feature_service} needs the Feast repository: pass "
            "--feature-repo or set DRIFTLINE_FEATURES_REPO"
        )
    service = store.service(feature_service)
    if manifest is not None and manifest.feature_service["name"] != service.name:
        raise StreamsError(
            f"the dataset was built from feature service {manifest.feature_service['name']!r}, "
            f"not {service.name!r}"
        )
    policy = EnrichmentPolicy(
        service.name, version=service.version, rule=missing_rule, defaults=defaults or {}
    )
    return Provenance(policy, service, manifest, table)
