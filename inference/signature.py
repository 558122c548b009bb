"""Check incoming feature rows against a model's input signature, in bulk.

The worker hands over Avro-decoded ``FeatureRecord`` dicts as they are; no
per-row objects are built. Rows that fail a check are returned as
:class:`Rejection` values (the worker dead-letters them with ``reason``),
the rest become one float32 matrix ready for ONNX Runtime.

Cost model: the common batch (every row the right length, no names or the
right names, all finite) takes two list comprehensions, one ``np.fromiter``
and one ``np.isfinite(...).all(axis=1)``. Per-row Python only runs for rows
that are actually bad.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import chain, repeat
from operator import attrgetter, itemgetter
from typing import Any

import numpy as np

FEATURE_COUNT_MISMATCH = "feature_count_mismatch"
FEATURE_NAMES_MISMATCH = "feature_names_mismatch"
NON_FINITE = "non_finite"


def positional_names(n_features: int) -> tuple[str, ...]:
    """The names of a model's input columns when its ONNX file names none: f00, f01, ...

    One function for both ends, so a version registered with training data and
    no names is monitored against that training profile: the column order is
    the ONNX input's, the same at registration and when serving.
    """
    return tuple(f"f{i:02d}" for i in range(n_features))


@dataclass(frozen=True)
class InputSignature:
    """What a model accepts: one float32 input of ``n_features`` columns.

    ``model_name`` and ``model_version`` only make rejection details readable
    ("expected 16 features for model 'fraud' v2, got 15").
    """

    input_name: str
    n_features: int
    feature_names: tuple[str, ...] | None = None
    model_name: str | None = None
    model_version: int | None = None

    @property
    def column_names(self) -> tuple[str, ...]:
        """The declared feature names, else :func:`positional_names` (never the rows' own)."""
        if self.feature_names is not None:
            return tuple(self.feature_names)
        return positional_names(self.n_features)

    def describe_model(self) -> str:
        if self.model_name is None:
            return "this model"
        version = "" if self.model_version is None else f" v{self.model_version}"
        return f"model {self.model_name!r}{version}"


@dataclass(frozen=True)
class Rejection:
    """One row that cannot be scored: its index in the input, a reason code, a readable detail."""

    index: int
    reason: str
    detail: str


@dataclass(frozen=True)
class CheckedBatch:
    """The accepted rows as one matrix, their original indices, and the rejections.

    ``matrix[i]`` is the row at ``accepted[i]`` in the input. ``rejected`` is
    sorted by index.
    """

    matrix: np.ndarray
    accepted: list[int]
    rejected: list[Rejection]


def _columns(rows: Sequence[Any]) -> tuple[list[Any], list[Any]]:
    """The ``features`` and ``feature_names`` of every row, read in C-level loops.

    Decoded Avro records are dicts (the hot path); objects with
    ``.features`` / ``.feature_names`` attributes work too. The kind is
    picked once from the first row, so a batch must not mix the two.
    """
    first = rows[0]
    if isinstance(first, dict):
        features = list(map(itemgetter("features"), rows))
        names = list(map(dict.get, rows, repeat("feature_names", len(rows))))
    elif isinstance(first, Mapping):
        features = [row["features"] for row in rows]
        names = [row.get("feature_names") for row in rows]
    else:
        features = list(map(attrgetter("features"), rows))
        names = [getattr(row, "feature_names", None) for row in rows]
    return features, names


def check_batch(signature: InputSignature, rows: Sequence[Any]) -> CheckedBatch:
    """Split ``rows`` into a float32 ``[m, k]`` matrix of good rows and a list of rejections.

    Each row is checked in order: feature count, then feature names (when the
    row carries names and the model declares them), then finiteness after the
    float32 conversion. A row gets at most one rejection, for its first failure.
    """
    k = signature.n_features
    n = len(rows)
    if n == 0:
        return CheckedBatch(np.empty((0, k), dtype=np.float32), [], [])

    features, names = _columns(rows)
    rejected: list[Rejection] = []
    bad: set[int] = set()

    lengths = list(map(len, features))
    if lengths.count(k) != n:
        where = signature.describe_model()
        for i, length in enumerate(lengths):
            if length != k:
                bad.add(i)
                rejected.append(
                    Rejection(
                        i,
                        FEATURE_COUNT_MISMATCH,
                        f"expected {k} features for {where}, got {length}",
                    )
                )

    if any(row_names is not None for row_names in names):
        rejected.extend(_check_names(signature, names, lengths, bad))

    candidates = [i for i in range(n) if i not in bad] if bad else list(range(n))
    matrix, unconvertible = _to_matrix(features, candidates, k)
    if unconvertible:
        for i, detail in unconvertible:
            rejected.append(Rejection(i, NON_FINITE, detail))
        dropped = {i for i, _ in unconvertible}
        candidates = [i for i in candidates if i not in dropped]

    finite = np.isfinite(matrix).all(axis=1)
    if not finite.all():
        for position in np.flatnonzero(~finite).tolist():
            i = candidates[position]
            detail = _non_finite_detail(signature, features[i], matrix[position])
            rejected.append(Rejection(i, NON_FINITE, detail))
        matrix = np.ascontiguousarray(matrix[finite])
        candidates = [i for i, ok in zip(candidates, finite.tolist(), strict=True) if ok]

    if rejected:
        rejected.sort(key=attrgetter("index"))
    return CheckedBatch(matrix, candidates, rejected)


def _check_names(
    signature: InputSignature,
    names: list[Any],
    lengths: list[int],
    bad: set[int],
) -> list[Rejection]:
    """Rows whose declared feature names disagree with the model's (or their own length)."""
    out: list[Rejection] = []
    expected = list(signature.feature_names) if signature.feature_names is not None else None
    where = signature.describe_model()
    for i, row_names in enumerate(names):
        if row_names is None or i in bad:
            continue
        if not isinstance(row_names, list):
            row_names = list(row_names)
        if expected is not None:
            if row_names == expected:
                continue
            detail = f"feature names do not match {where}: {_first_difference(expected, row_names)}"
        elif len(row_names) != lengths[i]:
            detail = f"row carries {len(row_names)} feature names for {lengths[i]} values"
        else:
            continue
        bad.add(i)
        out.append(Rejection(i, FEATURE_NAMES_MISMATCH, detail))
    return out


def _first_difference(expected: list[str], got: list[str]) -> str:
    for j, (want, have) in enumerate(zip(expected, got, strict=False)):
        if want != have:
            return f"position {j} is {have!r}, expected {want!r}"
    return f"got {len(got)} names, expected {len(expected)}"


def _to_matrix(
    features: list[Any], candidates: list[int], k: int
) -> tuple[np.ndarray, list[tuple[int, str]]]:
    """One ``np.asarray`` for the batch; per-row conversion only if that fails.

    Decoded Avro guarantees numbers, so the fallback only runs for rows built
    by hand with strings or ``None`` in them.
    """
    if not candidates:
        return np.empty((0, k), dtype=np.float32), []
    chosen = features if len(candidates) == len(features) else [features[i] for i in candidates]
    try:
        # Every candidate has length k, so the flat iterator needs no nesting
        # checks; it beats np.asarray on a list of lists by ~1.5x. Values too
        # big for float32 become inf here and are rejected as non-finite, so
        # numpy's overflow warning would only be log noise.
        with np.errstate(over="ignore"):
            flat = np.fromiter(chain.from_iterable(chosen), np.float32, count=len(chosen) * k)
        return flat.reshape(len(chosen), k), []
    except (TypeError, ValueError):
        pass
    good: list[np.ndarray] = []
    unconvertible: list[tuple[int, str]] = []
    for i in candidates:
        try:
            with np.errstate(over="ignore"):
                row = np.asarray(features[i], dtype=np.float32)
        except (TypeError, ValueError) as exc:
            unconvertible.append((i, f"feature values are not all numbers: {exc}"))
            continue
        if row.shape != (k,):
            unconvertible.append((i, f"features must be a flat list of {k} numbers"))
            continue
        good.append(row)
    matrix = np.stack(good) if good else np.empty((0, k), dtype=np.float32)
    return np.ascontiguousarray(matrix), unconvertible


def _non_finite_detail(signature: InputSignature, values: Sequence[Any], row: np.ndarray) -> str:
    j = int(np.flatnonzero(~np.isfinite(row))[0])
    name = signature.feature_names[j] if signature.feature_names is not None else None
    label = f"feature {name!r} (index {j})" if name is not None else f"feature index {j}"
    original = values[j]
    try:
        overflow = math.isfinite(float(original))
    except (TypeError, ValueError):
        overflow = False
    if overflow:
        return f"{label} is {original!r}, which overflows float32"
    return f"{label} is {original!r}; scores need finite values"
