"""Faust's aiokafka transport with a configurable fetch wait, and no subscription when
no agent reads a topic.

Faust hard-codes ``fetch_max_wait_ms=1500`` for its consumer. A broker that holds
a fetch until that wait expires even when records are ready (Tansu does, under
low traffic) then adds up to 1.5 s to every record's latency. This subclass
changes only that one number, on the consumer Faust has just built.
"""

from __future__ import annotations

import aiokafka
from faust.transport.drivers import aiokafka as faust_aiokafka


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport) -> aiokafka.AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        # Read by the fetcher aiokafka creates in start(), which has not run yet.
        consumer._fetch_max_wait_ms = transport.fetch_max_wait_ms
        return consumer


class _Consumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def subscribe(self, topics) -> None:
        # A scoring-only worker with drift off has no Faust agent: its one topic is read
        # by the features consumer. aiokafka refuses an empty subscription outright, and
        # without one no rebalance ever ends Faust's table recovery, which the app's tasks
        # (the lifecycle follower among them) wait for: there is nothing to recover.
        if topics:
            await super().subscribe(topics)
        else:
            self.app.tables.recovery.completed.set()


class Transport(faust_aiokafka.Transport):
    Consumer = _Consumer
    fetch_max_wait_ms = 1500


def with_fetch_wait(fetch_max_wait_ms: int) -> type[Transport]:
    return type("Transport", (Transport,), {"fetch_max_wait_ms": fetch_max_wait_ms})
