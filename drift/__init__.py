"""Drift detection: one detector protocol, River adapters, vectorised window tests."""
