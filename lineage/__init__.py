"""driftline lineage."""
