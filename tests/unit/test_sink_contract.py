"""One contract over every ClickHouse sink, against a real chDB engine.

Each sink buffers decoded records and writes them in one insert on ``flush``. Whatever
the table, a sink must:

- flush nothing when nothing is pending;
- write what it buffered, and then hold nothing;
- keep its buffer when the insert fails, so the caller retries before committing offsets;
- collapse a re-delivered record into the row it already wrote;
- drop its buffer on ``clear``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from driftline.lineage.exceptions import StoreError
from driftline.lineage.store.clickhouse import create_tables
from driftline.lineage.store.drift_sinks import DriftSink, OutcomeSink
from driftline.lineage.store.frame_sinks import FeatureSink, PredictionFrameSink
from driftline.lineage.store.sinks import DeadLetterSink, PredictionSink
from driftline.schemas.testing import sample

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class SinkCase:
    name: str
    make: Callable[[Any, str], Any]
    add: Callable[[Any], None]  # buffer one sample record (or frame)
    table: str
    rows: int  # rows one add writes


def _outcome(sink) -> None:
    sink.add({**sample("Outcome"), "source_partition": 0, "source_offset": 7})


CASES = [
    SinkCase(
        "predictions", PredictionSink, lambda s: s.add(sample("Prediction")), "predictions", 1
    ),
    SinkCase(
        "dead letters", DeadLetterSink, lambda s: s.add(sample("DeadLetter")), "deadletters", 1
    ),
    SinkCase("drift events", DriftSink, lambda s: s.add(sample("DriftEvent")), "drift", 1),
    SinkCase("outcomes", OutcomeSink, _outcome, "outcomes", 1),
    SinkCase(
        "prediction frames",
        PredictionFrameSink,
        lambda s: s.add(sample("PredictionFrame")),
        "predictions",
        sample("PredictionFrame")["n_rows"],
    ),
    SinkCase(
        "features",
        FeatureSink,
        lambda s: s.add_records([sample("FeatureRecord")]),
        "features",
        1,
    ),
]


class FailingInserts:
    """The real client, except that its next insert raises, as a lost connection would."""

    def __init__(self, client) -> None:
        self._client = client
        self.armed = False

    def _fail_once(self) -> None:
        if self.armed:
            self.armed = False
            raise ConnectionError("injected: connection reset during insert")

    def insert(self, *args, **kwargs):
        self._fail_once()
        return self._client.insert(*args, **kwargs)

    def insert_arrow(self, *args, **kwargs):
        self._fail_once()
        return self._client.insert_arrow(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._client, name)


@pytest.fixture
def db(chdb_client, fresh_database):
    create_tables(chdb_client, fresh_database)
    return fresh_database


def _rows(client, db: str, table: str) -> int:
    return client.query(f"SELECT count() FROM {db}.{table} FINAL").result_rows[0][0]


@pytest.fixture(params=CASES, ids=[case.name for case in CASES])
def case(request) -> SinkCase:
    return request.param


def test_nothing_pending_writes_nothing(case, chdb_client, db):
    sink = case.make(chdb_client, db)
    assert sink.pending == 0
    assert sink.flush() == 0
    assert _rows(chdb_client, db, case.table) == 0


def test_a_flush_writes_what_was_buffered_then_holds_nothing(case, chdb_client, db):
    sink = case.make(chdb_client, db)
    case.add(sink)
    assert sink.pending == case.rows
    assert sink.flush() == case.rows
    assert sink.pending == 0
    assert _rows(chdb_client, db, case.table) == case.rows


def test_a_failed_insert_keeps_the_buffer_for_the_retry(case, chdb_client, db):
    client = FailingInserts(chdb_client)
    sink = case.make(client, db)
    case.add(sink)
    client.armed = True
    with pytest.raises((StoreError, ConnectionError)):
        sink.flush()
    assert sink.pending == case.rows  # nothing lost: the caller has not committed
    assert sink.flush() == case.rows
    assert _rows(chdb_client, db, case.table) == case.rows


def test_a_redelivered_record_collapses_into_its_row(case, chdb_client, db):
    sink = case.make(chdb_client, db)
    case.add(sink)
    sink.flush()
    case.add(sink)  # the same record again, as after a rebalance
    sink.flush()
    assert _rows(chdb_client, db, case.table) == case.rows


def test_clear_drops_the_buffer(case, chdb_client, db):
    sink = case.make(chdb_client, db)
    case.add(sink)
    sink.clear()
    assert sink.pending == 0
    assert sink.flush() == 0
    assert _rows(chdb_client, db, case.table) == 0
