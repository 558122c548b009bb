"""Sticky weighted assignment: the vectorised hash, split proportions, stickiness."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy.stats import chisquare

from driftline.inference import LoadedModel, train_logistic
from driftline.inference.routing import Arm, RoutingTable, bucket_of, entity_buckets, fnv1a64


@pytest.fixture(scope="module")
def models():
    trained = train_logistic(n_features=4, n_samples=500, seed=0)
    return [
        LoadedModel.load(
            trained.onnx_bytes, name="fraud", version=v, expected_digest=trained.digest
        )
        for v in (1, 2, 3, 4)
    ]


def test_fnv1a64_known_vectors() -> None:
    # Published FNV-1a 64 test vectors.
    assert fnv1a64(b"") == 0xCBF29CE484222325
    assert fnv1a64(b"a") == 0xAF63DC4C8601EC8C
    assert fnv1a64(b"foobar") == 0x85944171F73967E8


ENTITY_CHARS = st.characters(min_codepoint=1, exclude_categories=("Cs",))  # no NUL, no surrogates


@given(st.lists(st.text(alphabet=ENTITY_CHARS, max_size=40), max_size=30))
def test_vectorised_buckets_equal_the_reference(ids: list[str]) -> None:
    assert entity_buckets(ids, "exp-1").tolist() == [bucket_of(i, "exp-1") for i in ids]


def test_salt_reshuffles_and_buckets_are_uniform() -> None:
    ids = [f"customer-{i}" for i in range(100_000)]
    a, b = entity_buckets(ids, "exp-a"), entity_buckets(ids, "exp-b")
    assert (a == b).mean() < 0.01
    counts = np.bincount(a // 1000, minlength=10)
    assert chisquare(counts).pvalue > 0.001


def _table(models, shares: dict[str, int], experiment: str = "exp-1") -> RoutingTable:
    arms = [
        Arm(name, models[i], bp)
        for i, (name, bp) in enumerate(shares.items())
        if name != "champion"
    ]
    arms.append(Arm("champion", models[3], shares["champion"]))
    return RoutingTable("fraud", tuple(arms), experiment_id=experiment)


@pytest.mark.parametrize(
    "shares",
    [
        {"challenger": 5000, "champion": 5000},
        {"canary": 500, "challenger": 2000, "champion": 7500},
        {"canary": 100, "champion": 9900},
    ],
)
def test_split_proportions_pass_a_chi_square_test_at_the_configured_weights(models, shares):
    ids = [f"user-{i}" for i in range(200_000)]
    assigned = _table(models, shares).assign(ids)
    observed = np.bincount(assigned, minlength=len(shares))
    expected = np.array(list(shares.values()), dtype=float) / 10_000 * len(ids)
    assert observed.sum() == len(ids)
    assert chisquare(observed, expected).pvalue > 0.001, (observed, expected)


def test_assignment_is_sticky_across_batches_workers_and_order(models) -> None:
    table = _table(models, {"challenger": 3000, "champion": 7000})
    ids = [f"user-{i}" for i in range(5000)]
    first = table.assign(ids)
    again = _table(models, {"challenger": 3000, "champion": 7000}).assign(ids[::-1])[::-1]
    assert (first == again).all()
    one_by_one = np.array([table.assign([i])[0] for i in ids[:300]])
    assert (one_by_one == first[:300]).all()


def test_growing_the_canary_keeps_the_entities_it_had(models) -> None:
    ids = [f"user-{i}" for i in range(50_000)]
    small = _table(models, {"canary": 100, "champion": 9900}).assign(ids)
    large = _table(models, {"canary": 2500, "champion": 7500}).assign(ids)
    assert ((small == 0) <= (large == 0)).all()  # every 1% entity is in the 25%
    assert (large == 0).sum() > 10 * (small == 0).sum()


def test_champion_alone_needs_no_hashing_and_gaps_are_unserved(models) -> None:
    alone = RoutingTable.champion_only(models[0])
    assert not alone.is_split
    assert alone.assign(["a", "b"]).tolist() == [0, 0]
    canary_only = RoutingTable("fraud", (Arm("canary", models[1], 500),), experiment_id="x")
    assigned = canary_only.assign([f"u{i}" for i in range(10_000)])
    assert set(assigned.tolist()) == {0, -1}
    assert canary_only.champion is None


def test_shares_over_100_percent_are_refused(models) -> None:
    with pytest.raises(ValueError, match="0..10000"):
        RoutingTable("fraud", (Arm("canary", models[0], 6000), Arm("champion", models[1], 6000)))
