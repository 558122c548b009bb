"""Replays run inside the worker that owns the store (embedded chDB), one at a time.

The CLI starts a job over HTTP and polls its progress; the job loads the
candidate version through the lifecycle follower (digest and signature
checked, like any served model) and runs :func:`driftline.lineage.promotion.replay.replay` on the
store thread, so it never races the sinks for the chDB engine.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

from driftline.lineage.exceptions import LineageError
from driftline.lineage.promotion.replay import replay, replay_report


@dataclass
class ReplayJob:
    replay_id: str
    model: str
    version: int
    done: int = 0
    total: int = 0
    finished: bool = False
    error: str | None = None
    summary: dict[str, Any] | None = None
    started_at: float = field(default_factory=time.time)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class ReplayJobs:
    def __init__(self, runtime: Any) -> None:
        self._runtime = runtime
        self._jobs: dict[str, ReplayJob] = {}
        self._tasks: set[asyncio.Task] = set()

    def start(self, model: str, version: int, start_ms: int, end_ms: int) -> ReplayJob:
        follower = self._runtime.follower
        if follower is None or self._runtime.store is None:
            raise LineageError("replay needs a worker with the inference and lineage roles")
        candidate = follower.registry.get(model, version)  # UnknownModel/UnknownVersion
        job = ReplayJob(str(uuid.uuid4()), model, version)
        self._jobs[job.replay_id] = job
        task = asyncio.ensure_future(self._run(job, candidate, start_ms, end_ms))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return job

    async def _run(self, job: ReplayJob, candidate, start_ms: int, end_ms: int) -> None:
        runtime = self._runtime
        try:
            loaded = await runtime.follower.load_version(candidate)
            if loaded is None:
                raise LineageError(
                    f"{job.model} v{job.version} cannot be loaded (see the worker's "
                    "/driftline/stats/ models_refused); replay needs a verified artifact"
                )

            def progress(done: int, total: int) -> None:
                job.done, job.total = done, total

            summary = await runtime.store.call(
                lambda: replay(
                    runtime.store_client,
                    runtime.settings.clickhouse.database,
                    loaded,
                    start_ms=start_ms,
                    end_ms=end_ms,
                    replay_id=job.replay_id,
                    progress=progress,
                )
            )
            job.summary = asdict(summary)
        except Exception as exc:  # reported to the CLI, never kills the worker
            job.error = str(exc)
        finally:
            job.finished = True

    def status(self, replay_id: str) -> ReplayJob | None:
        return self._jobs.get(replay_id)

    async def report(self, replay_id: str, threshold: float) -> dict[str, Any]:
        runtime = self._runtime
        result = await runtime.store.call(
            lambda: replay_report(
                runtime.store_client,
                runtime.settings.clickhouse.database,
                replay_id,
                threshold=threshold,
            )
        )
        return {"rows": result.rows(), "report": result.as_dict()}
