"""Time-to-live of the personal-data tables, on real chDB: set by the DDL on a new store,
brought up to date on an existing one, shown by the server, and enforced by merges."""

from __future__ import annotations

import pytest

from driftline.core.errors import ConfigError
from driftline.core.settings import PERSONAL_TABLES, RetentionSettings, load_settings
from driftline.lineage.exceptions import StoreError
from driftline.lineage.store.clickhouse import (
    TTL_COLUMNS,
    create_tables,
    table_ttl,
    ttl_changes,
    ttl_expression,
)

DAY_S = 86_400
DAY_MS = DAY_S * 1000


def _ttls(**seconds: int | None) -> dict[str, int | None]:
    return {table: seconds.get(table) for table in PERSONAL_TABLES}


def test_every_personal_table_has_a_ttl_column() -> None:
    assert set(TTL_COLUMNS) == set(PERSONAL_TABLES)
    with pytest.raises(StoreError, match="audit_log.*takes no time-to-live"):
        ttl_expression("audit_log", DAY_S)


def test_retention_settings_give_each_table_its_ttl(monkeypatch) -> None:
    monkeypatch.setenv("DRIFTLINE_RETENTION_TABLE_DEFAULT_MS", str(30 * DAY_MS))
    monkeypatch.setenv("DRIFTLINE_RETENTION_TABLE_MS", f'{{"features": {DAY_MS}, "outcomes": 0}}')
    ttls = load_settings().retention.table_ttls()
    assert ttls == {
        "predictions": 30 * DAY_S,
        "features": DAY_S,
        "outcomes": None,
        "deadletters": 30 * DAY_S,
        "replay_predictions": 30 * DAY_S,
        "served_features": 30 * DAY_S,
    }
    assert RetentionSettings().table_ttls() == _ttls()  # by default rows stay until erased


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        (
            "DRIFTLINE_RETENTION_TABLE_MS",
            '{"audit_log": 86400000}',
            "no time-to-live for audit_log",
        ),
        ("DRIFTLINE_RETENTION_TABLE_MS", '{"features": 5}', "at least 60000 ms"),
        ("DRIFTLINE_RETENTION_TABLE_DEFAULT_MS", "59999", "at least 60000 ms"),
        ("DRIFTLINE_RETENTION_TOPIC_DEFAULT_MS", "1000", "greater than or equal to 60000"),
    ],
)
def test_bad_retention_stops_start_up_naming_the_setting(
    monkeypatch, variable, value, message
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as err:
        load_settings()
    assert variable in str(err.value) and message in str(err.value)


@pytest.mark.integration
def test_a_new_store_gets_the_configured_ttl(chdb_client, fresh_database) -> None:
    ttls = _ttls(predictions=DAY_S, features=7 * DAY_S, deadletters=30 * DAY_S)
    changed = create_tables(chdb_client, fresh_database, ttls)
    assert sorted(c.table for c in changed) == ["deadletters", "features", "predictions"]
    shown = dict(
        chdb_client.query(
            "SELECT name, create_table_query FROM system.tables WHERE database = {db:String}",
            parameters={"db": fresh_database},
        ).result_rows
    )
    assert "TTL toDateTime(scored_at) + toIntervalSecond(86400)" in shown["predictions"]
    assert "TTL toDateTime(recorded_at) + toIntervalSecond(604800)" in shown["features"]
    assert "TTL toDateTime(recorded_at) + toIntervalSecond(2592000)" in shown["deadletters"]
    for table in ("outcomes", "replay_predictions", "audit_log", "audit_checkpoints", "drift"):
        assert " TTL " not in shown[table], table
    show_create = chdb_client.command(f"SHOW CREATE TABLE {fresh_database}.predictions")
    assert "TTL toDateTime(scored_at) + toIntervalSecond(86400)" in show_create
    assert table_ttl(chdb_client, fresh_database, "predictions") == ttl_expression(
        "predictions", DAY_S
    )
    # Nothing left to change: a restart does not rewrite the tables again.
    assert create_tables(chdb_client, fresh_database, ttls) == []


@pytest.mark.integration
def test_an_existing_store_gets_a_changed_ttl_on_start_up(chdb_client, fresh_database) -> None:
    create_tables(chdb_client, fresh_database)  # a store from before TTLs
    assert table_ttl(chdb_client, fresh_database, "features") is None
    wanted = _ttls(features=DAY_S)
    [change] = ttl_changes(chdb_client, fresh_database, wanted)
    assert change.statement(fresh_database) == (
        f"ALTER TABLE {fresh_database}.features MODIFY TTL toDateTime(recorded_at) + "
        "toIntervalSecond(86400)"
    )
    assert [c.table for c in create_tables(chdb_client, fresh_database, wanted)] == ["features"]
    assert table_ttl(chdb_client, fresh_database, "features") == ttl_expression("features", DAY_S)
    longer = _ttls(features=2 * DAY_S)
    create_tables(chdb_client, fresh_database, longer)
    assert table_ttl(chdb_client, fresh_database, "features").endswith("toIntervalSecond(172800)")
    # Set back to none: the TTL is removed, and the statement says so.
    [removal] = ttl_changes(chdb_client, fresh_database, _ttls())
    assert removal.statement(fresh_database).endswith("features REMOVE TTL")
    create_tables(chdb_client, fresh_database, _ttls())
    assert table_ttl(chdb_client, fresh_database, "features") is None


@pytest.mark.integration
def test_a_row_older_than_its_ttl_goes_away(chdb_client, fresh_database) -> None:
    create_tables(
        chdb_client,
        fresh_database,
        _ttls(predictions=DAY_S, features=DAY_S, outcomes=DAY_S, deadletters=DAY_S),
    )
    db = fresh_database
    old, new = "now64(3) - INTERVAL 3 DAY", "now64(3)"
    for name, when in (("old", old), ("new", new)):
        chdb_client.command(
            f"INSERT INTO {db}.predictions (prediction_id, record_id, entity_id, model, "
            "version, arm, score, scores, event_time, scored_at, latency_ms, model_latency_ms) "
            f"VALUES ('{name}', 'r', 'e', 'm', 1, 'champion', 0.5, [0.5, 0.5], {when}, {when}, "
            "1.0, 0.1)"
        )
        chdb_client.command(
            f"INSERT INTO {db}.features (record_id, entity_id, model, event_time, "
            f"feature_names, features, recorded_at) VALUES ('{name}', 'e', 'm', {new}, 'a', "
            f"[1.0], {when})"
        )
        chdb_client.command(
            f"INSERT INTO {db}.outcomes (prediction_id, entity_id, value, label, event_time, "
            f"source_partition, source_offset, recorded_at) VALUES ('{name}', 'e', 1, NULL, "
            f"{new}, 0, 0, {when})"
        )
        chdb_client.command(
            f"INSERT INTO {db}.deadletters (source_topic, partition, offset, key, reason, "
            f"detail, raw, failed_at, recorded_at) VALUES ('t', 0, {len(name)}, '{name}', "
            f"'bad', '', 'raw', {new}, {when})"
        )
    columns = {
        "predictions": "prediction_id",
        "features": "record_id",
        "outcomes": "prediction_id",
        "deadletters": "key",
    }
    for table, column in columns.items():
        chdb_client.command(f"OPTIMIZE TABLE {db}.{table} FINAL")
        kept = chdb_client.query(f"SELECT {column} FROM {db}.{table}").result_rows
        assert kept == [("new",)], table
