"""Turning a message driftline cannot use into a DeadLetter record: never a silent drop."""

from __future__ import annotations

import logging
import time
from typing import Protocol

from driftline.schemas import SchemaCodec
from driftline.streams.kafka.delivery import BatchDelivery, DeliveryTracker
from driftline.streams.kafka.limits import DEFAULT_LIMIT, TOO_LARGE, MessageLimit
from driftline.streams.stats import WorkerStats

log = logging.getLogger(__name__)


class InboundMessage(Protocol):
    """What the pipelines need of a consumed Kafka message (Faust's Message has these)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: object


# A dead letter's own fields besides ``raw``, ``key`` and ``detail``, with room for the
# too_large explanation that may be put in front of the detail.
_RECORD_OVERHEAD = 2048
_MAX_DETAIL_CHARS = 4000
# A key is carried twice (as the Kafka key and in the record); longer ones are cut.
_MAX_KEY_BYTES = 16 * 1024


class DeadLetterPublisher:
    """Publishes DeadLetters; one that cannot carry its raw value whole is ``too_large``.

    The raw value is then cut to what fits under the producer's limit, and the
    detail says so, with the original reason and where the whole message is.
    """

    def __init__(
        self,
        *,
        codec: SchemaCodec,
        delivery: DeliveryTracker,
        topic: str,
        stats: WorkerStats,
        limit: MessageLimit = DEFAULT_LIMIT,
    ) -> None:
        self._codec = codec
        self._delivery = delivery
        self._topic = topic
        self._stats = stats
        self._limit = limit

    def publish(
        self, message: InboundMessage, reason: str, detail: str, batch: BatchDelivery
    ) -> None:
        raw = bytes(message.value or b"")
        key = message.key
        if key is not None and len(key) > _MAX_KEY_BYTES:
            detail = f"key of {len(key):,} bytes cut to its first {_MAX_KEY_BYTES:,}; {detail}"
            key = bytes(key[:_MAX_KEY_BYTES])
        detail = detail[:_MAX_DETAIL_CHARS]
        used = _RECORD_OVERHEAD + len(detail.encode()) + 2 * len(key or b"")
        room = self._limit.max_value_bytes - used
        if len(raw) > room:
            detail = (
                f"{self._limit.explain(len(raw), 'the message')}; raw holds its first "
                f"{room:,} bytes, the whole message stays at {message.topic}[{message.partition}]"
                f"@{message.offset} until retention removes it; first failure: {reason}: {detail}"
            )
            raw, reason = raw[:room], TOO_LARGE
        record = {
            "source_topic": message.topic,
            "partition": message.partition,
            "offset": message.offset,
            "key": key,
            "reason": reason,
            "detail": detail,
            "raw": raw,
            "failed_at": int(time.time() * 1000),
        }
        self._delivery.produce(
            batch, self._topic, self._codec.encode("DeadLetter", record), key=key
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
