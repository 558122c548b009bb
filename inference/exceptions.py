"""Errors raised by the inference package.

Everything derives from :class:`driftline.core.errors.DriftlineError` so the worker
can catch one type at its edge; library errors (ONNX Runtime, protobuf) are
wrapped with ``raise ... from exc`` so the original stays in the traceback.
"""

from __future__ import annotations

from driftline.core.errors import DriftlineError


class InferenceError(DriftlineError):
    """Base class for inference failures (bad call, failed session run, bad arguments)."""


class ModelLoadError(InferenceError):
    """A model artifact could not be turned into a runnable session."""


class ModelDigestMismatch(ModelLoadError):
    """The artifact's sha256 differs from the digest the registry recorded.

    Raised before ONNX Runtime sees a single byte: a model whose digest does
    not verify is never parsed, let alone loaded.
    """

    def __init__(self, model: str, version: int, expected: str, actual: str) -> None:
        self.model = model
        self.version = version
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"refusing to load model {model!r} v{version}: artifact sha256 is {actual}, "
            f"but the registry expects {expected}; the artifact was altered or the wrong "
            "file was fetched — re-fetch it from the artifact store or re-register the model"
        )


class UnsupportedModel(ModelLoadError):
    """The ONNX graph parses but its interface is not one driftline can serve."""


class FrameRejected(InferenceError):
    """A whole frame cannot be scored; ``reason`` is the dead-letter reason code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
