"""Faust's ``noack_take``, bounded by bytes as well as by messages.

Faust hands an agent batches of at most ``max_`` messages. One message may be one
record or a frame of thousands of rows, so a message count does not bound memory:
the lineage role, behind on a topic of frames, held thousands of 150 kB frames in
one take, and its resident set grew past 2 GiB (bench/soak.py). This take is
Faust's own (faust/streams.py, ``Stream.noack_take``, faust-streaming 0.11), with
one change: the buffer also counts as full once its messages hold ``max_bytes``.
Every other property is kept: events are not acked (the caller acks once they are
stored), a batch never exceeds its bounds by more than the one message that
crossed them, and a batch is handed over ``within`` seconds after the take waits.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import faust
from mode.utils.futures import notify


def message_bytes(event: Any) -> int:
    return len(event.message.value or b"")


async def take_bounded(
    stream: faust.StreamT,
    max_messages: int,
    max_bytes: int,
    within: float,
    *,
    size_of: Callable[[Any], int] = message_bytes,
) -> AsyncIterator[list[Any]]:
    """Lists of events, each at most ``max_messages`` long and about ``max_bytes``."""
    buffer: list[Any] = []
    buffered_bytes = 0
    buffer_full = asyncio.Event()
    buffer_consumed = asyncio.Event()
    buffer_consuming: asyncio.Future | None = None
    channel_it = aiter(stream.channel)
    enable_acks = stream.enable_acks

    async def add_to_buffer(value: Any) -> Any:
        nonlocal buffer_consuming, buffered_bytes
        try:
            # While the caller holds a batch, new events wait: none joins a batch
            # already handed over.
            if buffer_consuming is not None:
                try:
                    await buffer_consuming
                finally:
                    buffer_consuming = None
            event = stream.current_event
            if event is None:
                raise RuntimeError("take buffer found current_event is None")
            buffer.append(event)
            buffered_bytes += size_of(event)
            if len(buffer) >= max_messages or buffered_bytes >= max_bytes:
                buffer_full.set()
                buffer_consumed.clear()
                await stream.wait(buffer_consumed)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            stream.log.exception("Error adding to take buffer: %r", exc)
            await stream.crash(exc)
        return value

    stream.enable_acks = False  # the caller acks once the batch is stored
    stream.add_processor(add_to_buffer)
    stream._enable_passive(channel_it)  # Faust's take drains the stream this way too
    try:
        while not stream.should_stop:
            await stream.wait_for_stopped(buffer_full, timeout=within)
            if buffer:
                buffer_consuming = asyncio.get_running_loop().create_future()
                try:
                    yield list(buffer)
                finally:
                    buffer.clear()
                    buffered_bytes = 0
                    notify(buffer_consuming)
                    buffer_full.clear()
                    buffer_consumed.set()
    finally:
        stream.enable_acks = enable_acks
        stream._processors.remove(add_to_buffer)
