"""Reading the store from a CLI process.

Embedded chDB can be opened by one process only, so while the stack runs the CLI
asks the owning worker over HTTP; otherwise it opens the store itself.
"""

from __future__ import annotations

from driftline.core.settings import Settings
from driftline.lineage.audit.erasure import ERASURE_CHAIN
from driftline.lineage.audit.residency import RESIDENCY_CHAIN
from driftline.lineage.registry.versions import check_model_name
from driftline.lineage.store.clickhouse import open_client, redact_dsn
from driftline.streams.embedded.stack import http_json
from driftline.streams.embedded.stackfile import running_stack
from driftline.streams.exceptions import StreamsError


def query(settings: Settings, sql: str) -> tuple[list[str], list[list]]:
    info = running_stack(settings)
    if settings.embedded_clickhouse and info is not None:
        answer = http_json(info.worker_url + "/driftline/sql/", {"query": sql})
        if "error" in answer:
            raise StreamsError(
                f"query failed in the worker at {info.worker_url}: {answer['error']}"
            )
        return answer["columns"], answer["rows"]
    client = open_client(settings.clickhouse_dsn)
    try:
        result = client.query(sql, settings={"readonly": 1})
    except Exception as exc:  # clickhouse_connect raises several unrelated types
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
        raise StreamsError(
            f"query failed on {redact_dsn(settings.clickhouse_dsn)}: {first_line}; is the stack "
            "up (`driftline up`), or has a worker with the lineage role created the tables?"
        ) from exc
    finally:
        client.close()
    return list(result.column_names), [list(row) for row in result.result_rows]


def audit_trail_query(database: str, model: str | None = None) -> str:
    if model is not None and model not in (ERASURE_CHAIN, RESIDENCY_CHAIN):
        check_model_name(model)
    where = f"WHERE model = '{model}'" if model else ""
    return (
        "SELECT formatDateTime(occurred_at, '%F %T') AS time, model, seq, event_type AS event, "
        "version, actor, substring(hash, 1, 12) AS hash "
        f"FROM {database}.audit_log {where} ORDER BY occurred_at, model, seq"
    )
