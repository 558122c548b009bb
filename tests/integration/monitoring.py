"""A real Prometheus, a real Alertmanager and a webhook receiver, for the tests.

The binaries are Debian's (``make prometheus``; see ``debian_tools``). Each runs as a
child that dies with the test run, on free ports of 127.0.0.1, with its data in the
test's tmp dir, and scrapes, evaluates and notifies every second so a test waits
seconds, not minutes.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import yaml

from driftline.streams.embedded.processes import free_port, spawn_child, stop_child
from tests.integration.debian_tools import alertmanager_templates, binary

_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: no proxy


def _get_json(url: str, timeout: float = 5.0) -> dict:
    with _DIRECT.open(url, timeout=timeout) as response:
        return json.loads(response.read())


def _wait_ready(url: str, what: str, log_file: Path, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with _DIRECT.open(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    tail = "\n".join(log_file.read_text(errors="replace").splitlines()[-30:])
    raise AssertionError(f"{what} not ready in {timeout_s}s:\n{tail}")


class Prometheus:
    """Scrapes ``targets`` (``host:port`` of workers) every second."""

    def __init__(
        self, workdir: Path, targets: list[str], *, rules: Path | None = None,
        alertmanager: str | None = None,
    ) -> None:  # fmt: skip
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_file = workdir / "prometheus.log"
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [{"job_name": "driftline", "static_configs": [{"targets": targets}]}],
        }
        if rules is not None:
            config["rule_files"] = [str(rules)]
        if alertmanager is not None:
            config["alerting"] = {
                "alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]
            }
        self.config = workdir / "prometheus.yml"
        self.config.write_text(yaml.safe_dump(config))
        self.proc = spawn_child(
            [
                str(binary("prometheus")),
                f"--config.file={self.config}",
                f"--storage.tsdb.path={workdir / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            log_file=self.log_file,
        )
        _wait_ready(self.url + "/-/ready", "Prometheus", self.log_file)

    def query(self, expr: str) -> list[dict]:
        answer = _get_json(f"{self.url}/api/v1/query?{urllib.parse.urlencode({'query': expr})}")
        assert answer["status"] == "success", answer
        return answer["data"]["result"]

    def scalar(self, expr: str) -> float | None:
        """The one value ``expr`` returns now, or None while it returns nothing."""
        result = self.query(expr)
        return float(result[0]["value"][1]) if result else None

    def stop(self) -> None:
        stop_child(self.proc, name="prometheus", quiet=True)


class WebhookReceiver:
    """An HTTP server collecting Alertmanager's webhook notifications, with arrival times."""

    def __init__(self) -> None:
        received: list[tuple[float, dict]] = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (the stdlib's name)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                received.append((time.monotonic(), json.loads(body)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.received = received
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/alerts"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def firing(self, alertname: str) -> list[tuple[float, dict]]:
        """(arrival, alert) for each firing ``alertname`` alert received so far."""
        return [
            (at, alert)
            for at, note in self.received
            for alert in note["alerts"]
            if alert["status"] == "firing" and alert["labels"]["alertname"] == alertname
        ]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Alertmanager:
    """Routes every alert to ``webhook`` at once (group_wait 1s); clustering off."""

    def __init__(self, workdir: Path, webhook: str) -> None:
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.log_file = workdir / "alertmanager.log"
        config = {
            "route": {
                "receiver": "test",
                "group_by": ["alertname"],
                "group_wait": "1s",
                "group_interval": "1s",
                "repeat_interval": "1h",
            },
            "receivers": [{"name": "test", "webhook_configs": [{"url": webhook}]}],
        }
        self.config = workdir / "alertmanager.yml"
        self.config.write_text(yaml.safe_dump(config))
        alertmanager_templates()
        self.proc = spawn_child(
            [
                str(binary("prometheus-alertmanager")),
                f"--config.file={self.config}",
                f"--storage.path={workdir / 'alertmanager'}",
                f"--web.listen-address={self.address}",
                "--cluster.listen-address=",
            ],
            log_file=self.log_file,
        )
        _wait_ready(f"http://{self.address}/-/ready", "Alertmanager", self.log_file)

    def stop(self) -> None:
        stop_child(self.proc, name="alertmanager", quiet=True)
