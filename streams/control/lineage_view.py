"""`driftline lineage show`: model -> dataset -> feature views, from the registry and the
artifact's metadata sidecar (pinned by the digest in the ``registered`` event)."""

from __future__ import annotations

from driftline.core.settings import Settings
from driftline.streams.artifact_store import artifact_store
from driftline.streams.control.model_commands import ModelCommands


def describe(settings: Settings, name: str, version: int) -> list[tuple[str, str]]:
    """(what, value) rows: the version, its training dataset, its feature service."""
    registry = ModelCommands.from_settings(settings).registry()
    model = registry.get(name, version)
    registered = next(
        (
            e
            for e in registry.history(name)
            if e.event_type == "registered" and e.version == version
        ),
        None,
    )
    rows = [
        ("model", f"{name} v{version} ({model.state})"),
        ("artifact", f"sha256:{model.digest}"),
        (
            "registered",
            f"by {model.registered_by}, event {registered.event_id if registered else '?'}",
        ),
    ]
    metadata = artifact_store(settings).metadata(
        model.digest, expected_sha256=model.metadata_sha256
    )
    dataset, features = metadata.dataset, metadata.features
    if dataset is None:
        rows.append(
            ("dataset", f"none recorded (training data {metadata.training_data_fingerprint})")
        )
    else:
        start, end = dataset["entity_time_range"]
        rows += [
            ("dataset", dataset["path"]),
            ("dataset fingerprint", dataset["fingerprint"]),
            ("dataset rows", f"{dataset['rows']:,}, entities from {start} to {end}"),
            ("dataset built from", _service_label(dataset["feature_service"])),
        ]
        rows += [
            ("  feature view", f"{view['name']}@{view['version']}")
            for view in dataset["feature_service"]["views"]
        ]
    if features is None:
        rows.append(("served with", "the features each record carries (no feature service)"))
    else:
        ref = features.get("service_ref") or {}
        rows.append(
            ("served with", f"{features['service']}@{features.get('version')} "
             f"(missing rows: {features['missing_rule']})")
        )  # fmt: skip
        rows += [("  feature view", f"{v['name']}@{v['version']}") for v in ref.get("views", [])]
        served = set(ref.get("features", []))
        request = [n for n in (model.feature_names or ()) if n not in served]
        if request:
            rows.append(("request-time features", ", ".join(request)))
        if dataset is not None and dataset["feature_service"].get("version") != features.get(
            "version"
        ):
            rows.append(("note", "the service changed between the dataset and the registration"))
    rows.append(("metadata sidecar", f"sha256:{model.metadata_sha256}"))
    return rows


def _service_label(service: dict) -> str:
    return f"{service['name']}@{service['version']}"
