"""Switching what routes outcomes (a Faust agent before, a consumer of its own now)
starts the new consumer group where the old one left off: nothing is routed twice and
nothing sent during the switch is skipped. On a real broker: only the broker's group
coordinator decides whether a commit from outside a group is accepted."""

from __future__ import annotations

import pytest
from confluent_kafka import Consumer, TopicPartition

from driftline.schemas import default_codec
from driftline.streams.kafka.group_handover import take_over_offsets
from driftline.streams.kafka.offsets import watermarks
from driftline.streams.kafka.producer import FeatureProducer
from driftline.streams.kafka.topics import Topics
from driftline.streams.stages.outcome_join import OUTCOMES_TAG, decode_outcomes
from tests.integration.helpers import read_topic, wait_until

pytestmark = pytest.mark.integration


def _committed(bootstrap: str, group: str, topic: str, partitions: int = 2) -> list[int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        asked = [TopicPartition(topic, p) for p in range(partitions)]
        return [tp.offset for tp in consumer.committed(asked, timeout=10)]
    finally:
        consumer.close()


def _commit(bootstrap: str, group: str, topic: str, offsets: dict[int, int]) -> None:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        tps = [TopicPartition(topic, p, o) for p, o in offsets.items()]
        consumer.commit(offsets=tps, asynchronous=False)
    finally:
        consumer.close()


def _ends(bootstrap: str, topic: str, partitions: int = 2) -> list[int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "ends"})
    try:
        return [watermarks(consumer, topic, p)[1] for p in range(partitions)]
    finally:
        consumer.close()


def test_a_new_group_takes_the_old_groups_offsets_once_and_only_where_it_has_none(stack_env):
    topic = Topics(stack_env.prefix).name("outcomes")
    config = {"bootstrap.servers": stack_env.bootstrap}
    old, new = f"{stack_env.prefix}old", f"{stack_env.prefix}new"

    assert take_over_offsets(config, topic, new, old) == {}  # the old group never ran
    _commit(stack_env.bootstrap, old, topic, {0: 7, 1: 3})
    assert take_over_offsets(config, topic, new, old) == {0: 7, 1: 3}
    assert _committed(stack_env.bootstrap, new, topic) == [7, 3]

    _commit(stack_env.bootstrap, old, topic, {0: 9, 1: 9})  # the old group went on
    assert take_over_offsets(config, topic, new, old) == {}  # the new one keeps its own
    assert _committed(stack_env.bootstrap, new, topic) == [7, 3]

    unknown = take_over_offsets(config, f"{stack_env.prefix}no-such-topic", new, old)
    assert unknown == {}


def test_a_worker_switched_to_the_outcomes_consumer_routes_nothing_twice(stack_env, start_worker):
    settings = stack_env.settings()
    topics = Topics(stack_env.prefix)
    outcomes, join = topics.name("outcomes"), topics.outcome_join
    worker_env = {"DRIFTLINE_DRIFT_ENABLED": "true", "DRIFTLINE_DRIFT_OUTCOME_WAIT_S": "600"}

    # The previous release: outcomes routed by the Faust agent, in Faust's group.
    worker = start_worker(DRIFTLINE_WORKER_OUTCOMES_CONSUMER="faust", **worker_env)
    producer = FeatureProducer(settings, stack_env.bootstrap)
    for n in range(40):
        producer.send_outcome(f"before-{n}", 1.0)  # no such predictions: they wait
    producer.flush()
    ends = _ends(stack_env.bootstrap, outcomes)
    wait_until(lambda: _committed(stack_env.bootstrap, topics.app_id, outcomes) == ends,
               what="the Faust agent routed and committed every outcome")  # fmt: skip
    worker.stop()
    routed = _ends(stack_env.bootstrap, join)

    # Outcomes sent while no worker runs, then the new release starts.
    for n in range(10):
        producer.send_outcome(f"during-{n}", 1.0)
    producer.flush()
    worker = start_worker(DRIFTLINE_WORKER_OUTCOMES_CONSUMER="kafka", **worker_env)
    group = f"{topics.app_id}.outcomes"
    ends = _ends(stack_env.bootstrap, outcomes)
    wait_until(lambda: _committed(stack_env.bootstrap, group, outcomes) == ends,
               what="the outcomes group routed and committed every outcome")  # fmt: skip
    # On the join topic since the switch: the outcomes sent during it, each once.
    codec = default_codec()
    since = [m for m in read_topic(stack_env.bootstrap, join, 2)
             if m.offset() >= routed[m.partition()] and m.value()[:1] == OUTCOMES_TAG]  # fmt: skip
    ids = [codec.decode_as("Outcome", value)["prediction_id"]
           for m in since for value, _ in decode_outcomes(m.value()[1:])]  # fmt: skip
    assert sorted(ids) == sorted(f"during-{n}" for n in range(10))
    assert f"starts where group {topics.app_id} left off" in worker.log_file.read_text()
