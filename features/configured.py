"""The feature store a worker or command is configured with."""

from __future__ import annotations

from pathlib import Path

from driftline.features.exceptions import FeatureStoreError
from driftline.features.store import FeatureStore


def open_feature_store(repo: str | Path | None) -> FeatureStore | None:
    """The configured feature store, or None when no repository is configured.

    Feast is an optional extra: it is imported only when a repository is configured, and
    its absence then is an error that says what to install.
    """
    if repo is None:
        return None
    try:
        from driftline.features.feast_store import FeastFeatureStore
    except ImportError as exc:
        raise FeatureStoreError(
            f"a feature repository is configured ({repo}) but Feast is not installed "
            f"({exc}); install driftline with the feast extra: pip install 'driftline[feast]'"
        ) from exc
    return FeastFeatureStore(repo)
