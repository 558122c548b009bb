"""The root of every exception driftline raises on purpose.

Each subpackage keeps its own ``exceptions.py`` whose classes derive from
:class:`DriftlineError`, so callers can catch one type at the edge.
"""


class DriftlineError(Exception):
    """Base class for errors raised by driftline."""


class ConfigError(DriftlineError):
    """A setting is missing or has a value driftline cannot use."""
