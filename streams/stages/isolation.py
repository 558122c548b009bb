"""One bad message must not take its batch down with it.

Every agent hands its batch to a ``fill(messages, batch)`` function that
publishes outputs and dead letters into ``batch``. Known bad input is
dead-lettered inside ``fill``. Anything else it raises (a bug that a message
found, a value no check foresaw) would otherwise escape the agent: Faust
restarts the agent, the rest of the batch is never processed, and the
consumer may commit past it. :func:`isolated` catches that, redoes the batch
one message at a time, and dead-letters each message that still fails as
``processing_error`` with the exception, so the others are processed and
every offset is accounted for.

Redoing a message whose outputs were already produced is safe: outputs carry
stable ids and every sink deduplicates on them.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence

from driftline.streams.kafka.delivery import BatchDelivery
from driftline.streams.stages.deadletter import DeadLetterPublisher, InboundMessage

log = logging.getLogger(__name__)

PROCESSING_ERROR = "processing_error"

Fill = Callable[[Sequence[InboundMessage], BatchDelivery], None]
AsyncFill = Callable[[Sequence[InboundMessage], BatchDelivery], Awaitable[None]]


def _detail(what: str, exc: Exception) -> str:
    return (
        f"{what} raised {type(exc).__name__}: {exc}; this message was set aside so the "
        "rest of its batch could go on (please report it: it is a driftline bug or an input "
        "no check foresaw)"
    )


def isolated(fill: Fill, dead_letters: DeadLetterPublisher, what: str) -> Fill:
    """``fill`` that dead-letters the messages it raises on instead of raising."""

    def guarded(messages: Sequence[InboundMessage], batch: BatchDelivery) -> None:
        try:
            fill(messages, batch)
            return
        except Exception:
            log.exception("%s failed on a batch of %d; redoing it one by one", what, len(messages))
        for message in messages:
            _one(fill, message, batch, dead_letters, what)

    return guarded


def _one(fill: Fill, message, batch, dead_letters: DeadLetterPublisher, what: str) -> None:
    try:
        fill([message], batch)
    except Exception as exc:
        log.exception(
            "%s failed on %s[%d]@%d", what, message.topic, message.partition, message.offset
        )
        dead_letters.publish(message, PROCESSING_ERROR, _detail(what, exc), batch)


def isolated_async(fill: AsyncFill, dead_letters: DeadLetterPublisher, what: str) -> AsyncFill:
    """:func:`isolated` for coroutine fills (the lineage store's)."""

    async def guarded(messages: Sequence[InboundMessage], batch: BatchDelivery) -> None:
        try:
            await fill(messages, batch)
            return
        except Exception:
            log.exception("%s failed on a batch of %d; redoing it one by one", what, len(messages))
        for message in messages:
            try:
                await fill([message], batch)
            except Exception as exc:
                log.exception(
                    "%s failed on %s[%d]@%d", what, message.topic, message.partition, message.offset
                )
                dead_letters.publish(message, PROCESSING_ERROR, _detail(what, exc), batch)

    return guarded
