"""Seeded synthetic streams with drift at a known record, for the drift evaluation harness.

- :func:`feature_rows`: standard normal features, optionally with a mean shift
  of one feature from record ``drift_at`` on, sudden or ramped linearly;
- :func:`sea_errors`: the 0/1 error stream of a frozen model that knows SEA
  variant ``before``'s rule, over River's ``ConceptDriftStream`` into variant
  ``after`` (or a stationary SEA stream).

Everything is a pure function of its arguments (the seed included).

>>> rows = feature_rows(4000, 2, seed=1, drift_at=2000, feature=1, shift=0.5)
>>> round(float(rows[2000:, 1].mean() - rows[:2000, 1].mean()), 1)
0.5
"""

from __future__ import annotations

import numpy as np
from river.datasets import synth

# SEA labels a record positive when x0 + x1 exceeds its variant's threshold.
SEA_THRESHOLDS = {0: 8.0, 1: 9.0, 2: 7.0, 3: 9.5}
# ConceptDriftStream computes exp(-4 (i - position) / width) for every record i,
# which overflows a float (River 0.26) once 4 * position / width exceeds ~709.
_MAX_EXPONENT = 700


def feature_rows(
    n: int,
    k: int,
    *,
    seed: int,
    drift_at: int | None = None,
    feature: int = 0,
    shift: float = 0.5,
    ramp: int = 0,
) -> np.ndarray:
    """``[n, k]`` standard normal rows; from ``drift_at`` on, ``feature``'s mean moves by ``shift``.

    With ``ramp > 0`` the mean grows linearly over ``ramp`` records (reaching
    ``shift`` at ``drift_at + ramp``) and stays there; with ``ramp=0`` it jumps.
    """
    rows = np.random.default_rng(seed).standard_normal((n, k))
    if drift_at is not None and drift_at < n:
        steps = np.arange(n - drift_at, dtype=np.float64) + 1
        rows[drift_at:, feature] += shift * (np.minimum(steps / ramp, 1.0) if ramp else 1.0)
    return rows


def sea_errors(
    n: int,
    *,
    seed: int,
    position: int | None = None,
    width: int = 100,
    before: int = 0,
    after: int = 2,
    noise: float = 0.1,
) -> np.ndarray:
    """0/1 errors (int8 ``[n]``) of the rule ``x0 + x1 > threshold[before]`` on a SEA stream.

    ``position=None``: SEA variant ``before`` throughout (stationary). Otherwise
    River's ``ConceptDriftStream`` from variant ``before`` into ``after``, centred
    on ``position`` with sigmoid ``width`` (a share 1 / (1 + e^2) ~ 12% of records
    come from the new concept at ``position - width / 2``, 88% at ``+ width / 2``).
    """
    # Three River seeds per call, disjoint across calls: seeds 0, 1, 2... never share one.
    old = synth.SEA(variant=before, noise=noise, seed=3 * seed)
    if position is None:
        stream = old
    else:
        if 4 * position / width > _MAX_EXPONENT:
            raise ValueError(
                f"ConceptDriftStream overflows for position={position} with width={width}; "
                f"use width >= {int(np.ceil(4 * position / _MAX_EXPONENT))}"
            )
        new = synth.SEA(variant=after, noise=noise, seed=3 * seed + 1)
        stream = synth.ConceptDriftStream(
            old, new, position=position, width=width, seed=3 * seed + 2
        )
    xy = np.fromiter(
        ((x[0] + x[1], y) for x, y in stream.take(n)), dtype=np.dtype((np.float64, 2)), count=n
    )
    return ((xy[:, 0] > SEA_THRESHOLDS[before]) != (xy[:, 1] > 0)).astype(np.int8)
