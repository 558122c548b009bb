"""The baseline: a Faust agent with the worker's batching and acking, doing no work."""

import json
import os
import time

import faust

app = faust.App(
    os.environ["APP_ID"],
    broker=f"kafka://{os.environ['BOOTSTRAP']}",
    store="memory://",
    datadir=os.environ.get("DATA_DIR", "/tmp/driftline-faust-data"),
    topic_disable_leader=True,
    consumer_auto_offset_reset="earliest",
    web_enabled=False,
)
source = app.topic(os.environ["SOURCE"], key_serializer="raw", value_serializer="raw")
expected = int(os.environ["EXPECTED"])
state = {"n": 0, "first": None, "first_size": 0}


@app.agent(source)
async def noop(stream):
    async for events in stream.noack_take(1000, 0.05):
        now = time.time()
        if state["first"] is None:
            state["first"], state["first_size"] = now, len(events)
        state["n"] += len(events)
        for event in events:
            await stream.ack(event)
        if state["n"] >= expected:
            with open(os.environ["RESULT_FILE"], "w") as out:
                json.dump(
                    {
                        "records": state["n"],
                        "first": state["first"],
                        "last": now,
                        "first_size": state["first_size"],
                    },
                    out,
                )


if __name__ == "__main__":
    from driftline.streams.app.worker import tune_gc

    tune_gc()  # the same tuning the driftline worker applies: a fair baseline
    app.main()
