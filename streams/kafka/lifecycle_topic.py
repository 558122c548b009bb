"""Publishing lifecycle events and rebuilding the registry from the lifecycle topic."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable

from confluent_kafka import Consumer, TopicPartition

from driftline.core.settings import Settings
from driftline.lineage.events import LifecycleEvent
from driftline.lineage.registry.model_registry import ModelRegistry
from driftline.schemas import SchemaCodec
from driftline.streams.exceptions import StreamsError
from driftline.streams.kafka.broker_quirks import detect_quirks
from driftline.streams.kafka.clients import make_producer
from driftline.streams.kafka.offsets import watermarks
from driftline.streams.kafka.tracing import trace_headers


def cloudevent_headers(event: LifecycleEvent, source: str) -> list[tuple[str, bytes]]:
    """CloudEvents binary-mode headers, so generic consumers can route lifecycle events."""
    occurred = dt.datetime.fromtimestamp(event.occurred_at / 1000, tz=dt.UTC)
    return [
        ("ce_specversion", b"1.0"),
        ("ce_id", event.event_id.encode()),
        ("ce_type", f"io.driftline.lifecycle.{event.type}".encode()),
        ("ce_source", source.encode()),
        ("ce_time", occurred.isoformat().replace("+00:00", "Z").encode()),
        ("ce_subject", event.model.encode()),
        ("content-type", b"application/avro"),
    ]


def publish_lifecycle(
    settings: Settings,
    bootstrap: str,
    codec: SchemaCodec,
    topic: str,
    event: LifecycleEvent,
    *,
    source: str = "driftline/cli",
) -> None:
    """Publish one event keyed by model name (ordered per model) and wait for the ack."""
    producer = make_producer(settings, bootstrap)
    errors: list = []
    producer.produce(
        topic,
        codec.encode("LifecycleEvent", event.to_avro()),
        key=event.model.encode(),
        headers=cloudevent_headers(event, source) + trace_headers(),
        on_delivery=lambda err, _msg: errors.append(err) if err else None,
    )
    remaining = producer.flush(30)
    if remaining or errors:
        raise StreamsError(
            f"lifecycle event {event.event_id} was not acknowledged by "
            f"{bootstrap}: {errors or 'timed out'}"
        )


def read_lifecycle(
    settings: Settings, bootstrap: str, codec: SchemaCodec, topic: str, *, timeout_s: float = 15.0
) -> list[LifecycleEvent]:
    """Every event on the lifecycle topic, read to its current end, in per-model order."""
    consumer = Consumer(
        settings.kafka.librdkafka_config(bootstrap)
        | {
            "group.id": "driftline-cli",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    events: list[LifecycleEvent] = []
    try:
        partitions = []
        for p in range(settings.kafka.partitions):
            low, high = watermarks(consumer, topic, p, timeout_s=timeout_s)
            if high > low:
                partitions.append((TopicPartition(topic, p, low), high))
        if not partitions:
            return events
        consumer.assign([tp for tp, _ in partitions])
        ends = {tp.partition: high for tp, high in partitions}
        deadline = time.monotonic() + timeout_s
        # A model's events share a partition (keyed by name), so offset order is its order.
        # On Tansu, past the end offsets and then one empty poll: it under-reports end
        # offsets after multi-record batches (streams/kafka/broker_quirks.py).
        past_ends = detect_quirks(settings.kafka.librdkafka_config(bootstrap))
        past_ends = past_ends.end_offsets_count_batches
        while True:
            if time.monotonic() > deadline:
                raise StreamsError(
                    f"could not read {topic} to its end in {timeout_s:.0f}s "
                    f"(partitions left: {sorted(ends)})"
                )
            if not ends and not past_ends:
                break
            messages = consumer.consume(1000, timeout=0.5)
            if not messages and not ends:
                break
            for message in messages:
                if message.error():
                    continue
                events.append(
                    LifecycleEvent.from_avro(codec.decode_as("LifecycleEvent", message.value()))
                )
                if message.offset() + 1 >= ends.get(message.partition(), 0):
                    ends.pop(message.partition(), None)
    finally:
        consumer.close()
    return events


def load_registry(
    settings: Settings, bootstrap: str, codec: SchemaCodec, topic: str, *, timeout_s: float = 15.0
) -> ModelRegistry:
    """Project the whole lifecycle topic, read to its current end, into a registry."""
    return ModelRegistry.from_events(
        read_lifecycle(settings, bootstrap, codec, topic, timeout_s=timeout_s)
    )


class LifecycleWatcher:
    """Waits for the lifecycle event that answers a command (matched by command_id).

    Positioned at the topic's end *before* the command is sent, so the answer
    cannot be missed; an under-reported end offset only means re-reading a few.
    """

    def __init__(self, settings: Settings, bootstrap: str, topic: str) -> None:
        self._consumer = Consumer(
            settings.kafka.librdkafka_config(bootstrap)
            | {"group.id": "driftline-cli", "enable.auto.commit": False}
        )
        self._topic = topic
        partitions = []
        for p in range(settings.kafka.partitions):
            _, high = watermarks(self._consumer, topic, p)
            partitions.append(TopicPartition(topic, p, max(high, 0)))
        self._consumer.assign(partitions)

    def wait_until(
        self, codec: SchemaCodec, matches: Callable[[LifecycleEvent], bool], timeout_s: float
    ) -> LifecycleEvent | None:
        """The first event from the start position on that ``matches``; None on timeout."""
        deadline = time.monotonic() + timeout_s
        try:
            while time.monotonic() < deadline:
                for message in self._consumer.consume(100, timeout=0.2):
                    if message.error():
                        continue
                    record = codec.decode_as("LifecycleEvent", message.value())
                    event = LifecycleEvent.from_avro(record)
                    if matches(event):
                        return event
        finally:
            self._consumer.close()
        return None

    def wait_for(self, codec: SchemaCodec, command_id: str, timeout_s: float) -> LifecycleEvent:
        found = self.wait_until(
            codec, lambda event: event.evidence.get("command_id") == command_id, timeout_s
        )
        if found is not None:
            return found
        raise StreamsError(
            f"no answer to command {command_id} in {timeout_s:.0f}s: is a worker with the "
            "registry role running (`driftline up`, or DRIFTLINE_WORKER_ROLES includes registry)?"
        )
