"""Erasure on a real chDB store: two entities' predictions, features, outcomes, dead letters
and replays; one is erased, the other is untouched; the audit chain that records it holds
a keyed hash of the id, never the id, and still verifies; refusals are recorded too."""

from __future__ import annotations

import json
import shutil
import uuid

import pytest

from driftline.core.settings import load_settings
from driftline.lineage.audit.chain import AuditLogWriter, verify
from driftline.lineage.audit.checkpoints import WriterKey
from driftline.lineage.audit.erasure import (
    ERASURE_CHAIN,
    Eraser,
    command_from_json,
    command_to_json,
    decide_erasure,
    entity_hash,
    erase_request,
)
from driftline.lineage.events import EventType
from driftline.lineage.exceptions import ErasureError
from driftline.lineage.registry.model_registry import ModelRegistry
from driftline.lineage.store.clickhouse import create_tables
from driftline.lineage.store.erasure import ERASED_TABLES
from driftline.lineage.trust.commands import new_command
from driftline.lineage.trust.keys import generate_key
from driftline.lineage.trust.roles import Roles, write_example_roles
from driftline.streams.exceptions import StreamsError
from driftline.streams.stages.erasure import erasure_key

KEY = b"k" * 32
ERASED, KEPT = "cust-4711", "cust-0815"
WHERE_ENTITY = {
    "predictions": "entity_id = {e:String}",
    "features": "entity_id = {e:String}",
    "served_features": "entity_id = {e:String}",
    "replay_predictions": "entity_id = {e:String}",
    "outcomes": "entity_id = {e:String} OR prediction_id IN "
    "(SELECT prediction_id FROM {db:Identifier}.predictions WHERE entity_id = {e:String})",
    "deadletters": "key = {e:String} OR position(raw, {e:String}) > 0 OR key IN "
    "(SELECT prediction_id FROM {db:Identifier}.predictions WHERE entity_id = {e:String})",
}


@pytest.fixture
def actors():
    return {name: generate_key(name) for name in ("dpo", "alice")}


@pytest.fixture
def roles(tmp_path, actors) -> Roles:
    path = write_example_roles(
        tmp_path / "roles.toml",
        {name: pair.public_key for name, pair in actors.items()},
        roles={"dpo": ["data-protection"], "alice": ["data-scientist", "approver"]},
    )
    return Roles.load(path)


@pytest.fixture
def writer():
    return generate_key("lineage-writer")


def _store_entity(client, db: str, entity: str) -> None:
    """What driftline stores of one entity: 3 predictions, their features and outcomes (one
    without its entity id), a dead letter keyed by the entity, one keyed by a prediction id
    (the outcomes topic), one keyless whose raw bytes name the entity, and replays."""
    pids = [f"{entity}-p{n}-{uuid.uuid4().hex[:6]}" for n in range(3)]
    for n, pid in enumerate(pids):
        client.command(
            f"INSERT INTO {db}.predictions (prediction_id, record_id, entity_id, model, version, "
            "arm, score, scores, event_time, scored_at, latency_ms, model_latency_ms) VALUES "
            f"('{pid}', 'r-{pid}', '{entity}', 'fraud', 1, 'champion', 0.5, [0.5, 0.5], "
            "now64(3), now64(3), 1, 1)"
        )
        client.command(
            f"INSERT INTO {db}.features (record_id, entity_id, model, event_time, feature_names, "
            f"features) VALUES ('r-{pid}', '{entity}', 'fraud', now64(3), 'a,b', [1.0, 2.0])"
        )
        client.command(
            f"INSERT INTO {db}.served_features (record_id, entity_id, model, event_time, "
            f"feature_names, features, feature_service) VALUES ('served:1:champion:{pid}:0', "
            f"'{entity}', 'fraud', now64(3), 'a,b', [1.0, 2.0], 'scoring@abc')"
        )
        owner = "NULL" if n == 0 else f"'{entity}'"
        client.command(
            f"INSERT INTO {db}.outcomes (prediction_id, entity_id, value, label, event_time, "
            f"source_partition, source_offset) VALUES ('{pid}', {owner}, 1, NULL, now64(3), 0, "
            f"{n})"
        )
        client.command(
            f"INSERT INTO {db}.replay_predictions (replay_id, record_id, entity_id, model, "
            "candidate_version, candidate_score, event_time) VALUES "
            f"('replay-1', 'r-{pid}', '{entity}', 'fraud', 2, 0.7, now64(3))"
        )
    offset = abs(hash(entity)) % 10_000 * 10
    for n, (topic, key, raw) in enumerate(
        [
            ("features", f"'{entity}'", "'garbage'"),
            ("outcomes", f"'{pids[1]}'", "'not avro'"),
            ("features", "NULL", f"'\\x02frame...{entity}...rows'"),
        ]
    ):
        client.command(
            f"INSERT INTO {db}.deadletters (source_topic, partition, offset, key, reason, "
            f"detail, raw, failed_at) VALUES ('t.{topic}', 0, {offset + n}, {key}, "
            f"'undecodable', 'bad', {raw}, now64(3))"
        )


def _rows_of(client, db: str, entity: str) -> dict[str, int]:
    return {
        table: client.query(
            f"SELECT count() FROM {db}.{table} WHERE {where}",
            parameters={"e": entity, "db": db},
        ).result_rows[0][0]
        for table, where in WHERE_ENTITY.items()
    }


@pytest.fixture
def store(chdb_client, fresh_database):
    create_tables(chdb_client, fresh_database)
    for entity in (ERASED, KEPT):
        _store_entity(chdb_client, fresh_database, entity)
    return fresh_database


def _eraser(client, db, roles, writer, **kwargs) -> Eraser:
    return Eraser(
        client,
        db,
        key=KEY,
        roles=roles,
        writer=writer.actor,
        writer_key=writer.private_key,
        **kwargs,
    )


def _audit(client, db, *events) -> None:
    AuditLogWriter(client, db).write(
        [(event, "t.lifecycle", 0, offset) for offset, event in enumerate(events)]
    )


@pytest.mark.integration
def test_an_erased_entity_is_gone_from_every_table_and_the_other_stays(
    chdb_client, store, roles, actors, writer
) -> None:
    before = _rows_of(chdb_client, store, ERASED)
    assert before == {
        "predictions": 3,
        "features": 3,
        "served_features": 3,
        "replay_predictions": 3,
        "outcomes": 3,
        "deadletters": 3,
    }
    kept = _rows_of(chdb_client, store, KEPT)
    request = erase_request(ERASED, "dpo", KEY).signed(actors["dpo"].private_key)
    outcome = _eraser(chdb_client, store, roles, writer).erase(request, ERASED)

    assert outcome.erased and outcome.error is None
    assert list(outcome.tables) == list(ERASED_TABLES)
    assert {table: n for table, n in outcome.tables.items() if n} == before
    assert _rows_of(chdb_client, store, ERASED) == dict.fromkeys(before, 0)
    assert _rows_of(chdb_client, store, KEPT) == kept
    # Gone from the table files too: a mutation rewrote the parts, nothing is only hidden.
    for table in WHERE_ENTITY:
        raw = chdb_client.query(
            f"SELECT count() FROM {store}.{table} WHERE position(toString(tuple(*)), "
            "{e:String}) > 0",
            parameters={"e": ERASED},
        ).result_rows[0][0]
        assert raw == 0, table
    # The deletions named rows by hashes of their keys, never by the entity id.
    mutations = chdb_client.query(
        "SELECT command FROM system.mutations WHERE database = {db:String}",
        parameters={"db": store},
    ).result_rows
    assert mutations and all(ERASED not in command for (command,) in mutations)

    # Erasing again finds nothing more.
    again = erase_request(ERASED, "dpo", KEY).signed(actors["dpo"].private_key)
    assert sum(_eraser(chdb_client, store, roles, writer).erase(again, ERASED).tables.values()) == 0


@pytest.mark.integration
def test_the_audit_log_records_the_keyed_hash_and_still_verifies(
    chdb_client, store, roles, actors, writer
) -> None:
    request = erase_request(ERASED, "dpo", KEY).signed(actors["dpo"].private_key)
    outcome = _eraser(chdb_client, store, roles, writer).erase(request, ERASED)
    record = outcome.record
    assert record.key_id == writer.key_id and record.command_id == request.command_id
    assert ERASED not in json.dumps(record.to_avro(), default=str)  # kept for ever on Kafka

    event = decide_erasure(record, WriterKey(writer.actor, writer.public_key), roles)
    assert (event.type, event.model, event.actor) == (EventType.ERASED, ERASURE_CHAIN, "dpo")
    evidence = event.evidence
    assert evidence["entity_hash"] == entity_hash(KEY, ERASED)
    assert evidence["tables"] == outcome.tables and evidence["rows_deleted"] == 18
    assert evidence["complete"] is True and evidence["recorded_by"] == writer.key_id
    assert evidence["request"]["signature_verified"] is True
    assert evidence["command_id"] == request.command_id and evidence["approved_by"] == "dpo"

    _audit(chdb_client, store, event)
    report = verify(chdb_client, store)
    assert report.ok, report.summary()
    stored = chdb_client.query(
        f"SELECT model, event_type, actor, canonical FROM {store}.audit_log"
    ).result_rows
    assert [(m, t, a) for m, t, a, _ in stored] == [(ERASURE_CHAIN, "erased", "dpo")]
    assert entity_hash(KEY, ERASED) in stored[0][3]
    leaks = chdb_client.query(
        f"SELECT count() FROM {store}.audit_log WHERE position(toString(tuple(*)), "
        "{e:String}) > 0",
        parameters={"e": ERASED},
    ).result_rows[0][0]
    assert leaks == 0

    # The registry folds it in without inventing a model.
    registry = ModelRegistry()
    registry.apply(event)
    assert registry.models() == [] and registry.answered(request.command_id)


@pytest.mark.integration
def test_an_unauthorised_actor_is_refused_and_the_refusal_is_audited(
    chdb_client, store, roles, actors, writer
) -> None:
    before = _rows_of(chdb_client, store, ERASED)
    request = erase_request(ERASED, "alice", KEY).signed(actors["alice"].private_key)
    outcome = _eraser(chdb_client, store, roles, writer).erase(request, ERASED)
    assert not outcome.erased and outcome.check == "rbac"
    assert "may not erase" in outcome.reason and "data-protection" in outcome.reason
    assert _rows_of(chdb_client, store, ERASED) == before  # nothing deleted

    event = decide_erasure(outcome.record, WriterKey(writer.actor, writer.public_key), roles)
    assert (event.type, event.model, event.actor) == ("command_rejected", ERASURE_CHAIN, "alice")
    assert event.evidence["check"] == "rbac" and event.evidence["action"] == "erase"
    assert event.evidence["arguments"]["entity_hash"] == entity_hash(KEY, ERASED)
    assert event.evidence["recorded_by"] == writer.key_id
    _audit(chdb_client, store, event)
    assert verify(chdb_client, store).ok
    canonical = chdb_client.query(f"SELECT canonical FROM {store}.audit_log").result_rows
    assert len(canonical) == 1 and ERASED not in canonical[0][0]


@pytest.mark.integration
def test_a_request_for_another_entity_or_unsigned_is_refused(
    chdb_client, store, roles, actors, writer
) -> None:
    eraser = _eraser(chdb_client, store, roles, writer)
    other = erase_request(KEPT, "dpo", KEY).signed(actors["dpo"].private_key)
    assert eraser.erase(other, ERASED).check == "entity_hash"
    unsigned = erase_request(ERASED, "dpo", KEY)
    assert eraser.erase(unsigned, ERASED).check == "signature"
    foreign_key = erase_request(ERASED, "dpo", b"x" * 32).signed(actors["dpo"].private_key)
    assert eraser.erase(foreign_key, ERASED).check == "entity_hash"
    nobody = _eraser(chdb_client, store, None, writer)
    signed = erase_request(ERASED, "dpo", KEY).signed(actors["dpo"].private_key)
    assert nobody.erase(signed, ERASED).check == "policy"
    assert _rows_of(chdb_client, store, ERASED)["predictions"] == 3


def test_only_the_lineage_writer_records_an_erasure(roles, actors, writer) -> None:
    trusted = WriterKey(writer.actor, writer.public_key)
    # An erase sent straight to the commands topic never reached the store: refused.
    direct = erase_request(ERASED, "dpo", KEY).signed(actors["dpo"].private_key)
    event = decide_erasure(direct, trusted, roles)
    assert event.type == "command_rejected" and event.evidence["check"] == "erase_path"
    assert ERASED not in json.dumps(event.evidence)
    # A record claiming to be the writer's, signed by another key: refused.
    forged = new_command(
        "erase", ERASURE_CHAIN, None, writer.actor, {"request": "{}", "result": "{}"}
    ).signed(actors["dpo"].private_key)
    assert decide_erasure(forged, trusted, roles).evidence["check"] == "erase_path"
    wrong_actor = new_command(
        "erase", ERASURE_CHAIN, None, "mallory", {"request": "{}", "result": "{}"}
    ).signed(writer.private_key)
    assert decide_erasure(wrong_actor, trusted, roles).evidence["check"] == "signature"
    impostor = generate_key("lineage-writer")
    claim = decide_erasure(forged, WriterKey("lineage-writer", impostor.public_key), roles)
    assert claim.evidence["check"] == "erase_path"


def test_commands_travel_as_json_with_their_signature(actors) -> None:
    request = erase_request(ERASED, "dpo", KEY).signed(actors["dpo"].private_key)
    back = command_from_json(command_to_json(request))
    assert back == request and back.verify(actors["dpo"].public_key)
    assert ERASED not in command_to_json(request)


def test_erasure_refuses_to_run_without_the_key(chdb_client, writer, monkeypatch) -> None:
    with pytest.raises(ErasureError, match="DRIFTLINE_DATA_ERASURE_KEY is not set"):
        Eraser(
            chdb_client,
            "db",
            key=b"",
            roles=None,
            writer=writer.actor,
            writer_key=writer.private_key,
        )
    monkeypatch.delenv("DRIFTLINE_DATA_ERASURE_KEY", raising=False)
    with pytest.raises(StreamsError, match="DRIFTLINE_DATA_ERASURE_KEY is not set"):
        erasure_key(load_settings())
    monkeypatch.setenv("DRIFTLINE_DATA_ERASURE_KEY", "s" * 32)
    assert erasure_key(load_settings()) == b"s" * 32


@pytest.fixture
def features(feast_repo, tmp_path):
    """The real Feast online store (SQLite), in a private copy of the example repository."""
    from driftline.features.feast_store import FeastFeatureStore

    root = tmp_path / "repo"
    shutil.copytree(feast_repo, root)
    text = (root / "definitions.py").read_text().replace(str(feast_repo), str(root))
    (root / "definitions.py").write_text(text)
    return FeastFeatureStore(root)


@pytest.mark.integration
def test_the_feature_stores_online_rows_are_erased_too(
    chdb_client, store, roles, actors, writer, features
) -> None:
    from driftline.features.example_repo import SERVICE

    person, neighbour = "customer-00007", "customer-00008"
    _store_entity(chdb_client, store, person)
    assert features.online(SERVICE, [person, neighbour]).found.tolist() == [True, True]

    request = erase_request(person, "dpo", KEY).signed(actors["dpo"].private_key)
    outcome = _eraser(chdb_client, store, roles, writer, feature_store=features).erase(
        request, person
    )
    assert outcome.erased and outcome.online_store and outcome.online_store > 0
    assert features.online(SERVICE, [person, neighbour]).found.tolist() == [False, True]
    assert _rows_of(chdb_client, store, person) == dict.fromkeys(WHERE_ENTITY, 0)
    event = decide_erasure(outcome.record, WriterKey(writer.actor, writer.public_key), roles)
    assert event.evidence["online_store"] == outcome.online_store


@pytest.mark.integration
def test_an_online_store_that_fails_leaves_the_erasure_recorded_as_incomplete(
    chdb_client, store, roles, actors, writer, features
) -> None:
    online_db = features.repo_path / "data" / "online.db"
    online_db.unlink()
    online_db.mkdir()  # SQLite cannot open a directory: the online store is down
    request = erase_request(ERASED, "dpo", KEY).signed(actors["dpo"].private_key)
    outcome = _eraser(chdb_client, store, roles, writer, feature_store=features).erase(
        request, ERASED
    )
    assert outcome.erased and outcome.error.startswith("online store: ")
    assert ERASED not in outcome.error
    # The store's rows went all the same, and the record says what is missing.
    assert _rows_of(chdb_client, store, ERASED) == dict.fromkeys(WHERE_ENTITY, 0)
    event = decide_erasure(outcome.record, WriterKey(writer.actor, writer.public_key), roles)
    assert event.type == EventType.ERASED and event.evidence["complete"] is False
    assert event.evidence["error"] == outcome.error and event.evidence["rows_deleted"] == 18


@pytest.mark.integration
def test_every_table_holding_entity_ids_is_erased_and_has_a_ttl(chdb_client, fresh_database):
    """A table added later with an entity_id column must join erasure and retention."""
    from driftline.lineage.store.clickhouse import TTL_COLUMNS

    create_tables(chdb_client, fresh_database)
    holding = {
        table
        for (table,) in chdb_client.query(
            "SELECT c.table FROM system.columns AS c JOIN system.tables AS t "
            "ON c.database = t.database AND c.table = t.name "
            "WHERE c.database = {db:String} AND c.name = 'entity_id' AND t.engine != 'View'",
            parameters={"db": fresh_database},
        ).result_rows
    }
    assert holding <= set(ERASED_TABLES), "erase_entity does not cover " + str(
        holding - set(ERASED_TABLES)
    )
    assert holding <= set(TTL_COLUMNS)
