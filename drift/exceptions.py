"""Errors raised by the drift package; all derive from :class:`DriftError`."""

from __future__ import annotations

from driftline.core.errors import DriftlineError


class DriftError(DriftlineError):
    """Root of drift detection errors."""


class InvalidDetectorConfig(DriftError, ValueError):
    """A detector or monitor parameter is out of range; the message names it and the fix."""


class SnapshotError(DriftError):
    """A state snapshot could not be restored (wrong detector, wrong format, corrupt bytes)."""


class InvalidValue(DriftError, ValueError):
    """A value fed to a detector is unusable (not finite, not 0/1 for an error stream...)."""


class InvalidProfile(DriftError, ValueError):
    """A reference profile cannot be built from that data, or its serialised form is malformed."""
