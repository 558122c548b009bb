"""Kafka client construction: one place turns settings into client configuration."""

from __future__ import annotations

from typing import Any

import faust
from confluent_kafka import Producer

from driftline.core.settings import KafkaSettings, Settings


def producer_config(settings: Settings, bootstrap: str, **overrides: Any) -> dict[str, Any]:
    config = settings.kafka.librdkafka_config(bootstrap)
    config.update(
        {
            # acks=all + idempotence: a retried send never duplicates or reorders.
            "enable.idempotence": True,
            "linger.ms": 5,
            "queue.buffering.max.messages": 1_000_000,
            "queue.buffering.max.kbytes": 1_048_576,
            # An idle connection closed by the broker is routine, not worth a log line.
            "log.connection.close": False,
            # One limit for every driftline producer, so outputs are sized against it.
            "message.max.bytes": settings.kafka.message_max_bytes,
        }
    )
    config.update(overrides)
    return config


def make_producer(settings: Settings, bootstrap: str, **overrides: Any) -> Producer:
    return Producer(producer_config(settings, bootstrap, **overrides))


def worker_output_config(settings: Settings, bootstrap: str) -> dict[str, Any]:
    """The worker's producer (predictions, dead letters, drift, lifecycle).

    A scored batch is produced in one burst, so a linger of a millisecond gathers it into
    one request per partition. At 0, librdkafka sends the first record of the burst alone
    and then a request per few records: at 2,000 single records/s on Apache Kafka that
    kept the worker's librdkafka threads and the broker busy enough to stall both cores
    for 100-300 ms at a time (README, "Peers").
    """
    return producer_config(settings, bootstrap, **{"linger.ms": settings.worker.output_linger_ms})


def faust_credentials(kafka: KafkaSettings) -> faust.types.auth.CredentialsT | None:
    """The same security settings, in the form Faust hands to aiokafka."""
    if kafka.security_protocol == "PLAINTEXT":
        return None
    if kafka.sasl_mechanism is None:
        return faust.SSLCredentials(kafka.ssl_context())
    return faust.SASLCredentials(
        username=kafka.sasl_username,
        password=kafka.sasl_password.get_secret_value(),
        mechanism=kafka.sasl_mechanism,
        ssl_context=kafka.ssl_context() if kafka.uses_tls else None,
    )
