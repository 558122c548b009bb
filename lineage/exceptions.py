"""Errors raised by the lineage package (registry, artifacts, audit log, sinks).

All derive from :class:`LineageError`, itself a :class:`DriftlineError`, so the
CLI and the stream agents can catch one type at the edge.
"""

from driftline.core.errors import DriftlineError


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


class PromotionsFrozen(IllegalTransition):
    """An audit alarm froze the model's promotions until someone clears it."""


class InvalidRecord(LineageError):
    """An event, prediction or dead letter does not have the shape its contract says."""


class StoreError(LineageError):
    """ClickHouse (server or chDB) refused a connection, query or insert."""


class SignatureMissing(LineageError):
    """A signature was required but the artifact has none."""


class SignatureInvalid(LineageError):
    """An artifact's signature does not verify under the trusted public key."""


class InvalidKey(LineageError):
    """A signing, verification or encryption key is missing, malformed or of the wrong kind."""


class DecryptionFailed(LineageError):
    """An encrypted artifact could not be decrypted (wrong key, or the file was altered)."""


class RegionNotAllowed(LineageError):
    """The artifact store's region is outside the allowed data-residency regions."""


class MetadataConflict(LineageError):
    """An artifact already has different metadata recorded."""


class GateError(LineageError, ValueError):
    """Base class for errors in gate configuration, holdout data or metric inputs."""


class GateConfigError(GateError):
    """A gate configuration value is missing, of the wrong type or out of range."""


class InvalidHoldout(GateError):
    """A holdout file or array cannot be used to judge a model."""


class MetricUndefined(GateError):
    """A metric cannot be computed on these labels or scores (e.g. AUC with one class)."""


class SourcesUnavailable(LineageError):
    """The source records could not be read (no broker, a timeout): nothing is known."""


class SequentialConfigError(LineageError, ValueError):
    """A :class:`SequentialConfig` value is out of range or inconsistent."""


class SequentialInputError(LineageError, ValueError):
    """An arm summary is malformed or does not fit the configured metric."""


class PolicyFileError(LineageError, ValueError):
    """The promotion policy file cannot be used."""


class CanaryConfigError(LineageError, ValueError):
    """A canary setting (or a figure handed to :func:`decide_canary`) is out of range."""


class DriftRuleError(LineageError, ValueError):
    """A drift rule in the policy file is malformed."""


class ExperimentConfigError(LineageError, ValueError):
    """An experiment setting is out of range, or the test does not fit the metric."""


class ErasureError(LineageError):
    """An erasure could not be carried out (not a refusal: nothing was decided)."""
