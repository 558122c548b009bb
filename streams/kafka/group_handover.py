"""A consumer group that takes over a topic from another starts where that one left off.

The outcomes topic used to be routed by a Faust agent in the worker's Faust group, and
is now read by a consumer of its own, in ``<Faust's group>.outcomes``. That group has no
committed offsets the first time it runs. Starting it from the beginning of the topic
would route every retained outcome again (each a ``duplicate``, or an
``outcome_unmatched`` dead letter once its prediction is gone), and starting it from the
end would skip the outcomes sent while the workers were being upgraded. So before the
new group first joins, each partition it has no offset for gets the old group's.
"""

from __future__ import annotations

import logging
from typing import Any

from confluent_kafka import Consumer, KafkaException, TopicPartition

log = logging.getLogger(__name__)


def take_over_offsets(
    config: dict[str, Any], topic: str, group: str, from_group: str, *, timeout_s: float = 10.0
) -> dict[int, int]:
    """Commit, for ``group``, ``from_group``'s offsets on each partition of ``topic`` that
    ``group`` has none for. Returns what was committed ({} when nothing was, or could be).

    Call it before ``group`` joins: a group with members refuses a commit from outside
    (then a member is running, and it took over when it started). Never raises for the
    broker's answers: a worker must start even where the old group is unknown or its
    offsets cannot be read; it then starts as a new group does, from the earliest.
    """
    base = {k: v for k, v in config.items() if k != "group.id"}
    new = Consumer(base | {"group.id": group, "enable.auto.commit": False}, logger=log)
    try:
        metadata = new.list_topics(topic, timeout=timeout_s).topics.get(topic)
        if metadata is None or metadata.error is not None or not metadata.partitions:
            return {}
        asked = [TopicPartition(topic, p) for p in sorted(metadata.partitions)]
        missing = [tp for tp in new.committed(asked, timeout=timeout_s) if tp.offset < 0]
        if not missing:
            return {}
        old = Consumer(base | {"group.id": from_group, "enable.auto.commit": False}, logger=log)
        try:
            left_off = [tp for tp in old.committed(missing, timeout=timeout_s) if tp.offset >= 0]
        finally:
            old.close()
        if not left_off:
            return {}
        new.commit(offsets=left_off, asynchronous=False)
    except KafkaException as exc:
        log.warning("%s: group %s could not take over %s's offsets (%s); it starts as a new "
                    "group does, from the earliest", topic, group, from_group, exc)  # fmt: skip
        return {}
    finally:
        new.close()
    taken = {tp.partition: tp.offset for tp in left_off}
    log.info("%s: group %s starts where group %s left off: %s", topic, group, from_group, taken)
    return taken
