"""Buffered ClickHouse sinks for predictions and dead letters.

``add()`` buffers records column by column; ``flush()`` writes everything
pending in one column-oriented insert. If the insert fails the buffer is kept,
so the caller retries ``flush()`` and does not commit its Kafka offsets until
one succeeds (at-least-once). Duplicates are removed twice over: an identical
retried insert carries the same ``insert_deduplication_token`` and is dropped by
the server, and re-delivered rows in a different batch collapse in the
ReplacingMergeTree (count them with ``FINAL`` or ``uniqExact``).

Records are the decoded Avro dicts (timestamps as int milliseconds), so their
types are already checked by the schema; ``add()`` only checks that required
fields are present.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from typing import Any

from driftline.lineage.exceptions import InvalidRecord, StoreError
from driftline.lineage.store.clickhouse import (
    DEADLETTERS,
    PREDICTIONS,
    ClickHouseClient,
    insert_and_release,
    table,
)

_REQUIRED = object()

# (column, default) in table order; _REQUIRED marks fields the contract requires.
PREDICTION_FIELDS: tuple[tuple[str, Any], ...] = (
    ("prediction_id", _REQUIRED),
    ("record_id", _REQUIRED),
    ("entity_id", _REQUIRED),
    ("model", _REQUIRED),
    ("version", _REQUIRED),
    ("arm", _REQUIRED),
    ("experiment_id", None),
    ("score", _REQUIRED),
    ("scores", _REQUIRED),
    ("event_time", _REQUIRED),
    ("scored_at", _REQUIRED),
    ("latency_ms", _REQUIRED),
    ("model_latency_ms", _REQUIRED),
    ("trace_id", ""),
    ("feature_service", None),
)

DEADLETTER_FIELDS: tuple[tuple[str, Any], ...] = (
    ("source_topic", _REQUIRED),
    ("partition", _REQUIRED),
    ("offset", _REQUIRED),
    ("key", None),
    ("reason", _REQUIRED),
    ("detail", _REQUIRED),
    ("raw", _REQUIRED),
    ("failed_at", _REQUIRED),
)


class _ColumnSink:
    """A column-oriented insert buffer for one table."""

    kind = "record"
    fields: tuple[tuple[str, Any], ...] = ()
    identity: tuple[str, ...] = ()  # columns that identify a row, for the dedup token

    def __init__(
        self, client: ClickHouseClient, database: str, table_name: str, *, dedup_token: bool = True
    ):
        self.client = client
        self.table = table(database, table_name)
        self.dedup_token = dedup_token
        self.columns = tuple(name for name, _ in self.fields)
        self._buffer: list[list[Any]] = [[] for _ in self.fields]

    @property
    def pending(self) -> int:
        return len(self._buffer[0])

    def add(self, record: Mapping[str, Any]) -> None:
        values = []
        for name, default in self.fields:
            value = record.get(name, default)
            if value is _REQUIRED:
                raise InvalidRecord(
                    f"{self.kind} lacks required field {name!r}; fields present: {sorted(record)}"
                )
            values.append(value)
        for column, value in zip(self._buffer, values, strict=True):
            column.append(value)

    def add_many(self, records: Iterable[Mapping[str, Any]]) -> None:
        records = list(records)
        try:
            # Column at a time: several times faster than add() per record.
            new = [
                [r[name] for r in records]
                if default is _REQUIRED
                else [r.get(name, default) for r in records]
                for name, default in self.fields
            ]
        except KeyError:
            for record in records:  # find and name the bad record, add nothing
                self._check(record)
            raise
        for column, values in zip(self._buffer, new, strict=True):
            column.extend(values)

    def _check(self, record: Mapping[str, Any]) -> None:
        missing = [n for n, d in self.fields if d is _REQUIRED and n not in record]
        if missing:
            raise InvalidRecord(
                f"{self.kind} lacks required fields {missing}; fields present: {sorted(record)}"
            )

    def clear(self) -> None:
        """Drop everything pending (for a batch that can never be written)."""
        self._buffer = [[] for _ in self.fields]

    def flush(self) -> int:
        """Insert everything pending; returns the row count. Keeps the buffer on failure."""
        count = self.pending
        if not count:
            return 0
        settings = {"insert_deduplication_token": self._token()} if self.dedup_token else None
        try:
            insert_and_release(
                self.client,
                self.table,
                self._buffer,
                column_names=self.columns,
                column_oriented=True,
                settings=settings,
            )
        except Exception as exc:
            raise StoreError(
                f"inserting {count} {self.kind} rows into {self.table} failed: {exc}; "
                "the rows are kept, call flush() again before committing offsets"
            ) from exc
        self.clear()
        return count

    def _token(self) -> str:
        # Same set of rows -> same token, whatever order they were buffered in.
        index = [self.columns.index(name) for name in self.identity]
        keys = sorted(
            "\x1f".join(str(v) for v in key)
            for key in zip(*(self._buffer[i] for i in index), strict=True)
        )
        digest = hashlib.sha256("\x1e".join(keys).encode("utf-8")).hexdigest()
        return f"{self.table}:{digest}"


class PredictionSink(_ColumnSink):
    """Buffers Prediction records (plus an optional ``trace_id``) for ``predictions``."""

    kind = "prediction"
    fields = PREDICTION_FIELDS
    identity = ("prediction_id",)

    def __init__(
        self,
        client: ClickHouseClient,
        database: str,
        table_name: str = PREDICTIONS,
        *,
        dedup_token: bool = True,
    ) -> None:
        super().__init__(client, database, table_name, dedup_token=dedup_token)


class DeadLetterSink(_ColumnSink):
    """Buffers DeadLetter records for ``deadletters``."""

    kind = "dead letter"
    fields = DEADLETTER_FIELDS
    identity = ("source_topic", "partition", "offset", "reason")

    def __init__(
        self,
        client: ClickHouseClient,
        database: str,
        table_name: str = DEADLETTERS,
        *,
        dedup_token: bool = True,
    ) -> None:
        super().__init__(client, database, table_name, dedup_token=dedup_token)
