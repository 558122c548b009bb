"""`driftline audit ...`: the trail as a table, and verification where the store is."""

from __future__ import annotations

from driftline.core.settings import Settings
from driftline.lineage.audit.verify import INTACT, NOT_INTACT, UNVERIFIED
from driftline.lineage.store.clickhouse import open_client
from driftline.streams.embedded.stack import http_json
from driftline.streams.embedded.stackfile import resolve_bootstrap, running_stack
from driftline.streams.exceptions import StreamsError
from driftline.streams.kafka.codecs import codec_for
from driftline.streams.stages.checkpointing import CheckpointKeeper


def verify_store(settings: Settings, model: str | None = None) -> RemoteReport:
    """Verify where the store is: in the running embedded worker, or here."""
    info = running_stack(settings)
    if settings.embedded_clickhouse and info is not None:
        query = f"?model={model}" if model else ""
        answer = http_json(f"{info.worker_url}/driftline/audit/verify/{query}", timeout=120)
        if "error" in answer:
            raise StreamsError(f"verification failed in the worker: {answer['error']}")
        return RemoteReport(answer["verdict"], answer["summary"])
    try:
        bootstrap, unavailable = resolve_bootstrap(settings), ""
    except StreamsError as exc:
        bootstrap, unavailable = None, f"no Kafka broker to read: {exc}"
    client = open_client(settings.clickhouse_dsn)
    try:
        keeper = CheckpointKeeper(
            settings,
            client,
            bootstrap=bootstrap,
            codec=codec_for(settings) if bootstrap else None,
            kafka_unavailable=unavailable,
        )
        verdict = keeper.verify(model)
        return RemoteReport(verdict.status, verdict.summary())
    finally:
        client.close()


# `driftline audit verify` exit codes, by verdict.
EXIT_CODES = {INTACT: 0, NOT_INTACT: 1, UNVERIFIED: 3}


class RemoteReport:
    """A verification verdict (intact, NOT intact, UNVERIFIED) and its readable summary,
    computed where the store is."""

    def __init__(self, verdict: str, summary: str) -> None:
        self.verdict = verdict
        self._summary = summary

    @property
    def ok(self) -> bool:
        return self.verdict == INTACT

    @property
    def exit_code(self) -> int:
        return EXIT_CODES.get(self.verdict, 1)

    def summary(self) -> str:
        return self._summary

    def __str__(self) -> str:
        return self._summary
