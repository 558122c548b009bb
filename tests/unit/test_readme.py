"""The README's reference tables must not drift from the code they describe."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from driftline.lineage.trust.roles import EXAMPLE_ROLES
from driftline.streams.kafka.topics import Topics

README = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")


def test_roles_example_is_the_development_policy():
    block = README.split("Roles file (`DRIFTLINE_REGISTRY_ROLES_FILE`):", 1)[1]
    example = tomllib.loads(block.split("```toml", 1)[1].split("```", 1)[0])
    documented = {
        name: tuple(role["allow"][0]["actions"]) for name, role in example["roles"].items()
    }
    assert documented == {name: actions for name, (actions, _) in EXAMPLE_ROLES.items()}


def test_topics_table_lists_every_topic():
    topics = Topics("driftline.")
    table = README.split("### Topics", 1)[1].split("###", 1)[0]
    documented = set(re.findall(r"^\| `(driftline\.[a-z-]+)` \|", table, flags=re.MULTILINE))
    assert documented == set(topics.all() + topics.internal())
