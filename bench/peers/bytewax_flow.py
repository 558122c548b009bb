"""The Bytewax peer of ``bench.bench_peers`` (run in ``.cache/bench-venvs/bytewax``).

``KafkaSource`` (batches of up to 1,000 messages per partition) -> ``flat_map_batch``:
decode the batch, one ONNX Runtime call, encode -> ``KafkaSink`` (produces the batch and
flushes). One worker. Bytewax keeps source offsets in its recovery store, not in consumer
group commits: the bench runs it with recovery (``-r DIR -s 1``), so a restart resumes
from the last snapshot, replaying at most a second of input (at-least-once).

Settings: PEER_BOOTSTRAP, PEER_INPUT, PEER_OUTPUT, PEER_MODEL. Run as
``python -m bytewax.run bench.peers.bytewax_flow:flow -r DIR -s 1 -b 0`` after
``python -m bytewax.recovery DIR 1``.
"""

from __future__ import annotations

import bytewax.operators as op
from bytewax.connectors.kafka import KafkaSink, KafkaSinkMessage, KafkaSource
from bytewax.dataflow import Dataflow

from bench.peers.core import CONSUMER_EXTRA, PRODUCER_EXTRA, Scorer, env

BATCH = 1_000


def build() -> Dataflow:
    bootstrap = env("PEER_BOOTSTRAP")
    scorer = Scorer(env("PEER_MODEL"))

    def score(messages: list) -> list:
        values = scorer.score_values([m.value for m in messages])
        return [KafkaSinkMessage(m.key, v) for m, v in zip(messages, values, strict=True)]

    flow = Dataflow("bench_peers")
    source = KafkaSource(
        [bootstrap],
        [env("PEER_INPUT")],
        add_config={k: str(v) for k, v in CONSUMER_EXTRA.items()},
        batch_size=BATCH,
    )
    messages = op.input("features", flow, source)
    predictions = op.flat_map_batch("score", messages, score)
    sink = KafkaSink(
        [bootstrap],
        env("PEER_OUTPUT"),
        add_config={
            k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in PRODUCER_EXTRA.items()
        },  # fmt: skip
    )
    op.output("predictions", predictions, sink)
    return flow


flow = build()
