"""`driftline drift`: the latest drift events as a table (read where the store is)."""

from __future__ import annotations

from driftline.lineage.registry.versions import check_model_name


def drift_events_query(database: str, model: str | None = None, limit: int = 20) -> str:
    if model is not None:
        check_model_name(model)
    if not 1 <= limit <= 10_000:
        raise ValueError(f"--limit must be between 1 and 10000, got {limit}")
    where = f"WHERE model = '{model}'" if model else ""
    return (
        "SELECT formatDateTime(detected_at, '%F %T') AS time, model, version, arm, stream, "
        "detector, ifNull(feature, '') AS feature, round(statistic, 4) AS statistic, "
        "round(threshold, 4) AS threshold, p_value, window_size "
        f"FROM {database}.drift FINAL {where} ORDER BY detected_at DESC LIMIT {limit}"
    )
