"""driftline streams."""
