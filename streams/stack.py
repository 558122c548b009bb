"""`driftline up`: the embedded stack (Tansu broker + one worker that owns chDB)."""

from __future__ import annotations

import json
import logging
import os
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from driftline.settings import Settings
from streams.embedded import TansuBroker, free_port, spawn_child, stop_child
from streams.exceptions import StreamsError
from streams.stackfile import StackInfo
from streams.worker import prepare_topics

log = logging.getLogger(__name__)


def http_json(url: str, payload: dict | None = None, timeout: float = 10.0) -> dict:
    data = json.dumps(payload).encode() if payload is not None else None
    request = urllib.request.Request(url, data=data, headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return json.loads(exc.read() or b"{}") | {"status": exc.code}


class EmbeddedStack:
    def __init__(self, settings: Settings, *, worker_env: dict[str, str] | None = None) -> None:
        self.settings = settings
        self.data_dir = settings.data.dir.resolve()
        self.log_dir = self.data_dir / "logs"
        self.worker_env = worker_env or {}
        self.broker: TansuBroker | None = None
        self.worker = None
        self.info: StackInfo | None = None

    @property
    def worker_url(self) -> str:
        return self.info.worker_url

    def start(self, *, ready_timeout_s: float = 90.0) -> StackInfo:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.broker = TansuBroker(log_file=self.log_dir / "tansu.log").start()
        try:
            prepare_topics(self.settings, self.broker.bootstrap)
            port = free_port()
            env = (
                os.environ
                | self.worker_env
                | {
                    "DRIFTLINE_KAFKA_BOOTSTRAP": self.broker.bootstrap,
                    "DRIFTLINE_WORKER_WEB_PORT": str(port),
                    "DRIFTLINE_DATA_DIR": str(self.data_dir),
                }
            )
            self.worker = spawn_child(
                [sys.executable, "-m", "streams.cli", "worker"],
                env=env,
                log_file=self.log_dir / "worker.log",
            )
            self.info = StackInfo(
                bootstrap=self.broker.bootstrap,
                worker_url=f"http://127.0.0.1:{port}",
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
        return (
            self.worker is not None
            and self.worker.poll() is None
            and self.broker is not None
            and self.broker.proc.poll() is None
        )

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
