"""`driftline up`: starts a broker (Tansu, or Apache Kafka on disk) + a worker, records
where they are, and leaves no orphans."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from driftline.streams.embedded.processes import spawn_child
from driftline.streams.embedded.stack import http_json
from tests.integration.helpers import wait_until

pytestmark = pytest.mark.integration


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped) is not running either.
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().split()[2] != "Z"


def _children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


def _start_up(tmp_path, *args: str):
    env = {k: v for k, v in os.environ.items() if not k.startswith("DRIFTLINE_")}
    env["DRIFTLINE_DATA_DIR"] = str(tmp_path / "data")
    proc = spawn_child([sys.executable, "-m", "driftline.streams.cli", "up", *args], env=env)
    stack_file = tmp_path / "data" / "stack.json"
    wait_until(stack_file.exists, timeout_s=90, what="stack.json")
    info = json.loads(stack_file.read_text())
    assert info["supervisor_pid"] == proc.pid
    assert info["bootstrap"].startswith("127.0.0.1:")
    assert http_json(info["worker_url"] + "/driftline/health/")["ready"] is True
    children = _children(proc.pid)
    assert len(children) == 2  # the broker and the worker
    return proc, children, stack_file


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_up_stops_everything_on_sigterm_or_ctrl_c(tmp_path, sig):
    proc, children, stack_file = _start_up(tmp_path)
    proc.send_signal(sig)
    assert proc.wait(60) == 0
    wait_until(lambda: not any(_alive(pid) for pid in children), timeout_s=10, what="children gone")
    assert not stack_file.exists()


def test_children_die_with_a_killed_supervisor(tmp_path):
    proc, children, _ = _start_up(tmp_path)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    deadline = time.monotonic() + 40
    while any(_alive(pid) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(_alive(pid) for pid in children)


def _cmdline(pid: int) -> str:
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return f.read().replace(b"\0", b" ").decode()


def test_up_restarts_a_dead_worker_on_the_same_broker(tmp_path):
    proc, children, stack_file = _start_up(tmp_path)
    try:
        (worker,) = [pid for pid in children if "driftline.streams.cli worker" in _cmdline(pid)]
        (broker,) = [pid for pid in children if pid != worker]
        info = json.loads(stack_file.read_text())
        os.kill(worker, signal.SIGKILL)

        def restarted() -> bool:
            now = _children(proc.pid)
            try:
                ready = http_json(info["worker_url"] + "/driftline/health/", timeout=2)["ready"]
            except OSError:
                return False
            return len(now) == 2 and worker not in now and ready

        wait_until(restarted, timeout_s=90, what="a new worker, ready")
        assert broker in _children(proc.pid) and _alive(broker)
        assert json.loads(stack_file.read_text())["bootstrap"] == info["bootstrap"]
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0


def test_up_on_apache_kafka_keeps_the_registry_across_a_restart(tmp_path):
    from driftline.core.settings import load_settings
    from driftline.streams.control.identity import create_actor
    from driftline.streams.control.model_commands import ModelCommands
    from tests.integration.helpers import write_model

    saved = dict(os.environ)
    os.environ["DRIFTLINE_DATA_DIR"] = str(tmp_path / "data")
    try:
        settings = load_settings()
    finally:
        os.environ.clear()
        os.environ.update(saved)

    proc, children, stack_file = _start_up(tmp_path, "--broker", "kafka")
    try:
        assert any("kafka.Kafka" in _cmdline(pid) for pid in children)
        first_bootstrap = json.loads(stack_file.read_text())["bootstrap"]
        create_actor(settings, "alice", ["data-scientist"])
        version, _ = ModelCommands.from_settings(settings).register(
            write_model(tmp_path, seed=1), "kept", actor="alice"
        )
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(90) == 0
    assert (tmp_path / "data" / "kafka" / "log" / "meta.properties").exists()

    proc, children, stack_file = _start_up(tmp_path, "--broker", "kafka")
    try:
        # Same broker address (its ports are kept in the data dir), same topics.
        assert json.loads(stack_file.read_text())["bootstrap"] == first_bootstrap
        registry = ModelCommands.from_settings(settings).registry()
        assert [v.version for v in registry.versions("kept")] == [version.version]
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(90) == 0
