"""Load ONNX models safely and score float32 matrices with ONNX Runtime.

Two promises live here:

* a model is never loaded whose digest does not verify: ``LoadedModel.load``
  hashes the bytes and compares them to the registry's digest before ONNX
  Runtime parses anything;
* scoring is vectorised: one ``session.run`` per batch, outputs converted once.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnxruntime as ort

from driftline.inference.device import Device, choose_device, make_runner
from driftline.inference.exceptions import (
    InferenceError,
    ModelDigestMismatch,
    ModelLoadError,
    UnsupportedModel,
)
from driftline.inference.signature import InputSignature

_FLOAT_INPUT = "tensor(float)"
_FLOAT_OUTPUTS = frozenset({"tensor(float)", "tensor(double)", "tensor(float16)"})


@dataclass(frozen=True)
class ModelDescription:
    """The interface of an ONNX model, as the registry records it."""

    input_name: str
    input_shape: list[int | None]
    input_type: str
    output_names: list[str]
    metadata_props: dict[str, str]
    n_features: int | None
    feature_names: list[str] | None

    def to_attributes(self) -> dict[str, str]:
        """Flat string attributes for a ``registered``/``validated`` lifecycle event."""
        attributes = {
            "input_name": self.input_name,
            "input_shape": json.dumps(self.input_shape),
            "metadata_props": json.dumps(self.metadata_props, sort_keys=True),
        }
        if self.feature_names is not None:
            attributes["feature_names"] = json.dumps(self.feature_names)
        return attributes


@dataclass(frozen=True)
class Scores:
    """Model outputs for a batch: ``score`` ``[n]`` and the full ``scores`` ``[n, c]``, float64.

    ``score`` is the positive-class probability for a binary classifier
    (column 1 of two), the value for a regressor (one column), and the top
    class probability for a multi-class model.
    """

    score: np.ndarray
    scores: np.ndarray


def describe_onnx(data: bytes) -> ModelDescription:
    """Describe a serialized ONNX model.

    Raises :class:`UnsupportedModel` if driftline cannot serve it.
    """
    session = _open_session(data, label="this ONNX model", providers=("CPUExecutionProvider",))
    return _describe(session, label="this ONNX model")


class LoadedModel:
    """A verified, runnable model version. Build it with :meth:`load`."""

    def __init__(
        self,
        *,
        name: str,
        version: int,
        digest: str,
        description: ModelDescription,
        signature: InputSignature,
        session: Any,
        score_output: str,
        loaded_at: int,
        device: Device | None = None,
    ) -> None:
        self.name = name
        self.version = version
        self.digest = digest
        self.description = description
        self.signature = signature
        self.loaded_at = loaded_at  # epoch milliseconds
        self.providers: list[str] = list(session.get_providers())
        self._session = session
        self._run_outputs = [score_output]
        self._input_name = signature.input_name
        self.device = device or choose_device("cpu")
        self._runner = make_runner(
            session, input_name=signature.input_name, output_name=score_output, device=self.device
        )

    def __repr__(self) -> str:
        return (
            f"LoadedModel(name={self.name!r}, version={self.version}, "
            f"digest={self.digest[:12]}…, n_features={self.signature.n_features})"
        )

    @classmethod
    def load(
        cls,
        data: bytes,
        *,
        name: str,
        version: int,
        expected_digest: str,
        providers: Sequence[str] | None = None,
        intra_op_threads: int = 1,
        device: Device | None = None,
    ) -> LoadedModel:
        """Verify ``sha256(data)`` against ``expected_digest``, then open an ONNX Runtime session.

        ``expected_digest`` is hex, optionally prefixed ``sha256:``. The check
        runs before ONNX Runtime sees the bytes. ``intra_op_threads`` defaults
        to 1: the worker scores inside a single-threaded event loop on a small
        box, where extra ORT threads only contend with it. ``device`` (see
        :func:`driftline.inference.device.choose_device`) picks the execution provider and
        how inputs reach it; the default is the CPU.
        """
        actual = hashlib.sha256(data).hexdigest()
        expected = _normalise_digest(expected_digest)
        if actual != expected:
            raise ModelDigestMismatch(name, version, expected, actual)
        if intra_op_threads < 1:
            raise ModelLoadError(f"intra_op_threads must be >= 1, got {intra_op_threads}")

        label = f"model {name!r} v{version}"
        device = device or choose_device("cpu")
        session = _open_session(
            data,
            label=label,
            providers=providers or device.providers,
            provider_options=None if providers else device.provider_options(),
            threads=intra_op_threads,
        )
        description = _describe(session, label=label)
        if description.n_features is None:
            raise UnsupportedModel(
                f"{label}: cannot tell how many features it takes (input "
                f"{description.input_name!r} has shape {description.input_shape} and no "
                "'feature_names' metadata); export it with a fixed feature dimension"
            )
        signature = InputSignature(
            input_name=description.input_name,
            n_features=description.n_features,
            feature_names=(
                tuple(description.feature_names) if description.feature_names is not None else None
            ),
            model_name=name,
            model_version=version,
        )
        return cls(
            name=name,
            version=version,
            digest=actual,
            description=description,
            signature=signature,
            session=session,
            score_output=_pick_score_output(session.get_outputs(), label),
            loaded_at=time.time_ns() // 1_000_000,
            device=device,
        )

    def predict(self, matrix: np.ndarray) -> Scores:
        """Score a float32 ``[n, k]`` matrix with one ``session.run``."""
        k = self.signature.n_features
        if (
            not isinstance(matrix, np.ndarray)
            or matrix.dtype != np.float32
            or matrix.ndim != 2
            or matrix.shape[1] != k
        ):
            shape = getattr(matrix, "shape", None)
            dtype = getattr(matrix, "dtype", type(matrix).__name__)
            raise InferenceError(
                f"model {self.name!r} v{self.version} takes a float32 [n, {k}] array, "
                f"got {dtype} with shape {shape}; run the rows through check_batch first"
            )
        try:
            raw = self._runner.run(matrix)
        except Exception as exc:  # ORT raises several pybind types; wrap them all
            raise InferenceError(
                f"model {self.name!r} v{self.version} failed on a batch of "
                f"{len(matrix)} rows: {exc}"
            ) from exc
        scores = np.asarray(raw, dtype=np.float64)
        if scores.ndim == 1:
            scores = scores.reshape(-1, 1)
        elif scores.ndim != 2:
            raise InferenceError(
                f"model {self.name!r} v{self.version} output {self._run_outputs[0]!r} has "
                f"shape {scores.shape}; expected [n] or [n, c]"
            )
        n_columns = scores.shape[1]
        if n_columns == 2:
            score = scores[:, 1].copy()
        elif n_columns == 1:
            score = scores[:, 0].copy()
        else:
            score = scores.max(axis=1)
        return Scores(score=score, scores=scores)


def _normalise_digest(digest: str) -> str:
    digest = digest.strip().lower()
    return digest.removeprefix("sha256:")


def _session_options(threads: int) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only; ORT warns about fallbacks on every load
    # Idle ORT threads spin by default, burning a core the event loop needs.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def _open_session(
    data: bytes,
    *,
    label: str,
    providers: Sequence[str],
    provider_options: list[dict[str, str]] | None = None,
    threads: int = 1,
) -> Any:
    try:
        return ort.InferenceSession(
            data,
            sess_options=_session_options(threads),
            providers=list(providers),
            provider_options=provider_options,
        )
    except Exception as exc:  # InvalidProtobuf, Fail, NoSuchFile...: all mean "cannot load"
        raise ModelLoadError(f"ONNX Runtime cannot load {label}: {exc}") from exc


def _describe(session: Any, *, label: str) -> ModelDescription:
    inputs = session.get_inputs()
    if len(inputs) != 1:
        names = [i.name for i in inputs]
        raise UnsupportedModel(
            f"{label} has {len(inputs)} inputs {names}; driftline serves models with exactly "
            "one float32 [batch, features] input — concatenate the features before export"
        )
    (node,) = inputs
    if node.type != _FLOAT_INPUT:
        raise UnsupportedModel(
            f"{label}: input {node.name!r} is {node.type}, expected {_FLOAT_INPUT} "
            "(float32); re-export with a FloatTensorType input"
        )
    shape = [dim if isinstance(dim, int) and dim >= 0 else None for dim in (node.shape or [])]
    if len(shape) != 2:
        raise UnsupportedModel(
            f"{label}: input {node.name!r} has shape {node.shape}; "
            "expected rank 2 [batch, features]"
        )
    metadata = dict(session.get_modelmeta().custom_metadata_map)
    feature_names = _feature_names(metadata, label)
    n_features = shape[1]
    if n_features is not None and feature_names is not None and len(feature_names) != n_features:
        raise UnsupportedModel(
            f"{label}: input {node.name!r} has {n_features} features but metadata "
            f"'feature_names' lists {len(feature_names)}"
        )
    if n_features is None and feature_names is not None:
        n_features = len(feature_names)
    return ModelDescription(
        input_name=node.name,
        input_shape=shape,
        input_type=node.type,
        output_names=[o.name for o in session.get_outputs()],
        metadata_props=metadata,
        n_features=n_features,
        feature_names=feature_names,
    )


def _feature_names(metadata: dict[str, str], label: str) -> list[str] | None:
    raw = metadata.get("feature_names")
    if raw is None:
        return None
    try:
        names = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise UnsupportedModel(
            f"{label}: metadata 'feature_names' is not JSON ({exc}); store a JSON list of strings"
        ) from exc
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise UnsupportedModel(
            f"{label}: metadata 'feature_names' must be a JSON list of strings, got {raw[:80]!r}"
        )
    return names


def _pick_score_output(outputs: Sequence[Any], label: str) -> str:
    """The output that holds the scores.

    A rank-2 float output named like "probabilities" wins (classifiers export
    a label and a probability tensor); otherwise the first float output of
    rank 1 or 2 (regressors, plain networks); otherwise one of unknown rank.
    """
    floats = [o for o in outputs if o.type in _FLOAT_OUTPUTS]
    known = [o for o in floats if o.shape is not None and 1 <= len(o.shape) <= 2]
    for o in known:
        if len(o.shape) == 2 and "prob" in o.name.lower():
            return o.name
    if known:
        return known[0].name
    unknown_rank = [o for o in floats if not o.shape]
    if unknown_rank:
        return unknown_rank[0].name
    described = [(o.name, o.type, o.shape) for o in outputs]
    raise UnsupportedModel(
        f"{label} has no float output of shape [n] or [n, c] to score with (outputs: {described})"
    )
