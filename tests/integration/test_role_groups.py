"""Worker roles and consumer groups on Apache Kafka: role sets that share a role refuse to
run side by side (each would process that role's topics in full)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session")
def broker(kafka_broker):
    """Apache Kafka lists consumer groups (Tansu does not), so the check can run."""
    return kafka_broker


def test_a_worker_refuses_to_join_beside_a_group_that_shares_a_role(stack_env, start_worker):
    scoring = start_worker(DRIFTLINE_WORKER_ROLES="inference")
    assert scoring.get("/driftline/health/")["ready"] is True
    with pytest.raises(AssertionError, match="worker exited early") as refused:
        start_worker(DRIFTLINE_WORKER_ROLES="inference,lineage")
    message = str(refused.value)
    assert f"worker group '{stack_env.prefix}worker-inference'" in message
    assert "also runs inference" in message and "DRIFTLINE_WORKER_ROLES" in message

    # Disjoint roles run beside it, and a second scoring worker joins its group.
    store = start_worker(DRIFTLINE_WORKER_ROLES="lineage,policy,registry")
    second = start_worker(DRIFTLINE_WORKER_ROLES="inference")
    assert store.proc.poll() is None and second.proc.poll() is None
