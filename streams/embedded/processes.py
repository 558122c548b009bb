"""Child processes that die with their parent, free ports, and waiting for a broker.

Children are started in their own session (so a terminal's Ctrl-C reaches only the
supervisor, which stops them in order) and with PR_SET_PDEATHSIG (so they die with
the supervisor even if it is killed with SIGKILL): no orphans either way.
"""

from __future__ import annotations

import ctypes
import logging
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from driftline.streams.exceptions import BrokerUnavailable

log = logging.getLogger(__name__)
_PR_SET_PDEATHSIG = 1


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _die_with_parent() -> None:
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def spawn_child(args: list[str], *, env: dict | None = None, log_file: Path | None = None):
    """Start a child that dies with us and ignores the terminal's Ctrl-C."""
    output = open(log_file, "ab") if log_file else subprocess.DEVNULL  # noqa: SIM115
    return subprocess.Popen(
        args,
        env=env,
        stdout=output,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=_die_with_parent,
    )


def stop_child(
    proc: subprocess.Popen, *, grace_s: float = 20.0, name: str = "child", quiet: bool = False
) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        log.log(
            logging.DEBUG if quiet else logging.WARNING,
            "%s (pid %d) did not stop in %.0fs; killing it",
            name,
            proc.pid,
            grace_s,
        )
        proc.kill()
        proc.wait()


def wait_for_broker(bootstrap: str, timeout_s: float = 20.0) -> None:
    """Block until a metadata request succeeds, or raise BrokerUnavailable."""
    deadline = time.monotonic() + timeout_s
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            # log_level 0: refused connections are expected while the broker starts.
            AdminClient({"bootstrap.servers": bootstrap, "log_level": 0}).list_topics(timeout=2)
            return
        except KafkaException as exc:
            last_error = exc
            time.sleep(0.1)
    raise BrokerUnavailable(
        f"no Kafka broker answered at {bootstrap} in {timeout_s:.0f}s: {last_error}"
    )
