"""The worker's HTTP API (Faust's web server): health, stats, models, read-only SQL.

In embedded mode the worker owns the chDB store, so other processes (the CLI,
dashboards, tests) read it through ``POST /driftline/sql`` here.
"""

from __future__ import annotations

import datetime as dt

import faust
from faust.web import Request, Response, View

from streams.runtime import WorkerRuntime


def _jsonable(value: object) -> object:
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    return value


def register_views(app: faust.App, runtime: WorkerRuntime) -> None:
    @app.page("/driftline/health/")
    class Health(View):
        async def get(self, request: Request) -> Response:
            follower = runtime.follower
            ready = follower is None or follower.caught_up.is_set()
            return self.json(
                {"ready": ready, "roles": sorted(runtime.settings.worker.role_set)},
                status=200 if ready else 503,
            )

    @app.page("/driftline/stats/")
    class Stats(View):
        async def get(self, request: Request) -> Response:
            return self.json(runtime.stats.as_dict())

    @app.page("/driftline/models/")
    class Models(View):
        async def get(self, request: Request) -> Response:
            if runtime.scoring is None:
                return self.json({"error": "this worker has no inference role"}, status=404)
            return self.json(runtime.scoring.router.loaded())

    @app.page("/driftline/audit/verify/")
    class AuditVerify(View):
        async def get(self, request: Request) -> Response:
            if runtime.store is None:
                return self.json({"error": "this worker has no lineage role"}, status=404)
            model = request.query.get("model")
            ok, summary = await runtime.store.call(lambda: runtime.checkpoints.verify(model))
            return self.json({"ok": ok, "summary": summary})

    @app.page("/driftline/sql/")
    class Sql(View):
        async def post(self, request: Request) -> Response:
            if runtime.store is None:
                return self.json({"error": "this worker has no lineage role"}, status=404)
            body = await request.json()
            query = body.get("query", "")
            client = runtime.store_client

            def run() -> dict:
                # readonly=1: this endpoint can never change the store.
                result = client.query(query, settings={"readonly": 1})
                return {
                    "columns": list(result.column_names),
                    "rows": [[_jsonable(v) for v in row] for row in result.result_rows],
                }

            try:
                return self.json(await runtime.store.call(run))
            except Exception as exc:  # the query's own error, for the caller to read
                return self.json({"error": str(exc)}, status=400)
