"""Worker groups by role set: names, and reading the roles back from a group id."""

from __future__ import annotations

import pytest

from driftline.core.settings import WORKER_ROLES
from driftline.streams.kafka.topics import Topics

TOPICS = Topics("acme.")


def test_workers_with_every_role_keep_the_historic_group():
    assert TOPICS.group(WORKER_ROLES) == "acme.worker" == TOPICS.app_id


@pytest.mark.parametrize(
    ("roles", "group"),
    [
        ({"inference"}, "acme.worker-inference"),
        ({"policy", "lineage", "registry"}, "acme.worker-lineage+policy+registry"),
        (["registry", "lineage"], "acme.worker-lineage+registry"),
    ],
)
def test_other_role_sets_get_a_group_of_their_own_whatever_the_order(roles, group):
    assert TOPICS.group(roles) == group
    assert TOPICS.group_roles(group) == frozenset(roles)


@pytest.mark.parametrize(
    "group",
    [
        "acme.worker-outcome-join",  # an internal topic name, not a group
        "acme.worker-drift-summaries",
        "other.worker-inference",  # another prefix
        "acme.worker-",
        "acme.workers",
    ],
)
def test_names_that_are_not_worker_groups_have_no_roles(group):
    assert TOPICS.group_roles(group) is None


def test_internal_topic_names_do_not_depend_on_the_roles():
    # Changelogs, join and summaries are shared by every scoring worker whatever its group.
    assert TOPICS.changelog("drift-state") == "acme.worker-drift-state-changelog"
    assert TOPICS.outcome_join == "acme.worker-outcome-join"


@pytest.mark.parametrize(
    ("roles", "faust", "features"),
    [
        # The worker stores: its feature log (a Faust agent) keeps the role group.
        (WORKER_ROLES, "acme.worker", "acme.worker.scoring"),
        (
            {"inference", "lineage"},
            "acme.worker-inference+lineage",
            "acme.worker-inference+lineage.scoring",
        ),
        # Scoring only: the features consumer keeps it, Faust's other agents move.
        ({"inference"}, "acme.worker-inference.agents", "acme.worker-inference"),
    ],
)
def test_the_features_consumer_and_faust_get_two_groups_and_the_role_group_keeps_its_meaning(
    roles, faust, features
):
    assert TOPICS.worker_groups(roles, features_consumer=True) == (faust, features)
    # Neither name reads as a worker group of another role set (the overlap check).
    assert TOPICS.group_roles(faust if features == TOPICS.group(roles) else features) is None


@pytest.mark.parametrize("roles", [WORKER_ROLES, {"inference"}, {"lineage", "registry"}])
def test_without_the_features_consumer_faust_alone_has_the_role_group(roles):
    assert TOPICS.worker_groups(roles, features_consumer=False) == (TOPICS.group(roles), None)
