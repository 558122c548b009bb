"""driftline schemas."""
