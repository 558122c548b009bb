"""What the policy reads from ClickHouse: per-arm serving statistics since a time.

One query per model joins predictions with their latest outcome and groups by
served version and arm: predictions, latency p99, score mean and variance,
outcomes joined, wrong decisions among them (score >= threshold against
outcome >= 0.5), the outcome sums for continuous metrics, and the predictions
since the current canary step began.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

from driftline.lineage.promotion.canary import ArmStats

_NAME = re.compile(r"^[A-Za-z0-9_.\-]+$")


def arm_stats_sql(
    database: str, model: str, since_ms: int, step_ms: int, threshold: float = 0.5
) -> str:
    """The per-(version, arm) statistics query for ``model`` since ``since_ms``."""
    for label, value in (("database", database), ("model", model)):
        if not _NAME.match(value):
            raise ValueError(f"{label} {value!r} has characters the policy will not quote")
    since, step = int(since_ms), int(step_ms)
    return f"""
SELECT p.version, p.arm, count() AS n,
       quantile(0.99)(p.latency_ms) AS latency_p99_ms,
       avg(p.score) AS score_mean, varSamp(p.score) AS score_var,
       countIf(o.joined = 1) AS n_outcomes,
       countIf(o.joined = 1 AND ((p.score >= {float(threshold)!r}) != (o.value >= 0.5))) AS errors,
       sumIf(o.value, o.joined = 1) AS outcome_sum,
       sumIf(o.value * o.value, o.joined = 1) AS outcome_sum_sq,
       countIf(p.scored_at >= fromUnixTimestamp64Milli(toInt64({step}))) AS step_n
FROM (
    SELECT prediction_id, version, arm, score, latency_ms, scored_at
    FROM {database}.predictions FINAL
    WHERE model = '{model}' AND scored_at >= fromUnixTimestamp64Milli(toInt64({since}))
) AS p
LEFT JOIN (
    SELECT prediction_id, argMax(value, event_time) AS value, toUInt8(1) AS joined
    FROM {database}.outcomes
    WHERE event_time >= fromUnixTimestamp64Milli(toInt64({since}))
    GROUP BY prediction_id
) AS o ON p.prediction_id = o.prediction_id
GROUP BY p.version, p.arm
"""


def arm_stats_from_rows(
    rows: Sequence[Sequence[Any]],
) -> dict[tuple[int, str], tuple[ArmStats, int]]:
    """(version, arm) -> (statistics, predictions at the current step)."""
    out = {}
    for version, arm, n, p99, mean, var, n_out, errors, o_sum, o_sq, step_n in rows:
        stats = ArmStats(
            version=int(version),
            arm=str(arm),
            n=int(n),
            latency_p99_ms=_number(p99),
            score_mean=_number(mean),
            score_var=_number(var),
            n_outcomes=int(n_out),
            errors=int(errors),
            outcome_sum=_number(o_sum, 0.0),
            outcome_sum_sq=_number(o_sq, 0.0),
        )
        out[(stats.version, stats.arm)] = (stats, int(step_n))
    return out


def _number(value: Any, default: float = math.nan) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return default
    return number if math.isfinite(number) else default
