"""Fixtures that start real parts: brokers per session, workers per test.

Each test gets a random topic prefix (so random topics and consumer group) and its
own data directory; workers are real `driftline worker` processes.

The suite's broker (the ``broker`` fixture) is chosen by DRIFTLINE_TEST_BROKER: ``kafka``
(default, a local single-node Apache Kafka, as ``kafka_broker``) or ``tansu`` (the
embedded broker). A test marked ``@pytest.mark.broker("tansu")`` runs on that broker
whatever the setting: the Tansu smoke subset, which keeps the embedded default of
``make demo`` and ``driftline up`` proven. ``kafka_cluster`` is a 3-node Apache Kafka
for the fault tests.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from driftline.core.settings import Settings, load_settings
from driftline.streams.control.identity import create_actor
from driftline.streams.embedded.kafka_local import KafkaBroker, KafkaCluster
from driftline.streams.embedded.processes import free_port, spawn_child, stop_child
from driftline.streams.embedded.stack import http_json
from driftline.streams.embedded.tansu import TansuBroker
from driftline.streams.kafka.provision import prepare_topics
from tests.integration.helpers import serve_model

TEST_BROKERS = ("tansu", "kafka")


def chosen_broker() -> str:
    kind = os.environ.get("DRIFTLINE_TEST_BROKER", "kafka")
    if kind not in TEST_BROKERS:
        raise pytest.UsageError(
            f"DRIFTLINE_TEST_BROKER={kind!r}: choose one of {', '.join(TEST_BROKERS)}"
        )
    return kind


@pytest.fixture(scope="session")
def tansu_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TansuBroker]:
    log_file = tmp_path_factory.mktemp("tansu") / "tansu.log"
    with TansuBroker(log_file=log_file) as running:
        yield running


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    # Larger than any test message (the hostile barrage sends 5 MB records), so the
    # worker's own limits decide, as on Tansu, which has none.
    overrides = {"message.max.bytes": str(16 * 1024 * 1024)}
    with KafkaBroker(tmp_path_factory.mktemp("kafka"), overrides=overrides) as running:
        yield running


@pytest.fixture(scope="session")
def kafka_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaCluster]:
    with KafkaCluster(tmp_path_factory.mktemp("kafka-cluster"), size=3) as running:
        yield running


@pytest.fixture(scope="session")
def broker(request: pytest.FixtureRequest) -> TansuBroker | KafkaBroker:
    """The integration suite's broker: DRIFTLINE_TEST_BROKER=kafka (default) or tansu."""
    return request.getfixturevalue(f"{chosen_broker()}_broker")


@pytest.fixture
def test_broker(request: pytest.FixtureRequest) -> TansuBroker | KafkaBroker | KafkaCluster:
    """This test's broker: the one its ``broker`` marker names, else the suite's."""
    marker = request.node.get_closest_marker("broker")
    if marker is None:
        return request.getfixturevalue("broker")
    (kind,) = marker.args
    if kind not in TEST_BROKERS:
        raise pytest.UsageError(f"@pytest.mark.broker({kind!r}): use one of {TEST_BROKERS}")
    return request.getfixturevalue(f"{kind}_broker")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """A failed test shows the log tails of its workers and of the Apache Kafka broker it
    ran on in its report (CI keeps nothing else)."""
    report = yield
    if report.failed:
        funcargs = getattr(item, "funcargs", {})
        starter = funcargs.get("start_worker")
        for n, worker in enumerate(getattr(starter, "started", ())):
            report.sections.append((f"worker {n} log tail", worker.log_tail(60)))
        for name in ("kafka_broker", "kafka_cluster"):
            running = funcargs.get(name)
            if running is not None:
                report.sections.append((f"{name} log tail", running.log_tail()))
    return report


@dataclass
class StackEnv:
    """Environment for one test: where its broker, topics and data live."""

    env: dict[str, str]
    data_dir: Path
    bootstrap: str

    def settings(self, **extra_env: str) -> Settings:
        saved = dict(os.environ)
        os.environ.update(self.env | extra_env)
        try:
            return load_settings()
        finally:
            os.environ.clear()
            os.environ.update(saved)

    @property
    def prefix(self) -> str:
        return self.env["DRIFTLINE_KAFKA_TOPIC_PREFIX"]


@pytest.fixture
def stack_env(test_broker: TansuBroker | KafkaBroker | KafkaCluster, tmp_path: Path) -> StackEnv:
    broker = test_broker
    prefix = f"t{uuid.uuid4().hex[:10]}."
    env = {
        "DRIFTLINE_KAFKA_BOOTSTRAP": broker.bootstrap,
        "DRIFTLINE_KAFKA_TOPIC_PREFIX": prefix,
        "DRIFTLINE_KAFKA_PARTITIONS": "2",
        "DRIFTLINE_KAFKA_REPLICATION_FACTOR": str(getattr(broker, "replication_factor", 1)),
        "DRIFTLINE_DATA_DIR": str(tmp_path / "data"),
        "DRIFTLINE_CLICKHOUSE_FLUSH_INTERVAL_S": "0.2",
        "DRIFTLINE_WORKER_SESSION_TIMEOUT_S": "6",
        "DRIFTLINE_WORKER_CHECKPOINT_INTERVAL_S": "1",
    }
    stack = StackEnv(env=env, data_dir=tmp_path / "data", bootstrap=broker.bootstrap)
    settings = stack.settings()
    prepare_topics(settings, broker.bootstrap)
    # Two people, so promotions pass the four-eyes rule: alice registers, bob approves.
    create_actor(settings, "alice", ["data-scientist"])
    create_actor(settings, "bob", ["approver"])
    create_actor(settings, "policy", ["policy"])
    return stack


@dataclass
class WorkerProcess:
    proc: subprocess.Popen
    url: str
    log_file: Path

    def get(self, path: str) -> dict:
        return http_json(self.url + path)

    def sql(self, query: str) -> list[list]:
        answer = http_json(self.url + "/driftline/sql/", {"query": query})
        assert "error" not in answer, answer
        return answer["rows"]

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> int:
        stop_child(self.proc, grace_s=30, name="worker")
        return self.proc.returncode


@pytest.fixture
def start_worker(stack_env: StackEnv, tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    started: list[WorkerProcess] = []

    def start(
        *, data_dir: Path | None = None, ready_timeout_s: float = 60.0, **extra_env: str
    ) -> WorkerProcess:
        port = free_port()
        log_file = tmp_path / f"worker-{len(started)}.log"
        env = os.environ | stack_env.env | {"DRIFTLINE_WORKER_WEB_PORT": str(port)} | extra_env
        if data_dir is not None:
            env["DRIFTLINE_DATA_DIR"] = str(data_dir)
        # A child that dies with the test run, even on SIGKILL: no orphaned worker.
        proc = spawn_child(
            [sys.executable, "-m", "driftline.streams.cli", "worker"], env=env, log_file=log_file
        )
        worker = WorkerProcess(proc, f"http://127.0.0.1:{port}", log_file)
        started.append(worker)
        deadline = time.monotonic() + ready_timeout_s
        while time.monotonic() < deadline:
            assert proc.poll() is None, f"worker exited early:\n{worker.log_tail()}"
            try:
                if worker.get("/driftline/health/").get("ready"):
                    return worker
            except OSError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"worker not ready in {ready_timeout_s}s:\n{worker.log_tail()}")

    start.started = started  # for the failure report
    yield start
    # All asked at once: each stop is mostly waiting (leaving groups, final commits).
    for worker in started:
        if worker.proc.poll() is None:
            worker.proc.send_signal(signal.SIGTERM)
    for worker in started:
        worker.stop()


@pytest.fixture
def serving_worker(stack_env, start_worker, tmp_path):
    """A worker serving model "demo" v1 (16 features), registered by alice, promoted by bob."""
    worker = start_worker()
    serve_model(stack_env.settings(), worker, tmp_path)
    return worker
