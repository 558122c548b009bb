"""Errors of the feature-store integration, under the project's one root."""

from __future__ import annotations

from driftline.core.errors import DriftlineError


class FeatureStoreError(DriftlineError):
    """The feature store could not be reached, or refused a request."""


class FeatureStoreUnavailable(FeatureStoreError):
    """The store is down or timed out: a per-model rule decides what happens to the rows."""


class FeatureServiceNotFound(FeatureStoreError):
    """The named feature service is not defined in the store's registry."""


class DatasetError(DriftlineError):
    """A training dataset or its manifest is missing, unreadable or does not match."""
