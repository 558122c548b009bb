"""The latency floor the broker sets: one message from a producer to a consumer.

Produce-to-prediction crosses the broker twice (features in, predictions
out), so two of these hops bound it from below. The producer is configured
like driftline's (``streams.kafka.producer_config``, 5 ms linger) and the
consumer like the latency benchmark's reader (5 ms fetch wait), on a topic of
its own with one partition.

Usage: python -m bench.broker_hop   (starts its own Tansu broker)
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import threading
import time
import uuid
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from driftline.settings import load_settings
from streams.embedded import TansuBroker
from streams.kafka import make_producer

PAYLOAD = b"x" * 200  # about a FeatureRecord of 16 features


async def _receive(bootstrap: str, topic: str, expected: int, out: list[float]) -> None:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, fetch_max_wait_ms=5)
    await consumer.start()
    try:
        partition = TopicPartition(topic, 0)
        consumer.assign([partition])
        await consumer.seek_to_end(partition)
        deadline = time.monotonic() + 120
        while len(out) < expected and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=100)
            now = time.time() * 1000
            for records in batches.values():
                out += [now - record.timestamp for record in records]
    finally:
        await consumer.stop()


def broker_hop(
    bootstrap: str, *, rate: float = 2_000, seconds: float = 15, warmup_s: float = 2
) -> tuple[float, float, int]:
    """p50 and p99 ms from produce() to receipt, and how many were measured."""
    topic = f"hop-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result()
    expected = int(rate * (seconds + warmup_s))
    received: list[float] = []
    reader = threading.Thread(
        target=lambda: asyncio.run(_receive(bootstrap, topic, expected, received))
    )
    reader.start()
    time.sleep(1.0)  # the reader is positioned before the first message goes out
    producer = make_producer(load_settings(), bootstrap)
    started, sent = time.monotonic(), 0
    while sent < expected:
        while sent >= (time.monotonic() - started) * rate:
            producer.poll(0)
            time.sleep(0.001)
        producer.produce(topic, PAYLOAD)
        sent += 1
    producer.flush()
    reader.join()
    steady = received[int(rate * warmup_s) :]
    if len(steady) < 100:
        raise RuntimeError(f"only {len(received)} of {expected} messages came back")
    quantiles = statistics.quantiles(steady, n=100)
    return quantiles[49], quantiles[98], len(steady)


def main() -> None:
    with TansuBroker(log_file=Path(tempfile.mkdtemp(prefix="driftline-hop-")) / "tansu.log") as b:
        p50, p99, n = broker_hop(b.bootstrap)
    print(f"one broker hop at 2k messages/s: p50 {p50:.1f} ms, p99 {p99:.1f} ms ({n:,} messages)")


if __name__ == "__main__":
    main()
