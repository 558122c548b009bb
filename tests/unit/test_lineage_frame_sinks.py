"""PredictionFrame and feature sinks write column-wise into a real chDB engine."""

from __future__ import annotations

import numpy as np
import pytest

from driftline.inference import LoadedModel, SyntheticFeatures, train_logistic
from driftline.inference.frames import Frame, pack_frame, score_frame
from driftline.inference.routing import Arm, RoutingTable
from driftline.lineage.store.clickhouse import create_tables
from driftline.lineage.store.frame_sinks import FeatureSink, PredictionFrameSink


@pytest.fixture
def db(chdb_client, fresh_database):
    create_tables(chdb_client, fresh_database)
    return fresh_database


@pytest.fixture(scope="module")
def setup():
    trained = train_logistic(n_features=16, n_samples=2000, seed=1)
    models = [
        LoadedModel.load(
            trained.onnx_bytes, name="fraud", version=v, expected_digest=trained.digest
        )
        for v in (1, 2)
    ]
    matrix = SyntheticFeatures(n_features=16, seed=3).rows(500)
    record = pack_frame("frame-9", "fraud", [f"u{i}" for i in range(500)],
                        [1_700_000_000_000 + i for i in range(500)], trained.feature_names,
                        matrix)  # fmt: skip
    return trained, models, Frame.from_avro(record)


def test_prediction_frames_land_row_by_row_with_ids_and_scores(chdb_client, db, setup) -> None:
    trained, (v1, v2), frame = setup
    table = RoutingTable("fraud", (Arm("challenger", v2, 4000), Arm("champion", v1, 6000)),
                         experiment_id="exp-1")  # fmt: skip
    scored = score_frame(table, frame, now_ms=lambda: 1_700_000_001_000)
    sink = PredictionFrameSink(chdb_client, db)
    for part in scored.parts:
        sink.add(part, trace_id="ab" * 16)
    assert sink.pending == 500
    assert sink.flush() == 500
    rows = chdb_client.query(
        f"SELECT record_id, prediction_id, arm, version, experiment_id, score, "
        f"toUnixTimestamp64Milli(event_time), latency_ms, trace_id, length(scores), entity_id "
        f"FROM {db}.predictions ORDER BY toUInt32(splitByChar(':', record_id)[2])"
    ).result_rows
    assert len(rows) == 500
    assert rows[7][0] == "frame-9:7" and rows[7][1].endswith(":7")
    expected = trained.estimator.predict_proba(frame.matrix)[:, 1]
    assert np.allclose([r[5] for r in rows], expected, atol=1e-5)
    assert {r[2] for r in rows} == {"challenger", "champion"} and {r[4] for r in rows} == {"exp-1"}
    assert rows[0][6] == 1_700_000_000_000 and rows[0][7] == 1000.0
    assert rows[0][8] == "ab" * 16 and rows[0][9] == 2
    # Packed entity ids and event times land beside their own rows, across both arms.
    assert [r[10] for r in rows] == [f"u{i}" for i in range(500)]
    assert [r[6] for r in rows] == [1_700_000_000_000 + i for i in range(500)]


def test_a_retried_flush_is_deduplicated(chdb_client, db, setup) -> None:
    _, (v1, _), frame = setup
    scored = score_frame(RoutingTable.champion_only(v1), frame, now_ms=lambda: 1)
    for _ in range(2):
        sink = PredictionFrameSink(chdb_client, db)
        sink.add(scored.parts[0])
        sink.flush()
    count = chdb_client.command(f"SELECT count() FROM {db}.predictions")
    assert count == 500


def test_features_sample_by_entity(chdb_client, db, setup) -> None:
    _, _, frame = setup
    full = FeatureSink(chdb_client, db)
    assert full.add_frame(frame) == 500
    full.flush()
    stored = chdb_client.query(
        f"SELECT features FROM {db}.features WHERE record_id = 'frame-9:3'"
    ).result_rows
    assert np.allclose(stored[0][0], frame.matrix[3])
    sampled = FeatureSink(chdb_client, db, sample_rate=0.2, table_name="features")
    kept = sampled.add_frame(frame)
    assert 50 < kept < 150  # about 20% of 500 entities
    table = sampled.to_arrow()
    rows = [int(r.split(":")[1]) for r in table.column("record_id").to_pylist()]
    assert table.column("entity_id").to_pylist() == [f"u{r}" for r in rows]
    assert table.column("event_time").to_pylist() == [1_700_000_000_000 + r for r in rows]
    with pytest.raises(ValueError, match="1.5"):
        FeatureSink(chdb_client, db, sample_rate=1.5)


def test_single_records_are_logged_too(chdb_client, db) -> None:
    sink = FeatureSink(chdb_client, db)
    records = [
        {"record_id": f"r{i}", "entity_id": f"e{i}", "model": "fraud", "features": [1.0, 2.0],
         "feature_names": ["a", "b"], "event_time": 5}
        for i in range(3)
    ]  # fmt: skip
    assert sink.add_records(records) == 3
    assert sink.flush() == 3
    assert chdb_client.query(
        f"SELECT feature_names, features FROM {db}.features WHERE record_id = 'r1'"
    ).result_rows == [("a,b", [1.0, 2.0])]


def test_non_ascii_entity_ids_are_stored_as_sent(chdb_client, db, setup) -> None:
    trained, (v1, _), _ = setup
    ids = ["zoë", "ü-7", "plain", "日本"]
    record = pack_frame("frame-u", "fraud", ids, [1, 2, 3, 4], trained.feature_names,
                        np.zeros((4, 16), np.float32))  # fmt: skip
    sink = PredictionFrameSink(chdb_client, db)
    sink.add(score_frame(RoutingTable.champion_only(v1), Frame.from_avro(record)).parts[0])
    sink.flush()
    stored = chdb_client.query(
        f"SELECT entity_id FROM {db}.predictions WHERE record_id LIKE 'frame-u:%' "
        "ORDER BY record_id"
    ).result_rows
    assert [r[0] for r in stored] == ids
