"""What a model artifact was trained on: the JSON sidecar stored next to it.

:class:`ArtifactMetadata` is validated on construction and always holds plain,
finite JSON, so :meth:`ArtifactMetadata.canonical_json` is deterministic and its
:meth:`~ArtifactMetadata.sha256` can be recorded in the ``registered`` event to
make the sidecar tamper-evident.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from driftline.drift.exceptions import InvalidProfile
from driftline.drift.profile import ReferenceProfile
from driftline.lineage.artifacts.crypto import sha256_hex
from driftline.lineage.events import now_ms
from driftline.lineage.exceptions import InvalidRecord


@dataclass(frozen=True)
class InputSchema:
    """The model's input: tensor name, shape (None or a name for dynamic dims), features."""

    name: str
    shape: tuple[int | str | None, ...]
    feature_names: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise InvalidRecord(f"input name must be a non-empty string, got {self.name!r}")
        shape = tuple(self.shape)
        if not all(d is None or isinstance(d, str) or (type(d) is int and d >= 0) for d in shape):
            raise InvalidRecord(f"input shape dims must be ints >= 0, names or None: {shape!r}")
        names = self.feature_names
        if names is not None:
            names = tuple(names)
            if not all(isinstance(n, str) for n in names):
                raise InvalidRecord(f"feature names must be strings, got {names!r}")
            if shape and type(shape[-1]) is int and shape[-1] != len(names):
                raise InvalidRecord(
                    f"input shape {shape!r} has {shape[-1]} features but {len(names)} feature "
                    "names were given; pass one name per feature"
                )
        object.__setattr__(self, "shape", shape)
        object.__setattr__(self, "feature_names", names)


@dataclass(frozen=True, kw_only=True)
class ArtifactMetadata:
    """What a model artifact was trained on and how it scored offline (JSON sidecar)."""

    training_data_fingerprint: str
    parameters: dict[str, Any]
    offline_metrics: dict[str, float]
    input_schema: InputSchema
    reference_profile: dict[str, Any] | None = None
    created_at: int = field(default_factory=now_ms)
    # The feature service and missing-row rule the model is served with (online enrichment).
    features: dict[str, Any] | None = None
    # The manifest of the training dataset built from the feature store.
    dataset: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        fingerprint = self.training_data_fingerprint
        if not isinstance(fingerprint, str) or not fingerprint:
            raise InvalidRecord(f"training_data_fingerprint must be non-empty, got {fingerprint!r}")
        if not isinstance(self.created_at, int) or isinstance(self.created_at, bool):
            raise InvalidRecord(f"created_at must be int milliseconds, got {self.created_at!r}")
        schema = self.input_schema
        if isinstance(schema, Mapping):
            try:
                schema = InputSchema(**schema)
            except TypeError as exc:
                raise InvalidRecord(f"input_schema has the wrong fields: {exc}") from exc
        if not isinstance(schema, InputSchema):
            raise InvalidRecord(f"input_schema must be an InputSchema, got {schema!r}")
        metrics = self.offline_metrics
        if not isinstance(metrics, Mapping) or not all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in metrics.values()
        ):
            raise InvalidRecord(
                f"offline_metrics must map names to numbers, got {metrics!r}; put other "
                "values in parameters"
            )
        profile = self.reference_profile
        if isinstance(profile, ReferenceProfile):
            profile = profile.to_dict()
        elif profile is not None:
            try:
                ReferenceProfile.from_dict(profile)  # refuse a profile nobody could load
            except InvalidProfile as exc:
                raise InvalidRecord(f"reference_profile is not loadable: {exc}") from exc
        object.__setattr__(self, "input_schema", schema)
        # Defensive deep copies that also prove the values are plain, finite JSON.
        for name, value in (
            ("parameters", self.parameters),
            ("offline_metrics", metrics),
            ("reference_profile", profile),
            ("features", self.features),
            ("dataset", self.dataset),
        ):
            try:
                copy = json.loads(_canonical(value))
            except (TypeError, ValueError) as exc:
                raise InvalidRecord(
                    f"artifact metadata {name} is not plain JSON ({exc}); use str/int/float/"
                    "bool/None, lists and string-keyed dicts, and no NaN or infinity"
                ) from exc
            if name in ("parameters", "offline_metrics") and not isinstance(copy, dict):
                raise InvalidRecord(f"artifact metadata {name} must be a JSON object")
            object.__setattr__(self, name, copy)

    def profile(self) -> ReferenceProfile | None:
        """The training reference profile, if one was recorded."""
        if self.reference_profile is None:
            return None
        return ReferenceProfile.from_dict(self.reference_profile)

    def to_dict(self) -> dict[str, Any]:
        # Written only when set, so sidecars from before they existed keep their digest.
        optional = {
            name: value
            for name, value in (("features", self.features), ("dataset", self.dataset))
            if value is not None
        }
        return optional | {
            "format": 1,
            "training_data_fingerprint": self.training_data_fingerprint,
            "parameters": self.parameters,
            "offline_metrics": self.offline_metrics,
            "input_schema": {
                "name": self.input_schema.name,
                "shape": list(self.input_schema.shape),
                "feature_names": (
                    None
                    if self.input_schema.feature_names is None
                    else list(self.input_schema.feature_names)
                ),
            },
            "reference_profile": self.reference_profile,
            "created_at": self.created_at,
        }

    @classmethod
    def from_dict(cls, body: Mapping[str, Any]) -> ArtifactMetadata:
        if not isinstance(body, Mapping) or body.get("format") != 1:
            raise InvalidRecord("artifact metadata is not a format-1 JSON object")
        try:
            return cls(**{k: v for k, v in body.items() if k != "format"})
        except TypeError as exc:
            raise InvalidRecord(f"artifact metadata has the wrong fields: {exc}") from exc

    def canonical_json(self) -> bytes:
        """Deterministic UTF-8 JSON: what the sidecar holds and :meth:`sha256` hashes."""
        return _canonical(self.to_dict()).encode("utf-8")

    def sha256(self) -> str:
        """Digest to record (e.g. in the ``registered`` event) so the sidecar is tamper-evident."""
        return sha256_hex(self.canonical_json())


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)
