"""What driftline works around on the broker it talks to, found out once per bootstrap.

The embedded Tansu broker (it names its cluster ``tansu_cluster``) reports a
partition's end offset as the last batch's base offset + 1, under-reporting by the
batch size - 1. Two things follow, and only there:

- the drift decider's state producer sends one record per batch, because Faust
  recovers a table only up to the reported end offset (streams/stages/drift_decider.py);
- readers that want "everything up to now" read past the end offsets until an empty
  poll, because the offsets alone stop short.

Apache Kafka counts records, so on it the state producer batches normally and readers
stop at the end offsets: test_compat_faust.py's end-offset check passes there, and
the drift state recovery test runs on Kafka with normal batching.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

log = logging.getLogger(__name__)

TANSU_CLUSTER_ID = "tansu_cluster"


@dataclass(frozen=True)
class BrokerQuirks:
    end_offsets_count_batches: bool = False

    @property
    def state_producer_overrides(self) -> dict[str, int]:
        """librdkafka settings for producers whose topics Faust recovers tables from."""
        if self.end_offsets_count_batches:
            return {"batch.num.messages": 1, "linger.ms": 0}
        return {}


def quirks_of(cluster_id: str | None) -> BrokerQuirks:
    return BrokerQuirks(end_offsets_count_batches=cluster_id == TANSU_CLUSTER_ID)


@functools.lru_cache(maxsize=16)
def _detect(config_items: tuple[tuple[str, str], ...]) -> BrokerQuirks:
    admin = AdminClient(dict(config_items))
    try:
        cluster_id = admin.list_topics(timeout=10).cluster_id
    except KafkaException as exc:
        # Unknown: assume the careful behaviour, which is correct on every broker.
        log.warning("cannot read the cluster id (%s); assuming batch-counted end offsets", exc)
        return BrokerQuirks(end_offsets_count_batches=True)
    quirks = quirks_of(cluster_id)
    log.info("broker cluster %r: %s", cluster_id, quirks)
    return quirks


def detect_quirks(client_config: dict) -> BrokerQuirks:
    """The quirks of the cluster ``client_config`` reaches (asked once per config)."""
    return _detect(tuple(sorted((k, str(v)) for k, v in client_config.items())))
