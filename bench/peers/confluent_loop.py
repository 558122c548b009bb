"""A hand-written confluent-kafka at-least-once loop (peer of ``bench.bench_peers``).

Consume what is there (up to 1,000 messages; when nothing is, wait up to 100 ms for the
first), decode, one ONNX Runtime call, produce one Prediction per record, flush, commit
the consumed offsets synchronously. Offsets are committed only after every prediction
of the batch is acknowledged: at-least-once. Runs in the project's venv; stops on SIGTERM.

Settings come from the environment: PEER_BOOTSTRAP, PEER_INPUT, PEER_OUTPUT, PEER_GROUP,
PEER_MODEL (the ONNX file).
"""

from __future__ import annotations

import signal

from confluent_kafka import Consumer, KafkaException, Producer

from bench.peers.core import CONSUMER_EXTRA, PRODUCER_EXTRA, Scorer, env

BATCH = 1_000


def main() -> None:
    bootstrap, output = env("PEER_BOOTSTRAP"), env("PEER_OUTPUT")
    scorer = Scorer(env("PEER_MODEL"))
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": env("PEER_GROUP"),
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            **CONSUMER_EXTRA,
        }
    )
    producer = Producer({"bootstrap.servers": bootstrap, **PRODUCER_EXTRA})
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    consumer.subscribe([env("PEER_INPUT")])
    errors: list = []

    def delivered(err, _msg) -> None:
        if err is not None:
            errors.append(err)

    try:
        while not stopping:
            messages = consumer.consume(BATCH, 0)
            if not messages:
                messages = consumer.consume(1, 0.1)
                if not messages:
                    continue
                messages += consumer.consume(BATCH - 1, 0)
            for message in messages:
                if message.error():
                    raise KafkaException(message.error())
            values = scorer.score_values([m.value() for m in messages])
            for message, value in zip(messages, values, strict=True):
                while True:
                    try:
                        producer.produce(output, value, key=message.key(), on_delivery=delivered)
                        break
                    except BufferError:
                        producer.poll(0.05)
            producer.flush()
            if errors:
                raise KafkaException(errors[0])
            consumer.commit(asynchronous=False)
    finally:
        consumer.close()


if __name__ == "__main__":
    main()
