import doctest
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import driftline.drift.profile
from driftline.drift.exceptions import InvalidProfile
from driftline.drift.profile import ReferenceProfile

LEVELS = np.linspace(0.0, 1.0, 101)


@pytest.fixture
def training() -> np.ndarray:
    rng = np.random.default_rng(7)
    x = np.column_stack(
        [
            rng.normal(3.0, 2.0, 5000),
            rng.lognormal(0.0, 1.0, 5000),  # skewed
            rng.integers(0, 2, 5000),  # binary: heavy ties
        ]
    )
    return x.astype(np.float32)


def test_docstring_examples() -> None:
    assert doctest.testmod(driftline.drift.profile).failed == 0


def test_statistics_match_numpy(training: np.ndarray) -> None:
    profile = ReferenceProfile.from_matrix(training, ["a", "b", "c"])
    assert profile.n == 5000 and profile.n_features == 3
    np.testing.assert_array_equal(profile.levels, LEVELS)
    np.testing.assert_array_equal(profile.quantiles, np.quantile(training, LEVELS, axis=0).T)
    np.testing.assert_array_equal(profile.min, training.min(axis=0))
    np.testing.assert_array_equal(profile.max, training.max(axis=0))
    as64 = training.astype(np.float64)
    np.testing.assert_allclose(profile.mean, as64.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(profile.std, as64.std(axis=0), rtol=1e-12)
    np.testing.assert_array_equal(profile.quantiles[:, 0], profile.min)
    np.testing.assert_array_equal(profile.quantiles[:, -1], profile.max)


def test_bins_are_equal_mass_for_continuous_features(training: np.ndarray) -> None:
    profile = ReferenceProfile.from_matrix(training, ["a", "b", "c"], n_bins=10)
    assert profile.bin_edges.shape == (3, 11) and profile.counts.shape == (3, 10)
    np.testing.assert_array_equal(profile.counts.sum(axis=1), [5000] * 3)
    edge_levels = np.linspace(0.0, 1.0, 11)
    np.testing.assert_array_equal(profile.bin_edges, np.quantile(training, edge_levels, axis=0).T)
    # Distinct continuous values: each decile bin holds 500 rows, give or take one.
    assert np.abs(profile.counts[:2] - 500).max() <= 1
    # The binary feature: every row lands in a bin, ties are not split.
    assert sorted(profile.counts[2][profile.counts[2] > 0].tolist()) == sorted(
        np.bincount(training[:, 2].astype(int)).tolist()
    )


def test_bin_counts_of_serving_data(training: np.ndarray) -> None:
    profile = ReferenceProfile.from_matrix(training, ["a", "b", "c"], n_bins=4)
    np.testing.assert_array_equal(profile.bin_counts(training), profile.counts)
    serving = np.array([[-1e9, -1e9, -5.0], [1e9, 1e9, 5.0], [np.nan, np.inf, -np.inf]])
    counts = profile.bin_counts(serving)
    # Below the minimum -> first bin, above the maximum -> last, NaN nowhere.
    assert counts[0].tolist() == [1, 0, 0, 1]
    assert counts[1].tolist() == [1, 0, 0, 2]
    assert counts[2].sum() == 3 and counts[2][0] == 2
    with pytest.raises(InvalidProfile, match="expected a matrix"):
        profile.bin_counts(np.zeros((4, 2)))


def test_json_round_trip_is_exact(training: np.ndarray) -> None:
    profile = ReferenceProfile.from_matrix(training, ["a", "b", "c"])
    text = json.dumps(profile.to_dict(), allow_nan=False)
    restored = ReferenceProfile.from_dict(json.loads(text))
    assert restored == profile
    for name in ("quantiles", "bin_edges", "mean", "std"):
        assert getattr(restored, name).tobytes() == getattr(profile, name).tobytes()
    assert json.dumps(restored.to_dict(), allow_nan=False) == text


@settings(max_examples=60, deadline=None)
@given(
    hnp.arrays(
        np.float32,
        st.tuples(st.integers(1, 40), st.integers(1, 4)),
        elements=st.floats(-1e6, 1e6, width=32),
    ),
    st.integers(2, 21),
    st.integers(1, 8),
)
def test_any_matrix_round_trips(x: np.ndarray, n_quantiles: int, n_bins: int) -> None:
    names = [f"f{i}" for i in range(x.shape[1])]
    profile = ReferenceProfile.from_matrix(x, names, n_quantiles=n_quantiles, n_bins=n_bins)
    levels = np.linspace(0.0, 1.0, n_quantiles)
    np.testing.assert_array_equal(profile.quantiles, np.quantile(x, levels, axis=0).T)
    assert (profile.counts.sum(axis=1) == x.shape[0]).all()
    assert ReferenceProfile.from_dict(json.loads(json.dumps(profile.to_dict()))) == profile


def test_arrays_are_read_only(training: np.ndarray) -> None:
    profile = ReferenceProfile.from_matrix(training, ["a", "b", "c"])
    with pytest.raises(ValueError):
        profile.quantiles[0, 0] = 1.0


def test_index_names_the_known_features(training: np.ndarray) -> None:
    profile = ReferenceProfile.from_matrix(training, ["a", "b", "c"])
    assert profile.index("c") == 2
    with pytest.raises(InvalidProfile, match=r"'zz'.*\['a', 'b', 'c'\]"):
        profile.index("zz")


def test_non_finite_training_data_is_refused(training: np.ndarray) -> None:
    training[10, 1] = np.nan
    training[11, 2] = np.inf
    with pytest.raises(InvalidProfile, match=r"\['b', 'c'\]"):
        ReferenceProfile.from_matrix(training, ["a", "b", "c"])


@pytest.mark.parametrize(
    ("x", "names", "match"),
    [
        (np.zeros((3, 2)), ["a"], "2 columns"),
        (np.zeros((3, 2)), ["a", "a"], "unique"),
        (np.zeros((0, 2)), ["a", "b"], "n >= 1"),
        (np.zeros(3), ["a"], "matrix"),
    ],
)
def test_bad_inputs(x: np.ndarray, names: list[str], match: str) -> None:
    with pytest.raises(InvalidProfile, match=match):
        ReferenceProfile.from_matrix(x, names)


def test_malformed_dicts_are_refused(training: np.ndarray) -> None:
    good = ReferenceProfile.from_matrix(training, ["a", "b", "c"]).to_dict()
    with pytest.raises(InvalidProfile, match="format"):
        ReferenceProfile.from_dict({**good, "format": 99})
    with pytest.raises(InvalidProfile, match="lacks fields"):
        ReferenceProfile.from_dict({k: v for k, v in good.items() if k != "std"})
    with pytest.raises(InvalidProfile, match="shape"):
        ReferenceProfile.from_dict({**good, "mean": good["mean"][:2]})
    with pytest.raises(InvalidProfile, match="sum to n"):
        ReferenceProfile.from_dict({**good, "n": good["n"] + 1})
    with pytest.raises(InvalidProfile, match="numeric"):
        ReferenceProfile.from_dict({**good, "min": ["x", "y", "z"]})
    with pytest.raises(InvalidProfile, match="levels"):
        ReferenceProfile.from_dict({**good, "levels": good["levels"][::-1]})
