"""Residency: which store regions are refused, and how a refusal becomes an audit event."""

from __future__ import annotations

import pytest

from driftline.lineage.audit.checkpoints import WriterKey
from driftline.lineage.audit.residency import (
    RESIDENCY_CHAIN,
    decide_residency,
    region_refusal,
    residency_refusal,
)
from driftline.lineage.trust.keys import generate_key


@pytest.mark.parametrize(
    ("region", "allowed", "refused"),
    [
        ("eu-central-1", None, False),
        ("eu-central-1", {"eu-central-1", "eu-west-1"}, False),
        ("us-east-1", {"eu-central-1"}, True),
        (None, {"eu-central-1"}, True),
        (None, None, False),
    ],
)
def test_a_store_outside_the_allowed_regions_is_refused(region, allowed, refused) -> None:
    reason = region_refusal("ClickHouse store x", region, allowed, "DRIFTLINE_CLICKHOUSE_REGION")
    assert (reason is not None) == refused
    if refused:
        assert "DRIFTLINE_DATA_ALLOWED_REGIONS" in reason
        assert (repr(region) if region else "DRIFTLINE_CLICKHOUSE_REGION is unset") in reason


def test_the_registry_records_a_refusal_signed_by_the_lineage_writer() -> None:
    writer = generate_key("lineage-writer")
    trusted = WriterKey(writer.actor, writer.public_key)
    command = residency_refusal(
        "clickhouse", "us-east-1", "not allowed", writer.actor, writer.private_key
    )
    event = decide_residency(command, trusted)
    assert (event.type, event.model, event.actor) == (
        "command_rejected",
        RESIDENCY_CHAIN,
        "lineage-writer",
    )
    assert event.evidence["check"] == "region" and event.evidence["reason"] == "not allowed"
    assert event.evidence["arguments"]["region"] == "us-east-1"
    # Anyone else's key: refused as unsigned, so nobody can put refusals in the log.
    mallory = generate_key("lineage-writer")
    forged = residency_refusal("clickhouse", "x", "y", mallory.actor, mallory.private_key)
    assert decide_residency(forged, trusted).evidence["check"] == "signature"
    assert decide_residency(command, None).evidence["check"] == "signature"
