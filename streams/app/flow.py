"""A Faust app whose flow control does not drop messages already handed to agents.

Faust clears every agent's input queue each time ``app.flow_control.resume()`` is
called, even when flow was already running. With tables, recovery resumes flow
once to read the changelogs, then again when it hands the stream partitions back
(after seeking them to their committed offsets). Records fetched between that seek
and the second resume sit in agents' queues and are cleared: the fetcher has read
past them, so they are never delivered again. An agent that was not draining its
queue at that moment (the scoring agent waits for the lifecycle follower to catch
up) silently misses them, and their unacked offsets block commits and shutdown.
This is faust-streaming issue #596.

Here ``resume`` clears only when flow was actually suspended. A rebalance still
clears queues when it suspends flow (``App._on_partitions_revoked`` calls
``flow_control.clear()`` itself), so nothing from a revoked partition is processed.
"""

from __future__ import annotations

import faust
from mode.utils.objects import cached_property
from mode.utils.queues import FlowControlEvent


class ResumeKeepsQueues(FlowControlEvent):
    def resume(self) -> None:
        was_suspended = not self.is_active()
        self._suspend.clear()
        self._resume.set()
        if was_suspended:
            self.clear()


class App(faust.App):
    @cached_property
    def flow_control(self) -> FlowControlEvent:
        return ResumeKeepsQueues(loop=self.loop)
