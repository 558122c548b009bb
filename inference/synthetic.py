"""Synthetic feature rows with a known, learnable label rule.

The demo, the tests and the benchmarks all need rows that come from the same
distribution the model was trained on (so a drift detector stays quiet until
someone shifts it on purpose). :func:`driftline.inference.training.train_logistic`
trains on this generator, and producers sample from it with the same seed.

Each feature ``j`` is normal with its own mean and scale; the label is
Bernoulli(sigmoid(x @ true_coef + intercept)), so a logistic regression can
recover ``true_coef`` and reach a ROC AUC near 0.9.

>>> gen = SyntheticFeatures(n_features=4, seed=7)
>>> gen.rows(3).shape
(3, 4)
>>> bool((SyntheticFeatures(4, 7).rows(5) == SyntheticFeatures(4, 7).rows(5)).all())
True
"""

from __future__ import annotations

import numpy as np

from driftline.inference.exceptions import InferenceError

# Standard deviation of the true logit; ~3 gives a ROC AUC around 0.9, which
# leaves room to see a model get worse under drift.
_LOGIT_SCALE = 3.0


class SyntheticFeatures:
    """A seeded stream of float32 feature rows and their labels.

    Parameters (means, scales, coefficients) depend only on ``seed``; rows and
    labels come from two separate seeded streams, so drawing labels never
    changes which rows come next.
    """

    def __init__(self, n_features: int = 16, seed: int = 0) -> None:
        if n_features < 1:
            raise InferenceError(f"n_features must be >= 1, got {n_features}")
        self.n_features = n_features
        self.seed = seed
        params = np.random.default_rng([seed, 0])
        self.means = params.normal(0.0, 2.0, size=n_features)
        self.scales = params.uniform(0.5, 2.0, size=n_features)
        # Coefficients on the standardised features, then moved to the raw
        # scale so that ``x @ true_coef + intercept`` is the true logit.
        standardised = params.normal(0.0, _LOGIT_SCALE / np.sqrt(n_features), size=n_features)
        self.true_coef = standardised / self.scales
        self.intercept = float(-self.means @ self.true_coef)
        width = len(str(n_features - 1))
        self.feature_names = tuple(f"f{j:0{width}d}" for j in range(n_features))
        self._rows_rng = np.random.default_rng([seed, 1])
        self._labels_rng = np.random.default_rng([seed, 2])

    def rows(self, n: int) -> np.ndarray:
        """Draw ``n`` rows as a C-contiguous float32 matrix ``[n, n_features]``."""
        if n < 0:
            raise InferenceError(f"row count must be >= 0, got {n}")
        z = self._rows_rng.standard_normal((n, self.n_features))
        return np.ascontiguousarray(z * self.scales + self.means, dtype=np.float32)

    def logits(self, rows: np.ndarray) -> np.ndarray:
        """The true logit of each row (float64 ``[n]``)."""
        return rows.astype(np.float64) @ self.true_coef + self.intercept

    def labels(self, rows: np.ndarray) -> np.ndarray:
        """Draw a 0/1 label (int64 ``[n]``) for each row from the true logistic rule."""
        p = 1.0 / (1.0 + np.exp(-self.logits(rows)))
        return (self._labels_rng.random(len(p)) < p).astype(np.int64)

    def sample(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """``n`` rows and their labels."""
        x = self.rows(n)
        return x, self.labels(x)
