"""A registered model version, parsed from its ``registered`` lifecycle event."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from driftline.lineage.events import LifecycleEvent
from driftline.lineage.exceptions import InvalidRecord
from driftline.lineage.registry.lifecycle import State


@dataclass(frozen=True)
class ModelVersion:
    """One registered version of a model, as the lifecycle events describe it."""

    name: str
    version: int
    digest: str
    artifact: str
    input_name: str
    input_shape: tuple[int | str | None, ...]
    feature_names: tuple[str, ...] | None
    metadata_props: dict[str, str]
    state: str
    registered_by: str
    registered_at: int
    signed_by: str | None = None  # key id whose signature over the digest workers require
    metadata_sha256: str | None = None  # pins the sidecar (reference profile, metrics)


def version_from_event(event: LifecycleEvent) -> ModelVersion:
    """Parse a ``registered`` event's attributes into a :class:`ModelVersion`."""
    attrs = event.attributes
    where = f"registered event {event.event_id!r} for {event.model!r} v{event.version}"
    if event.version is None or event.version < 1:
        raise InvalidRecord(f"{where}: version must be an int >= 1")
    missing = [k for k in ("digest", "artifact", "input_name", "input_shape") if not attrs.get(k)]
    if missing:
        raise InvalidRecord(f"{where}: attributes lack {missing}; present: {sorted(attrs)}")
    shape = _json_attr(attrs, "input_shape", where)
    if not isinstance(shape, list) or not all(
        d is None or isinstance(d, str) or (isinstance(d, int) and not isinstance(d, bool))
        for d in shape
    ):
        raise InvalidRecord(
            f"{where}: input_shape must be a JSON list of ints/null, got {attrs['input_shape']!r}"
        )
    names = _json_attr(attrs, "feature_names", where) if "feature_names" in attrs else None
    if names is not None and (
        not isinstance(names, list) or not all(isinstance(n, str) for n in names)
    ):
        raise InvalidRecord(
            f"{where}: feature_names must be a JSON list of strings or absent, "
            f"got {attrs['feature_names']!r}"
        )
    props = _json_attr(attrs, "metadata_props", where) if "metadata_props" in attrs else {}
    if not isinstance(props, dict) or not all(isinstance(v, str) for v in props.values()):
        raise InvalidRecord(
            f"{where}: metadata_props must be a JSON object of strings, "
            f"got {attrs['metadata_props']!r}"
        )
    return ModelVersion(
        name=event.model,
        version=event.version,
        digest=attrs["digest"],
        artifact=attrs["artifact"],
        input_name=attrs["input_name"],
        input_shape=tuple(shape),
        signed_by=attrs.get("signed_by"),
        metadata_sha256=attrs.get("metadata_sha256"),
        feature_names=None if names is None else tuple(names),
        metadata_props=props,
        state=str(State.REGISTERED),
        registered_by=event.actor,
        registered_at=event.occurred_at,
    )


def _json_attr(attrs: Mapping[str, str], key: str, where: str) -> Any:
    try:
        return json.loads(attrs[key])
    except json.JSONDecodeError as exc:
        raise InvalidRecord(f"{where}: attribute {key} is not JSON: {attrs[key]!r}") from exc


MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


def check_model_name(name: str) -> str:
    """Model names end up in topic keys, SQL filters and paths: keep them plain."""
    if not MODEL_NAME.match(name):
        raise InvalidRecord(
            f"model name {name!r} is not valid: use 1-128 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit"
        )
    return name
