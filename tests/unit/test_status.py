"""`driftline status` against a worker whose roles are only partly on: a section whose
endpoint answers 404 says the role is off instead of failing the command."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from driftline.streams.cli.status import render
from driftline.streams.control.status import read_status

LINEAGE_ONLY = {
    "/driftline/health/": (503, {"ready": False, "roles": ["lineage"]}),
    "/driftline/stats/": (200, {"uptime_s": 12.0, "records_in": 0, "predictions_out": 0,
                                "dead_letters": {}, "last_batch_at": None}),
    "/driftline/models/": (404, {"error": "this worker has no inference role"}),
    "/driftline/policy/": (404, {"error": "the policy role is off on this worker"}),
    "/driftline/sql/": (200, {"columns": ["time", "model", "event_type", "version", "actor"],
                              "rows": [["2026-12-06 04:00:00", "demo", "promoted", 1, "bob"]]}),
}  # fmt: skip


@pytest.fixture
def worker():
    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            if self.path == "/metrics":
                body, status, kind = b"# no lag yet\n", 200, "text/plain"
            else:
                status, payload = LINEAGE_ONLY[self.path]
                body, kind = json.dumps(payload).encode(), "application/json"
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
            self._answer()

        def do_POST(self) -> None:  # noqa: N802
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self._answer()

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_roles_that_are_off_are_sections_left_out_not_failures(worker, capsys):
    status = read_status(worker, "driftline")
    assert status.ready is False and status.roles == ["lineage"]
    assert status.models is None and status.decisions is None
    assert status.lag == {}
    assert status.lifecycle == [["2026-12-06 04:00:00", "demo", "promoted", 1, "bob"]]
    render(status)
    shown = capsys.readouterr().out
    assert "catching up" in shown and "served models" not in shown and "policy" not in shown
    assert "recent lifecycle events" in shown and "promoted" in shown
