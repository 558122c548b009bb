"""Cross-cutting pieces shared by every driftline package: errors, settings, telemetry."""
