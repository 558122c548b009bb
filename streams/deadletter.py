"""Turning a message driftline cannot use into a DeadLetter record: never a silent drop."""

from __future__ import annotations

import logging
import time
from typing import Protocol

from schemas import SchemaCodec
from streams.delivery import BatchDelivery, DeliveryTracker
from streams.stats import WorkerStats

log = logging.getLogger(__name__)


class InboundMessage(Protocol):
    """What the pipelines need of a consumed Kafka message (Faust's Message has these)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: object


class DeadLetterPublisher:
    def __init__(
        self, *, codec: SchemaCodec, delivery: DeliveryTracker, topic: str, stats: WorkerStats
    ) -> None:
        self._codec = codec
        self._delivery = delivery
        self._topic = topic
        self._stats = stats

    def publish(
        self, message: InboundMessage, reason: str, detail: str, batch: BatchDelivery
    ) -> None:
        record = {
            "source_topic": message.topic,
            "partition": message.partition,
            "offset": message.offset,
            "key": message.key,
            "reason": reason,
            "detail": detail,
            "raw": bytes(message.value or b""),
            "failed_at": int(time.time() * 1000),
        }
        self._delivery.produce(
            batch, self._topic, self._codec.encode("DeadLetter", record), key=message.key
        )
        self._stats.dead_letters[reason] += 1
        log.debug(
            "dead-lettered %s[%d]@%d: %s: %s",
            message.topic,
            message.partition,
            message.offset,
            reason,
            detail,
        )
