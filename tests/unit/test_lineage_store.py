import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from driftline.core.settings import PERSONAL_TABLES
from driftline.lineage.exceptions import StoreError
from driftline.lineage.store.clickhouse import (
    TABLES,
    check_identifier,
    create_tables,
    ddl_statements,
    open_client,
    redact_dsn,
    server_schema,
)

INFRA = Path(__file__).resolve().parents[2] / "infra" / "clickhouse"


@pytest.mark.integration
def test_create_tables_is_idempotent(chdb_client, fresh_database) -> None:
    create_tables(chdb_client, fresh_database)
    create_tables(chdb_client, fresh_database)
    got = chdb_client.query(
        "SELECT name, engine, sorting_key FROM system.tables WHERE database = {db:String} "
        "AND engine != 'View' ORDER BY name",
        parameters={"db": fresh_database},
    ).result_rows
    assert got == [
        ("audit_checkpoints", "MergeTree", "model, seq, signed_at"),
        ("audit_log", "MergeTree", "model, seq"),
        ("deadletters", "ReplacingMergeTree", "source_topic, partition, offset, reason"),
        ("drift", "ReplacingMergeTree", "model, event_id"),
        ("features", "ReplacingMergeTree", "model, event_time, record_id"),
        ("outcomes", "ReplacingMergeTree", "prediction_id"),
        ("predictions", "ReplacingMergeTree", "model, prediction_id"),
        ("replay_predictions", "ReplacingMergeTree", "model, replay_id, record_id"),
        ("served_features", "ReplacingMergeTree", "model, event_time, record_id"),
    ]
    assert sorted(r[0] for r in got) == sorted(TABLES)


@pytest.mark.integration
def test_unique_views_count_a_redelivered_prediction_once(chdb_client, fresh_database) -> None:
    """A crash re-delivers a batch: the raw table holds it twice until a merge, the view once."""
    create_tables(chdb_client, fresh_database)
    views = chdb_client.query(
        "SELECT name FROM system.tables WHERE database = {db:String} AND engine = 'View' "
        "ORDER BY name",
        parameters={"db": fresh_database},
    ).result_rows
    assert views == [(f"{t}_unique",) for t in ("deadletters", "drift", "outcomes", "predictions")]
    row = "('p1', 'r1', 'e1', 'm', 1, 'champion', NULL, 0.5, [0.5, 0.5], 0, 1, 1.0, 0.1, '', NULL)"
    for attempt in range(2):  # two inserts, as a redelivery after a crash makes them
        chdb_client.command(
            f"INSERT INTO {fresh_database}.predictions SETTINGS "
            f"insert_deduplication_token = 'attempt-{attempt}' VALUES {row}"
        )
    raw = chdb_client.query(f"SELECT count() FROM {fresh_database}.predictions").result_rows
    unique = chdb_client.query(
        f"SELECT count() FROM {fresh_database}.predictions_unique"
    ).result_rows
    assert raw == [(2,)] and unique == [(1,)]


@pytest.mark.integration
def test_create_tables_makes_the_database(chdb_client, fresh_database) -> None:
    other = f"{fresh_database}_b"
    try:
        create_tables(chdb_client, other)
        assert chdb_client.command(f"EXISTS TABLE {other}.audit_log") == 1
    finally:
        chdb_client.command(f"DROP DATABASE IF EXISTS {other}")


@pytest.mark.parametrize("name", ["", "1db", "db; DROP TABLE x", "a.b", "db-name"])
def test_bad_database_names_are_refused(name) -> None:
    with pytest.raises(StoreError, match="not a usable ClickHouse database name"):
        check_identifier(name)
    with pytest.raises(StoreError):
        ddl_statements(name)


def test_statements_have_no_comments_and_fill_the_database() -> None:
    statements = ddl_statements("abc")
    assert len(statements) == 18  # the database, 9 tables, 4 column upgrades, 4 views
    assert all("--" not in s and "{database}" not in s for s in statements)
    assert statements[0] == "CREATE DATABASE IF NOT EXISTS abc"


def test_server_schema_is_generated_from_tables_sql() -> None:
    on_disk = (INFRA / "schema.sql").read_text(encoding="utf-8")
    assert on_disk == server_schema("driftline"), (
        "infra/clickhouse/schema.sql is stale: run "
        ".venv/bin/python infra/clickhouse/generate_schema.py"
    )


def test_accounts_cannot_rewrite_the_audit_log() -> None:
    root = ET.parse(INFRA / "users.xml").getroot()
    users = root.find("users")
    writer = [q.text.strip() for q in users.find("driftline_writer").iter("query")]
    dashboard = [q.text.strip() for q in users.find("driftline_dashboard").iter("query")]
    forbidden = ("ALTER", "DELETE", "UPDATE", "TRUNCATE", "DROP", "OPTIMIZE", "ALL", "*.*")
    for grant in writer:
        assert grant.startswith("GRANT "), grant
        privileges = grant.split(" ON ")[0].upper()
        assert not any(word in privileges for word in forbidden), grant
    assert "GRANT INSERT ON driftline.audit_log" in writer
    audit_select = [g for g in writer if g.startswith("GRANT SELECT") and "audit_log" in g]
    assert audit_select and all("(" in g for g in audit_select)  # column-limited
    assert dashboard == ["GRANT SELECT ON driftline.*"]
    assert users.find("driftline_dashboard/profile").text == "driftline_readonly"
    assert root.find("profiles/driftline_readonly/readonly").text == "1"
    # The eraser deletes personal-data rows and nothing else: never the audit log.
    eraser = [q.text.strip() for q in users.find("driftline_eraser").iter("query")]
    assert sorted(g.split(" ON ")[1] for g in eraser) == sorted(
        f"driftline.{t}" for t in PERSONAL_TABLES
    )
    assert {g.split(" ON ")[0] for g in eraser} == {"GRANT SELECT, ALTER DELETE"}
    for user in users:
        password = user.find("password_sha256_hex")
        assert password is not None and password.get("from_env") and not password.text


def test_open_client_names_the_dsn_without_the_password() -> None:
    with pytest.raises(StoreError) as err:
        open_client("http://writer:s3cret@127.0.0.1:1")
    assert "http://writer:***@127.0.0.1:1" in str(err.value)
    assert "s3cret" not in str(err.value)


@pytest.mark.integration
def test_second_chdb_path_explains_itself(chdb_client, tmp_path) -> None:
    with pytest.raises(StoreError, match="one data path per process"):
        open_client(f"chdb://{tmp_path}/other")


def test_redact_dsn() -> None:
    assert redact_dsn("chdb:///data/x") == "chdb:///data/x"
    assert redact_dsn("https://u:p@h:8443/db") == "https://u:***@h:8443/db"
