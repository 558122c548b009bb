"""A worker that stops within a bounded time, whatever its clients do.

A stopping worker leaves its consumer groups and commits, which needs the broker.
When the broker is gone too (the embedded stack's supervisor was killed, and
both got SIGTERM from the kernel), aiokafka's consumer can wait forever in its
fetcher's close. Past the deadline the process exits non-zero: every batch whose
output was delivered is committed by then, and anything else is re-delivered.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading

import faust

log = logging.getLogger(__name__)

SHUTDOWN_DEADLINE_S = 20.0
SETTLE_S = 0.1  # the loop's last turns before it closes


def exit_after(seconds: float) -> threading.Timer:
    """Exit the process (status 1) ``seconds`` from now unless it has exited by then."""

    def expire() -> None:
        log.error(
            "the worker did not stop within %.0f s (is the broker gone?); exiting now: "
            "what was not committed is re-delivered to the next worker",
            seconds,
        )
        logging.shutdown()
        os._exit(1)

    timer = threading.Timer(seconds, expire)
    timer.daemon = True
    timer.start()
    return timer


class BoundedWorker(faust.Worker):
    """faust.Worker whose stop, once a signal asks for it, lasts at most a deadline."""

    shutdown_deadline_s = SHUTDOWN_DEADLINE_S
    _deadline: threading.Timer | None = None

    def _schedule_shutdown(self, signal) -> None:
        if self._deadline is None:
            self._deadline = exit_after(self.shutdown_deadline_s)
        super()._schedule_shutdown(signal)

    async def _sentinel_task(self) -> None:
        # mode sleeps a whole second here, on every stop, before it closes the loop.
        # What it waits for (transports' close callbacks) is scheduled with call_soon
        # and runs within a few loop turns; a test suite stops workers hundreds of times.
        await asyncio.sleep(SETTLE_S)
