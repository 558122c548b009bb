"""`driftline drift`'s query: filters by a checked model name and bounds the limit."""

from __future__ import annotations

import pytest

from driftline.lineage.exceptions import LineageError
from driftline.streams.cli.drift import drift_events_query


def test_query_filters_and_limits():
    sql = drift_events_query("driftline", "fraud-v2", limit=5)
    assert "FROM driftline.drift FINAL WHERE model = 'fraud-v2'" in sql
    assert sql.endswith("LIMIT 5")
    assert "WHERE" not in drift_events_query("driftline")


def test_bad_model_name_and_limit_are_refused():
    with pytest.raises(LineageError):
        drift_events_query("driftline", "x' OR 1=1 --")
    with pytest.raises(ValueError, match="limit"):
        drift_events_query("driftline", limit=0)
