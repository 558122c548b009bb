"""The policy's per-arm statistics query, run on a real chDB engine."""

import datetime as dt
import math

import numpy as np
import pytest

from driftline.lineage.promotion.queries import arm_stats_from_rows, arm_stats_sql
from driftline.lineage.store.clickhouse import create_tables

T0 = 1_800_000_000_000


def _time(ms: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC)


def insert(client, db, rows, table):
    names = list(rows[0])
    client.insert(f"{db}.{table}", [list(r.values()) for r in rows], column_names=names)


def prediction(pid, version, arm, score, at, latency=5.0):
    return {"prediction_id": pid, "record_id": pid, "entity_id": "e", "model": "fraud",
            "version": version, "arm": arm, "score": score, "scores": [score],
            "event_time": _time(at), "scored_at": _time(at), "latency_ms": latency,
            "model_latency_ms": 0.1}  # fmt: skip


def test_arm_statistics_join_outcomes_and_count_errors(chdb_client, fresh_database):
    create_tables(chdb_client, fresh_database)
    rng = np.random.default_rng(1)
    preds, outcomes, expected_errors = [], [], {1: 0, 2: 0}
    for i in range(400):
        version, arm = (2, "canary") if i % 4 == 0 else (1, "champion")
        score = float(rng.random())
        at = T0 + i * 10
        preds.append(prediction(f"p{i}", version, arm, score, at, latency=float(i % 50)))
        if i % 2 == 0:  # half get an outcome
            truth = float(rng.random() < 0.5)
            expected_errors[version] += int((score >= 0.5) != (truth >= 0.5))
            outcomes.append({"prediction_id": f"p{i}", "entity_id": None, "value": truth,
                             "label": None, "event_time": _time(at + 5),
                             "source_partition": 0, "source_offset": i})  # fmt: skip
    preds.append(prediction("old", 1, "champion", 0.9, T0 - 60_000))  # before the start
    insert(chdb_client, fresh_database, preds, "predictions")
    insert(chdb_client, fresh_database, outcomes, "outcomes")

    sql = arm_stats_sql(fresh_database, "fraud", T0, T0 + 2_000)
    stats = arm_stats_from_rows(chdb_client.query(sql).result_rows)
    canary, canary_step = stats[(2, "canary")]
    champion, _ = stats[(1, "champion")]
    assert (canary.n, champion.n) == (100, 300)
    assert canary.n_outcomes == 100 and champion.n_outcomes == 100  # every 2nd, of each
    assert canary.errors == expected_errors[2] and champion.errors == expected_errors[1]
    assert canary_step == sum(1 for i in range(200, 400) if i % 4 == 0)
    assert 40 <= champion.latency_p99_ms <= 49
    scores = [p["score"] for p in preds if p["arm"] == "canary"]
    assert canary.score_mean == pytest.approx(np.mean(scores))
    assert canary.score_var == pytest.approx(np.var(scores, ddof=1))
    assert math.isfinite(canary.outcome_sum)


def test_names_the_policy_will_not_quote():
    with pytest.raises(ValueError, match="model \"x'; DROP"):
        arm_stats_sql("driftline", "x'; DROP", T0, T0)
