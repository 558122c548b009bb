"""Seeded synthetic feature records at a steady rate: `driftline produce`."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator

import numpy as np

from driftline.inference import SyntheticFeatures
from driftline.streams.kafka.producer import FeatureProducer

_RECORD_NAMESPACE = uuid.UUID("5d3f6a52-7c1e-4d9a-9b0e-2a6f1c8e4b10")


def synthetic_records(
    *, model: str, count: int, entities: int, seed: int, n_features: int, chunk: int = 1000
) -> Iterator[dict]:
    """The same seed gives the same records, ids included (a replay is idempotent)."""
    rng = np.random.default_rng(seed)
    features = SyntheticFeatures(n_features=n_features, seed=seed)
    for start in range(0, count, chunk):
        n = min(chunk, count - start)
        rows = features.rows(n).tolist()
        entity_numbers = rng.integers(0, entities, n).tolist()
        now = int(time.time() * 1000)
        for i in range(n):
            yield {
                "record_id": str(uuid.uuid5(_RECORD_NAMESPACE, f"{seed}:{start + i}")),
                "entity_id": f"entity-{entity_numbers[i]:06d}",
                "model": model,
                "features": rows[i],
                "feature_names": None,
                "event_time": now,
            }


def synthetic_frames(
    *, model: str, count: int, entities: int, seed: int, n_features: int, frame_size: int
) -> Iterator[dict]:
    """``count`` rows in frames of ``frame_size``: frame_id, entity_ids, names and a matrix.

    Same seed, same frames (ids included); event times are stamped when sent.
    """
    rng = np.random.default_rng(seed)
    features = SyntheticFeatures(n_features=n_features, seed=seed)
    for start in range(0, count, frame_size):
        n = min(frame_size, count - start)
        yield {
            "frame_id": str(uuid.uuid5(_RECORD_NAMESPACE, f"{seed}:frame:{start}")),
            "model": model,
            "entity_ids": [f"entity-{e:06d}" for e in rng.integers(0, entities, n).tolist()],
            "feature_names": list(features.feature_names),
            "matrix": features.rows(n),
        }


def produce_frames_at_rate(
    producer: FeatureProducer,
    frames: Iterator[dict],
    *,
    rate: float,
    on_progress: Callable[[int], None] = lambda n: None,
) -> int:
    """Send frames so rows go out at ``rate`` rows/s (0 = flat out); returns rows sent."""
    sent = 0
    started = time.monotonic()
    for frame in frames:
        while rate > 0 and sent >= (time.monotonic() - started) * rate:
            producer.poll()
            time.sleep(0.002)
        n = len(frame["entity_ids"])
        now = int(time.time() * 1000)
        producer.send_frame(
            frame["frame_id"],
            frame["model"],
            frame["entity_ids"],
            [now] * n,
            frame["feature_names"],
            frame["matrix"],
        )
        sent += n
        producer.poll()
        on_progress(n)
    producer.flush()
    return sent


def produce_at_rate(
    producer: FeatureProducer,
    records: Iterator[dict],
    *,
    rate: float,
    on_progress: Callable[[int], None] = lambda n: None,
) -> int:
    """Send records at `rate` per second (0 = as fast as possible); returns the count sent."""
    sent = 0
    started = time.monotonic()
    tick = 0.01
    for record in records:
        # Ahead of schedule: wait a tick, so records go out in small bursts at the rate.
        while rate > 0 and sent >= (time.monotonic() - started) * rate:
            producer.poll()
            time.sleep(tick)
        record["event_time"] = int(time.time() * 1000)
        producer.send(record)
        sent += 1
        if sent % 500 == 0:
            producer.poll()
            on_progress(500)
    on_progress(sent % 500)
    producer.flush()
    return sent
