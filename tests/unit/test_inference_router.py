"""The routing table."""

from __future__ import annotations

import pytest

from driftline.inference import LoadedModel, Router, train_logistic


@pytest.fixture(scope="module")
def trained():
    return train_logistic(n_features=4, n_samples=500, seed=0)


def _load(trained, name: str, version: int) -> LoadedModel:
    return LoadedModel.load(
        trained.onnx_bytes, name=name, version=version, expected_digest=trained.digest
    )


def test_empty_router():
    router = Router()
    assert router.champion("fraud") is None
    assert router.arms("fraud") == []
    assert router.loaded() == {}


def test_set_champion_swaps_and_returns_the_previous(trained):
    router = Router()
    v1, v2 = _load(trained, "fraud", 1), _load(trained, "fraud", 2)
    assert router.set_champion(v1) is None
    assert router.champion("fraud") is v1
    assert router.set_champion(v2) is v1
    assert router.champion("fraud") is v2
    assert router.arms("fraud") == [("champion", v2)]
    # Rolling back is just another swap.
    assert router.set_champion(v1) is v2
    assert router.champion("fraud") is v1


def test_models_are_routed_by_name(trained):
    router = Router()
    fraud, churn = _load(trained, "fraud", 3), _load(trained, "churn", 1)
    router.set_champion(fraud)
    router.set_champion(churn)
    assert router.champion("fraud") is fraud and router.champion("churn") is churn
    loaded = router.loaded()
    assert sorted(loaded) == ["churn", "fraud"]
    assert loaded["fraud"]["version"] == 3 and loaded["fraud"]["digest"] == trained.digest
    assert loaded["churn"]["arms"] == [{"arm": "champion", "version": 1, "traffic_bp": 10_000}]
    assert loaded["churn"]["experiment_id"] is None


def test_swap_does_not_disturb_a_reader_mid_batch(trained):
    router = Router()
    router.set_champion(_load(trained, "fraud", 1))
    table_seen_by_reader = router.table("fraud")
    router.set_champion(_load(trained, "fraud", 2))
    assert table_seen_by_reader.champion.version == 1  # copy-on-write: old table untouched
    assert router.champion("fraud").version == 2
