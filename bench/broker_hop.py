"""The latency floor the broker sets: one message from a producer to a consumer.

Produce-to-prediction crosses the broker twice (features in, predictions
out), so two of these hops bound it from below. The producer is configured
like driftline's (``driftline.streams.kafka.clients.producer_config``, 5 ms linger) and the
consumer like the latency benchmark's reader (5 ms fetch wait), on a topic of
its own with one partition.

Run alone, it also prints the hop per stretch of the run: on the embedded
Tansu every fetch lists all of a partition's stored batches, so the hop grows
as the topic does (see README, "Known facts about the embedded broker").

Usage: python -m bench.broker_hop [SECONDS]   (default 40; starts its own Tansu)
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

from bench.arguments import Count, read_counts
from bench.procstat import resident_mib
from driftline.core.settings import load_settings
from driftline.streams.embedded.tansu import TansuBroker
from driftline.streams.kafka.clients import make_producer

PAYLOAD = b"x" * 200  # about a FeatureRecord of 16 features


async def _receive(
    bootstrap: str, topic: str, expected: int, out: list[tuple[float, float]]
) -> None:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, fetch_max_wait_ms=5)
    await consumer.start()
    try:
        partition = TopicPartition(topic, 0)
        consumer.assign([partition])
        await consumer.seek_to_end(partition)
        deadline = time.monotonic() + 120 + expected / 1_000
        while len(out) < expected and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=100)
            now = time.time() * 1000
            for records in batches.values():
                out += [(record.timestamp, now - record.timestamp) for record in records]
    finally:
        await consumer.stop()


def hop_latencies(
    bootstrap: str, *, rate: float = 2_000, seconds: float = 15
) -> list[tuple[float, float]]:
    """(seconds since the first send, ms from produce() to receipt) per message."""
    topic = f"hop-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result()
    expected = int(rate * seconds)
    received: list[tuple[float, float]] = []
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
    if not received:
        raise RuntimeError(f"none of {expected} messages came back from topic {topic}")
    first = min(sent_at for sent_at, _ in received)
    return [((sent_at - first) / 1000, ms) for sent_at, ms in received]


def quantiles(latencies: list[float]) -> tuple[float, float]:
    """p50 and p99 of at least 100 values."""
    if len(latencies) < 100:
        raise ValueError(f"need at least 100 latencies for a p99, got {len(latencies)}")
    cuts = statistics.quantiles(latencies, n=100)
    return cuts[49], cuts[98]


def by_stretch(
    hops: list[tuple[float, float]], stretch_s: float
) -> list[tuple[float, float, float, int]]:
    """(start s, p50 ms, p99 ms, count) for each ``stretch_s`` of the run with 100+ messages."""
    groups: dict[int, list[float]] = {}
    for at, ms in hops:
        groups.setdefault(int(at // stretch_s), []).append(ms)
    return [
        (index * stretch_s, *quantiles(values), len(values))
        for index, values in sorted(groups.items())
        if len(values) >= 100
    ]


def broker_hop(
    bootstrap: str, *, rate: float = 2_000, seconds: float = 15, warmup_s: float = 2
) -> tuple[float, float, int]:
    """p50 and p99 ms from produce() to receipt after the warm-up, and how many were measured."""
    hops = hop_latencies(bootstrap, rate=rate, seconds=seconds + warmup_s)
    steady = [ms for at, ms in hops if at >= warmup_s]
    return (*quantiles(steady), len(steady))


def main(argv: list[str] | None = None) -> None:
    seconds = read_counts("bench.broker_hop", __doc__, argv,
                          Count("seconds", 40, "seconds of hops", minimum=5, kind=float),
                          ).seconds  # fmt: skip
    log_file = Path(tempfile.mkdtemp(prefix="driftline-hop-")) / "tansu.log"
    with TansuBroker(log_file=log_file) as broker:
        hops = hop_latencies(broker.bootstrap, seconds=seconds)
        resident = resident_mib(broker.proc.pid)
    print(f"one broker hop at 2k messages/s on one partition, {len(hops):,} messages:")
    for start, p50, p99, count in by_stretch(hops, 5.0):
        stretch = f"{start:.0f}-{start + 5:.0f} s"
        print(f"  {stretch:>9}: p50 {p50:5.1f} ms  p99 {p99:5.1f} ms  ({count:,})")
    print(f"Tansu's resident memory at the end: {resident:,.0f} MiB (it never deletes a batch)")


if __name__ == "__main__":
    main()
