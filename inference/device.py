"""Pick where inference runs (CPU or CUDA) and run ONNX sessions there.

With a GPU, pre-processing runs in CuPy and ONNX Runtime uses the CUDA
execution provider with IO binding on device buffers, so the batch is uploaded
once and never round-trips through host memory before the model sees it.
Without one, NumPy and the CPU provider do the same work. ``choose_device``
decides (``auto``) unless the ``DRIFTLINE_WORKER_DEVICE`` setting forces one.

CuPy and ``onnxruntime-gpu`` are the optional ``gpu`` extra: this module
imports fine without them and only touches CuPy on the CUDA path.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Protocol

import numpy as np
import onnxruntime as ort

from driftline.inference.exceptions import InferenceError

DEVICE_CHOICES = ("auto", "cpu", "cuda")

# CPU and CUDA scores for the same inputs must agree within this (absolute).
# float32 kernels reduce in a different order on each device; 1e-5 is far above
# that rounding noise and far below any difference that would change a decision.
SCORE_TOLERANCE = 1e-5

_CPU = "CPUExecutionProvider"
_CUDA = "CUDAExecutionProvider"
_FIX = "install the GPU extra (pip install 'driftline[gpu]') or set DRIFTLINE_WORKER_DEVICE=cpu"


@dataclass(frozen=True)
class Device:
    """Where a worker scores. ``reason`` says why, for logs and the health endpoint."""

    kind: str  # "cpu" or "cuda"
    providers: tuple[str, ...]
    reason: str
    device_id: int = 0

    def provider_options(self) -> list[dict[str, str]]:
        """Options aligned with ``providers``, for ``InferenceSession(provider_options=...)``."""
        # TF32 matmuls (the CUDA provider's default on Ampere and later) round
        # inputs to 10 mantissa bits: scores would drift past SCORE_TOLERANCE.
        cuda = {"device_id": str(self.device_id), "use_tf32": "0"}
        return [cuda if p == _CUDA else {} for p in self.providers]


# Detection helpers: tiny so tests can monkeypatch them.


def _cuda_provider_available() -> bool:
    return _CUDA in ort.get_available_providers()


def _import_cupy() -> ModuleType | None:
    try:
        return importlib.import_module("cupy")
    except Exception:  # ImportError, or a CUDA library that fails to load on import
        return None


def _cupy_device_count() -> int | None:
    """Visible CUDA devices per CuPy; ``None`` when CuPy is not installed."""
    cupy = _import_cupy()
    if cupy is None:
        return None
    try:
        return int(cupy.cuda.runtime.getDeviceCount())
    except Exception:  # CUDARuntimeError when there is no driver or no device
        return 0


def _cpu_device(reason: str) -> Device:
    return Device(kind="cpu", providers=(_CPU,), reason=reason)


def _cuda_problem(device_id: int) -> str | None:
    """Why CUDA cannot be used, or ``None`` when it can."""
    if not _cuda_provider_available():
        return (
            f"ONNX Runtime has no {_CUDA} (available: {ort.get_available_providers()}); "
            "the CPU-only 'onnxruntime' package is installed instead of 'onnxruntime-gpu'"
        )
    count = _cupy_device_count()
    if count is None:
        return "CuPy is not installed (package 'cupy-cuda13x')"
    if count <= 0:
        return "CuPy sees no CUDA device (no GPU, no driver, or CUDA_VISIBLE_DEVICES hides it)"
    if device_id >= count:
        return f"device_id {device_id} does not exist; CuPy sees {count} device(s)"
    return None


def choose_device(setting: str = "auto", *, device_id: int = 0) -> Device:
    """Resolve a device setting (``auto``, ``cpu`` or ``cuda``) to a :class:`Device`.

    ``cuda`` fails loudly when the GPU stack is missing; ``auto`` falls back to
    CPU and says why in ``reason``.
    """
    choice = setting.strip().lower() if isinstance(setting, str) else setting
    if choice not in DEVICE_CHOICES:
        raise InferenceError(
            f"unknown inference device {setting!r}; choose one of {', '.join(DEVICE_CHOICES)} "
            "(DRIFTLINE_WORKER_DEVICE)"
        )
    if not isinstance(device_id, int) or device_id < 0:
        raise InferenceError(f"device_id must be an integer >= 0, got {device_id!r}")
    if choice == "cpu":
        return _cpu_device("device setting is 'cpu'")
    problem = _cuda_problem(device_id)
    if problem is None:
        return Device(
            kind="cuda",
            providers=(_CUDA, _CPU),  # CPU stays as ORT's fallback for unsupported ops
            device_id=device_id,
            reason=f"{'auto-detected' if choice == 'auto' else 'device setting is'} CUDA "
            f"device {device_id}",
        )
    if choice == "cuda":
        raise InferenceError(f"device setting is 'cuda' but {problem}; {_FIX}")
    return _cpu_device(f"auto: no usable GPU ({problem})")


def gpu_available(device_id: int = 0) -> bool:
    """True when the CUDA path can run here. Never raises: meant for skips and health checks."""
    try:
        return _cuda_problem(device_id) is None
    except Exception:
        return False


def finite_rows(matrix: Any, xp: ModuleType = np) -> np.ndarray:
    """Host bool mask ``[n]`` of rows whose values are all finite (no NaN, no ±inf).

    ``xp`` is ``numpy`` or ``cupy``; with CuPy the check runs on the device and
    only the mask comes back. Callers use it to reject bad rows before scoring.
    """
    x = xp.asarray(matrix)
    if x.ndim != 2:
        raise InferenceError(f"finite_rows takes a [n, k] matrix, got shape {tuple(x.shape)}")
    mask = xp.isfinite(x).all(axis=1)
    return np.asarray(mask) if xp is np else xp.asnumpy(mask)


class Runner(Protocol):
    """Runs one ONNX output for a ``[n, k]`` batch; returns the host array ORT produces."""

    device: Device

    def run(self, matrix: np.ndarray) -> np.ndarray: ...

    def finite_rows(self, matrix: np.ndarray) -> np.ndarray: ...


def _check_matrix(matrix: Any) -> None:
    if getattr(matrix, "ndim", None) != 2:
        raise InferenceError(
            f"runners take a [n, k] matrix, got {type(matrix).__name__} with shape "
            f"{getattr(matrix, 'shape', None)}"
        )


class CpuRunner:
    """NumPy in, ``session.run`` on the CPU provider."""

    def __init__(self, session: Any, *, input_name: str, output_name: str, device: Device) -> None:
        self.device = device
        self._session = session
        self._input_name = input_name
        self._outputs = [output_name]

    def run(self, matrix: np.ndarray) -> np.ndarray:
        _check_matrix(matrix)
        x = np.ascontiguousarray(matrix, dtype=np.float32)
        try:
            return self._session.run(self._outputs, {self._input_name: x})[0]
        except Exception as exc:  # ORT raises several pybind types; wrap them all
            raise InferenceError(f"CPU session run failed on {len(x)} rows: {exc}") from exc

    def finite_rows(self, matrix: np.ndarray) -> np.ndarray:
        return finite_rows(matrix, np)


class CudaRunner:
    """CuPy pre-processing, CUDA provider, inputs and outputs bound on the device."""

    def __init__(self, session: Any, *, input_name: str, output_name: str, device: Device) -> None:
        cupy = _import_cupy()
        if cupy is None:
            raise InferenceError(f"CudaRunner needs CuPy, which is not installed; {_FIX}")
        self.device = device
        self._cupy = cupy
        self._session = session
        self._input_name = input_name
        self._output_name = output_name

    def run(self, matrix: np.ndarray) -> np.ndarray:
        _check_matrix(matrix)
        cupy = self._cupy
        device_id = self.device.device_id
        with cupy.cuda.Device(device_id):
            # ORT reads the raw pointer: it must be float32 and C-contiguous.
            x = cupy.ascontiguousarray(cupy.asarray(matrix, dtype=cupy.float32))
            # ORT runs on its own stream; finish the upload before it reads the buffer.
            cupy.cuda.get_current_stream().synchronize()
            io = self._session.io_binding()
            io.bind_input(
                name=self._input_name,
                device_type="cuda",
                device_id=device_id,
                element_type=np.float32,
                shape=tuple(x.shape),
                buffer_ptr=x.data.ptr,
            )
            io.bind_output(self._output_name, "cuda", device_id)
            try:
                self._session.run_with_iobinding(io)
                out = io.copy_outputs_to_cpu()[0]
            except Exception as exc:
                raise InferenceError(
                    f"CUDA session run failed on {len(x)} rows (device {device_id}): {exc}"
                ) from exc
            del x  # only now may CuPy reuse the input buffer: ORT is done with it
        return out

    def finite_rows(self, matrix: np.ndarray) -> np.ndarray:
        with self._cupy.cuda.Device(self.device.device_id):
            return finite_rows(matrix, self._cupy)


def make_runner(session: Any, *, input_name: str, output_name: str, device: Device) -> Runner:
    """The runner for ``device``; refuses a CUDA device whose session did not get CUDA."""
    if device.kind == "cpu":
        return CpuRunner(session, input_name=input_name, output_name=output_name, device=device)
    if device.kind != "cuda":
        raise InferenceError(f"unknown device kind {device.kind!r}; expected 'cpu' or 'cuda'")
    # ORT silently falls back to CPU when CUDA libraries fail to load; catch that here.
    active = list(session.get_providers())
    if _CUDA not in active:
        raise InferenceError(
            f"device is CUDA but the session runs on {active}; open the session with "
            f"providers={list(device.providers)} (CUDA/cuDNN libraries must load), or {_FIX}"
        )
    return CudaRunner(session, input_name=input_name, output_name=output_name, device=device)
