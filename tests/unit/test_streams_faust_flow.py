"""Flow control that keeps records already queued for agents (faust-streaming #596)."""

import asyncio

from mode.utils.queues import FlowControlQueue

from driftline.streams.app.flow import App, ResumeKeepsQueues


def test_resume_while_running_keeps_queued_records():
    async def scenario():
        flow = ResumeKeepsQueues(initially_suspended=False)
        queue = FlowControlQueue(flow_control=flow, clear_on_resume=True)
        queue.put_nowait("record at the committed offset")
        flow.resume()  # recovery's second resume: flow was already running
        return queue.qsize()

    assert asyncio.run(scenario()) == 1


def test_resume_after_suspend_still_clears():
    async def scenario():
        flow = ResumeKeepsQueues(initially_suspended=False)
        queue = FlowControlQueue(flow_control=flow, clear_on_resume=True)
        queue.put_nowait("record of a partition being revoked")
        flow.suspend()
        flow.resume()
        return queue.qsize(), flow.is_active()

    assert asyncio.run(scenario()) == (0, True)


def test_driftline_app_uses_it():
    async def scenario():
        return App("flow-test", broker="kafka://127.0.0.1:1").flow_control

    assert isinstance(asyncio.run(scenario()), ResumeKeepsQueues)
