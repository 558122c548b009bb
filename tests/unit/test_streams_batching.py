"""gather: whole batches from a backlog, no waiting once the queue runs dry."""

from __future__ import annotations

import asyncio

from driftline.streams.kafka.batching import gather


class FakeStream:
    """Micro-batches as Faust's take would yield them, and what is still queued after each."""

    def __init__(self, micro_batches: list[list[int]], queued_after: list[bool]) -> None:
        self.micro_batches, self.queued_after = micro_batches, queued_after
        self.taken = -1
        self.asked: tuple[int, float] | None = None

    async def noack_take(self, size: int, within: float):
        self.asked = (size, within)
        for index, events in enumerate(self.micro_batches):
            self.taken = index
            yield events

    def backlog(self) -> bool:
        return self.queued_after[self.taken]


def run(stream: FakeStream, size: int, window_s: float = 0.05, clock=None) -> list[list[int]]:
    async def collect():
        kwargs = {"clock": clock} if clock else {}
        return [b async for b in gather(stream, size, window_s, backlog=stream.backlog, **kwargs)]

    return asyncio.run(collect())


def test_a_backlog_fills_whole_batches_and_the_rest_goes_when_the_queue_is_empty() -> None:
    stream = FakeStream([[1, 2, 3], [4, 5, 6], [7, 8, 9], [10]], [True, True, True, False])
    assert run(stream, size=4) == [[1, 2, 3, 4], [5, 6, 7, 8], [9, 10]]
    assert stream.asked == (4, 0.002)  # Faust is asked for micro-batches every 2 ms


def test_light_traffic_is_handed_over_at_once() -> None:
    stream = FakeStream([[1], [2, 3], [4]], [False, False, False])
    assert run(stream, size=100) == [[1], [2, 3], [4]]


def test_a_steady_trickle_is_cut_at_the_window() -> None:
    stream = FakeStream([[1], [2], [3], [4], [5]], [True] * 5)
    # Micro-batch i arrives at 20 ms * i; more is always queued.
    batches = run(stream, size=100, window_s=0.05, clock=lambda: stream.taken * 0.02)
    # The window runs from a batch's first event (0 ms): cut when 4 arrives at 60 ms;
    # 5 is handed over when the stream ends.
    assert batches == [[1, 2, 3, 4], [5]]


def test_the_default_backlog_reads_the_agent_channel() -> None:
    class Channel:
        def __init__(self) -> None:
            self.queued = [True, False]

        def empty(self) -> bool:
            return not self.queued.pop(0)

    class Stream:
        channel = Channel()

        async def noack_take(self, size, within):
            for events in ([1], [2]):
                yield events

    async def collect():
        return [b async for b in gather(Stream(), 10, 0.05)]

    assert asyncio.run(collect()) == [[1, 2]]
