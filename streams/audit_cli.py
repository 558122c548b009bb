"""`driftline audit ...`: the trail as a table, and chain verification where the store is."""

from __future__ import annotations

from driftline.settings import Settings
from lineage import open_client
from lineage.registry import check_model_name
from streams.checkpointing import CheckpointKeeper
from streams.exceptions import StreamsError
from streams.stack import http_json
from streams.stackfile import running_stack


def audit_trail_query(database: str, model: str | None = None) -> str:
    if model is not None:
        check_model_name(model)
    where = f"WHERE model = '{model}'" if model else ""
    return (
        "SELECT formatDateTime(occurred_at, '%F %T') AS time, model, seq, event_type AS event, "
        "version, actor, substring(hash, 1, 12) AS hash "
        f"FROM {database}.audit_log {where} ORDER BY occurred_at, model, seq"
    )


def verify_store(settings: Settings, model: str | None = None) -> RemoteReport:
    info = running_stack(settings)
    if settings.embedded_clickhouse and info is not None:
        query = f"?model={model}" if model else ""
        answer = http_json(f"{info.worker_url}/driftline/audit/verify/{query}", timeout=120)
        if "error" in answer:
            raise StreamsError(f"verification failed in the worker: {answer['error']}")
        return RemoteReport(answer["ok"], answer["summary"])
    client = open_client(settings.clickhouse_dsn)
    try:
        keeper = CheckpointKeeper(settings, client)
        return RemoteReport(*keeper.verify(model))
    finally:
        client.close()


class RemoteReport:
    """A verification report: chains and signed checkpoints, computed where the store is."""

    def __init__(self, ok: bool, summary: str) -> None:
        self.ok = ok
        self._summary = summary

    def summary(self) -> str:
        return self._summary

    def __str__(self) -> str:
        return self._summary
