"""Broker quirks: Tansu's batch-counted end offsets are worked around there only."""

from __future__ import annotations

from driftline.streams.kafka.broker_quirks import TANSU_CLUSTER_ID, quirks_of


def test_tansu_gets_one_record_batches_for_table_state():
    quirks = quirks_of(TANSU_CLUSTER_ID)
    assert quirks.end_offsets_count_batches
    assert quirks.state_producer_overrides == {"batch.num.messages": 1, "linger.ms": 0}


def test_apache_kafka_batches_normally():
    quirks = quirks_of("MkU3OEVBNTcwNTJENDM2Qg")  # a KRaft cluster id
    assert not quirks.end_offsets_count_batches
    assert quirks.state_producer_overrides == {}
