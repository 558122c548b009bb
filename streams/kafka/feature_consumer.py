"""The scoring hot path's own consumer: librdkafka batches, not Faust events.

Faust turns every Kafka message into an Event with its own Python objects and
callbacks, which costs about 70 µs of CPU per record before any scoring (a
Faust agent that does nothing reads 13-15k records/s on a 2-core machine).
Single records are the common case, so the features topic is read here with
confluent-kafka: one ``poll`` that returns on the first record, then one
non-blocking ``consume`` that drains what librdkafka has already fetched. The
batch goes to the scoring pipeline as it is; offsets are committed per batch.

It is a ``mode.Service`` started and stopped with the Faust worker, beside the
Faust agents that read the low-volume topics. The guarantees stay:

- A batch's offsets are committed only once everything it produced (predictions,
  dead letters, drift summaries, pending outcomes) is acknowledged by the brokers,
  in consumption order (:class:`driftline.streams.kafka.delivery.OrderedAcker`).
- Rebalances are cooperative (incremental). Before a partition is given up, the
  batches already consumed from it are delivered and their offsets committed, so
  its next owner starts exactly after them: nothing lost, nothing scored twice.
  A partition lost without a clean hand-over (this worker missed its session) may
  be re-scored elsewhere, and its predictions collapse on their ids downstream.
- Models are swapped between batches: scoring runs on the event loop, like the
  lifecycle follower that swaps them.

The consumer lives on one thread of its own, where librdkafka blocks in ``poll``
and runs the rebalance callbacks; the event loop is never blocked by it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import mode
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)

from driftline.streams.kafka.delivery import BatchDelivery, DeliveryTracker, OrderedAcker
from driftline.streams.kafka.group_handover import take_over_offsets
from driftline.streams.stats import WorkerStats

log = logging.getLogger(__name__)

# How long one poll waits for a first record: bounds how soon a stop is noticed.
_IDLE_POLL_S = 0.1
# Longest a revoked partition's hand-over waits for its batches' deliveries.
_HANDOVER_TIMEOUT_S = 60.0


class KafkaInbound:
    """A consumed confluent-kafka Message as the pipelines read one (InboundMessage).

    Attributes are read through on demand: scoring reads only ``value`` (and the
    headers of a few records); the rest is wanted only for dead letters.
    """

    __slots__ = ("_message",)

    def __init__(self, message: Message) -> None:
        self._message = message

    @property
    def topic(self) -> str:
        return self._message.topic()

    @property
    def partition(self) -> int:
        return self._message.partition()

    @property
    def offset(self) -> int:
        return self._message.offset()

    @property
    def key(self) -> bytes | None:
        return self._message.key()

    @property
    def value(self) -> bytes | None:
        return self._message.value()

    @property
    def headers(self) -> list[tuple[str, bytes]] | None:
        return self._message.headers()


def next_offsets(messages: Sequence[Message]) -> dict[int, int]:
    """Partition -> the offset to commit after these messages (the last one's + 1)."""
    offsets: dict[int, int] = {}
    for message in messages:
        offsets[message.partition()] = message.offset() + 1
    return offsets


class FeatureConsumer(mode.Service):
    """Reads the features topic in batches and hands them to ``score``.

    ``score(messages, batch)`` must queue every output of the messages on ``batch``
    (the scoring pipeline's ``process``) and never raise for bad input.
    """

    def __init__(
        self,
        *,
        config: dict[str, Any],
        topic: str,
        score: Callable[[Sequence[KafkaInbound], BatchDelivery], object],
        delivery: DeliveryTracker,
        stats: WorkerStats,
        batch_size: int,
        max_in_flight: int,
        ready: asyncio.Event | None = None,
        scoring: bool = True,
        take_over_from: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._config = config
        self._topic = topic
        self._score = score
        self._delivery = delivery
        self._stats = stats
        self._batch_size = batch_size
        self._max_in_flight = max_in_flight
        self._ready = ready
        # False for another topic read this way (outcomes): its time is not scoring time.
        self._scoring = scoring
        # The group that read the topic before this consumer did: where to start from.
        self._take_over_from = take_over_from
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="features-consumer")
        self._consumer: Consumer | None = None
        self._acker: OrderedAcker | None = None
        self._delivered: dict[int, int] = {}  # partition -> next offset whose output is delivered
        self._commit_lock = threading.Lock()  # the loop writes it, the consumer thread reads
        # partition -> offset last sent to be committed; the consumer thread's alone.
        self._committing: dict[int, int] = {}
        self._revoked_in_fetch: set[int] = set()
        self._rewinding: set[int] = set()  # handed over and back mid-fetch: read them again
        self._stopping = False
        self._acking: asyncio.Future | None = None
        self._finished = asyncio.Event()
        self.assignment: set[int] = set()

    # -- the loop -------------------------------------------------------------

    async def on_start(self) -> None:
        self._acker = OrderedAcker(self._delivery, self._commit, self._max_in_flight)

    @mode.Service.task
    async def _consume(self) -> None:
        loop = asyncio.get_running_loop()
        acker = self._acker
        self._acking = acking = asyncio.ensure_future(acker.run())
        try:
            if self._ready is not None:
                await self._ready.wait()  # the registry is caught up: models are known
            if self._stopping:
                return
            self._consumer = await loop.run_in_executor(self._thread, self._subscribe, loop)
            timing = self._stats.timing
            while not self._stopping:
                messages = await loop.run_in_executor(self._thread, self._fetch)
                if not messages:
                    continue
                started = time.perf_counter()
                batch = self._delivery.batch()
                self._score([KafkaInbound(m) for m in messages], batch)
                submitted = time.perf_counter()
                # Waits only while max_in_flight earlier batches await delivery.
                await acker.submit((next_offsets(messages),), batch)
                if self._scoring:
                    timing["score_s"] += submitted - started
                    timing["backpressure_s"] += time.perf_counter() - submitted
        finally:
            self._finished.set()
            if not self._stopping:  # crashed: the worker stops; nothing more is committed
                acking.cancel()

    def _subscribe(self, loop: asyncio.AbstractEventLoop) -> Consumer:
        if self._take_over_from is not None:
            group = self._config["group.id"]
            take_over_offsets(self._config, self._topic, group, self._take_over_from)
        callbacks = {"on_commit": self._on_commit, "stats_cb": self._on_statistics}
        consumer = Consumer(self._config | callbacks, logger=log)
        consumer.subscribe(
            [self._topic],
            on_assign=lambda _consumer, partitions: self._assigned(partitions),
            on_revoke=lambda _consumer, partitions: self._hand_over(loop, partitions),
            on_lost=lambda _consumer, partitions: self._lost(partitions),
        )
        return consumer

    def _on_statistics(self, report: str) -> None:
        """librdkafka's statistics (every ``statistics.interval.ms``): keep each assigned
        partition's consumer lag for /metrics. Runs in the consumer thread, within a poll."""
        try:
            partitions = json.loads(report)["topics"][self._topic]["partitions"]
            lag = {
                (self._topic, int(p)): int(info["consumer_lag"])
                for p, info in partitions.items()
                if p != "-1" and info.get("consumer_lag", -1) >= 0 and int(p) in self.assignment
            }
        except Exception:  # a figure for /metrics must never stop the consumer: keep the last
            log.debug("librdkafka statistics without a usable consumer lag", exc_info=True)
            return
        # Replaced whole (the scraping thread reads a snapshot), keeping the other
        # consumers' topics: a worker may read features and outcomes this way.
        others = {k: v for k, v in self._stats.consumer_lag.items() if k[0] != self._topic}
        self._stats.consumer_lag = others | lag

    def _assigned(self, partitions: list[TopicPartition]) -> None:
        self.assignment |= {tp.partition for tp in partitions}
        log.info("%s partitions assigned: %s", self._topic, sorted(self.assignment))

    def _lost(self, partitions: list[TopicPartition]) -> None:
        # Too late to commit: their next owner re-scores from the last commit.
        lost = {tp.partition for tp in partitions}
        self._revoked_in_fetch |= lost
        self.assignment -= lost
        with self._commit_lock:
            for p in lost:
                self._delivered.pop(p, None)
        for p in lost:
            self._committing.pop(p, None)
        log.warning("%s partitions lost without a hand-over: %s", self._topic, sorted(lost))

    def _fetch(self) -> list[Message]:
        """On the consumer thread: wait for one record, then take what is already fetched."""
        consumer = self._consumer
        self._commit_done()
        if self._rewinding:
            self._rewind()
        self._revoked_in_fetch = set()
        first = consumer.poll(_IDLE_POLL_S)
        if first is None:
            return []
        messages = [first, *consumer.consume(self._batch_size - 1, 0)]
        # A record fetched before its partition was handed over in this same call (the
        # rebalance ran inside consume) is its next owner's: scoring it here would double it.
        # If the partition came back within the call, its records here may be from either
        # side of the hand-over, so all are dropped and it is read again from its committed
        # offset; going on from here would commit past the dropped ones.
        skip = self._revoked_in_fetch | self._rewinding
        good = [m for m in messages if m.error() is None and m.partition() not in skip]
        if len(good) < len(messages):
            dropped = {m.partition() for m in messages if m.partition() in skip}
            self._rewinding = (self._rewinding | dropped) & self.assignment
            for message in messages:
                if message.error() is not None:
                    self._consumer_error(message.error())
        return good

    def _rewind(self) -> None:
        """On the consumer thread: read the partitions given back mid-fetch again from their
        committed offsets. A seek refused (the partition is not fetching yet) is tried again
        at the next fetch; their records are dropped until then."""
        self._rewinding &= self.assignment
        asked = [TopicPartition(self._topic, p) for p in sorted(self._rewinding)]
        try:
            committed = self._consumer.committed(asked, timeout=_HANDOVER_TIMEOUT_S)
        except KafkaException as exc:
            log.warning("%s partitions %s: committed offsets not read (%s); trying again",
                        self._topic, sorted(self._rewinding), exc)  # fmt: skip
            return
        for tp in committed:
            # None committed yet: from the start, as auto.offset.reset=earliest would.
            offset = tp.offset if tp.offset >= 0 else OFFSET_BEGINNING
            try:
                self._consumer.seek(TopicPartition(self._topic, tp.partition, offset))
            except KafkaException as exc:
                log.info("%s partition %d not rewound yet (%s)", self._topic, tp.partition, exc)
                continue
            self._rewinding.discard(tp.partition)
            log.info("%s partition %d given back mid-fetch: read again from %d", self._topic,
                     tp.partition, offset)  # fmt: skip

    @staticmethod
    def _consumer_error(error: KafkaError) -> None:
        if error.fatal():
            raise KafkaException(error)
        # Transient (a broker restarting, a leader moving): librdkafka retries by itself.
        log.warning("features consumer: %s", error)

    # -- offsets ----------------------------------------------------------------

    async def _commit(self, offsets: dict[int, int]) -> None:
        """Called in order, once a batch's output is delivered: the consumer thread
        commits it before its next poll. Only that thread calls the consumer; one
        called from the event loop during a rebalance callback blocks the loop."""
        with self._commit_lock:
            self._delivered.update(offsets)

    def _commit_done(self) -> None:
        """On the consumer thread: commit, without waiting, what was delivered since."""
        with self._commit_lock:
            due = {p: o for p, o in self._delivered.items() if self._committing.get(p) != o}
        if not due:
            return
        self._committing.update(due)
        offsets = [TopicPartition(self._topic, p, o) for p, o in sorted(due.items())]
        try:
            self._consumer.commit(offsets=offsets, asynchronous=True)
        except KafkaException as exc:
            log.info("%s offsets %s not committed now: %s", self._topic, due, exc)
            self._forget_sent(offsets)

    def _on_commit(self, error: KafkaError | None, partitions: list[TopicPartition]) -> None:
        """An asynchronous commit's result (on the consumer thread). One refused in the
        middle of a rebalance (ILLEGAL_GENERATION, REBALANCE_IN_PROGRESS) is sent again
        before the next poll, while the partition is still ours."""
        failed = [tp for tp in partitions if error is not None or tp.error is not None]
        if failed:
            log.info("%s offsets commit refused, trying again: %s %s", self._topic, error, failed)
            self._forget_sent(failed)

    def _forget_sent(self, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            if self._committing.get(tp.partition) == tp.offset:
                del self._committing[tp.partition]

    def _commit_final(self, partitions: set[int]) -> None:
        """On the consumer thread: commit, and wait for, the last delivered offsets of
        partitions about to be given up, whatever earlier commits did."""
        with self._commit_lock:
            final = {p: self._delivered.pop(p) for p in sorted(partitions) if p in self._delivered}
        for p in partitions:
            self._committing.pop(p, None)
        if not final:
            return
        offsets = [TopicPartition(self._topic, p, o) for p, o in final.items()]
        try:
            result = self._consumer.commit(offsets=offsets, asynchronous=False)
            failed = [tp for tp in result or () if tp.error is not None]
        except KafkaException as exc:
            failed = str(exc)
        if failed:
            # Their next owner re-scores from the last commit; the predictions collapse
            # on their ids downstream.
            log.error("%s offsets %s not committed at hand-over: %s", self._topic, final, failed)
        else:
            log.info("%s offsets committed at hand-over: %s", self._topic, final)

    def _hand_over(self, loop: asyncio.AbstractEventLoop, partitions: list[TopicPartition]):
        """On the consumer thread, in the rebalance: finish and commit what was consumed
        from the partitions being given up, before their next owner reads them."""
        revoked = {tp.partition for tp in partitions}
        self._revoked_in_fetch |= revoked
        started = time.monotonic()
        drained = asyncio.run_coroutine_threadsafe(self._acker.join(), loop)
        try:
            drained.result(_HANDOVER_TIMEOUT_S)
        except TimeoutError:
            log.error(
                "%s partitions %s handed over with deliveries still pending after %.0f s; "
                "their next owner re-scores them from the last commit",
                self._topic,
                sorted(revoked),
                _HANDOVER_TIMEOUT_S,
            )
        self._commit_final(revoked)
        self.assignment -= revoked
        log.info(
            "%s partitions %s handed over in %.0f ms",
            self._topic,
            sorted(revoked),
            (time.monotonic() - started) * 1000,
        )

    # -- stopping ---------------------------------------------------------------

    async def on_stop(self) -> None:
        """Finish what was consumed, commit it, and leave the group."""
        self._stopping = True
        loop = asyncio.get_running_loop()
        if self._consumer is None:
            self._thread.shutdown(wait=False)
            return
        await self._finished.wait()
        await self._acker.join()
        self._acking.cancel()
        consumer = self._consumer
        # close() revokes the assignment (a hand-over with nothing left) and leaves the
        # group at once, so the partitions move without waiting for the session timeout.
        await loop.run_in_executor(self._thread, lambda: self._commit_final(self.assignment))
        await loop.run_in_executor(self._thread, consumer.close)
        self._thread.shutdown(wait=True)


def consumer_config(
    base: dict[str, Any],
    *,
    group: str,
    session_timeout_s: float,
    fetch_max_wait_ms: int,
    fetch_max_bytes: int,
) -> dict[str, Any]:
    """librdkafka settings of the features consumer, on top of the security ``base``."""
    return base | {
        "group.id": group,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "partition.assignment.strategy": "cooperative-sticky",
        "session.timeout.ms": int(session_timeout_s * 1000),
        "heartbeat.interval.ms": max(500, int(session_timeout_s * 1000) // 5),
        "fetch.wait.max.ms": fetch_max_wait_ms,
        "max.partition.fetch.bytes": fetch_max_bytes,
        # A message larger than the fetch size is still returned whole (KIP-74).
        "enable.partition.eof": False,
        "log.connection.close": False,
        # Consumer lag per partition for /metrics, from librdkafka's own statistics.
        "statistics.interval.ms": 5000,
    }
