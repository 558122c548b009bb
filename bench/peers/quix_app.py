"""Quix Streams peers of ``bench.bench_peers`` (run in ``.cache/bench-venvs/quix``).

PEER_MODE=apply: ``sdf.apply(score one message)`` then ``to_topic``: one ONNX Runtime call
per message, Quix's default checkpointing (every 5 s: flush the producer, then commit).
PEER_MODE=batch: a ``BatchingSink`` that decodes a checkpoint's batch, scores it with one
ONNX Runtime call, produces and flushes; Quix commits the offsets after the sink's write.
Checkpoints every 1,000 messages or 20 ms (``commit_every``, ``commit_interval``), so a
batch is at most 1,000 records, like the hand-written loop's. Both at-least-once
(``processing_guarantee="at-least-once"``, Quix's default). Stops on SIGTERM.

Settings: PEER_BOOTSTRAP, PEER_INPUT, PEER_OUTPUT, PEER_GROUP, PEER_MODEL, PEER_MODE.
"""

from __future__ import annotations

import logging

from confluent_kafka import KafkaException, Producer
from quixstreams import Application
from quixstreams.sinks import BatchingSink, SinkBatch

from bench.peers.core import CONSUMER_EXTRA, PRODUCER_EXTRA, Scorer, env


class PredictionSink(BatchingSink):
    """Scores a checkpoint's batch with one ONNX Runtime call and produces the predictions."""

    def __init__(self, scorer: Scorer, bootstrap: str, topic: str) -> None:
        super().__init__()
        self._scorer, self._topic = scorer, topic
        self._producer = Producer({"bootstrap.servers": bootstrap, **PRODUCER_EXTRA})

    def setup(self) -> None:
        pass

    def write(self, batch: SinkBatch) -> None:
        items = list(batch)
        values = self._scorer.score_values([item.value for item in items])
        errors: list = []

        def delivered(err, _msg) -> None:
            if err is not None:
                errors.append(err)

        for item, value in zip(items, values, strict=True):
            while True:
                try:
                    self._producer.produce(self._topic, value, key=item.key, on_delivery=delivered)
                    break
                except BufferError:
                    self._producer.poll(0.05)
        self._producer.flush()
        if errors:  # Quix does not commit this checkpoint's offsets
            raise KafkaException(errors[0])


def main() -> None:
    bootstrap, mode = env("PEER_BOOTSTRAP"), env("PEER_MODE")
    scorer = Scorer(env("PEER_MODEL"))
    batching = mode == "batch"
    app = Application(
        broker_address=bootstrap,
        consumer_group=env("PEER_GROUP"),
        auto_offset_reset="earliest",
        processing_guarantee="at-least-once",
        consumer_extra_config=dict(CONSUMER_EXTRA),
        producer_extra_config=dict(PRODUCER_EXTRA),
        loglevel=logging.WARNING,
        use_changelog_topics=False,
        **({"commit_every": 1_000, "commit_interval": 0.02} if batching else {}),
    )
    source = app.topic(env("PEER_INPUT"), key_deserializer="bytes", value_deserializer="bytes")
    sdf = app.dataframe(source)
    if batching:
        sdf.sink(PredictionSink(scorer, bootstrap, env("PEER_OUTPUT")))
    elif mode == "apply":
        out = app.topic(env("PEER_OUTPUT"), key_serializer="bytes", value_serializer="bytes")
        sdf = sdf.apply(lambda value: scorer.score_values([value])[0])
        sdf.to_topic(out)
    else:
        raise SystemExit(f"PEER_MODE must be apply or batch, got {mode!r}")
    app.run()


if __name__ == "__main__":
    main()
