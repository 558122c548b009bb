"""Batches that are as large as the backlog and no later than they need to be.

Faust's ``take(size, within)`` hands over a batch when it is full or when
``within`` has passed. Under light traffic every record therefore waits for
the window: 50 ms by default. A short window fixes that, but then a backlog is
scored in small batches, and each batch pays the scoring pipeline's fixed
cost (about 15% less throughput at 5 ms, measured).

:func:`gather` asks Faust for micro-batches every ``tick`` and keeps adding
them to one batch while more events are already queued for the agent. It hands
the batch over when it is full, when ``window`` has passed since its first
event, or as soon as the queue is empty. A burst is scored at once, and a
backlog still fills whole batches.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from typing import Any


async def gather(
    stream: Any,
    size: int,
    window_s: float,
    *,
    tick_s: float = 0.002,
    backlog: Callable[[], bool] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> AsyncIterator[list[Any]]:
    """Batches of at most ``size`` events from ``stream.noack_take`` (see module docstring).

    ``backlog()`` says whether more events are already waiting; by default,
    whether the stream's channel queue is non-empty.
    """
    queued = backlog or (lambda: not stream.channel.empty())
    pending: list[Any] = []
    first = 0.0
    async for events in stream.noack_take(size, min(tick_s, window_s)):
        if not pending:
            first = clock()
        pending += events
        while len(pending) >= size:
            yield pending[:size]
            pending = pending[size:]
            first = clock()
        if pending and (not queued() or clock() - first >= window_s):
            yield pending
            pending = []
    if pending:
        yield pending
