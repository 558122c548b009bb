"""A minimal Faust app with a table, run as a real worker by the compatibility suite."""

import os

import faust

app = faust.App(
    os.environ["APP_ID"],
    broker=f"kafka://{os.environ['BOOTSTRAP']}",
    store="memory://",
    datadir=os.environ.get("DATA_DIR", "/tmp/driftline-faust-data"),
    topic_partitions=2,
    topic_disable_leader=True,
    consumer_auto_offset_reset="earliest",
    broker_session_timeout=6,
    web_port=int(os.environ["WEB_PORT"]),
    web_bind="127.0.0.1",
    # One record per produced batch: Tansu under-reports end offsets after multi-record
    # batches, and Faust recovers tables by reading changelogs up to the end offset.
    producer_max_batch_size=100,
)
words = app.topic(os.environ["SOURCE"], key_serializer="raw", value_serializer="raw")
counts = app.Table("counts", default=int, partitions=2, key_type=bytes, value_type=int)


@app.agent(words)
async def count(stream):
    async for event in stream.events():
        counts[event.key] += 1


@app.page("/counts/")
async def show(web, request):
    return web.json({key.decode(): value for key, value in counts.items()})


@app.page("/ready/")
async def ready(web, request):
    # Recovery done and no rebalance under way: the table is whole and the agent reads.
    recovered = app.tables.recovery.completed.is_set() and not app.rebalancing
    return web.json({"ready": recovered})


if __name__ == "__main__":
    app.main()
