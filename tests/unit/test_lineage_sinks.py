"""Prediction and dead-letter sinks against a real chDB engine."""

import pytest

from driftline.lineage.exceptions import InvalidRecord, StoreError
from driftline.lineage.store.clickhouse import create_tables
from driftline.lineage.store.sinks import DeadLetterSink, PredictionSink

pytestmark = pytest.mark.integration


class FailingInserts:
    """The real client, except that the next ``failures`` inserts raise
    (after executing them when ``land`` is set, like a timeout after commit)."""

    def __init__(self, client, failures: int = 1, land: bool = False) -> None:
        self._client = client
        self.failures = failures
        self.land = land

    def insert(self, *args, **kwargs):
        if self.failures:
            self.failures -= 1
            if self.land:
                self._client.insert(*args, **kwargs)
            raise ConnectionError("injected: connection reset during insert")
        return self._client.insert(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._client, name)


def prediction(i: int, **extra) -> dict:
    record = {
        "prediction_id": f"p-{i}",
        "record_id": f"r-{i}",
        "entity_id": f"e-{i % 7}",
        "model": "fraud",
        "version": 2,
        "arm": "champion",
        "experiment_id": None,
        "score": i / 10,
        "scores": [1 - i / 10, i / 10],
        "event_time": 1_700_000_000_000 + i,
        "scored_at": 1_700_000_000_500 + i,
        "latency_ms": 500.0,
        "model_latency_ms": 1.25,
    }
    record.update(extra)
    return record


def dead_letter(i: int, **extra) -> dict:
    record = {
        "source_topic": "driftline.features",
        "partition": i % 3,
        "offset": 1000 + i,
        "key": None,
        "reason": "undecodable",
        "detail": f"bad magic byte at offset {1000 + i}",
        "raw": bytes([0, 255, i % 256]) + b"\x00tail",
        "failed_at": 1_700_000_001_000 + i,
    }
    record.update(extra)
    return record


@pytest.fixture
def db(chdb_client, fresh_database):
    create_tables(chdb_client, fresh_database)
    return fresh_database


def counts(client, db, table="predictions", key="prediction_id"):
    plain = client.query(f"SELECT count() FROM {db}.{table}").result_rows[0][0]
    final = client.query(f"SELECT count() FROM {db}.{table} FINAL").result_rows[0][0]
    unique = client.query(f"SELECT uniqExact({key}) FROM {db}.{table}").result_rows[0][0]
    return plain, final, unique


def test_flush_writes_every_field(chdb_client, db) -> None:
    sink = PredictionSink(chdb_client, db)
    sink.add(prediction(1, trace_id="00-abc-def-01", experiment_id="exp-7", arm="challenger"))
    sink.add(prediction(2))
    assert sink.pending == 2
    assert sink.flush() == 2
    assert sink.pending == 0
    assert sink.flush() == 0
    got = chdb_client.query(
        "SELECT prediction_id, record_id, entity_id, model, version, arm, experiment_id, score, "
        "scores, toUnixTimestamp64Milli(event_time), toUnixTimestamp64Milli(scored_at), "
        f"latency_ms, model_latency_ms, trace_id FROM {db}.predictions ORDER BY prediction_id"
    ).result_rows
    p1, p2 = prediction(1), prediction(2)
    assert got == [
        ("p-1", "r-1", "e-1", "fraud", 2, "challenger", "exp-7", 0.1, p1["scores"],
         p1["event_time"], p1["scored_at"], 500.0, 1.25, "00-abc-def-01"),
        ("p-2", "r-2", "e-2", "fraud", 2, "champion", None, 0.2, p2["scores"],
         p2["event_time"], p2["scored_at"], 500.0, 1.25, ""),
    ]  # fmt: skip


def test_same_batch_twice_is_one_row_each(chdb_client, db) -> None:
    sink = PredictionSink(chdb_client, db)
    batch = [prediction(i) for i in range(50)]
    sink.add_many(batch)
    sink.flush()
    sink.add_many(reversed(batch))  # same rows, other order: same token
    sink.flush()
    assert counts(chdb_client, db) == (50, 50, 50)


def test_redelivery_in_other_batches_collapses_under_final(chdb_client, db) -> None:
    sink = PredictionSink(chdb_client, db)
    sink.add_many(prediction(i) for i in range(30))
    sink.flush()
    sink.add_many(prediction(i) for i in range(20, 40))  # 10 repeats, 10 new
    sink.flush()
    plain, final, unique = counts(chdb_client, db)
    assert (final, unique) == (40, 40)
    assert plain in (40, 50)  # 50 until a background merge collapses the repeats


def test_without_token_duplicates_rely_on_the_engine(chdb_client, db) -> None:
    sink = PredictionSink(chdb_client, db, dedup_token=False)
    for _ in range(2):
        sink.add_many(prediction(i) for i in range(10))
        sink.flush()
    plain, final, unique = counts(chdb_client, db)
    assert (final, unique) == (10, 10)
    assert plain in (10, 20)


def test_failed_flush_keeps_the_buffer(chdb_client, db) -> None:
    flaky = FailingInserts(chdb_client)
    sink = PredictionSink(flaky, db)
    sink.add_many(prediction(i) for i in range(5))
    with pytest.raises(StoreError, match="rows are kept"):
        sink.flush()
    assert sink.pending == 5
    assert counts(chdb_client, db) == (0, 0, 0)
    assert sink.flush() == 5
    assert counts(chdb_client, db) == (5, 5, 5)


def test_retry_after_an_insert_that_landed_adds_nothing(chdb_client, db) -> None:
    sink = PredictionSink(FailingInserts(chdb_client, land=True), db)
    sink.add_many(prediction(i) for i in range(5))
    with pytest.raises(StoreError):
        sink.flush()
    sink.flush()
    assert counts(chdb_client, db) == (5, 5, 5)  # the token dropped the retry outright


def test_missing_field_is_refused_and_nothing_is_buffered(chdb_client, db) -> None:
    sink = PredictionSink(chdb_client, db)
    bad = prediction(1)
    del bad["score"]
    with pytest.raises(InvalidRecord, match="'score'"):
        sink.add(bad)
    with pytest.raises(InvalidRecord, match="'score'"):
        sink.add_many([prediction(0), bad])
    assert sink.pending == 0


def test_dead_letters_keep_raw_bytes_and_dedup(chdb_client, db) -> None:
    sink = DeadLetterSink(chdb_client, db)
    letters = [dead_letter(i) for i in range(4)] + [dead_letter(9, key=b"\x01entity")]
    for _ in range(2):
        sink.add_many(letters)
        assert sink.flush() == 5
    got = chdb_client.query(
        f"SELECT offset, key, raw, reason, toUnixTimestamp64Milli(failed_at) FROM {db}.deadletters "
        "ORDER BY offset",
        column_formats={"raw": "bytes", "key": "bytes"},
    ).result_rows
    assert got == [(d["offset"], d["key"], d["raw"], d["reason"], d["failed_at"]) for d in letters]
    assert counts(chdb_client, db, "deadletters", "(source_topic, partition, offset)") == (5, 5, 5)
