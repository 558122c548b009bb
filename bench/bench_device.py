"""CPU vs CUDA scoring on the same batches: throughput and the largest score difference.

Run: ``python -m bench.bench_device [ROWS]`` (or ``--drift-only`` for the drift
window banks alone, which need CuPy but not onnxruntime-gpu). Where no GPU exists it prints the
CPU figures and says why CUDA was not measured. Both models of the frames
benchmark are measured: a 16-feature logistic regression and a 100-tree
gradient-boosted classifier (ONNX ``TreeEnsembleClassifier``; ONNX Runtime's
CUDA provider has no kernel for it, so its nodes run on the CPU even in a CUDA
session, and the figure shows what that costs). The logistic model is exported
as ``ai.onnx.ml`` ``LinearClassifier``, which likewise has no CUDA kernel. A
16-256-256 MLP of standard operators is the model whose nodes all run on CUDA.
"""

from __future__ import annotations

import hashlib
import time

import numpy as np

from bench.arguments import Count, checked, parser_for
from driftline.inference.device import SCORE_TOLERANCE, choose_device
from driftline.inference.model import LoadedModel
from driftline.inference.training import train_gbm, train_logistic, train_mlp

N_FEATURES = 16
BATCH = 8_192


def _load(data: bytes, kind: str, threads: int) -> LoadedModel:
    device = choose_device(kind)
    digest = hashlib.sha256(data).hexdigest()
    return LoadedModel.load(
        data,
        name="bench",
        version=1,
        expected_digest=digest,
        device=device,
        intra_op_threads=threads,
    )


def _rows_per_second(model: LoadedModel, batches: list[np.ndarray]) -> tuple[float, np.ndarray]:
    model.predict(batches[0])  # warm-up: first call allocates
    start = time.perf_counter()
    scores = [model.predict(batch).score for batch in batches]
    elapsed = time.perf_counter() - start
    return sum(len(b) for b in batches) / elapsed, np.concatenate(scores)


def _cupy_device() -> bool:
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # not installed, or no driver
        return False


def drift_bank_rates(rows: int = 1_048_576, update_rows: int = 65_536) -> None:
    """Feature-values/s of the KS and PSI window banks, NumPy vs CuPy, on the same matrix."""
    from driftline.drift.grid_bank import GridBank
    from driftline.drift.profile import ReferenceProfile
    from driftline.drift.window_tests import KSBank, PSIBank

    rng = np.random.default_rng(5)
    names = [f"f{j:02d}" for j in range(N_FEATURES)]
    reference = ReferenceProfile.from_matrix(rng.normal(size=(100_000, N_FEATURES)), names)
    matrix = rng.normal(size=(rows, N_FEATURES))
    devices = ["cpu"] + (["cuda"] if _cupy_device() else [])
    banks = {"grid KS+PSI": GridBank, "exact KS": KSBank, "exact PSI": PSIBank}
    for label, bank_type in banks.items():
        line = f"{label:>12}: "
        for device in devices:
            bank = bank_type(reference, window=1000, device=device)
            bank.update(matrix[:update_rows])  # warm-up (CuPy compiles its kernels)
            bank.reset()
            start = time.perf_counter()
            for i in range(0, rows, update_rows):
                bank.update(matrix[i : i + update_rows])
            rate = rows * N_FEATURES / (time.perf_counter() - start)
            line += f"{device} {rate / 1e6:8.1f} M feature-values/s   "
        print(line + f"(16 features, windows of 1000, updates of {update_rows:,} rows)", flush=True)


def main(rows: int = 1_000_000) -> None:
    rng = np.random.default_rng(11)
    matrix = rng.normal(size=(rows, N_FEATURES)).astype(np.float32)
    batches = [matrix[i : i + BATCH] for i in range(0, rows, BATCH)]
    cuda = choose_device("auto")
    print(f"rows {rows:,} in batches of {BATCH:,}; auto device: {cuda.kind} ({cuda.reason})")
    models = {
        "logistic": train_logistic(n_features=N_FEATURES, n_samples=20_000, seed=1).onnx_bytes,
        "gbm-100": train_gbm(n_features=N_FEATURES, n_samples=20_000, seed=1).onnx_bytes,
        "mlp-256x2": train_mlp(n_features=N_FEATURES, n_samples=20_000, seed=1).onnx_bytes,
    }
    for label, data in models.items():
        cpu_rate, cpu_scores = _rows_per_second(_load(data, "cpu", 1), batches)
        line = f"{label:>9}: cpu (1 thread) {cpu_rate / 1e6:8.3f} M rows/s"
        if cuda.kind == "cuda":
            gpu_rate, gpu_scores = _rows_per_second(_load(data, "cuda", 1), batches)
            worst = float(np.max(np.abs(gpu_scores - cpu_scores)))
            verdict = "within" if worst <= SCORE_TOLERANCE else "OUTSIDE"
            line += (
                f" | cuda {gpu_rate / 1e6:8.3f} M rows/s ({gpu_rate / cpu_rate:5.2f}x cpu)"
                f" | max |cuda - cpu| {worst:.2e} ({verdict} tolerance {SCORE_TOLERANCE:g})"
            )
        print(line, flush=True)
    drift_bank_rates()


def cli(argv: list[str] | None = None) -> None:
    counts = [Count("rows", 1_000_000, "rows scored on each device")]
    parser = parser_for("bench.bench_device", __doc__, counts)
    parser.add_argument("--drift-only", action="store_true",
                        help="only the drift window banks (CuPy, not onnxruntime-gpu)")  # fmt: skip
    args = checked(parser, parser.parse_args(argv), counts)
    if args.drift_only:
        drift_bank_rates()
    else:
        main(args.rows)


if __name__ == "__main__":
    cli()
