"""Waiting until everything a batch produced is acknowledged by the brokers.

Offsets of a consumed batch are acknowledged only after this returns, so a
crash in between re-delivers the batch instead of losing its output.
"""

from __future__ import annotations

import asyncio
import logging

from confluent_kafka import KafkaError, Message, Producer

log = logging.getLogger(__name__)


class DeliveryTracker:
    """Collects failed deliveries and re-sends them until the queue drains cleanly."""

    def __init__(self, producer: Producer) -> None:
        self.producer = producer
        self._failed: list[Message] = []

    def on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self._failed.append(msg)

    async def drain(self, *, attempt_timeout_s: float = 10.0) -> None:
        loop = asyncio.get_running_loop()
        backoff = 0.2
        while True:
            remaining = await loop.run_in_executor(None, self.producer.flush, attempt_timeout_s)
            if remaining == 0 and not self._failed:
                return
            failed, self._failed = self._failed, []
            if failed:
                log.warning(
                    "re-sending %d messages whose delivery failed: %s",
                    len(failed),
                    failed[0].error(),
                )
                for msg in failed:
                    self.producer.produce(
                        msg.topic(),
                        msg.value(),
                        key=msg.key(),
                        headers=msg.headers(),
                        on_delivery=self.on_delivery,
                    )
            else:
                log.warning(
                    "%d messages still in flight after %.0fs; waiting", remaining, attempt_timeout_s
                )
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)
