"""Drift and outcome sinks, drift alarms in the audit chain, and the lineage writer's
store_drift / store_outcomes, against a real chDB engine."""

import asyncio
import json
import math
from dataclasses import dataclass

import pytest

from driftline.lineage import events as ev
from driftline.lineage.audit.chain import AuditLogWriter, verify
from driftline.lineage.events import EventType, LifecycleEvent
from driftline.lineage.exceptions import InvalidRecord
from driftline.lineage.registry.model_registry import ModelRegistry
from driftline.lineage.store.clickhouse import create_tables
from driftline.lineage.store.drift_sinks import DriftSink, OutcomeSink, drift_audit_event
from driftline.lineage.store.sinks import DeadLetterSink, PredictionSink
from driftline.schemas import default_codec
from driftline.schemas.testing import sample

pytestmark = pytest.mark.integration

T0 = 1_700_000_000_000


def drift(i: int, **extra) -> dict:
    record = sample(
        "DriftEvent",
        event_id=f"drift-{i}",
        statistic=0.3 + i / 100,
        window_size=1000 + i,
        evidence=json.dumps({"stream": "input", "n": i, "reference_size": 5000}),
        detected_at=T0 + i,
    )
    record.update(extra)
    return record


def outcome(i: int, offset: int | None = None, **extra) -> dict:
    record = sample("Outcome", prediction_id=f"p-{i}", value=float(i % 2), event_time=T0 + i)
    record.update(source_partition=i % 3, source_offset=100 + i if offset is None else offset)
    record.update(extra)
    return record


@pytest.fixture
def db(chdb_client, fresh_database):
    create_tables(chdb_client, fresh_database)
    return fresh_database


def counts(client, db, table, key):
    plain = client.query(f"SELECT count() FROM {db}.{table}").result_rows[0][0]
    final = client.query(f"SELECT count() FROM {db}.{table} FINAL").result_rows[0][0]
    unique = client.query(f"SELECT uniqExact({key}) FROM {db}.{table}").result_rows[0][0]
    return plain, final, unique


# -- sinks -----------------------------------------------------------------------


def test_drift_rows_land_with_every_column(chdb_client, db) -> None:
    sink = DriftSink(chdb_client, db)
    sink.add(drift(1))
    sink.add(drift(2, version=None, arm=None, feature=None, p_value=None, evidence="{}"))
    assert sink.flush() == 2 and sink.pending == 0
    got = chdb_client.query(
        "SELECT event_id, model, version, arm, detector, feature, stream, statistic, threshold, "
        "p_value, window_size, evidence, toUnixTimestamp64Milli(detected_at), "
        f"recorded_at > toDateTime64('2024-01-01', 3, 'UTC') FROM {db}.drift ORDER BY event_id"
    ).result_rows
    assert got == [
        ("drift-1", "fraud", 3, "champion", "ks", "amount", "input", 0.31, 0.2, 0.0004, 1001,
         drift(1)["evidence"], T0 + 1, True),
        ("drift-2", "fraud", None, None, "ks", None, "", 0.32, 0.2, None, 1002, "{}", T0 + 2, True),
    ]  # fmt: skip


def test_drift_stream_is_empty_for_unreadable_evidence(chdb_client, db) -> None:
    sink = DriftSink(chdb_client, db)
    sink.add_many([drift(1, evidence="not json"), drift(2, evidence='{"stream": "score"}')])
    sink.flush()
    got = chdb_client.query(f"SELECT event_id, stream FROM {db}.drift ORDER BY event_id")
    assert got.result_rows == [("drift-1", ""), ("drift-2", "score")]


def test_redelivered_drift_flush_is_deduplicated(chdb_client, db) -> None:
    sink = DriftSink(chdb_client, db)
    batch = [drift(i) for i in range(20)]
    sink.add_many(batch)
    sink.flush()
    sink.add_many(reversed(batch))  # the same batch again: same token, dropped
    sink.flush()
    assert counts(chdb_client, db, "drift", "event_id") == (20, 20, 20)
    sink.add_many(drift(i) for i in range(10, 30))  # 10 repeats in another batch
    sink.flush()
    plain, final, unique = counts(chdb_client, db, "drift", "event_id")
    assert (final, unique) == (30, 30) and plain in (30, 40)


def test_missing_drift_field_is_refused(chdb_client, db) -> None:
    sink = DriftSink(chdb_client, db)
    record = drift(1)
    del record["statistic"]
    with pytest.raises(InvalidRecord, match="statistic"):
        sink.add_many([drift(0), record])
    assert sink.pending == 0


def test_outcome_rows_land_and_redelivery_is_deduplicated(chdb_client, db) -> None:
    sink = OutcomeSink(chdb_client, db)
    batch = [outcome(i) for i in range(10)] + [outcome(10, label="fraud", entity_id=None)]
    sink.add_many(batch)
    assert sink.flush() == 11
    sink.add_many(batch)  # re-delivered flush
    sink.flush()
    assert counts(chdb_client, db, "outcomes", "prediction_id") == (11, 11, 11)
    got = chdb_client.query(
        "SELECT prediction_id, entity_id, value, label, toUnixTimestamp64Milli(event_time), "
        f"source_partition, source_offset FROM {db}.outcomes WHERE prediction_id IN "
        "('p-1', 'p-10') ORDER BY prediction_id"
    ).result_rows
    assert got == [
        ("p-1", "customer-42", 1.0, None, T0 + 1, 1, 101),
        ("p-10", None, 0.0, "fraud", T0 + 10, 1, 110),
    ]


def test_a_later_outcome_for_the_same_prediction_wins(chdb_client, db) -> None:
    sink = OutcomeSink(chdb_client, db)
    sink.add(outcome(1, offset=5, value=0.0))
    sink.flush()
    # A correction at a later offset with the same id set: a new token, so it lands.
    sink.add(outcome(1, offset=6, value=1.0, event_time=T0 + 999))
    sink.flush()
    got = chdb_client.query(f"SELECT value, source_offset FROM {db}.outcomes FINAL").result_rows
    assert got == [(1.0, 6)]


# -- drift alarms as audit events --------------------------------------------------


def test_drift_audit_event_fields() -> None:
    event = drift_audit_event(drift(7, arm=None))
    assert event.event_id == "drift-7" and event.type == EventType.DRIFT_DETECTED
    assert (event.model, event.version, event.actor) == ("fraud", 3, "detector:ks")
    assert (event.state, event.previous_state) == (None, None)
    assert event.attributes == {"detector": "ks", "feature": "amount", "stream": "input"}
    assert event.evidence == {
        "arm": None,
        "detector": "ks",
        "feature": "amount",
        "statistic": 0.37,
        "threshold": 0.2,
        "p_value": 0.0004,
        "window_size": 1007,
        "evidence": {"stream": "input", "n": 7, "reference_size": 5000},
        "detected_at": T0 + 7,
    }
    assert event.occurred_at == T0 + 7


def test_drift_audit_event_round_trips_through_canonical_json() -> None:
    record = drift(3, p_value=math.nan, statistic=math.inf, evidence='{"psi": NaN, "x": 1e999}')
    event = drift_audit_event(record)
    canonical = event.canonical_json()
    assert b"NaN" not in canonical and b"Infinity" not in canonical
    back = LifecycleEvent.from_canonical(canonical)
    assert back == event and back.canonical_json() == canonical
    assert back.evidence["p_value"] is None and back.evidence["statistic"] is None
    assert back.evidence["evidence"] == {"psi": None, "x": None}
    assert LifecycleEvent.from_avro(event.to_avro()) == event


@pytest.mark.parametrize(
    ("evidence", "fragment"), [("nope", "not JSON"), ("[1]", "JSON object"), (None, "string")]
)
def test_drift_audit_event_refuses_bad_evidence(evidence, fragment) -> None:
    with pytest.raises(InvalidRecord, match=fragment):
        drift_audit_event(drift(1, evidence=evidence))


def test_drift_events_extend_the_models_audit_chain(chdb_client, db) -> None:
    writer = AuditLogWriter(chdb_client, db)
    promoted = ev.promoted("fraud", 3, "alice", "canary", 2)
    assert writer.write([(promoted, "driftline.lifecycle", 0, 10)]) == 1
    alarm = drift_audit_event(drift(1))
    assert writer.write([(alarm, "driftline.drift", 0, 4)]) == 1
    assert writer.write([(alarm, "driftline.drift", 0, 4)]) == 0  # re-delivered
    report = verify(chdb_client, db, "fraud")
    assert report.ok, report.summary()
    assert report.rows_checked == 2 and report.heads["fraud"][0] == 2
    rows = chdb_client.query(
        f"SELECT seq, event_type, actor, canonical FROM {db}.audit_log ORDER BY seq"
    ).result_rows
    assert [r[:3] for r in rows] == [(1, "promoted", "alice"), (2, "drift_detected", "detector:ks")]
    assert LifecycleEvent.from_canonical(rows[1][3]) == alarm


def test_registry_keeps_drift_as_history_only() -> None:
    attrs = {"digest": "sha256:" + "1" * 64, "artifact": "a/1", "input_name": "x"}
    attrs["input_shape"] = "[null, 4]"
    registered = ev.registered("fraud", 3, "ci", attrs)
    promoted = ev.promoted("fraud", 3, "alice", "registered", None)
    registry = ModelRegistry.from_events([registered, promoted])
    before = (registry.snapshot(), registry.aliases("fraud"))
    alarm = drift_audit_event(drift(1))
    assert registry.apply(alarm) is False
    assert (registry.snapshot(), registry.aliases("fraud")) == before
    assert registry.get("fraud", 3).state == "champion"
    assert registry.skipped == []
    last = registry.history("fraud")[-1]
    assert (last.event_id, last.event_type) == ("drift-1", "drift_detected")
    assert last.from_state == last.to_state == "champion"
    assert last.evidence["evidence"]["stream"] == "input"


# -- LineageWriter.store_drift / store_outcomes -------------------------------------


@dataclass
class Message:
    topic: str
    partition: int
    offset: int
    value: bytes
    key: bytes | None = None
    headers: object = None


class Dead:
    def __init__(self) -> None:
        self.published: list[tuple[int, str]] = []

    def publish(self, message, reason, detail, batch) -> None:
        self.published.append((message.offset, reason))


def lineage_writer(client, db, frames=None):
    from driftline.streams.kafka.delivery import BatchDelivery
    from driftline.streams.stages.persist import LineageWriter, StoreRunner
    from driftline.streams.stats import WorkerStats

    stats, dead = WorkerStats(), Dead()
    writer = LineageWriter(
        codec=default_codec(),
        store=StoreRunner(stats),
        predictions=PredictionSink(client, db),
        frames=frames,
        features=None,
        audit=AuditLogWriter(client, db),
        dead_letter_sink=DeadLetterSink(client, db),
        dead_letters=dead,
        stats=stats,
    )
    return writer, stats, dead, BatchDelivery()


def test_store_drift_writes_the_table_and_the_chain(chdb_client, db) -> None:
    writer, stats, dead, batch = lineage_writer(chdb_client, db)
    codec = default_codec()
    lifecycle = ev.promoted("fraud", 3, "alice", "canary", 2)
    messages = [
        Message("driftline.drift", 0, 1, codec.encode("DriftEvent", drift(1))),
        Message("driftline.drift", 0, 2, codec.encode("Outcome", sample("Outcome"))),
        Message("driftline.drift", 0, 3, codec.encode("DriftEvent", drift(2, evidence="x"))),
        Message("driftline.drift", 0, 4, codec.encode("DriftEvent", drift(3))),
    ]

    first = Message(
        "driftline.lifecycle", 0, 0, codec.encode("LifecycleEvent", lifecycle.to_avro())
    )

    async def run() -> None:
        await writer.store_lifecycle([first], batch)
        await writer.store_drift(messages, batch)
        await writer.store_drift(messages, batch)  # re-delivered batch

    asyncio.run(run())
    writer._store.close()
    assert [reason for _, reason in dead.published] == ["wrong_schema", "invalid_event"] * 2
    assert counts(chdb_client, db, "drift", "event_id") == (2, 2, 2)
    assert stats.rows_stored["drift"] == 4  # rows sent; the server dropped the repeat
    assert stats.rows_stored["audit_log"] == 3  # lifecycle + two alarms, once each
    report = verify(chdb_client, db)
    assert report.ok and report.rows_checked == 3, report.summary()


def test_store_outcomes_records_kafka_coordinates(chdb_client, db) -> None:
    writer, stats, dead, batch = lineage_writer(chdb_client, db)
    codec = default_codec()
    values = [codec.encode("Outcome", sample("Outcome", prediction_id=f"p-{i}")) for i in range(3)]
    values.append(b"\x00garbage")
    messages = [Message("driftline.outcomes", 2, 40 + i, v) for i, v in enumerate(values)]
    asyncio.run(writer.store_outcomes(messages, batch))
    writer._store.close()
    assert len(dead.published) == 1 and dead.published[0][0] == 43
    assert stats.rows_stored["outcomes"] == 3
    got = chdb_client.query(
        f"SELECT prediction_id, source_partition, source_offset FROM {db}.outcomes ORDER BY 1"
    ).result_rows
    assert got == [("p-0", 2, 40), ("p-1", 2, 41), ("p-2", 2, 42)]


def test_a_prediction_frame_with_inconsistent_buffers_is_dead_lettered(chdb_client, db) -> None:
    from driftline.lineage.store.frame_sinks import PredictionFrameSink

    writer, stats, dead, batch = lineage_writer(
        chdb_client, db, frames=PredictionFrameSink(chdb_client, db)
    )
    codec = default_codec()
    good = sample("PredictionFrame")
    short_scores = sample("PredictionFrame", frame_id="frame-2", score=b"\x00" * 8)
    messages = [
        Message("driftline.predictions", 0, 1, codec.encode("PredictionFrame", good)),
        Message("driftline.predictions", 0, 2, codec.encode("PredictionFrame", short_scores)),
    ]
    asyncio.run(writer.store_predictions(messages, batch))
    writer._store.close()
    assert dead.published == [(2, "invalid_frame")]
    assert stats.rows_stored["predictions"] == 2  # the good frame's two rows
