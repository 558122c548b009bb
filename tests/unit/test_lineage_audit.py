"""Audit log writer and verifier against a real chDB engine.

Tampering is done the way an attacker with table access would: ALTER UPDATE,
ALTER DELETE and INSERT straight into ClickHouse.
"""

import hashlib

import pytest

from driftline.lineage import events as ev
from driftline.lineage.audit.chain import GENESIS, AuditLogWriter, verify
from driftline.lineage.events import LifecycleEvent
from driftline.lineage.exceptions import StoreError
from driftline.lineage.store.clickhouse import create_tables

pytestmark = pytest.mark.integration

SYNC = {"mutations_sync": 2}


class FailingInserts:
    """The real client, except that the next ``failures`` inserts raise.

    With ``land=True`` the insert is executed before raising, like a timeout
    that hits after the server committed.
    """

    def __init__(self, client, failures: int = 1, land: bool = False) -> None:
        self._client = client
        self.failures = failures
        self.land = land

    def insert(self, *args, **kwargs):
        if self.failures:
            self.failures -= 1
            if self.land:
                self._client.insert(*args, **kwargs)
            raise ConnectionError("injected: connection reset during insert")
        return self._client.insert(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._client, name)


def event(model: str, n: int, actor: str = "alice") -> LifecycleEvent:
    return ev.new_event(
        "registered" if n == 1 else "promoted",
        model,
        n,
        actor,
        attributes={"n": str(n)},
        evidence={"p_value": n / 100},
        occurred_at=1_700_000_000_000 + n,
    )


def items(events, start_offset: int = 0):
    return [(e, "driftline.lifecycle", 0, start_offset + i) for i, e in enumerate(events)]


@pytest.fixture
def db(chdb_client, fresh_database):
    create_tables(chdb_client, fresh_database)
    return fresh_database


@pytest.fixture
def chains(chdb_client, db):
    """fraud: 5 rows, churn: 3 rows, interleaved in one batch."""
    fraud = [event("fraud", n) for n in range(1, 6)]
    churn = [event("churn", n) for n in range(1, 4)]
    mixed = [fraud[0], churn[0], fraud[1], fraud[2], churn[1], fraud[3], churn[2], fraud[4]]
    assert AuditLogWriter(chdb_client, db).write(items(mixed)) == 8
    return {"fraud": fraud, "churn": churn}


def rows(client, db, model):
    return client.query(
        f"SELECT seq, event_id, prev_hash, hash, canonical FROM {db}.audit_log "
        "WHERE model = {m:String} ORDER BY seq",
        parameters={"m": model},
        column_formats={"canonical": "bytes"},
    ).result_rows


def delete_originals(client, db, at: dict[int, LifecycleEvent]) -> None:
    """Delete the rows holding these events at these seqs (copies elsewhere stay)."""
    where = " OR ".join(f"(seq = {seq} AND event_id = '{e.event_id}')" for seq, e in at.items())
    client.command(f"ALTER TABLE {db}.audit_log DELETE WHERE {where}", settings=SYNC)


def first_problem(client, db):
    report = verify(client, db)
    assert not report.ok
    assert len(report.problems) == 1, report.summary()  # the untouched chain still verifies
    p = report.first
    return p.model, p.seq, p.kind


def test_chain_is_computed_as_specified(chdb_client, db, chains) -> None:
    for model, events in chains.items():
        got = rows(chdb_client, db, model)
        assert [r[0] for r in got] == list(range(1, len(events) + 1))
        assert [r[1] for r in got] == [e.event_id for e in events]
        prev = GENESIS
        for (_, _, prev_hash, digest, canonical), e in zip(got, events, strict=True):
            assert canonical == e.canonical_json()
            assert prev_hash.decode() == prev
            expected = hashlib.sha256(bytes.fromhex(prev) + e.canonical_json()).hexdigest()
            assert digest.decode() == expected
            prev = expected
    report = verify(chdb_client, db)
    assert report.ok, report.summary()
    assert (report.models_checked, report.rows_checked) == (2, 8)
    assert report.heads["fraud"][0] == 5 and report.heads["churn"][0] == 3
    assert verify(chdb_client, db, model="churn").rows_checked == 3


def test_columns_mirror_the_event(chdb_client, db) -> None:
    e = event("fraud", 2, actor="zoë")
    AuditLogWriter(chdb_client, db).write([(e, "driftline.lifecycle", 3, 42)])
    got = chdb_client.query(
        f"SELECT event_type, version, actor, toUnixTimestamp64Milli(occurred_at), "
        f"source_topic, source_partition, source_offset FROM {db}.audit_log"
    ).result_rows
    assert got == [("promoted", 2, "zoë", e.occurred_at, "driftline.lifecycle", 3, 42)]


def test_redelivery_is_skipped(chdb_client, db, chains) -> None:
    writer = AuditLogWriter(chdb_client, db)  # fresh cache, as after a restart
    fraud = chains["fraud"]
    assert writer.write(items(fraud)) == 0
    newer = [event("fraud", 6), event("fraud", 7)]
    # Overlapping batch: two old events, two new ones, and a repeat inside the batch.
    assert writer.write(items(fraud[3:] + newer + newer[:1])) == 2
    assert [r[0] for r in rows(chdb_client, db, "fraud")] == [1, 2, 3, 4, 5, 6, 7]
    assert verify(chdb_client, db).ok


def test_failed_insert_does_not_advance_heads(chdb_client, db) -> None:
    flaky = FailingInserts(chdb_client, failures=0)
    writer = AuditLogWriter(flaky, db)
    assert writer.write(items([event("fraud", 1)])) == 1  # heads now cached
    flaky.failures = 1
    batch = items([event("fraud", 2), event("fraud", 3)])
    with pytest.raises(StoreError, match="retry the same batch"):
        writer.write(batch)
    assert len(rows(chdb_client, db, "fraud")) == 1
    assert writer.write(batch) == 2
    assert [r[0] for r in rows(chdb_client, db, "fraud")] == [1, 2, 3]
    assert verify(chdb_client, db).ok


def test_insert_that_landed_but_raised_is_retried_safely(chdb_client, db) -> None:
    flaky = FailingInserts(chdb_client, failures=0, land=True)
    writer = AuditLogWriter(flaky, db)
    writer.write(items([event("fraud", 1)]))
    flaky.failures = 1
    batch = items([event("fraud", 2), event("fraud", 3)])
    with pytest.raises(StoreError):
        writer.write(batch)
    assert writer.write(batch) == 0  # already there
    assert writer.write(items([event("fraud", 4)])) == 1
    assert [r[0] for r in rows(chdb_client, db, "fraud")] == [1, 2, 3, 4]
    assert verify(chdb_client, db).ok


def test_empty_and_all_duplicate_batches(chdb_client, db) -> None:
    writer = AuditLogWriter(chdb_client, db)
    assert writer.write([]) == 0
    e = event("m", 1)
    assert writer.write(items([e, e])) == 1
    assert verify(chdb_client, db).rows_checked == 1


# -- tampering ---------------------------------------------------------------------


def test_edited_canonical_is_detected(chdb_client, db, chains) -> None:
    chdb_client.command(
        f"ALTER TABLE {db}.audit_log UPDATE canonical = replaceOne(canonical, 'alice', 'malory') "
        "WHERE model = 'fraud' AND seq = 3",
        settings=SYNC,
    )
    assert first_problem(chdb_client, db) == ("fraud", 3, "edited")


def test_edited_convenience_column_is_detected(chdb_client, db, chains) -> None:
    chdb_client.command(
        f"ALTER TABLE {db}.audit_log UPDATE actor = 'mallory' WHERE model = 'fraud' AND seq = 2",
        settings=SYNC,
    )
    assert first_problem(chdb_client, db) == ("fraud", 2, "edited")
    assert "actor" in verify(chdb_client, db).first.detail


def test_edit_with_recomputed_hash_breaks_the_next_link(chdb_client, db, chains) -> None:
    # The forger rewrites row 3's evidence and its hash consistently: row 4 no longer links.
    edit = "replaceOne(canonical, '\"p_value\":0.03', '\"p_value\":0.3')"
    chdb_client.command(
        f"ALTER TABLE {db}.audit_log UPDATE canonical = {edit}, "
        f"hash = lower(hex(SHA256(concat(unhex(prev_hash), {edit})))) "
        "WHERE model = 'fraud' AND seq = 3",
        settings=SYNC,
    )
    assert b'"p_value":0.3}' in rows(chdb_client, db, "fraud")[2][4]
    assert first_problem(chdb_client, db) == ("fraud", 4, "broken_link")


def test_deleted_row_is_a_gap(chdb_client, db, chains) -> None:
    chdb_client.command(
        f"ALTER TABLE {db}.audit_log DELETE WHERE model = 'fraud' AND seq = 3", settings=SYNC
    )
    assert first_problem(chdb_client, db) == ("fraud", 4, "gap")


def test_deleted_first_row_is_a_gap(chdb_client, db, chains) -> None:
    chdb_client.command(
        f"ALTER TABLE {db}.audit_log DELETE WHERE model = 'churn' AND seq = 1", settings=SYNC
    )
    assert first_problem(chdb_client, db) == ("churn", 2, "gap")


def test_deleted_and_renumbered_rows_break_the_link(chdb_client, db, chains) -> None:
    f = chains["fraud"]
    # (Filter on event_id: in ClickHouse the REPLACE alias would shadow seq in WHERE.)
    chdb_client.command(
        f"INSERT INTO {db}.audit_log SELECT * REPLACE (seq - 1 AS seq) FROM {db}.audit_log "
        f"WHERE model = 'fraud' AND event_id IN ('{f[3].event_id}', '{f[4].event_id}')"
    )
    delete_originals(chdb_client, db, {3: f[2], 4: f[3], 5: f[4]})
    assert [r[0] for r in rows(chdb_client, db, "fraud")] == [1, 2, 3, 4]
    assert first_problem(chdb_client, db) == ("fraud", 3, "broken_link")


def test_reordered_rows_break_the_link(chdb_client, db, chains) -> None:
    f = chains["fraud"]
    chdb_client.command(
        f"INSERT INTO {db}.audit_log SELECT * REPLACE (7 - seq AS seq) FROM {db}.audit_log "
        f"WHERE model = 'fraud' AND event_id IN ('{f[2].event_id}', '{f[3].event_id}')"
    )
    delete_originals(chdb_client, db, {3: f[2], 4: f[3]})
    assert [r[1] for r in rows(chdb_client, db, "fraud")][2:4] == [f[3].event_id, f[2].event_id]
    assert first_problem(chdb_client, db) == ("fraud", 3, "broken_link")


def test_forged_row_at_existing_seq_is_a_duplicate(chdb_client, db, chains) -> None:
    chdb_client.command(
        f"INSERT INTO {db}.audit_log SELECT * REPLACE ('forged' AS event_id, "
        "recorded_at + 1 AS recorded_at) "
        f"FROM {db}.audit_log WHERE model = 'fraud' AND seq = 2"
    )
    assert first_problem(chdb_client, db) == ("fraud", 2, "duplicate")


def test_forged_appended_row_with_wrong_link(chdb_client, db, chains) -> None:
    forged = ev.new_event("promoted", "fraud", 6, "mallory")
    body = forged.canonical_json()
    bogus_prev = "ab" * 32
    chdb_client.insert(
        f"{db}.audit_log",
        [
            [
                "fraud", 6, forged.event_id, "promoted", 6, "mallory", forged.occurred_at,
                body.decode(), bogus_prev,
                hashlib.sha256(bytes.fromhex(bogus_prev) + body).hexdigest(),
                "driftline.lifecycle", 0, 99, forged.occurred_at,
            ]
        ],
        column_names=[
            "model", "seq", "event_id", "event_type", "version", "actor", "occurred_at",
            "canonical", "prev_hash", "hash", "source_topic", "source_partition",
            "source_offset", "recorded_at",
        ],
    )  # fmt: skip
    assert first_problem(chdb_client, db) == ("fraud", 6, "broken_link")


def test_same_event_chained_twice_is_a_duplicate(chdb_client, db, chains) -> None:
    # A writer without redelivery checks would do this: valid links, repeated event.
    again = chains["churn"][1]
    head = rows(chdb_client, db, "churn")[-1][3].decode()
    body = again.canonical_json()
    chdb_client.insert(
        f"{db}.audit_log",
        [["churn", 4, again.event_id, again.type, again.version, again.actor, again.occurred_at,
          body.decode(), head, hashlib.sha256(bytes.fromhex(head) + body).hexdigest()]],
        column_names=["model", "seq", "event_id", "event_type", "version", "actor",
                      "occurred_at", "canonical", "prev_hash", "hash"],
    )  # fmt: skip
    problem = verify(chdb_client, db).first
    assert (problem.model, problem.seq, problem.kind) == ("churn", 4, "duplicate")
    assert "seq 2" in problem.detail


def test_verify_empty_log(chdb_client, db) -> None:
    report = verify(chdb_client, db)
    assert report.ok and report.rows_checked == 0 and report.heads == {}
