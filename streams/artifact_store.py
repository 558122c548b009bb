"""The artifact store for these settings: one place decides region and encryption."""

from __future__ import annotations

from driftline.core.settings import Settings
from driftline.lineage.artifacts.crypto import load_encryption_key
from driftline.lineage.artifacts.store import ArtifactStore


def artifact_store(settings: Settings) -> ArtifactStore:
    data = settings.data
    return ArtifactStore(
        data.artifacts,
        encryption_key=load_encryption_key(data.artifact_key_file, required=False),
        region=data.region,
        allowed_regions=data.allowed_region_set,
    )


def region_refusal(settings: Settings) -> str | None:
    """Why this store may not take artifacts, or None when it may."""
    allowed = settings.data.allowed_region_set
    if allowed is None or settings.data.region in allowed:
        return None
    return (
        f"artifact store region {settings.data.region!r} is not in the allowed regions "
        f"{sorted(allowed)} (DRIFTLINE_DATA_ALLOWED_REGIONS)"
    )
