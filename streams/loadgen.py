"""Seeded synthetic feature records at a steady rate: `driftline produce`."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator

import numpy as np

from inference import SyntheticFeatures
from streams.producer import FeatureProducer

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
