"""`driftline model ...`: register and promote, as lifecycle events over Kafka."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from driftline.settings import Settings
from inference import describe_onnx
from lineage import ArtifactStore, LifecycleEvent, ModelRegistry, ModelVersion
from streams.codecs import codec_for
from streams.lifecycle import load_registry, publish_lifecycle
from streams.stackfile import resolve_bootstrap
from streams.topics import Topics


@dataclass(frozen=True)
class ModelCommands:
    settings: Settings
    bootstrap: str

    @classmethod
    def from_settings(cls, settings: Settings) -> ModelCommands:
        return cls(settings, resolve_bootstrap(settings))

    @property
    def _topic(self) -> str:
        return Topics(self.settings.kafka.topic_prefix).lifecycle

    def registry(self) -> ModelRegistry:
        return load_registry(self.settings, self.bootstrap, codec_for(self.settings), self._topic)

    def _publish(self, event: LifecycleEvent) -> None:
        publish_lifecycle(
            self.settings, self.bootstrap, codec_for(self.settings), self._topic, event
        )

    def register(
        self, path: Path, name: str, actor: str
    ) -> tuple[ModelVersion | LifecycleEvent, bool]:
        """Store the artifact and publish `registered`; returns (result, created)."""
        data = path.read_bytes()
        description = describe_onnx(data)
        artifact = ArtifactStore(self.settings.data.artifacts).put_bytes(data)
        planned = self.registry().plan_register(
            name, description.to_attributes(), artifact.digest, artifact.relpath, actor
        )
        if isinstance(planned, LifecycleEvent):
            self._publish(planned)
            return planned, True
        return planned, False

    def promote(self, name: str, version: int, actor: str) -> LifecycleEvent:
        event = self.registry().plan_promote(name, version, actor)
        self._publish(event)
        return event
