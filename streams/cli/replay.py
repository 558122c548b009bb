"""`driftline replay` and `driftline replay-report`: where the store is, run it there.

With the embedded stack running, the worker owns chDB, so the CLI starts the
replay in the worker over HTTP and polls its progress. Against a ClickHouse
server (or with no stack running) it loads the candidate itself, verified like
a worker would, and replays in this process.
"""

from __future__ import annotations

import time
import urllib.parse
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from driftline.core.settings import Settings
from driftline.inference import LoadedModel
from driftline.lineage.promotion.replay import replay, replay_report
from driftline.lineage.store.clickhouse import open_client
from driftline.streams.artifact_store import artifact_store
from driftline.streams.embedded.stack import http_json
from driftline.streams.embedded.stackfile import running_stack
from driftline.streams.exceptions import StreamsError


def _worker_url(settings: Settings) -> str | None:
    info = running_stack(settings)
    return info.worker_url if settings.embedded_clickhouse and info is not None else None


def run_replay(
    settings: Settings,
    model: str,
    version: int,
    start_ms: int,
    end_ms: int,
    progress: Callable[[int, int], None],
    *,
    worker_url: str | None = None,
) -> dict[str, Any]:
    """Replay and return the summary as a dict; raises StreamsError with the worker's reason.

    ``worker_url`` names the worker owning the store; by default the running stack's.
    """
    url = worker_url or _worker_url(settings)
    if url is not None:
        job = http_json(
            f"{url}/driftline/replay/",
            {"model": model, "version": version, "from_ms": start_ms, "to_ms": end_ms},
        )
        while not job.get("error") and not job.get("finished"):
            progress(job.get("done", 0), job.get("total", 0))
            time.sleep(0.2)
            job = http_json(f"{url}/driftline/replay/?id={job['replay_id']}")
        if job.get("error"):
            raise StreamsError(f"replay failed: {job['error']}")
        progress(job["done"], job["total"])
        return job["summary"]
    return asdict(_replay_here(settings, model, version, start_ms, end_ms, progress))


def _replay_here(settings, model, version, start_ms, end_ms, progress):
    from driftline.streams.control.model_commands import ModelCommands

    registry = ModelCommands.from_settings(settings).registry()
    candidate = registry.get(model, version)
    data = artifact_store(settings).read_verified(candidate.artifact, candidate.digest)
    loaded = LoadedModel.load(data, name=model, version=version, expected_digest=candidate.digest)
    client = open_client(settings.clickhouse_dsn)
    try:
        return replay(
            client,
            settings.clickhouse.database,
            loaded,
            start_ms=start_ms,
            end_ms=end_ms,
            progress=progress,
        )
    finally:
        client.close()


def report(
    settings: Settings, replay_id: str, threshold: float, *, worker_url: str | None = None
) -> list[tuple[str, str]]:
    url = worker_url or _worker_url(settings)
    if url is not None:
        query = urllib.parse.urlencode({"id": replay_id, "threshold": threshold})
        answer = http_json(f"{url}/driftline/replay/report/?{query}", timeout=120)
        if "error" in answer:
            raise StreamsError(f"replay report failed: {answer['error']}")
        return [tuple(row) for row in answer["rows"]]
    client = open_client(settings.clickhouse_dsn)
    try:
        return replay_report(
            client, settings.clickhouse.database, replay_id, threshold=threshold
        ).rows()
    finally:
        client.close()
