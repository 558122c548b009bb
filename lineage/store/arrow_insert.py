"""Column-wise inserts of Arrow tables, the fast path for frames.

Row-oriented inserts spend most of their time turning Python objects into
ClickHouse's Native format one value at a time. Frames already hold their
columns as arrays, so they go in as an Arrow table instead:

- on a ClickHouse server, :meth:`insert_arrow` of clickhouse-connect, which
  ships Arrow IPC that the server parses in C++;
- on embedded chDB, ``INSERT ... SELECT FROM Python(<table>)``: chDB reads the
  Arrow buffers in place, several times faster than the client's generic
  insert (which round-trips through a temporary file on chDB).

Timestamps travel as int64 epoch milliseconds and are converted in SQL, so
the caller never builds datetime objects.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pyarrow as pa

from driftline.lineage.exceptions import StoreError
from driftline.lineage.store.clickhouse import ClickHouseClient


def is_chdb(client: ClickHouseClient) -> bool:
    return type(client).__name__ == "ChdbClient"


def _select_list(columns: Sequence[str], millis: Sequence[str]) -> str:
    return ", ".join(f"fromUnixTimestamp64Milli({c}, 'UTC')" if c in millis else c for c in columns)


def insert_arrow_table(
    client: ClickHouseClient,
    table: str,
    data: pa.Table,
    *,
    millis: Sequence[str] = (),
    settings: Mapping[str, str] | None = None,
) -> int:
    """Insert ``data`` into ``table`` (``db.name``); ``millis`` columns are int64 epoch ms."""
    columns = list(data.column_names)
    try:
        if is_chdb(client):
            # chDB resolves Python(name) against the calling frames' variables.
            driftline_arrow_batch = data  # noqa: F841 - read by chDB through Python(...)
            clause = ""
            if settings:
                pairs = ", ".join(f"{k} = '{_quote(v)}'" for k, v in settings.items())
                clause = f" SETTINGS {pairs}"
            client.command(
                f"INSERT INTO {table} ({', '.join(columns)}){clause} "
                f"SELECT {_select_list(columns, millis)} FROM Python(driftline_arrow_batch)"
            )
        else:
            converted = data
            for name in millis:
                index = converted.column_names.index(name)
                stamps = converted.column(name).cast(pa.timestamp("ms", tz="UTC"))
                converted = converted.set_column(index, name, stamps)
            client.insert_arrow(table, converted, settings=dict(settings or {}))
    except Exception as exc:
        raise StoreError(
            f"inserting {data.num_rows} rows into {table} failed: {exc}; the rows are kept, "
            "call flush() again before committing offsets"
        ) from exc
    return data.num_rows


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "\\'")
