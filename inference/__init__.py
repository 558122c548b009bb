"""driftline inference."""
