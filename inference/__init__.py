"""driftline inference: verified ONNX model loading, batch checks, scoring and routing.

Plain Python over NumPy and ONNX Runtime; no Faust, no Kafka. The worker in
``streams/`` decodes records, calls :func:`score_records` with the model the
:class:`Router` picks, and emits the predictions and rejections.
"""

from driftline.inference.exceptions import (
    InferenceError,
    ModelDigestMismatch,
    ModelLoadError,
    UnsupportedModel,
)
from driftline.inference.model import LoadedModel, ModelDescription, Scores, describe_onnx
from driftline.inference.router import Router
from driftline.inference.scoring import (
    PREDICTION_NAMESPACE,
    ScoredBatch,
    prediction_id,
    score_records,
)
from driftline.inference.signature import (
    FEATURE_COUNT_MISMATCH,
    FEATURE_NAMES_MISMATCH,
    NON_FINITE,
    CheckedBatch,
    InputSignature,
    Rejection,
    check_batch,
)
from driftline.inference.synthetic import SyntheticFeatures

# Training (scikit-learn, skl2onnx, onnx: about a second of imports) is for the demo,
# CI and benchmarks; a worker never trains, so it is imported on first use only.
_TRAINING = ("TrainedModel", "train_gbm", "train_logistic")


def __getattr__(name: str):
    if name in _TRAINING:
        from driftline.inference import training

        return getattr(training, name)
    raise AttributeError(f"module 'inference' has no attribute {name!r}")


__all__ = [
    "FEATURE_COUNT_MISMATCH",
    "FEATURE_NAMES_MISMATCH",
    "NON_FINITE",
    "PREDICTION_NAMESPACE",
    "CheckedBatch",
    "InferenceError",
    "InputSignature",
    "LoadedModel",
    "ModelDescription",
    "ModelDigestMismatch",
    "ModelLoadError",
    "Rejection",
    "Router",
    "ScoredBatch",
    "Scores",
    "SyntheticFeatures",
    "TrainedModel",
    "UnsupportedModel",
    "check_batch",
    "describe_onnx",
    "prediction_id",
    "score_records",
    "train_gbm",
    "train_logistic",
]
