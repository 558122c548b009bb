"""Cross-cutting pieces shared by every driftline package: errors, settings, telemetry."""

__version__ = "0.1.0"
