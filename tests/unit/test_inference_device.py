"""Device choice and the CPU/CUDA runners, on a real ONNX Runtime session."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from driftline.inference import device as dev
from driftline.inference.device import (
    DEVICE_CHOICES,
    SCORE_TOLERANCE,
    CpuRunner,
    choose_device,
    finite_rows,
    gpu_available,
    make_runner,
)
from driftline.inference.exceptions import InferenceError
from driftline.inference.training import INPUT_NAME, train_logistic, train_mlp

N_FEATURES = 16
OUTPUT = "probabilities"


@pytest.fixture(scope="module")
def onnx_bytes() -> bytes:
    return train_logistic(n_features=N_FEATURES, n_samples=2_000, seed=3).onnx_bytes


def _session(data: bytes, device: dev.Device) -> ort.InferenceSession:
    return ort.InferenceSession(
        data, providers=list(device.providers), provider_options=device.provider_options()
    )


def _matrix(n: int = 10_000, seed: int = 7) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, N_FEATURES)).astype(np.float32)


def _simulate(monkeypatch, *, provider: bool, count: int | None) -> None:
    monkeypatch.setattr(dev, "_cuda_provider_available", lambda: provider)
    monkeypatch.setattr(dev, "_cupy_device_count", lambda: count)


class TestChooseDevice:
    def test_cpu_setting_uses_cpu_provider(self):
        device = choose_device("cpu")
        assert device.kind == "cpu"
        assert device.providers == ("CPUExecutionProvider",)
        assert "cpu" in device.reason

    @pytest.mark.skipif(gpu_available(), reason="this machine has a GPU")
    def test_auto_without_gpu_falls_back_to_cpu_with_reason(self):
        device = choose_device("auto")
        assert device.kind == "cpu"
        assert device.reason.startswith("auto: no usable GPU")

    def test_auto_picks_cuda_when_both_present(self, monkeypatch):
        _simulate(monkeypatch, provider=True, count=2)
        device = choose_device("auto", device_id=1)
        assert device.kind == "cuda"
        assert device.providers == ("CUDAExecutionProvider", "CPUExecutionProvider")
        assert device.device_id == 1
        assert device.provider_options() == [{"device_id": "1", "use_tf32": "0"}, {}]

    def test_setting_is_case_and_space_insensitive(self):
        assert choose_device(" CPU ").kind == "cpu"

    def test_unknown_setting_names_value_and_choices(self):
        with pytest.raises(InferenceError) as info:
            choose_device("tpu")
        message = str(info.value)
        assert "'tpu'" in message
        for choice in DEVICE_CHOICES:
            assert choice in message

    def test_negative_device_id_is_rejected(self):
        with pytest.raises(InferenceError, match="device_id"):
            choose_device("auto", device_id=-1)

    @pytest.mark.parametrize(
        ("provider", "count", "missing"),
        [
            (False, 1, "CUDAExecutionProvider"),
            (True, None, "CuPy is not installed"),
            (True, 0, "no CUDA device"),
        ],
        ids=["provider-missing", "cupy-missing", "no-device"],
    )
    def test_cuda_unavailable_raises_with_fix(self, monkeypatch, provider, count, missing):
        _simulate(monkeypatch, provider=provider, count=count)
        with pytest.raises(InferenceError) as info:
            choose_device("cuda")
        message = str(info.value)
        assert missing in message
        assert "driftline[gpu]" in message
        assert "DRIFTLINE_WORKER_DEVICE=cpu" in message
        # auto degrades to CPU for the same cause, and says so.
        device = choose_device("auto")
        assert device.kind == "cpu"
        assert missing in device.reason

    def test_cuda_device_id_out_of_range(self, monkeypatch):
        _simulate(monkeypatch, provider=True, count=1)
        with pytest.raises(InferenceError, match="device_id 3 does not exist"):
            choose_device("cuda", device_id=3)

    def test_gpu_available_never_raises(self, monkeypatch):
        def boom() -> bool:
            raise RuntimeError("driver exploded")

        monkeypatch.setattr(dev, "_cuda_provider_available", boom)
        assert gpu_available() is False


class TestCpuRunner:
    def test_matches_plain_session_run(self, onnx_bytes):
        device = choose_device("cpu")
        session = _session(onnx_bytes, device)
        runner = make_runner(session, input_name=INPUT_NAME, output_name=OUTPUT, device=device)
        assert isinstance(runner, CpuRunner)
        x = _matrix(1_000)
        expected = session.run([OUTPUT], {INPUT_NAME: x})[0]
        np.testing.assert_array_equal(runner.run(x), expected)

    def test_converts_float64_and_non_contiguous_input(self, onnx_bytes):
        device = choose_device("cpu")
        session = _session(onnx_bytes, device)
        runner = make_runner(session, input_name=INPUT_NAME, output_name=OUTPUT, device=device)
        wide = np.asfortranarray(_matrix(200).astype(np.float64))
        expected = session.run([OUTPUT], {INPUT_NAME: np.ascontiguousarray(wide, np.float32)})[0]
        np.testing.assert_array_equal(runner.run(wide), expected)

    def test_bad_shape_and_failed_run_raise_inference_error(self, onnx_bytes):
        device = choose_device("cpu")
        session = _session(onnx_bytes, device)
        runner = make_runner(session, input_name=INPUT_NAME, output_name=OUTPUT, device=device)
        with pytest.raises(InferenceError, match="shape"):
            runner.run(np.zeros(N_FEATURES, dtype=np.float32))
        with pytest.raises(InferenceError, match="CPU session run failed"):
            runner.run(np.zeros((3, N_FEATURES + 1), dtype=np.float32))

    def test_cuda_device_with_cpu_only_session_is_refused(self, onnx_bytes):
        session = _session(onnx_bytes, choose_device("cpu"))
        cuda = dev.Device(kind="cuda", providers=("CUDAExecutionProvider",), reason="test")
        with pytest.raises(InferenceError, match="session runs on"):
            make_runner(session, input_name=INPUT_NAME, output_name=OUTPUT, device=cuda)


class TestFiniteRows:
    def test_numpy_flags_nan_and_inf_rows(self):
        x = _matrix(6)
        x[1, 3] = np.nan
        x[2, 0] = np.inf
        x[4, 15] = -np.inf
        mask = finite_rows(x, np)
        assert mask.dtype == np.bool_
        assert mask.tolist() == [True, False, False, True, False, True]

    def test_cpu_runner_uses_same_semantics(self):
        x = _matrix(4)
        x[0, 0] = np.nan
        runner = CpuRunner(None, input_name="x", output_name="y", device=choose_device("cpu"))
        np.testing.assert_array_equal(runner.finite_rows(x), finite_rows(x, np))

    def test_rejects_non_matrix(self):
        with pytest.raises(InferenceError, match="shape"):
            finite_rows(np.zeros(3), np)


@pytest.mark.gpu
@pytest.mark.skipif(not gpu_available(), reason="needs a CUDA GPU, CuPy and onnxruntime-gpu")
class TestCuda:
    def test_cuda_scores_match_cpu_within_tolerance(self, onnx_bytes):
        x = _matrix(10_000)
        cpu = choose_device("cpu")
        cuda = choose_device("cuda")
        cpu_runner = make_runner(
            _session(onnx_bytes, cpu), input_name=INPUT_NAME, output_name=OUTPUT, device=cpu
        )
        cuda_runner = make_runner(
            _session(onnx_bytes, cuda), input_name=INPUT_NAME, output_name=OUTPUT, device=cuda
        )
        assert isinstance(cuda_runner, dev.CudaRunner)
        got, want = cuda_runner.run(x), cpu_runner.run(x)
        assert isinstance(got, np.ndarray)
        assert got.shape == want.shape == (10_000, 2)
        assert float(np.max(np.abs(got - want))) <= SCORE_TOLERANCE

    def test_every_mlp_node_runs_on_cuda_and_scores_match_cpu(self):
        # With CPU fallback disabled, ONNX Runtime refuses to build the session if
        # any node would run on the CPU: the scores below really came from CUDA.
        data = train_mlp(n_features=N_FEATURES, n_samples=2_000, seed=3).onnx_bytes
        cuda = choose_device("cuda")
        options = ort.SessionOptions()
        options.add_session_config_entry("session.disable_cpu_ep_fallback", "1")
        # Only the CUDA provider: naming the CPU one too conflicts with disabling fallback.
        cuda_only = [(p, o) for p, o in zip(cuda.providers, cuda.provider_options(), strict=True)]
        cuda_only = [(p, o) for p, o in cuda_only if p == "CUDAExecutionProvider"]
        session = ort.InferenceSession(
            data,
            options,
            providers=[p for p, _ in cuda_only],
            provider_options=[o for _, o in cuda_only],
        )
        cpu = choose_device("cpu")
        cpu_runner = make_runner(
            _session(data, cpu), input_name=INPUT_NAME, output_name=OUTPUT, device=cpu
        )
        cuda_runner = make_runner(session, input_name=INPUT_NAME, output_name=OUTPUT, device=cuda)
        x = _matrix(10_000)
        got, want = cuda_runner.run(x), cpu_runner.run(x)
        assert got.shape == want.shape == (10_000, 2)
        assert float(np.max(np.abs(got - want))) <= SCORE_TOLERANCE

    def test_finite_rows_cupy_equals_numpy(self):
        import cupy

        x = _matrix(1_000)
        x[::7, 5] = np.nan
        x[::11, 2] = np.inf
        got = finite_rows(cupy.asarray(x), cupy)
        assert isinstance(got, np.ndarray)
        np.testing.assert_array_equal(got, finite_rows(x, np))
