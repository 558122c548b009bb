"""Replaying logged features through a candidate writes paired predictions (real chDB)."""

from __future__ import annotations

import numpy as np
import pytest

from driftline.inference import LoadedModel, SyntheticFeatures, train_logistic
from driftline.inference.frames import Frame, pack_frame, score_frame
from driftline.inference.routing import Arm, RoutingTable
from driftline.lineage.exceptions import LineageError
from driftline.lineage.promotion.replay import ServedGroup, latest_replay_id, replay, replay_report
from driftline.lineage.store.clickhouse import create_tables
from driftline.lineage.store.frame_sinks import FeatureSink, PredictionFrameSink

T0 = 1_700_000_000_000
N_ROWS, FRAME_ROWS, SERVED_FRAMES = 3_000, 500, 5  # the last frame was never served
START, END = T0 + 500_000, T0 + 2_800_000  # rows 500..2799, one row per second


@pytest.fixture(scope="module")
def models():
    loaded = []
    for version, seed in ((1, 1), (2, 2)):
        trained = train_logistic(n_features=16, n_samples=2000, seed=seed)
        loaded.append(
            LoadedModel.load(
                trained.onnx_bytes, name="fraud", version=version, expected_digest=trained.digest
            )
        )
    return loaded


@pytest.fixture(scope="module")
def matrix():
    return SyntheticFeatures(n_features=16, seed=3).rows(N_ROWS).astype(np.float32)


@pytest.fixture
def db(chdb_client, fresh_database, models, matrix):
    """Features logged for every row; v1 served (with v2 as shadow) all but the last frame."""
    create_tables(chdb_client, fresh_database)
    v1, v2 = models
    names = list(v1.signature.feature_names)
    features = FeatureSink(chdb_client, fresh_database)
    predictions = PredictionFrameSink(chdb_client, fresh_database)
    routing = RoutingTable("fraud", (Arm("champion", v1, 10_000),), shadows=(v2,))
    for j in range(N_ROWS // FRAME_ROWS):
        rows = range(j * FRAME_ROWS, (j + 1) * FRAME_ROWS)
        frame = Frame.from_avro(
            pack_frame(f"frame-{j}", "fraud", [f"u{i}" for i in rows],
                       [T0 + i * 1000 for i in rows], names, matrix[rows.start : rows.stop])
        )  # fmt: skip
        features.add_frame(frame)
        if j < SERVED_FRAMES:
            for part in score_frame(routing, frame, now_ms=lambda: T0 + 10_000_000).parts:
                predictions.add(part)
    features.flush()
    predictions.flush()
    return fresh_database


def _pairs(client, db, replay_id):
    return client.query(
        "SELECT record_id, candidate_version, candidate_score, served_version, served_arm, "
        f"served_score, toUnixTimestamp64Milli(event_time) FROM {db}.replay_predictions FINAL "
        "WHERE replay_id = {id:String} ORDER BY event_time, record_id",
        parameters={"id": replay_id},
    ).result_rows


def test_replay_scores_the_window_and_pairs_served_predictions(
    chdb_client, db, models, matrix
) -> None:
    v1, v2 = models
    calls: list[tuple[int, int]] = []
    summary = replay(chdb_client, db, v2, start_ms=START, end_ms=END, chunk_rows=700,
                     progress=lambda done, total: calls.append((done, total)))  # fmt: skip
    window = np.arange(500, 2800)
    assert (summary.model, summary.version, summary.skipped) == ("fraud", 2, {})
    assert summary.rows_replayed == len(window) and summary.rows_paired == 2000
    assert calls == [(700, 2300), (1400, 2300), (2100, 2300), (2300, 2300)]

    rows = _pairs(chdb_client, db, summary.replay_id)
    assert [r[6] for r in rows] == [T0 + i * 1000 for i in window]  # nothing outside [start, end)
    assert rows[0][0] == "frame-1:0" and {r[1] for r in rows} == {2}
    expected = v2.predict(matrix[window]).score
    assert np.allclose([r[2] for r in rows], expected, atol=1e-6, rtol=0)
    served = [r for r in rows if r[5] is not None]
    assert len(served) == 2000 and {(r[3], r[4]) for r in served} == {(1, "champion")}
    assert np.allclose([r[5] for r in served], v1.predict(matrix[500:2500]).score, atol=1e-6)
    assert all(r[3] is None and r[4] is None for r in rows[2000:])  # frame 5 never served

    # The SQL report agrees with the same statistics computed here.
    report = replay_report(chdb_client, db, summary.replay_id, threshold=0.5)
    cand, serv = expected[:2000], v1.predict(matrix[500:2500]).score
    diff = cand - serv
    assert (report.n_paired, report.n_unpaired) == (2000, 300)
    assert report.mean_diff == pytest.approx(diff.mean(), abs=1e-6)
    half = 1.96 * diff.std(ddof=1) / np.sqrt(2000)
    assert report.ci_low == pytest.approx(diff.mean() - half, abs=1e-6)
    assert report.ci_high == pytest.approx(diff.mean() + half, abs=1e-6)
    assert report.mean_abs_diff == pytest.approx(np.abs(diff).mean(), abs=1e-6)
    assert report.correlation == pytest.approx(np.corrcoef(cand, serv)[0, 1], abs=1e-6)
    assert report.agreement == pytest.approx(((cand >= 0.5) == (serv >= 0.5)).mean())
    assert report.flips_to_negative == int(((serv >= 0.5) & (cand < 0.5)).sum())
    assert report.flips_to_positive == int(((serv < 0.5) & (cand >= 0.5)).sum())
    assert report.p99_abs_diff == pytest.approx(np.quantile(np.abs(diff), 0.99), rel=0.02)
    assert report.by_served == (ServedGroup(1, "champion", 2000, pytest.approx(diff.mean())),)


def test_replaying_the_served_model_agrees_with_itself(chdb_client, db, models) -> None:
    v1, _ = models
    summary = replay(chdb_client, db, v1, start_ms=START, end_ms=END, replay_id="same-1")
    assert summary.replay_id == "same-1" and summary.rows_paired == 2000
    report = replay_report(chdb_client, db, "same-1")
    assert abs(report.mean_diff) < 1e-9 and report.mean_abs_diff < 1e-6
    assert report.ci_low <= 0 <= report.ci_high
    assert report.agreement == 1.0 and report.correlation == pytest.approx(1.0, abs=1e-9)
    assert report.flips_to_negative == report.flips_to_positive == 0
    labels = dict(report.rows())
    assert labels["paired rows"] == "2,000" and labels["decision agreement at 0.5"] == "100.00%"
    assert report.as_dict()["by_served"] == [
        {"version": 1, "arm": "champion", "n": 2000, "mean_diff": pytest.approx(0, abs=1e-9)}
    ]
    # A re-run under the same id replaces its rows instead of doubling them.
    replay(chdb_client, db, v1, start_ms=START, end_ms=END, replay_id="same-1")
    assert replay_report(chdb_client, db, "same-1").n_paired == 2000
    assert latest_replay_id(chdb_client, db, "fraud") == "same-1"
    assert latest_replay_id(chdb_client, db, "other") is None


def test_rows_the_model_cannot_take_are_skipped_and_counted(chdb_client, db, models) -> None:
    v1, v2 = models
    names = list(v2.signature.feature_names)
    record = {"entity_id": "e", "model": "fraud", "event_time": START + 1}
    bad = (
        [{**record, "record_id": f"w{i}", "features": [0.5] * 15, "feature_names": names[:15]}
         for i in range(3)]
        + [{**record, "record_id": f"n{i}", "features": [0.5] * 16,
            "feature_names": names[::-1]} for i in range(2)]
        + [{**record, "record_id": "nan", "features": [np.nan] + [0.5] * 15,
            "feature_names": names}]
        + [{**record, "record_id": f"u{i}", "features": [0.5] * 16, "feature_names": None}
           for i in range(5)]
    )  # fmt: skip
    sink = FeatureSink(chdb_client, db)
    sink.add_records(bad)
    sink.flush()
    summary = replay(chdb_client, db, v2, start_ms=START, end_ms=END, chunk_rows=1000)
    assert summary.skipped == {
        "feature_count_mismatch": 3,
        "feature_names_mismatch": 2,
        "non_finite": 1,
    }
    assert summary.rows_replayed == 2300 + 5  # unnamed rows pass on width alone
    ids = {r[0] for r in _pairs(chdb_client, db, summary.replay_id)}
    assert {"u0", "u4"} <= ids and not ids & {"w0", "n0", "nan"}

    # Chunk boundaries inside one event_time: the (event_time, record_id) keyset holds.
    calls: list[tuple[int, int]] = []
    small = replay(chdb_client, db, v2, start_ms=START + 1, end_ms=START + 2, chunk_rows=3,
                   progress=lambda done, total: calls.append((done, total)))  # fmt: skip
    assert calls == [(3, 11), (6, 11), (9, 11), (11, 11)]
    assert small.rows_replayed == 5 and sum(small.skipped.values()) == 6
    assert sorted(r[0] for r in _pairs(chdb_client, db, small.replay_id)) == [
        f"u{i}" for i in range(5)
    ]


def test_bad_windows_and_unknown_replays_raise_helpfully(chdb_client, db, models) -> None:
    _, v2 = models
    with pytest.raises(LineageError, match="DRIFTLINE_CLICKHOUSE_FEATURE_SAMPLE_RATE") as info:
        replay(chdb_client, db, v2, start_ms=T0 - 10_000, end_ms=T0)
    assert "2023-11-14T22:13:20.000+00:00" in str(info.value)  # where rows are logged
    with pytest.raises(LineageError, match="not before its end"):
        replay(chdb_client, db, v2, start_ms=END, end_ms=START)
    with pytest.raises(LineageError, match="no replay 'nope'"):
        replay_report(chdb_client, db, "nope")
