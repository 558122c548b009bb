"""What the worker's producer linger costs: CPU and requests against delivery latency.

The worker produces each scored batch in one burst (``ScoringPipeline._publish``). At
2,000 single records/s a batch is a handful of records every few milliseconds. This
replays that pattern with the worker's own producer configuration
(``driftline.streams.kafka.clients.worker_output_config``) at several ``linger.ms``
values, on one broker started here, and prints for each: the process CPU per 1,000
records (librdkafka's threads included), produce requests per burst, and the p50/p99
from ``produce()`` to the delivery report. It then does the same for full-speed bursts
of 1,000 records (the throughput case).

Why it exists: at ``linger.ms`` 0 librdkafka's broker thread wakes for every record it
could send at once, and in the worker that kept both cores busy and stalled single
records for 100-300 ms at a time (README, "Peers").

Usage: python -m bench.bench_output_linger [--broker kafka|tansu] [--seconds S]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from driftline.core.settings import Settings
from driftline.streams.embedded.kafka_local import KafkaBroker
from driftline.streams.embedded.tansu import TansuBroker
from driftline.streams.kafka.clients import worker_output_config

LINGERS_MS = (0.0, 0.5, 1.0, 5.0)
PAYLOAD = b"x" * 180  # about an Avro Prediction
PARTITIONS = 2


def with_linger(settings: Settings, linger_ms: float) -> Settings:
    worker = settings.worker.model_copy(update={"output_linger_ms": linger_ms})
    return settings.model_copy(update={"worker": worker})


def produce_requests(report: str) -> int:
    """Produce requests sent so far, from one librdkafka statistics report."""
    return sum(broker["req"].get("Produce", 0) for broker in json.loads(report)["brokers"].values())


def run(bootstrap: str, topic: str, linger_ms: float, *, burst: int, pause_s: float,
        seconds: float) -> dict:  # fmt: skip
    """Bursts of ``burst`` records every ``pause_s`` for ``seconds``: CPU, requests, latency."""
    reports: list[str] = []
    config = worker_output_config(with_linger(Settings(), linger_ms), bootstrap)
    producer = Producer(config | {"statistics.interval.ms": 50, "stats_cb": reports.append})
    producer.produce(topic, b"warm-up")  # the idempotent producer's id, the metadata
    producer.flush(30)
    time.sleep(0.2)
    producer.poll(0)
    requests_before = produce_requests(reports[-1])
    latencies: list[float] = []

    def on_delivery(sent: float):
        def delivered(err, _msg) -> None:
            if err is None:
                latencies.append((time.perf_counter() - sent) * 1000)

        return delivered

    cpu_before, started, bursts, records = time.process_time(), time.monotonic(), 0, 0
    while time.monotonic() - started < seconds:
        for i in range(burst):
            key = str(i).encode()
            producer.produce(topic, PAYLOAD, key=key, on_delivery=on_delivery(time.perf_counter()))
        producer.poll(0)
        bursts, records = bursts + 1, records + burst
        if pause_s:
            time.sleep(pause_s)
            producer.poll(0)
    producer.flush(30)
    cpu_s = time.process_time() - cpu_before
    time.sleep(0.2)
    producer.poll(0)
    requests = produce_requests(reports[-1]) - requests_before
    latencies.sort()
    return {
        "cpu_ms_per_1000": cpu_s * 1000 / records * 1000,
        "requests_per_burst": requests / bursts,
        "p50": statistics.median(latencies),
        "p99": latencies[int(len(latencies) * 0.99)],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--broker", choices=("kafka", "tansu"), default="kafka")
    parser.add_argument("--seconds", type=float, default=5.0, help="per linger and pattern")
    args = parser.parse_args()
    patterns = [
        ("2,000 records/s (10 every 5 ms)", 10, 0.005),
        ("full speed (1,000 a burst)", 1000, 0.0),
    ]
    with ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        broker = KafkaBroker(workdir / "kafka") if args.broker == "kafka" else TansuBroker()
        stack.enter_context(broker)
        admin = AdminClient({"bootstrap.servers": broker.bootstrap})
        topic = "linger-bench"
        admin.create_topics([NewTopic(topic, PARTITIONS, 1)])[topic].result(30)
        print(f"{args.broker}: the worker's producer, {args.seconds:.0f} s per row; "
              f"default linger {Settings().worker.output_linger_ms:g} ms")  # fmt: skip
        for label, burst, pause_s in patterns:
            rows = {linger: run(broker.bootstrap, topic, linger, burst=burst, pause_s=pause_s,
                                seconds=args.seconds) for linger in LINGERS_MS}  # fmt: skip
            baseline = rows[Settings().worker.output_linger_ms]
            print(f"\n{label}")
            print("| linger.ms | CPU ms per 1,000 records | vs default | requests a burst "
                  "| produce-to-ack p50 / p99 ms |")  # fmt: skip
            print("| ---: | ---: | ---: | ---: | ---: |")
            for linger, row in rows.items():
                ratio = row["cpu_ms_per_1000"] / baseline["cpu_ms_per_1000"]
                cpu, requests = row["cpu_ms_per_1000"], row["requests_per_burst"]
                print(f"| {linger:g} | {cpu:.1f} | {ratio:.2f}x | {requests:.1f} | "
                      f"{row['p50']:.1f} / {row['p99']:.1f} |")  # fmt: skip


if __name__ == "__main__":
    main()
