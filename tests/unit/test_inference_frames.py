"""Frames and routed scoring: every row scored exactly once per arm it belongs to."""

from __future__ import annotations

import numpy as np
import pytest

from driftline.inference import LoadedModel, SyntheticFeatures, train_logistic
from driftline.inference.exceptions import FrameRejected
from driftline.inference.frames import Frame, pack_frame, score_frame, unpack_prediction_frame
from driftline.inference.routing import Arm, RoutingTable
from driftline.inference.scoring import prediction_id, score_routed
from driftline.schemas import SchemaCodec, catalog
from driftline.schemas.codec import default_codec


@pytest.fixture(scope="module")
def trained():
    return train_logistic(n_features=16, n_samples=2000, seed=1)


@pytest.fixture(scope="module")
def models(trained):
    return {
        v: LoadedModel.load(
            trained.onnx_bytes, name="fraud", version=v, expected_digest=trained.digest
        )
        for v in (1, 2, 3)
    }


def _frame(trained, n: int = 1000, seed: int = 0) -> Frame:
    rows = SyntheticFeatures(n_features=16, seed=seed).rows(n)
    record = pack_frame(
        f"frame-{seed}",
        "fraud",
        [f"user-{i}" for i in range(n)],
        [1_700_000_000_000 + i for i in range(n)],
        trained.feature_names,
        rows,
    )
    codec: SchemaCodec = default_codec()
    return Frame.from_avro(codec.decode_as("FeatureFrame", codec.encode("FeatureFrame", record)))


def test_champion_frame_scores_match_the_model(trained, models) -> None:
    frame = _frame(trained)
    scored = score_frame(RoutingTable.champion_only(models[1]), frame, now_ms=lambda: 5)
    (part,) = scored.parts
    assert part["rows"] == b"" and part["n_rows"] == 1000 and part["arm"] == "champion"
    cols = unpack_prediction_frame(part)
    expected = trained.estimator.predict_proba(frame.matrix)[:, 1]
    assert np.allclose(cols["score"], expected, atol=1e-5)
    assert part["prediction_frame_id"] == prediction_id("frame-0", "fraud", "served")
    encoded = default_codec().encode("PredictionFrame", part)
    assert default_codec().decode_as("PredictionFrame", encoded)["n_rows"] == 1000


def test_split_frame_covers_each_row_once_and_shadow_scores_all(trained, models) -> None:
    table = RoutingTable(
        "fraud",
        (Arm("challenger", models[2], 3000), Arm("champion", models[1], 7000)),
        shadows=(models[3],),
        experiment_id="exp-7",
    )
    frame = _frame(trained, 2000)
    scored = score_frame(table, frame)
    served = [p for p in scored.parts if p["arm"] != "shadow"]
    (shadow,) = [p for p in scored.parts if p["arm"] == "shadow"]
    rows = np.concatenate([unpack_prediction_frame(p)["rows"] for p in served])
    assert sorted(rows.tolist()) == list(range(2000))
    assert shadow["n_rows"] == 2000 and shadow["version"] == 3
    assert {p["experiment_id"] for p in scored.parts} == {"exp-7"}
    assigned = table.assign(frame.entity_ids)
    for part in served:
        mine = unpack_prediction_frame(part)["rows"]
        assert (assigned[mine] == (0 if part["arm"] == "challenger" else 1)).all()
        ids = frame.entity_ids.to_list()
        assert unpack_prediction_frame(part)["entity_ids"].to_list() == [ids[r] for r in mine]
        assert (unpack_prediction_frame(part)["event_times"] == frame.event_times[mine]).all()
    # Served parts share the served id key; the shadow's differs.
    assert served[0]["prediction_frame_id"] == served[1]["prediction_frame_id"]
    assert shadow["prediction_frame_id"] != served[0]["prediction_frame_id"]


def test_non_finite_rows_are_reported_and_the_rest_scored(trained, models) -> None:
    frame = _frame(trained, 100)
    matrix = frame.matrix.copy()
    matrix[[3, 50], 2] = [np.nan, np.inf]
    frame = Frame(frame.frame_id, "fraud", frame.entity_ids, frame.event_times,
                  frame.feature_names, matrix)  # fmt: skip
    scored = score_frame(RoutingTable.champion_only(models[1]), frame)
    assert scored.bad_rows.tolist() == [3, 50]
    assert scored.served_rows == 98
    assert 3 not in unpack_prediction_frame(scored.parts[0])["rows"].tolist()


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"n_rows": 5}, "invalid_frame"),
        ({"matrix": b"\x00" * 12}, "invalid_frame"),
        ({"n_features": 3}, "invalid_frame"),
        ({"packed_entity_offsets": b"\x00" * 8}, "invalid_frame"),
        ({"packed_entity_offsets": np.array([0, 5, 1], "<i4").tobytes()}, "invalid_frame"),
        ({"packed_entity_ids": b"ab\xff"}, "invalid_frame"),
        ({"packed_event_times": b"\x00" * 8}, "invalid_frame"),
    ],
)
def test_inconsistent_frames_are_rejected_with_a_reason(trained, change, reason) -> None:
    record = pack_frame("f", "fraud", ["a", "b"], [1, 2], trained.feature_names,
                        np.zeros((2, 16), np.float32))  # fmt: skip
    with pytest.raises(FrameRejected) as err:
        Frame.from_avro(record | change)
    assert err.value.reason == reason


def test_wrong_feature_names_reject_the_frame(trained, models) -> None:
    frame = _frame(trained, 10)
    names = list(reversed(frame.feature_names))
    bad = Frame(frame.frame_id, "fraud", frame.entity_ids, frame.event_times, names, frame.matrix)
    with pytest.raises(FrameRejected) as err:
        score_frame(RoutingTable.champion_only(models[1]), bad)
    assert err.value.reason == "feature_names_mismatch"


def test_routed_records_serve_each_record_once_with_stable_ids(trained, models) -> None:
    rows = SyntheticFeatures(n_features=16, seed=4).rows(600)
    records = [
        {"record_id": f"r{i}", "entity_id": f"user-{i}", "model": "fraud",
         "features": row.tolist(), "feature_names": trained.feature_names, "event_time": 1}
        for i, row in enumerate(rows)
    ]  # fmt: skip
    table = RoutingTable(
        "fraud",
        (Arm("canary", models[2], 2500), Arm("champion", models[1], 7500)),
        shadows=(models[3],),
        experiment_id="exp-9",
    )
    routed = score_routed(table, records)
    served = [p for p in routed.predictions if p["arm"] != "shadow"]
    shadows = [p for p in routed.predictions if p["arm"] == "shadow"]
    assert sorted(p["record_id"] for p in served) == sorted(r["record_id"] for r in records)
    assert len(shadows) == 600 and not routed.rejected and not routed.unserved
    assert {p["arm"] for p in served} == {"canary", "champion"}
    # The served id does not depend on the arm: a redelivery after a split change dedups.
    by_record = {p["record_id"]: p for p in served}
    assert by_record["r0"]["prediction_id"] == prediction_id("r0", "fraud", "served")
    assert len({p["prediction_id"] for p in routed.predictions}) == 1200


def test_v1_frames_with_avro_arrays_still_score(trained, models) -> None:
    """A FeatureFrame v1 (ids and times as Avro arrays) reads as the same frame."""
    codec = default_codec()
    packed = _frame(trained, 50)
    v1 = {
        "frame_id": "frame-0", "model": "fraud", "entity_ids": packed.entity_ids.to_list(),
        "event_times": packed.event_times.tolist(), "feature_names": packed.feature_names,
        "n_rows": 50, "n_features": 16, "matrix": packed.matrix.tobytes(),
    }  # fmt: skip
    old = [e for e in catalog.entries() if (e.name, e.version) != ("FeatureFrame", 2)]
    payload = SchemaCodec.from_entries(old).encode("FeatureFrame", v1)
    assert payload[1:5] == b"\x00\x00\x00\x02"  # written as v1
    frame = Frame.from_avro(codec.decode_as("FeatureFrame", payload))
    assert frame.entity_ids.to_list() == [f"user-{i}" for i in range(50)]
    assert (frame.event_times == packed.event_times).all()
    table = RoutingTable.champion_only(models[1])
    (old_part,) = score_frame(table, frame, now_ms=lambda: 1).parts
    (new_part,) = score_frame(table, packed, now_ms=lambda: 1).parts
    assert old_part | {"model_latency_ms": 0} == new_part | {"model_latency_ms": 0}
