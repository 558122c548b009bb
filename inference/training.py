"""Train the demo models on synthetic rows and export them to ONNX.

:func:`train_logistic` fits a logistic regression (the default demo model);
:func:`train_gbm` fits gradient-boosted trees on the same data;
:func:`train_mlp` a small neural network whose graph uses only standard ONNX
operators (so every node runs on the CUDA provider, unlike the ``ai.onnx.ml``
linear and tree operators, which ONNX Runtime runs only on the CPU).

The export carries its own provenance in ONNX ``metadata_props`` (feature
names, a fingerprint of the training matrix, sample count, seed and holdout
metrics) so the registry can record them on the ``registered`` lifecycle
event without a side channel. The same arguments give the same bytes, hence
the same digest.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
import onnx.utils
from skl2onnx import to_onnx
from skl2onnx.common.data_types import FloatTensorType
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, log_loss, roc_auc_score
from sklearn.neural_network import MLPClassifier

from driftline.inference.exceptions import InferenceError
from driftline.inference.synthetic import SyntheticFeatures

INPUT_NAME = "features"
HOLDOUT_FRACTION = 0.2


@dataclass(frozen=True)
class TrainedModel:
    """An ONNX artifact and what was learned about it offline.

    ``estimator`` is the fitted scikit-learn model, kept for comparisons in
    tests and notebooks; it is not part of the artifact.
    """

    onnx_bytes: bytes
    feature_names: list[str]
    metrics: dict[str, float]
    estimator: Any = field(default=None, repr=False, compare=False)

    @property
    def digest(self) -> str:
        """sha256 hex of the artifact: what the registry records and the loader verifies."""
        return hashlib.sha256(self.onnx_bytes).hexdigest()


def _fit_and_export(
    estimator: Any,
    *,
    n_features: int,
    n_samples: int,
    seed: int,
    trainer: str,
    extra_props: dict[str, str] | None = None,
    probabilities_only: bool = False,
    data: tuple[np.ndarray, np.ndarray] | None = None,
) -> TrainedModel:
    """Fit ``estimator`` on a seeded synthetic sample, score the holdout, export to ONNX.

    The last 20 % of the sampled rows are held out for the offline metrics. The
    ONNX graph has one input ``features`` (float32 ``[None, n_features]``) and
    tensor outputs ``label`` and ``probabilities`` (no ZipMap); its
    ``metadata_props`` carry the provenance, then ``extra_props``.
    """
    if n_samples < 50:
        raise InferenceError(f"n_samples must be >= 50 to train and hold out, got {n_samples}")
    generator = SyntheticFeatures(n_features, seed)
    x, y = generator.sample(n_samples) if data is None else data
    n_holdout = max(10, int(n_samples * HOLDOUT_FRACTION))
    x_train, y_train = x[:-n_holdout], y[:-n_holdout]
    x_hold, y_hold = x[-n_holdout:], y[-n_holdout:]
    if len(np.unique(y_train)) < 2 or len(np.unique(y_hold)) < 2:
        raise InferenceError(
            f"synthetic sample (n_samples={n_samples}, seed={seed}) has a single class; "
            "use more samples"
        )

    estimator.fit(x_train, y_train)
    proba = estimator.predict_proba(x_hold)[:, 1]
    metrics = {
        "accuracy": round(float(accuracy_score(y_hold, proba >= 0.5)), 6),
        "roc_auc": round(float(roc_auc_score(y_hold, proba)), 6),
        "log_loss": round(float(log_loss(y_hold, proba)), 6),
        "n_train": int(len(y_train)),
        "n_holdout": int(n_holdout),
    }

    model = to_onnx(
        estimator,
        initial_types=[(INPUT_NAME, FloatTensorType([None, n_features]))],
        options={"zipmap": False},  # tensor outputs: one vectorised read, no per-row dicts
    )
    if probabilities_only:
        # The label branch uses ai.onnx.ml ops that only the CPU provider runs;
        # dropping it leaves a graph every node of which has a CUDA kernel.
        model = onnx.utils.Extractor(model).extract_model([INPUT_NAME], ["probabilities"])
    feature_names = list(generator.feature_names)
    onnx.helper.set_model_props(
        model,
        {
            "feature_names": json.dumps(feature_names),
            "training_data_sha256": hashlib.sha256(x_train.tobytes()).hexdigest(),
            "n_samples": str(n_samples),
            "seed": str(seed),
            "metrics": json.dumps(metrics, sort_keys=True),
            "trainer": trainer,
            **(extra_props or {}),
        },
    )
    return TrainedModel(
        onnx_bytes=model.SerializeToString(),
        feature_names=feature_names,
        metrics=metrics,
        estimator=estimator,
    )


def train_logistic(n_features: int = 16, n_samples: int = 20_000, seed: int = 0) -> TrainedModel:
    """Fit a logistic regression on :class:`SyntheticFeatures` and export it to ONNX.

    The last 20 % of the sampled rows are held out for the offline metrics.
    The ONNX graph has one input ``features`` (float32 ``[None, n_features]``)
    and tensor outputs ``label`` and ``probabilities`` (no ZipMap).
    """
    return _fit_and_export(
        LogisticRegression(max_iter=1_000),
        n_features=n_features,
        n_samples=n_samples,
        seed=seed,
        trainer="driftline.inference.training.train_logistic",
    )


def train_logistic_on(x: np.ndarray, y: np.ndarray, seed: int = 0) -> TrainedModel:
    """Fit a logistic regression on given rows (e.g. a feature-store dataset, columns in
    :class:`SyntheticFeatures` order) and export it like :func:`train_logistic`."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    return _fit_and_export(
        LogisticRegression(max_iter=1_000),
        n_features=x.shape[1],
        n_samples=len(x),
        seed=seed,
        trainer="driftline.inference.training.train_logistic_on",
        data=(x, np.asarray(y)),
    )


def train_gbm(
    n_features: int = 16,
    n_samples: int = 20_000,
    seed: int = 0,
    *,
    n_trees: int = 100,
    max_depth: int = 3,
    learning_rate: float = 0.1,
    subsample: float = 0.5,
) -> TrainedModel:
    """Fit a gradient-boosted tree classifier on :class:`SyntheticFeatures` and export it to ONNX.

    Same data, holdout split, metrics and provenance as :func:`train_logistic`,
    plus ``model_kind`` (``"gradient_boosting"``) and the tree hyperparameters
    in ``metadata_props``. The ONNX graph is one ``ai.onnx.ml``
    ``TreeEnsembleClassifier`` with the same input ``features`` (float32
    ``[None, n_features]``) and tensor outputs ``label`` and ``probabilities``
    (no ZipMap). ``seed`` seeds both the data and the row subsampling, so the
    same arguments give the same bytes.

    This is scikit-learn's ``GradientBoostingClassifier``: the installed
    skl2onnx cannot convert ``HistGradientBoostingClassifier`` (it emits
    booleans into an integer node attribute). ``subsample`` < 1 is stochastic
    boosting; 0.5 halves the fit time (about 3 s for the defaults on one core)
    without losing holdout AUC on this data.
    """
    if n_trees < 1:
        raise InferenceError(f"n_trees must be >= 1, got {n_trees}")
    if max_depth < 1:
        raise InferenceError(f"max_depth must be >= 1, got {max_depth}")
    if not learning_rate > 0:
        raise InferenceError(f"learning_rate must be > 0, got {learning_rate}")
    if not 0 < subsample <= 1:
        raise InferenceError(f"subsample must be in (0, 1], got {subsample}")
    hyperparameters = {
        "n_trees": n_trees,
        "max_depth": max_depth,
        "learning_rate": learning_rate,
        "subsample": subsample,
    }
    return _fit_and_export(
        GradientBoostingClassifier(
            n_estimators=n_trees,
            max_depth=max_depth,
            learning_rate=learning_rate,
            subsample=subsample,
            random_state=seed,
        ),
        n_features=n_features,
        n_samples=n_samples,
        seed=seed,
        trainer="driftline.inference.training.train_gbm",
        extra_props={
            "model_kind": "gradient_boosting",
            "hyperparameters": json.dumps(hyperparameters, sort_keys=True),
        },
    )


def train_mlp(
    n_features: int = 16,
    n_samples: int = 20_000,
    seed: int = 0,
    *,
    hidden: tuple[int, ...] = (256, 256),
    max_iter: int = 30,
) -> TrainedModel:
    """Fit a ReLU multi-layer perceptron and export only its ``probabilities`` output.

    The graph is MatMul/Add/Relu/Sigmoid/Concat, all standard ONNX operators
    with CUDA kernels: the model the GPU path is checked and benchmarked with.
    Same data, holdout split, metrics and provenance as :func:`train_logistic`;
    ``max_iter`` is kept small because the data is easy and fitting is a test
    fixture's cost.
    """
    if not hidden or any(width < 1 for width in hidden):
        raise InferenceError(f"hidden layer widths must be >= 1, got {hidden!r}")
    # A handful of epochs is enough on this data; the convergence warning is noise here
    # (silenced for this fit only, not for the process).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=ConvergenceWarning)
        return _fit_and_export(
            MLPClassifier(hidden_layer_sizes=hidden, max_iter=max_iter, random_state=seed),
            n_features=n_features,
            n_samples=n_samples,
            seed=seed,
            trainer="driftline.inference.training.train_mlp",
            extra_props={"model_kind": "mlp", "hidden": json.dumps(list(hidden))},
            probabilities_only=True,
        )
