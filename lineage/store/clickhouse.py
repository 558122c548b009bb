"""ClickHouse plumbing shared by the audit writer and the sinks.

The same SQL runs on chDB in process (``chdb:///abs/path``) and on a ClickHouse
server (``http(s)://user:password@host:8123``); only the DSN differs.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
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


def insert_and_release(client: ClickHouseClient, table: str, data: list, **kwargs: Any) -> None:
    """``client.insert(table, data, ...)``, then ``data`` emptied in place (its inner lists
    too, rows or columns).

    clickhouse-connect's ``InsertContext`` keeps a bound method of itself, a reference
    cycle, along with the data it was given. Only a full collection frees it, and the
    workers' GC tuning makes those rare: each insert's rows stayed in memory. Emptying
    the lists frees the rows now, whatever becomes of the context.
    """
    client.insert(table, data, **kwargs)
    for part in data:
        if isinstance(part, list):
            part.clear()
    data.clear()


AUDIT_LOG = "audit_log"
PREDICTIONS = "predictions"
DEADLETTERS = "deadletters"
CHECKPOINTS = "audit_checkpoints"
FEATURES = "features"
REPLAYS = "replay_predictions"
DRIFT = "drift"
OUTCOMES = "outcomes"
SERVED_FEATURES = "served_features"
TABLES = (
    AUDIT_LOG,
    PREDICTIONS,
    DEADLETTERS,
    CHECKPOINTS,
    FEATURES,
    REPLAYS,
    DRIFT,
    OUTCOMES,
    SERVED_FEATURES,
)
# The tables holding personal data (core.settings.PERSONAL_TABLES names the same), and the
# column each one's time-to-live counts from: when driftline stored the row, not the
# event time a producer claims.
TTL_COLUMNS = {
    PREDICTIONS: "scored_at",
    FEATURES: "recorded_at",
    OUTCOMES: "recorded_at",
    DEADLETTERS: "recorded_at",
    REPLAYS: "replayed_at",
    SERVED_FEATURES: "recorded_at",
}

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


def create_tables(
    client: ClickHouseClient, database: str, ttls: Mapping[str, int | None] | None = None
) -> list[TtlChange]:
    """Create the database and every table if missing, then give the personal-data tables
    the time-to-live in ``ttls`` (table -> seconds, None for none; see :func:`apply_ttls`).
    Safe to call on every start: an existing store gets a changed TTL here too. Returns
    the TTLs changed."""
    for statement in ddl_statements(database):
        _run(client, statement, f"creating tables in {database!r}")
    return [] if ttls is None else apply_ttls(client, database, ttls)


def _run(client: ClickHouseClient, statement: str, doing: str) -> None:
    try:
        client.command(statement)
    except Exception as exc:  # clickhouse_connect raises several unrelated types
        first_line = statement.splitlines()[0]
        raise StoreError(f"{doing} failed at {first_line!r}: {exc}") from exc


# -- time-to-live ---------------------------------------------------------------------

_TTL_CLAUSE = re.compile(r"\bTTL\s+(.+?)(?:\s+SETTINGS\s|$)", re.DOTALL)


def ttl_expression(table_name: str, seconds: int) -> str:
    """The TTL clause of a personal-data table, spelled as ClickHouse shows it back."""
    if table_name not in TTL_COLUMNS:
        raise StoreError(
            f"{table_name!r} takes no time-to-live; tables that do: {', '.join(TTL_COLUMNS)}"
        )
    if not isinstance(seconds, int) or isinstance(seconds, bool) or seconds < 1:
        raise StoreError(
            f"time-to-live of {table_name} must be whole seconds >= 1, got {seconds!r}"
        )
    return f"toDateTime({TTL_COLUMNS[table_name]}) + toIntervalSecond({seconds})"


def table_ttl(client: ClickHouseClient, database: str, table_name: str) -> str | None:
    """The table's TTL expression as the server reports it (system.tables), None for none."""
    rows = client.query(
        "SELECT create_table_query FROM system.tables WHERE database = {db:String} "
        "AND name = {name:String}",
        parameters={"db": check_identifier(database), "name": check_identifier(table_name)},
    ).result_rows
    if not rows:
        raise StoreError(f"table {database}.{table_name} does not exist")
    match = _TTL_CLAUSE.search(rows[0][0])
    return match.group(1).strip() if match else None


@dataclass(frozen=True)
class TtlChange:
    """A table whose TTL differs from the configured one, and the statement that fixes it."""

    table: str
    found: str | None
    expected: str | None

    def statement(self, database: str) -> str:
        name = table(database, self.table)
        if self.expected is None:
            return f"ALTER TABLE {name} REMOVE TTL"
        return f"ALTER TABLE {name} MODIFY TTL {self.expected}"

    def __str__(self) -> str:
        return f"{self.table}: TTL {self.found or 'none'}, configured {self.expected or 'none'}"


def ttl_changes(
    client: ClickHouseClient, database: str, ttls: Mapping[str, int | None]
) -> list[TtlChange]:
    """The tables whose TTL is not what ``ttls`` (table -> seconds, None) configures."""
    changes = []
    for table_name, seconds in ttls.items():
        expected = None if seconds is None else ttl_expression(table_name, seconds)
        found = table_ttl(client, database, table_name)
        if found != expected:
            changes.append(TtlChange(table_name, found, expected))
    return changes


def apply_ttls(
    client: ClickHouseClient, database: str, ttls: Mapping[str, int | None]
) -> list[TtlChange]:
    """Bring each table's TTL to the configured one (ALTER TABLE ... MODIFY / REMOVE TTL);
    tables already right are not touched, since a new TTL rewrites the table's parts once.
    Returns what changed. Needs ALTER on the tables: on a server, an admin runs the
    statements (:func:`ttl_changes` names them) and the writer only checks."""
    changes = ttl_changes(client, database, ttls)
    for change in changes:
        _run(client, change.statement(database), f"setting the time-to-live of {change.table}")
    return changes


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
