"""ClickHouse plumbing shared by the audit writer and the sinks.

The same SQL runs on chDB in process (``chdb:///abs/path``) and on a ClickHouse
server (``http(s)://user:password@host:8123``); only the DSN differs.
"""

from __future__ import annotations

import re
from importlib import resources
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

import clickhouse_connect

from driftline.lineage.exceptions import StoreError


class ClickHouseClient(Protocol):
    """What driftline uses of a clickhouse-connect client, a server's or chDB's.

    Tests wrap a real client in something of this shape to inject failures.
    """

    def query(
        self, query: str, parameters: Any = None, settings: dict[str, Any] | None = None
    ) -> Any: ...

    def query_arrow(
        self, query: str, parameters: Any = None, settings: dict[str, Any] | None = None
    ) -> Any: ...

    def command(
        self, cmd: str, parameters: Any = None, settings: dict[str, Any] | None = None
    ) -> Any: ...

    def insert(self, table: str, data: Any, *args: Any, **kwargs: Any) -> Any: ...

    def insert_arrow(self, table: str, arrow_table: Any, *args: Any, **kwargs: Any) -> Any: ...

    def close(self) -> None: ...


AUDIT_LOG = "audit_log"
PREDICTIONS = "predictions"
DEADLETTERS = "deadletters"
CHECKPOINTS = "audit_checkpoints"
FEATURES = "features"
REPLAYS = "replay_predictions"
DRIFT = "drift"
OUTCOMES = "outcomes"
TABLES = (AUDIT_LOG, PREDICTIONS, DEADLETTERS, CHECKPOINTS, FEATURES, REPLAYS, DRIFT, OUTCOMES)

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def check_identifier(name: str) -> str:
    """Return ``name`` if it is safe to splice into SQL as a database/table name."""
    if not isinstance(name, str) or not _IDENTIFIER.match(name):
        raise StoreError(
            f"{name!r} is not a usable ClickHouse database name; use letters, digits and "
            "underscores, not starting with a digit"
        )
    return name


def ddl_text(database: str) -> str:
    """The packaged ``tables.sql`` with ``{database}`` filled in (comments kept)."""
    template = (
        resources.files("driftline.lineage.store")
        .joinpath("tables.sql")
        .read_text(encoding="utf-8")
    )
    return template.replace("{database}", check_identifier(database))


def server_schema(database: str = "driftline") -> str:
    """The text of ``infra/clickhouse/schema.sql``: the same DDL, for a ClickHouse server."""
    header = (
        "-- GENERATED from lineage/store/tables.sql by infra/clickhouse/generate_schema.py.\n"
        "-- Do not edit here: edit lineage/store/tables.sql and regenerate (a unit test checks).\n"
        "-- Apply as an admin: clickhouse-client --multiquery < schema.sql\n\n"
    )
    return header + ddl_text(database)


def ddl_statements(database: str) -> list[str]:
    """The DDL as individual statements, comments removed."""
    lines = [ln for ln in ddl_text(database).splitlines() if not ln.lstrip().startswith("--")]
    return [stmt.strip() for stmt in "\n".join(lines).split(";") if stmt.strip()]


def create_tables(client: ClickHouseClient, database: str) -> None:
    """Create the database and every table if missing; safe to call on every start."""
    for statement in ddl_statements(database):
        try:
            client.command(statement)
        except Exception as exc:  # clickhouse_connect raises several unrelated types
            first_line = statement.splitlines()[0]
            raise StoreError(
                f"creating tables in {database!r} failed at {first_line!r}: {exc}"
            ) from exc


def redact_dsn(dsn: str) -> str:
    """The DSN with any password replaced by ``***`` (safe for logs and errors)."""
    try:
        parts = urlsplit(dsn)
    except ValueError:
        return "<unparseable DSN>"
    if parts.password is None:
        return dsn
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def _password(dsn: str) -> str | None:
    try:
        return urlsplit(dsn).password
    except ValueError:
        return None


def open_client(dsn: str, **kwargs: Any) -> ClickHouseClient:
    """A clickhouse_connect client for ``dsn``; failures become StoreError naming the DSN."""
    try:
        return clickhouse_connect.get_client(dsn=dsn, **kwargs)
    except Exception as exc:
        message = str(exc)
        password = _password(dsn)
        if password:
            message = message.replace(password, "***")
        hint = ""
        if "already initialized" in message:
            hint = (
                "; chDB can open only one data path per process, so reuse the existing "
                "client or point every component at the same path"
            )
        raise StoreError(f"cannot open ClickHouse at {redact_dsn(dsn)}: {message}{hint}") from exc


def table(database: str, name: str) -> str:
    """``database.name`` after checking both parts."""
    return f"{check_identifier(database)}.{check_identifier(name)}"
