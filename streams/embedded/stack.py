"""`driftline up`: the local stack (a broker + one worker that owns chDB).

The broker is the embedded Tansu (memory only, the default) or, with
``--broker kafka``, a single-node Apache Kafka keeping its data in the data dir.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING

from driftline.core.settings import Settings
from driftline.streams.embedded.processes import free_port, spawn_child, stop_child
from driftline.streams.embedded.stackfile import StackInfo
from driftline.streams.embedded.tansu import TansuBroker
from driftline.streams.exceptions import StreamsError
from driftline.streams.kafka.provision import prepare_topics

if TYPE_CHECKING:
    from driftline.streams.embedded.kafka_local import KafkaBroker

log = logging.getLogger(__name__)


def http_json(url: str, payload: dict | None = None, timeout: float = 10.0) -> dict:
    data = json.dumps(payload).encode() if payload is not None else None
    request = urllib.request.Request(url, data=data, headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return json.loads(exc.read() or b"{}") | {"status": exc.code}


def http_text(url: str, timeout: float = 10.0) -> str:
    """A GET's body as text (raises urllib's HTTPError on an error status)."""
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read().decode()


class RestartBackoff:
    """Waits between worker restarts: 1 s, doubling to 30 s; reset once a worker lasts a minute.

    A worker that dies at once again and again (a bad setting) is restarted slowly
    instead of in a tight loop; one that crashed after running a while comes
    back quickly.
    """

    def __init__(self, first_s: float = 1.0, most_s: float = 30.0, healthy_s: float = 60.0):
        self.first_s, self.most_s, self.healthy_s = first_s, most_s, healthy_s
        self.next_s = first_s
        self.restarts = 0

    def after_run(self, ran_s: float) -> float:
        """The wait before the next restart, for a worker that ran ``ran_s`` seconds."""
        if ran_s >= self.healthy_s:
            self.next_s = self.first_s
        wait, self.next_s = self.next_s, min(self.next_s * 2, self.most_s)
        self.restarts += 1
        return wait


def _port_if_free(port: int) -> bool:
    """Whether a server could listen on ``port`` now.

    With SO_REUSEADDR, as Kafka's own listener binds: connections the stopped broker
    closed linger in TIME_WAIT on its port for a minute, and a plain bind counts the
    port as taken, so a quick restart moved the broker to new ports.
    """
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def local_kafka(settings: Settings, log_dir: Path) -> KafkaBroker:
    """A single-node Apache Kafka whose log dir and ports live in ``<data dir>/kafka``.

    The same ports are taken again on a restart when they are free: clients that kept
    the old bootstrap reconnect, and the node's controller address stays what its
    formatted log dir knows.
    """
    from driftline.streams.embedded.kafka_local import KafkaBroker

    data_dir = settings.data.dir.resolve() / "kafka"
    data_dir.mkdir(parents=True, exist_ok=True)
    ports_file = data_dir / "ports.json"
    try:
        ports = json.loads(ports_file.read_text())
    except (FileNotFoundError, ValueError):
        ports = {}
    port, controller = ports.get("port"), ports.get("controller_port")
    if not (port and controller and _port_if_free(port) and _port_if_free(controller)):
        port, controller = free_port(), free_port()
        ports_file.write_text(json.dumps({"port": port, "controller_port": controller}))
    # Room for the largest message a driftline producer may send, batch overhead included.
    message_max = max(1_048_588, settings.kafka.message_max_bytes + 64 * 1024)
    return KafkaBroker(
        data_dir,
        port=port,
        controller_port=controller,
        overrides={"message.max.bytes": str(message_max)},
        log_file=log_dir / "kafka.log",
    )


class EmbeddedStack:
    """The local stack: a broker (Tansu in memory, or Apache Kafka on disk) and one worker.

    ``broker`` picks it (default ``DRIFTLINE_KAFKA_LOCAL_BROKER``).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        worker_env: dict[str, str] | None = None,
        broker: str | None = None,
    ) -> None:
        self.settings = settings
        self.data_dir = settings.data.dir.resolve()
        self.log_dir = self.data_dir / "logs"
        self.worker_env = worker_env or {}
        self.broker_kind = broker or settings.kafka.local_broker
        if self.broker_kind not in ("tansu", "kafka"):
            raise StreamsError(f"unknown local broker {self.broker_kind!r}: use tansu or kafka")
        self.broker: TansuBroker | KafkaBroker | None = None
        self.worker = None
        self.worker_started_at = 0.0
        self.info: StackInfo | None = None
        self._port = 0

    @property
    def worker_url(self) -> str:
        return self.info.worker_url

    def start(self, *, ready_timeout_s: float = 90.0) -> StackInfo:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.broker = self._new_broker().start()
        try:
            prepare_topics(self.settings, self.broker.bootstrap)
            self._port = free_port()
            self._spawn_worker()
            self.info = StackInfo(
                bootstrap=self.broker.bootstrap,
                worker_url=f"http://127.0.0.1:{self._port}",
                clickhouse_dsn=self.settings.clickhouse_dsn,
                topic_prefix=self.settings.kafka.topic_prefix,
                supervisor_pid=os.getpid(),
            )
            self._wait_ready(ready_timeout_s)
        except BaseException:
            self.stop()
            raise
        self.info.write(self.settings.data.stack_file)
        return self.info

    def _spawn_worker(self) -> None:
        env = (
            os.environ
            | self.worker_env
            | {
                "DRIFTLINE_KAFKA_BOOTSTRAP": self.broker.bootstrap,
                "DRIFTLINE_WORKER_WEB_PORT": str(self._port),
                "DRIFTLINE_DATA_DIR": str(self.data_dir),
            }
        )
        self.worker = spawn_child(
            [sys.executable, "-m", "driftline.streams.cli", "worker"],
            env=env,
            log_file=self.log_dir / "worker.log",
        )
        self.worker_started_at = time.monotonic()

    def _new_broker(self) -> TansuBroker | KafkaBroker:
        if self.broker_kind == "kafka":
            return local_kafka(self.settings, self.log_dir)
        return TansuBroker(log_file=self.log_dir / "tansu.log")

    @property
    def broker_keeps_data(self) -> bool:
        """Whether the broker's topics outlive its process (Apache Kafka on disk)."""
        return self.broker_kind == "kafka"

    def restart_broker(self) -> None:
        """Start the broker again from its data dir (Apache Kafka only: Tansu kept nothing)."""
        if not self.broker_keeps_data:
            raise StreamsError("the embedded Tansu broker keeps its topics in memory only")
        if self.broker_alive():
            raise StreamsError("the broker is still running; stop it before a restart")
        self.broker.start()

    def restart_worker(self, *, ready_timeout_s: float = 90.0) -> None:
        """Start a new worker against the same broker, topics and store (the old one is gone).

        The broker keeps every topic in memory, so the registry, offsets and
        state tables are all still there: the new worker resumes from the
        committed offsets.
        """
        if self.worker is not None and self.worker.poll() is None:
            raise StreamsError("the worker is still running; stop it before a restart")
        self._spawn_worker()
        self._wait_ready(ready_timeout_s)

    def broker_alive(self) -> bool:
        proc = None if self.broker is None else self.broker.proc
        return proc is not None and proc.poll() is None

    def worker_alive(self) -> bool:
        return self.worker is not None and self.worker.poll() is None

    def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.worker.poll() is not None:
                raise StreamsError(
                    f"the worker exited with code {self.worker.returncode} while "
                    f"starting:\n{self.worker_log_tail()}"
                )
            try:
                if http_json(self.worker_url + "/driftline/health/", timeout=2).get("ready"):
                    return
            except (OSError, ValueError):
                pass
            time.sleep(0.2)
        raise StreamsError(
            f"the worker was not ready in {timeout_s:.0f}s:\n{self.worker_log_tail()}"
        )

    def worker_log_tail(self, lines: int = 30) -> str:
        path = self.log_dir / "worker.log"
        return (
            "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
            if path.exists()
            else ""
        )

    def alive(self) -> bool:
        return self.worker_alive() and self.broker_alive()

    def stop(self) -> None:
        """Worker first (it flushes and commits through the broker), then the broker."""
        if self.worker is not None:
            stop_child(self.worker, grace_s=30.0, name="worker")
            self.worker = None
        if self.broker is not None:
            self.broker.stop()
            self.broker = None
        stack_file: Path = self.settings.data.stack_file
        info = StackInfo.read(stack_file)
        if info is None or info.supervisor_pid == os.getpid():
            stack_file.unlink(missing_ok=True)

    def __enter__(self) -> EmbeddedStack:
        self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()
