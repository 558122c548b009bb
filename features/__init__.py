"""Features and data: a feature store behind a small protocol (Feast in ``feast_store``),
online enrichment before scoring, point-in-time training datasets with manifests, and
training-serving skew. Nothing here imports Feast except ``feast_store``, so the core
runs without the ``driftline[feast]`` extra."""
