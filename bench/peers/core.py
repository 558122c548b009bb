"""Decode, score and encode for the peer paths of ``bench.bench_peers``: one implementation.

Every peer (the hand-written confluent-kafka loop, Quix Streams, Bytewax) calls this, so
they differ only in how they move messages. It needs numpy, fastavro, onnxruntime and
the repository's ``schemas`` package (the repo root on ``PYTHONPATH``, mapped to
``driftline.schemas`` below when driftline is not installed), so it runs in the peer
venvs too, which have no scikit-learn and no ``inference`` package.

The Prediction is the one driftline's worker publishes (``driftline.inference.scoring``): the same
fields, the same prediction id (uuid5 of record id, model and ``served``), the
probability of class 1 as ``score``, Avro in the Confluent wire format via
``driftline.schemas.default_codec()``. The ONNX Runtime session has driftline's options (one
intra-op thread, sequential, no spinning).
"""

from __future__ import annotations

import hashlib
import os
import time
import uuid
from collections.abc import Sequence

import numpy as np
import onnxruntime as ort

try:
    from driftline.schemas import default_codec
except ModuleNotFoundError:
    # A peer venv has the repository on PYTHONPATH but driftline not installed, so only the
    # root's driftline/ shim is found. pyproject.toml maps each top-level folder to
    # driftline.<folder>; the same mapping, for this process, is the root on its path.
    import pathlib

    import driftline

    driftline.__path__.append(str(pathlib.Path(__file__).resolve().parents[2]))
    from driftline.schemas import default_codec

# driftline.inference.scoring.PREDICTION_NAMESPACE, copied so the peer venvs need no `inference`.
PREDICTION_NAMESPACE = uuid.UUID("4c7b1a7b-aaee-5228-9774-b05723eb524c")
_NAMESPACE_BYTES = PREDICTION_NAMESPACE.bytes
_VARIANT = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}


def prediction_id(record_id: str, suffix: bytes) -> str:
    """``str(uuid.uuid5(PREDICTION_NAMESPACE, record_id + suffix))``, as the worker computes it."""
    h = hashlib.sha1(_NAMESPACE_BYTES + record_id.encode() + suffix).hexdigest()
    return f"{h[:8]}-{h[8:12]}-5{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:32]}"


def session_options() -> ort.SessionOptions:
    """driftline's session options (``driftline.inference.model._session_options``, one thread)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


class Scorer:
    """FeatureRecord payloads in, Prediction payloads out, one ``session.run`` per call."""

    def __init__(self, model_path: str, *, model: str = "bench", version: int = 1) -> None:
        self.codec = default_codec()
        self.session = ort.InferenceSession(
            model_path, session_options(), providers=["CPUExecutionProvider"]
        )
        self.input = self.session.get_inputs()[0].name
        outputs = [o.name for o in self.session.get_outputs()]
        self.output = "probabilities" if "probabilities" in outputs else outputs[-1]
        self.model, self.version = model, version
        self.suffix = f"|{model}|served".encode()

    def decode(self, values: Sequence[bytes]) -> list[dict]:
        decode = self.codec.decode
        records = []
        for value in values:
            name, record = decode(value)
            if name != "FeatureRecord":
                raise ValueError(f"expected FeatureRecord payloads, got {name}")
            records.append(record)
        return records

    def score(self, records: Sequence[dict]) -> list[bytes]:
        """Encoded Predictions for ``records``, in order."""
        if not records:
            return []
        matrix = np.asarray([r["features"] for r in records], dtype=np.float32)
        started = time.perf_counter()
        scores = np.asarray(self.session.run([self.output], {self.input: matrix})[0], np.float64)
        model_ms = (time.perf_counter() - started) * 1000.0
        scored_at = time.time_ns() // 1_000_000
        score = scores[:, 1] if scores.ndim == 2 and scores.shape[1] == 2 else scores[:, 0]
        suffix, name, version = self.suffix, self.model, self.version
        predictions = [
            {
                "prediction_id": prediction_id(record["record_id"], suffix),
                "record_id": record["record_id"],
                "entity_id": record["entity_id"],
                "model": name,
                "version": version,
                "arm": "champion",
                "experiment_id": None,
                "score": s,
                "scores": row,
                "event_time": record["event_time"],
                "scored_at": scored_at,
                "latency_ms": float(scored_at - record["event_time"]),
                "model_latency_ms": model_ms,
                "feature_service": None,
            }
            for record, s, row in zip(records, score.tolist(), scores.tolist(), strict=True)
        ]
        return self.codec.encode_many("Prediction", predictions)

    def score_values(self, values: Sequence[bytes]) -> list[bytes]:
        return self.score(self.decode(values))


def env(name: str) -> str:
    """A setting the bench hands every peer script (PEER_BOOTSTRAP, PEER_INPUT, ...)."""
    value = os.environ.get(name)
    if not value:
        raise SystemExit(f"{name} is not set: peer scripts are started by bench.bench_peers")
    return value


# librdkafka settings every peer gets where its library takes them, matching the driftline
# worker's: a 5 ms producer linger (driftline.streams.kafka.clients.producer_config) and a
# 20 ms fetch wait (DRIFTLINE_WORKER_FETCH_MAX_WAIT_MS's default).
PRODUCER_EXTRA = {"linger.ms": 5, "enable.idempotence": True}
CONSUMER_EXTRA = {"fetch.wait.max.ms": 20}
