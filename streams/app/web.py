"""The worker's HTTP API (Faust's web server): health, stats, metrics, models, drift, policy,
SQL, replay, erasure.

In embedded mode the worker owns the chDB store, so other processes (the CLI,
dashboards, tests) read it through ``POST /driftline/sql`` here.
"""

from __future__ import annotations

import datetime as dt

import faust
from faust.web import Request, Response, View

from driftline.core.errors import DriftlineError
from driftline.lineage.audit.erasure import command_from_json
from driftline.streams.app.dashboard import STATIC, DashboardFeed
from driftline.streams.app.metrics import CONTENT_TYPE, WorkerCollector, metrics_text
from driftline.streams.app.runtime import WorkerRuntime
from driftline.streams.stages.erasure import ErasureService
from driftline.streams.stages.replay_jobs import ReplayJobs


def _jsonable(value: object) -> object:
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    return value


def register_views(app: faust.App, runtime: WorkerRuntime) -> None:
    collector = WorkerCollector(
        runtime.stats,
        router=runtime.scoring.router if runtime.scoring is not None else None,
        roles=frozenset(runtime.settings.worker.role_set),
        audit=runtime.checkpoints,
        faust_monitor=app.monitor,
    )

    feed = DashboardFeed(runtime)

    @app.timer(1.0)
    async def sample_dashboard() -> None:
        feed.sample()

    static = {
        "": ("index.html", "text/html"),
        "app.js": ("app.js", "text/javascript"),
        "style.css": ("style.css", "text/css"),
    }

    def static_view(name: str, content_type: str) -> type[View]:
        body = (STATIC / name).read_bytes()

        class Static(View):
            async def get(self, request: Request) -> Response:
                return self.bytes(body, content_type=content_type)

        return Static

    for path, (name, content_type) in static.items():
        app.page(f"/driftline/dashboard/{path}")(static_view(name, content_type))

    @app.page("/driftline/dashboard/data/")
    class DashboardData(View):
        """What the live page polls (see driftline.streams.app.dashboard)."""

        async def get(self, request: Request) -> Response:
            return self.json(await feed.data())

    @app.page("/metrics")
    class Metrics(View):
        """Prometheus's scrape target (see driftline.streams.app.metrics)."""

        async def get(self, request: Request) -> Response:
            return self.bytes(metrics_text(collector), content_type=CONTENT_TYPE)

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

    @app.page("/driftline/policy/")
    class PolicyView(View):
        async def get(self, request: Request) -> Response:
            if runtime.policy is None:
                return self.json({"error": "the policy role is off on this worker"}, status=404)
            loop = runtime.policy_loop
            return self.json(
                {
                    "policy": runtime.policy.policy.as_dict(),
                    "evaluating": loop is not None,
                    "decisions": loop.last if loop is not None else {},
                    "drift_rules_fired": sorted(
                        "/".join(map(str, key)) for key in runtime.policy.responder.fired
                    ),
                }
            )

    @app.page("/driftline/drift/")
    class Drift(View):
        async def get(self, request: Request) -> Response:
            if runtime.decider is None:
                return self.json({"error": "drift detection is off on this worker"}, status=404)
            return self.json(await runtime.decider.status_async())

    @app.page("/driftline/audit/verify/")
    class AuditVerify(View):
        async def get(self, request: Request) -> Response:
            if runtime.store is None:
                return self.json({"error": "this worker has no lineage role"}, status=404)
            model = request.query.get("model")
            verdict = await runtime.store.call(lambda: runtime.checkpoints.verify(model))
            return self.json(
                {"ok": verdict.ok, "verdict": verdict.status, "summary": verdict.summary()}
            )

    jobs = ReplayJobs(runtime)

    @app.page("/driftline/replay/")
    class Replay(View):
        async def post(self, request: Request) -> Response:
            body = await request.json()
            try:
                job = jobs.start(
                    str(body["model"]),
                    int(body["version"]),
                    int(body["from_ms"]),
                    int(body["to_ms"]),
                )
            except (KeyError, TypeError, ValueError) as exc:
                return self.json(
                    {"error": f"replay needs model, version, from_ms, to_ms: {exc}"}, status=400
                )
            except DriftlineError as exc:
                return self.json({"error": str(exc)}, status=400)
            return self.json(job.as_dict())

        async def get(self, request: Request) -> Response:
            job = jobs.status(request.query.get("id", ""))
            if job is None:
                return self.json({"error": "no replay with that id in this worker"}, status=404)
            return self.json(job.as_dict())

    @app.page("/driftline/replay/report/")
    class ReplayReport(View):
        async def get(self, request: Request) -> Response:
            try:
                threshold = float(request.query.get("threshold", "0.5"))
                report = await jobs.report(request.query.get("id", ""), threshold)
            except (DriftlineError, ValueError) as exc:
                return self.json({"error": str(exc)}, status=400)
            return self.json(report)

    erasure = ErasureService(runtime)

    @app.page("/driftline/data/erase/")
    class Erase(View):
        """An erase request and the entity id it names: the id comes only here, never over
        Kafka (see driftline.lineage.audit.erasure); the answer says what was deleted."""

        async def post(self, request: Request) -> Response:
            body = await request.json()
            try:
                command = command_from_json(body["request"])
                entity_id = str(body["entity_id"])
            except (KeyError, TypeError, DriftlineError) as exc:
                return self.json(
                    {"error": f"an erase needs a signed request and an entity_id: {exc}"},
                    status=400,
                )
            try:
                return self.json(await erasure.erase(command, entity_id))
            except DriftlineError as exc:
                return self.json({"error": str(exc).replace(entity_id, "<entity>")}, status=400)

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
