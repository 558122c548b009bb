"""Session fixtures shared by unit and integration tests.

chDB can open only one data path per process, so every test that needs the
engine shares one session-wide client and gets its own random database.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterator

import clickhouse_connect
import pytest

# Fixtures that take seconds to start and many MiB to hold (JVMs): under pytest-xdist
# (`make test` runs two processes), every test of a file that uses one goes to the same
# process, so each starts once. A whole file, because some tests ask for these fixtures by
# name at run time (request.getfixturevalue), which collection cannot see.
COSTLY_FIXTURES = {
    "kafka_cluster": "kafka-cluster",  # three brokers
    "kafka_secure_broker": "kafka-secure",
    "apicurio_registry": "apicurio",
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    groups: dict[str, set[str]] = defaultdict(set)
    for item in items:
        for fixture in set(item.fixturenames) & COSTLY_FIXTURES.keys():
            groups[item.path.name].add(COSTLY_FIXTURES[fixture])
    for item in items:
        if groups[item.path.name]:
            item.add_marker(pytest.mark.xdist_group(min(groups[item.path.name])))


@pytest.fixture(scope="session")
def chdb_client(tmp_path_factory: pytest.TempPathFactory):
    path = tmp_path_factory.mktemp("chdb")
    client = clickhouse_connect.get_client(dsn=f"chdb://{path}")
    yield client
    client.close()


@pytest.fixture
def fresh_database(chdb_client) -> Iterator[str]:
    name = f"t_{uuid.uuid4().hex[:12]}"
    chdb_client.command(f"CREATE DATABASE {name}")
    yield name
    chdb_client.command(f"DROP DATABASE IF EXISTS {name}")


@pytest.fixture(scope="session", autouse=True)
def telemetry() -> None:
    """The test session is an entry point: it installs the SDK like the CLI does."""
    from driftline.core.settings import TelemetrySettings
    from driftline.core.telemetry import configure_telemetry

    configure_telemetry(TelemetrySettings(log_level="WARNING"))


@pytest.fixture(scope="session")
def feast_repo(tmp_path_factory: pytest.TempPathFactory):
    """driftline's example Feast repository, applied and materialised (a few seconds)."""
    from driftline.features.example_repo import write_example_repo

    return write_example_repo(tmp_path_factory.mktemp("feast"), n_entities=200)


@pytest.fixture
def feature_store(feast_repo):
    from driftline.features.feast_store import FeastFeatureStore

    return FeastFeatureStore(feast_repo)
