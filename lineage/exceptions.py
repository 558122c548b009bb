"""Errors raised by the lineage package (registry, artifacts, audit log, sinks).

All derive from :class:`LineageError`, itself a :class:`DriftlineError`, so the
CLI and the stream agents can catch one type at the edge.
"""

from driftline.errors import DriftlineError


class LineageError(DriftlineError):
    """Base class for lineage errors."""


class ArtifactNotFound(LineageError):
    """No artifact with that digest or path exists in the store."""


class DigestMismatch(LineageError):
    """An artifact's content no longer hashes to the digest it was stored under."""


class UnknownModel(LineageError):
    """No model with that name has been registered."""


class UnknownVersion(LineageError):
    """The model exists but has no such version."""


class IllegalTransition(LineageError):
    """The requested lifecycle move is not allowed from the version's current state."""


class InvalidRecord(LineageError):
    """An event, prediction or dead letter does not have the shape its contract says."""


class StoreError(LineageError):
    """ClickHouse (server or chDB) refused a connection, query or insert."""
