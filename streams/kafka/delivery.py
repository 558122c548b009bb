"""Knowing when everything a consumed batch produced is acknowledged by the brokers.

Offsets of a consumed batch are acknowledged only after its output is delivered,
so a crash in between re-delivers the batch instead of losing its output. The
wait is pipelined: batch N's deliveries complete while batch N+1 is scored.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from driftline.streams.exceptions import StreamsError

log = logging.getLogger(__name__)


class BatchDelivery:
    """Outstanding deliveries of one consumed batch; pass ``on_delivery`` to produce()."""

    def __init__(self) -> None:
        self.remaining = 0
        self.failed: list[Message] = []
        self.changed = asyncio.Event()

    def expect(self, n: int = 1) -> None:
        self.remaining += n

    def on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        # Served by producer.poll() on the event loop thread.
        if err is None:
            self.remaining -= 1
            if self.remaining == 0:
                self.changed.set()
        else:
            self.failed.append(msg)
            self.changed.set()


class DeliveryTracker:
    def __init__(self, producer: Producer) -> None:
        self.producer = producer

    def batch(self) -> BatchDelivery:
        return BatchDelivery()

    def produce(
        self,
        batch: BatchDelivery,
        topic: str,
        value: bytes,
        *,
        key: bytes | None = None,
        headers: list | None = None,
        partition: int | None = None,
    ) -> None:
        # An explicit partition only when asked: librdkafka's partitioner otherwise.
        where = {} if partition is None else {"partition": partition}
        while True:
            try:
                self.producer.produce(
                    topic, value, key=key, headers=headers, on_delivery=batch.on_delivery, **where
                )
                break
            except BufferError:  # local queue full: serve deliveries, then retry
                self.producer.poll(0.05)
            except KafkaException as exc:
                raise refused(topic, value, key, exc) from exc
        batch.expect()

    async def wait(self, batch: BatchDelivery) -> None:
        """Until every message of the batch is delivered; failed ones are re-sent."""
        backoff = 0.1
        while batch.remaining > 0:
            self.producer.poll(0)
            if batch.failed:
                failed, batch.failed = batch.failed, []
                log.warning(
                    "re-sending %d messages whose delivery failed: %s",
                    len(failed),
                    failed[0].error(),
                )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                for msg in failed:
                    self.producer.produce(
                        msg.topic(),
                        msg.value(),
                        key=msg.key(),
                        headers=msg.headers(),
                        partition=msg.partition(),  # where it was meant to go
                        on_delivery=batch.on_delivery,
                    )
                continue
            batch.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(batch.changed.wait(), timeout=0.005)

    async def serve(self, interval_s: float = 0.005) -> None:
        """Serve delivery callbacks while no batch is waiting (run as a background task)."""
        while True:
            self.producer.poll(0)
            await asyncio.sleep(interval_s)


def refused(topic: str, value: bytes, key: bytes | None, exc: KafkaException) -> StreamsError:
    """librdkafka refused a message outright (too large, unknown topic): say which and why."""
    error = exc.args[0] if exc.args else None
    size = len(value or b"") + len(key or b"")
    hint = ""
    if isinstance(error, KafkaError) and error.code() == KafkaError.MSG_SIZE_TOO_LARGE:
        hint = (
            "; raise DRIFTLINE_KAFKA_MESSAGE_MAX_BYTES (with the broker's message.max.bytes) "
            "or send smaller messages"
        )
    return StreamsError(f"producing {size:,} bytes to {topic} was refused: {error}{hint}")


class OrderedAcker:
    """Acknowledges consumed batches in order, each once its output is delivered.

    At most ``max_in_flight`` batches wait at once, which bounds both memory and
    what a crash re-delivers.
    """

    def __init__(
        self,
        delivery: DeliveryTracker,
        ack: Callable[[object], Awaitable[object]],
        max_in_flight: int = 4,
    ) -> None:
        self._delivery = delivery
        self._ack = ack
        self._queue: asyncio.Queue[tuple[Sequence[object], BatchDelivery]] = asyncio.Queue(
            max_in_flight
        )

    async def submit(self, events: Sequence[object], batch: BatchDelivery) -> None:
        await self._queue.put((events, batch))

    async def run(self) -> None:
        while True:
            events, batch = await self._queue.get()
            await self._delivery.wait(batch)
            for event in events:
                await self._ack(event)
            self._queue.task_done()

    async def join(self) -> None:
        await self._queue.join()
