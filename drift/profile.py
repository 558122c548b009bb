"""The training reference profile: what each feature looked like when the model was trained.

Drift tests (KS, PSI) compare serving windows against it, so it is stored with
the artifact's metadata and must survive a JSON round trip exactly. Per feature
it keeps quantiles at evenly spaced levels (101 by default: every percentile), a
histogram over equal-mass bins whose edges are reference quantiles (the usual
choice for PSI: every bin holds about the same share of training rows), and
the moments.

Everything is computed column-wise in one pass of NumPy calls (a single
``np.quantile`` over axis 0 for all levels), never row by row in Python.

>>> import numpy as np
>>> x = np.arange(20, dtype=np.float32).reshape(10, 2)
>>> profile = ReferenceProfile.from_matrix(x, ["a", "b"], n_quantiles=3, n_bins=2)
>>> profile.quantiles.tolist()
[[0.0, 9.0, 18.0], [1.0, 10.0, 19.0]]
>>> profile.counts.tolist()
[[5, 5], [5, 5]]
>>> ReferenceProfile.from_dict(profile.to_dict()) == profile
True
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from driftline.drift.exceptions import InvalidProfile

FORMAT = 1
DEFAULT_QUANTILES = 101
DEFAULT_BINS = 10

_ARRAYS = ("levels", "quantiles", "bin_edges", "counts", "mean", "std", "min", "max")


@dataclass(frozen=True, eq=False)
class ReferenceProfile:
    """Per-feature summary of a training matrix; arrays are read-only.

    Shapes (``k`` features, ``q`` levels, ``b`` bins): ``levels`` ``[q]`` in [0, 1];
    ``quantiles`` ``[k, q]``; ``bin_edges`` ``[k, b+1]`` (reference quantiles at
    ``linspace(0, 1, b+1)``); ``counts`` ``[k, b]`` int64; ``mean``, ``std``
    (population, ddof=0), ``min``, ``max`` ``[k]``. Floats are float64 holding
    the float32 training values exactly.
    """

    feature_names: tuple[str, ...]
    n: int
    levels: np.ndarray
    quantiles: np.ndarray
    bin_edges: np.ndarray
    counts: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    min: np.ndarray
    max: np.ndarray

    def __post_init__(self) -> None:
        names = self.feature_names
        if isinstance(names, str) or not all(isinstance(name, str) for name in names):
            raise InvalidProfile(f"feature names must be a list of strings, got {names!r}")
        names = tuple(names)
        if len(set(names)) != len(names):
            duplicates = sorted({name for name in names if names.count(name) > 1})
            raise InvalidProfile(f"feature names must be unique; repeated: {duplicates}")
        if not isinstance(self.n, int) or isinstance(self.n, bool) or self.n < 1:
            raise InvalidProfile(f"profile row count n must be a positive int, got {self.n!r}")
        object.__setattr__(self, "feature_names", names)
        k = len(names)
        for name in _ARRAYS:
            dtype = np.int64 if name == "counts" else np.float64
            try:
                array = np.array(getattr(self, name), dtype=dtype)
            except (TypeError, ValueError) as exc:
                raise InvalidProfile(
                    f"profile field {name!r} is not a numeric array: {exc}"
                ) from exc
            array.setflags(write=False)
            object.__setattr__(self, name, array)
        q = self.levels.shape[0] if self.levels.ndim == 1 else -1
        b = self.counts.shape[-1] if self.counts.ndim == 2 else -1
        expected = {
            "levels": (q,),
            "quantiles": (k, q),
            "bin_edges": (k, b + 1),
            "counts": (k, b),
            "mean": (k,),
            "std": (k,),
            "min": (k,),
            "max": (k,),
        }
        for name, shape in expected.items():
            if getattr(self, name).shape != shape:
                raise InvalidProfile(
                    f"profile field {name!r} has shape {getattr(self, name).shape}, expected "
                    f"{shape} for {k} features, {q} quantile levels and {b} bins"
                )
        if q < 2 or b < 1:
            raise InvalidProfile(f"a profile needs >= 2 quantile levels and >= 1 bin, got {q}, {b}")
        if np.any(np.diff(self.levels) <= 0) or self.levels[0] != 0.0 or self.levels[-1] != 1.0:
            raise InvalidProfile("quantile levels must increase strictly from 0.0 to 1.0")
        if np.any(self.counts < 0) or np.any(self.counts.sum(axis=1) != self.n):
            raise InvalidProfile(f"histogram counts must be >= 0 and sum to n={self.n} per feature")

    @classmethod
    def from_matrix(
        cls,
        x: np.ndarray,
        feature_names: Sequence[str],
        *,
        n_quantiles: int = DEFAULT_QUANTILES,
        n_bins: int = DEFAULT_BINS,
    ) -> ReferenceProfile:
        """Profile a training matrix ``x`` ``[n, k]`` (converted to float32, like serving data)."""
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 2 or x.shape[0] < 1:
            raise InvalidProfile(f"expected a matrix [n >= 1, k] of training rows, got {x.shape}")
        names = tuple(feature_names)
        if len(names) != x.shape[1]:
            raise InvalidProfile(
                f"{len(names)} feature names for a matrix with {x.shape[1]} columns; "
                "pass one name per column"
            )
        finite = np.isfinite(x).all(axis=0)
        if not finite.all():
            bad = [name for name, ok in zip(names, finite, strict=True) if not ok]
            raise InvalidProfile(
                f"training data has NaN or infinite values in features {bad}; clean or impute "
                "them before profiling (serving data with them is dead-lettered)"
            )
        if n_quantiles < 2 or n_bins < 1:
            raise InvalidProfile(
                f"need n_quantiles >= 2 and n_bins >= 1, got {n_quantiles} and {n_bins}"
            )
        levels = np.linspace(0.0, 1.0, n_quantiles)
        edge_levels = np.linspace(0.0, 1.0, n_bins + 1)
        # One quantile call for both the profile levels and the bin edges.
        all_levels = np.union1d(levels, edge_levels)
        q = np.quantile(x, all_levels, axis=0).T  # [k, len(all_levels)]
        edges = q[:, np.searchsorted(all_levels, edge_levels)]
        return cls(
            feature_names=names,
            n=int(x.shape[0]),
            levels=levels,
            quantiles=q[:, np.searchsorted(all_levels, levels)],
            bin_edges=edges,
            counts=_bin_counts(x, edges),
            mean=x.mean(axis=0, dtype=np.float64),
            std=x.std(axis=0, dtype=np.float64),
            min=x.min(axis=0),
            max=x.max(axis=0),
        )

    @property
    def n_features(self) -> int:
        return len(self.feature_names)

    def index(self, feature: str) -> int:
        """Column of ``feature``; raises with the known names if there is none."""
        try:
            return self.feature_names.index(feature)
        except ValueError:
            raise InvalidProfile(
                f"feature {feature!r} is not in the reference profile; known: "
                f"{list(self.feature_names)}"
            ) from None

    def bin_counts(self, x: np.ndarray) -> np.ndarray:
        """Histogram ``x`` ``[m, k]`` into this profile's bins: ``[k, b]`` int64 (for PSI).

        Values below the reference minimum fall in the first bin and above the
        maximum in the last; NaN is counted nowhere.
        """
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.n_features:
            raise InvalidProfile(
                f"expected a matrix [m, {self.n_features}] for features "
                f"{list(self.feature_names)}, got shape {x.shape}"
            )
        return _bin_counts(x, self.bin_edges)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able form; :meth:`from_dict` restores an equal profile."""
        body: dict[str, Any] = {"format": FORMAT, "feature_names": list(self.feature_names)}
        body["n"] = self.n
        for name in _ARRAYS:
            body[name] = getattr(self, name).tolist()
        return body

    @classmethod
    def from_dict(cls, body: Mapping[str, Any]) -> ReferenceProfile:
        """Rebuild a profile from :meth:`to_dict` output (e.g. after JSON)."""
        if not isinstance(body, Mapping):
            raise InvalidProfile(f"a reference profile must be a JSON object, got {type(body)}")
        if body.get("format") != FORMAT:
            raise InvalidProfile(
                f"reference profile format {body.get('format')!r} is not supported; "
                f"expected {FORMAT}. Rebuild the profile from the training data"
            )
        missing = [f.name for f in fields(cls) if f.name not in body]
        if missing:
            raise InvalidProfile(f"reference profile lacks fields {missing}")
        return cls(**{f.name: body[f.name] for f in fields(cls)})

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ReferenceProfile):
            return NotImplemented
        return (
            self.feature_names == other.feature_names
            and self.n == other.n
            and all(np.array_equal(getattr(self, a), getattr(other, a)) for a in _ARRAYS)
        )


def _bin_counts(x: np.ndarray, edges: np.ndarray) -> np.ndarray:
    # Bin j holds interior_edge[j-1] <= v < interior_edge[j]; the outer bins are
    # open-ended. Repeated edges (tied training values) leave a bin empty rather
    # than splitting ties, the same way for reference and serving data.
    k, n_bins = edges.shape[0], edges.shape[1] - 1
    counts = np.empty((k, n_bins), dtype=np.int64)
    for j in range(k):  # one vectorised searchsorted per column
        column = x[:, j]
        column = column[~np.isnan(column)]
        index = np.searchsorted(edges[j, 1:-1], column, side="right")
        counts[j] = np.bincount(index, minlength=n_bins)
    return counts
