"""Deleting one entity's rows from every ClickHouse table that holds personal data.

Which rows are the entity's:

- ``predictions``, ``features``, ``replay_predictions``: ``entity_id`` is the entity;
- ``outcomes``: keyed by prediction id, so those of the entity's predictions, and any
  whose own ``entity_id`` names it;
- ``deadletters``: those whose Kafka key is the entity id (features, predictions) or one
  of its prediction ids (outcomes), and any whose raw bytes or error detail contain the
  entity id (a frame or a keyless record naming it). A short id matches more than its
  own dead letters; for erasure that is the safe side.

The entity id is used only in SELECTs, as a query parameter. The deletions themselves
(``ALTER TABLE ... DELETE``, run to completion with ``mutations_sync``) name the rows by
a 64-bit hash of their key columns: ClickHouse keeps a mutation's text on disk
(``system.mutations``), and that text must not hold the id being erased. A mutation
rewrites the parts it touches, so the rows are gone from the table's files, not only
hidden; ClickHouse removes the replaced parts from disk a few minutes later
(``old_parts_lifetime``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from driftline.lineage.exceptions import StoreError
from driftline.lineage.store.clickhouse import (
    DEADLETTERS,
    FEATURES,
    OUTCOMES,
    PREDICTIONS,
    REPLAYS,
    SERVED_FEATURES,
    ClickHouseClient,
    table,
)

# Each table's row identity, hashed: what a deletion names instead of the entity id.
ROW_KEYS = {
    PREDICTIONS: "cityHash64(model, prediction_id)",
    FEATURES: "cityHash64(model, event_time, record_id)",
    OUTCOMES: "cityHash64(prediction_id)",
    DEADLETTERS: "cityHash64(source_topic, partition, offset, reason)",
    REPLAYS: "cityHash64(model, replay_id, record_id)",
    SERVED_FEATURES: "cityHash64(model, event_time, record_id)",
}
# Deleted in this order: outcomes and dead letters are found through the predictions.
ERASED_TABLES = (OUTCOMES, DEADLETTERS, FEATURES, SERVED_FEATURES, REPLAYS, PREDICTIONS)
_CHUNK = 10_000  # row hashes per ALTER TABLE ... DELETE


@dataclass(frozen=True)
class EntityRows:
    """The rows of one entity, per table, as hashes of their key columns."""

    rows: dict[str, list[int]]

    def counts(self) -> dict[str, int]:
        return {name: len(hashes) for name, hashes in self.rows.items()}

    @property
    def total(self) -> int:
        return sum(len(hashes) for hashes in self.rows.values())


def find_entity_rows(client: ClickHouseClient, database: str, entity_id: str) -> EntityRows:
    """Every row of ``entity_id`` in the personal-data tables (see the module docstring)."""
    if not isinstance(entity_id, str) or not entity_id:
        raise StoreError("an entity id to erase must be a non-empty string")
    e = {"e": entity_id}
    prediction_ids = [
        row[0]
        for row in _select(
            client,
            f"SELECT DISTINCT prediction_id FROM {table(database, PREDICTIONS)} "
            "WHERE entity_id = {e:String}",
            e,
        )
    ]
    found: dict[str, list[int]] = {}
    for name, where, parameters in (
        (OUTCOMES, "entity_id = {e:String} OR has({ids:Array(String)}, prediction_id)", None),
        (
            DEADLETTERS,
            "key = {e:String} OR has({ids:Array(String)}, key) OR position(raw, {e:String}) > 0 "
            "OR position(detail, {e:String}) > 0",
            None,
        ),
        (FEATURES, "entity_id = {e:String}", e),
        (SERVED_FEATURES, "entity_id = {e:String}", e),
        (REPLAYS, "entity_id = {e:String}", e),
        (PREDICTIONS, "entity_id = {e:String}", e),
    ):
        hashes: set[int] = set()
        for ids in (_chunks(prediction_ids) or [[]]) if parameters is None else [None]:
            values = e if ids is None else e | {"ids": ids}
            sql = f"SELECT DISTINCT {ROW_KEYS[name]} FROM {table(database, name)} WHERE {where}"
            hashes.update(row[0] for row in _select(client, sql, values))
        found[name] = sorted(hashes)
    return EntityRows(found)


def count_rows(client: ClickHouseClient, database: str, rows: EntityRows) -> dict[str, int]:
    """How many stored rows (re-deliveries included) each table holds of these."""
    counts = {}
    for name, hashes in rows.rows.items():
        total = 0
        for chunk in _chunks(hashes):
            total += _select(
                client,
                f"SELECT count() FROM {table(database, name)} "
                f"WHERE {ROW_KEYS[name]} IN {{h:Array(UInt64)}}",
                {"h": chunk},
            )[0][0]
        counts[name] = total
    return counts


def delete_rows(
    client: ClickHouseClient,
    database: str,
    rows: EntityRows,
    *,
    progress: Callable[[str, int], None] = lambda table_name, deleted: None,
) -> dict[str, int]:
    """Delete these rows and wait until each deletion is done; returns rows deleted per
    table (every table, 0 where the entity had none)."""
    deleted = count_rows(client, database, rows)
    for name in ERASED_TABLES:
        for chunk in _chunks(rows.rows.get(name, [])):
            sql = (
                f"ALTER TABLE {table(database, name)} DELETE "
                f"WHERE {ROW_KEYS[name]} IN {{h:Array(UInt64)}} "
                "SETTINGS mutations_sync = 2"
            )
            try:
                client.command(sql, parameters={"h": chunk})
            except Exception as exc:  # clickhouse_connect raises several unrelated types
                raise StoreError(
                    f"deleting rows from {database}.{name} failed: {_first_line(exc)}; the "
                    "account needs ALTER DELETE on the personal-data tables"
                ) from None
        progress(name, deleted.get(name, 0))
    return {name: deleted.get(name, 0) for name in ERASED_TABLES}


def erase_entity(client: ClickHouseClient, database: str, entity_id: str) -> dict[str, int]:
    """Find and delete every row of ``entity_id``; returns rows deleted per table. Errors
    never repeat the entity id."""
    return delete_rows(client, database, find_entity_rows(client, database, entity_id))


def _select(client: ClickHouseClient, sql: str, parameters: dict) -> list[tuple]:
    try:
        return list(client.query(sql, parameters=parameters).result_rows)
    except Exception as exc:
        # The server's message may quote the parameters: keep the id out of logs.
        message = _first_line(exc)
        for value in parameters.values():
            if isinstance(value, str) and value:
                message = message.replace(value, "<entity>")
        raise StoreError(f"finding an entity's rows failed: {message}") from None


def _chunks(values: Sequence) -> list[list]:
    return [list(values[i : i + _CHUNK]) for i in range(0, len(values), _CHUNK)]


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
