"""The features consumer's fetch across rebalances that run inside librdkafka's consume.

librdkafka runs rebalance callbacks inside ``poll``/``consume``, so one fetch can
return records from before a partition was handed over. Those are the next owner's
and are dropped. When the partition comes back within the same call, the dropped
records must be read again: scoring on from later records would commit past them
(records lost with their offsets committed). A stand-in consumer plays the broker
side here; the same hand-over runs on real brokers in
tests/integration/test_feature_consumer.py.
"""

from __future__ import annotations

import asyncio

import pytest
from confluent_kafka import OFFSET_BEGINNING, KafkaError, KafkaException, TopicPartition

from driftline.streams.kafka.feature_consumer import FeatureConsumer

TOPIC = "features"


class Record:
    """What consume returns: a stand-in for confluent_kafka.Message."""

    def __init__(self, partition: int, offset: int) -> None:
        self._partition, self._offset = partition, offset

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def error(self):
        return None

    def __repr__(self) -> str:
        return f"{self._partition}@{self._offset}"


class Group:
    """Scripted fetches; each step may run rebalance callbacks before returning records."""

    def __init__(self, features: FeatureConsumer, loop, committed: dict[int, int]) -> None:
        self.features, self.loop = features, loop
        self.committed_offsets = committed
        self.steps: list[tuple[list, list[Record]]] = []
        self.seeks: list[tuple[int, int]] = []
        self.refuse_seeks = 0

    # -- the calls FeatureConsumer makes -----------------------------------
    def poll(self, timeout: float):
        if not self.steps:
            return None
        callbacks, records = self.steps.pop(0)
        for callback in callbacks:
            callback()
        self._rest = records[1:]
        return records[0] if records else None

    def consume(self, num: int, timeout: float) -> list[Record]:
        rest, self._rest = self._rest, []
        return rest

    def commit(self, offsets, asynchronous: bool):
        for tp in offsets:
            self.committed_offsets[tp.partition] = tp.offset
        return offsets

    def committed(self, partitions, timeout: float):
        return [
            TopicPartition(TOPIC, tp.partition, self.committed_offsets.get(tp.partition, -1001))
            for tp in partitions
        ]

    def seek(self, tp: TopicPartition) -> None:
        if self.refuse_seeks:
            self.refuse_seeks -= 1
            raise KafkaException(KafkaError(KafkaError._STATE, "Erroneous state"))
        self.seeks.append((tp.partition, tp.offset))

    # -- rebalance callbacks, as librdkafka would run them ---------------------
    def revoke(self, *partitions: int):
        tps = [TopicPartition(TOPIC, p) for p in partitions]
        return lambda: self.features._hand_over(self.loop, tps)

    def assign(self, *partitions: int):
        return lambda: self.features._assigned([TopicPartition(TOPIC, p) for p in partitions])

    def lose(self, *partitions: int):
        return lambda: self.features._lost([TopicPartition(TOPIC, p) for p in partitions])


class Acker:
    async def join(self) -> None:
        return None


async def _fetches(script, committed: dict[int, int], *, refuse_seeks: int = 0):
    loop = asyncio.get_running_loop()
    features = FeatureConsumer(
        config={},
        topic=TOPIC,
        score=lambda messages, batch: None,
        delivery=None,
        stats=None,
        batch_size=100,
        max_in_flight=2,
    )
    group = Group(features, loop, committed)
    group.refuse_seeks = refuse_seeks
    features._consumer, features._acker = group, Acker()
    features._assigned([TopicPartition(TOPIC, p) for p in (0, 1)])
    group.steps = script(group)
    fetched = []
    for _ in range(len(group.steps) + 1):
        fetched.append(await loop.run_in_executor(None, features._fetch))
    return fetched, group, features


def _records(partition: int, offsets) -> list[Record]:
    return [Record(partition, o) for o in offsets]


def test_a_partition_handed_over_and_back_in_one_fetch_is_read_again_from_its_commit():
    def script(g: Group):
        # Partition 0's records 10-12 were fetched, then 0 was handed over and given back.
        return [([], _records(1, [0])), ([g.revoke(0), g.assign(0)], _records(0, [10, 11, 12]))]

    fetched, group, features = asyncio.run(_fetches(script, {0: 10}))
    assert [repr(m) for m in fetched[0]] == ["1@0"]
    assert fetched[1] == []  # dropped: either side of the hand-over
    assert group.seeks == [(0, 10)]  # read again from the committed offset
    assert features._rewinding == set()


def test_a_partition_handed_over_for_good_is_dropped_and_not_read_again():
    def script(g: Group):
        return [([g.revoke(0)], _records(0, [10, 11]) + _records(1, [5]))]

    fetched, group, features = asyncio.run(_fetches(script, {0: 10}))
    assert [repr(m) for m in fetched[0]] == ["1@5"]  # partition 0 is its next owner's
    assert group.seeks == []
    assert features.assignment == {1}


def test_a_lost_partition_given_back_mid_fetch_is_read_again():
    def script(g: Group):
        return [([g.lose(1), g.assign(1)], _records(1, [7, 8]))]

    fetched, group, _ = asyncio.run(_fetches(script, {}))
    assert fetched[0] == []
    assert group.seeks == [(1, OFFSET_BEGINNING)]  # nothing committed: from the start


def test_a_refused_seek_is_tried_again_and_the_partition_stays_dropped_until_then():
    def script(g: Group):
        return [
            ([g.revoke(0), g.assign(0)], _records(0, [10, 11])),
            ([], _records(0, [10, 11]) + _records(1, [3])),  # before the seek took
        ]

    fetched, group, features = asyncio.run(_fetches(script, {0: 10}, refuse_seeks=1))
    # The first seek (after fetch 1) is refused; fetch 2 drops partition 0 again; the seek
    # before fetch 3 succeeds.
    assert fetched[0] == []
    assert [repr(m) for m in fetched[1]] == ["1@3"]
    assert group.seeks == [(0, 10)]
    assert features._rewinding == set()


@pytest.mark.parametrize("handed_back", [False, True])
def test_what_was_delivered_is_committed_at_the_hand_over(handed_back):
    def script(g: Group):
        callbacks = [g.revoke(0)] + ([g.assign(0)] if handed_back else [])
        return [(callbacks, _records(0, [20]))]

    async def run():
        loop = asyncio.get_running_loop()
        features = FeatureConsumer(
            config={},
            topic=TOPIC,
            score=lambda messages, batch: None,
            delivery=None,
            stats=None,
            batch_size=100,
            max_in_flight=2,
        )
        group = Group(features, loop, {0: 10})
        features._consumer, features._acker = group, Acker()
        features._assigned([TopicPartition(TOPIC, 0)])
        await features._commit({0: 20})  # records 10-19 scored and delivered
        group.steps = script(group)
        await loop.run_in_executor(None, features._fetch)
        await loop.run_in_executor(None, features._fetch)
        return group

    group = asyncio.run(run())
    assert group.committed_offsets[0] == 20
    assert group.seeks == ([(0, 20)] if handed_back else [])
