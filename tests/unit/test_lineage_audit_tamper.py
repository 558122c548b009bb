"""Tampering with someone's write access to ClickHouse: every attempt fails verification
and the message names the row (model, seq).

Real chDB; Kafka is a stand-in holding what the lifecycle topic and the anchor topic
would (the embedded-broker version is tests/integration/test_audit_anchor.py). The
attacker writes both ClickHouse tables freely but cannot sign with the lineage
writer's key and cannot rewrite Kafka.
"""

from __future__ import annotations

import hashlib
import time

import pytest

from driftline.lineage import events as ev
from driftline.lineage.audit.alarms import alarm_evidence
from driftline.lineage.audit.chain import AuditLogWriter, chain_hash
from driftline.lineage.audit.checkpoints import (
    WriterKey,
    chain_heads,
    load_checkpoints,
    sign,
    store_checkpoints,
)
from driftline.lineage.audit.sources import SourceLog, SourceRecord
from driftline.lineage.audit.tail import TailVerifier
from driftline.lineage.audit.verify import (
    INTACT,
    NOT_INTACT,
    UNVERIFIED,
    Cadence,
    KafkaEvidence,
    verify_audit,
)
from driftline.lineage.events import now_ms
from driftline.lineage.registry.model_registry import ModelRegistry
from driftline.lineage.store.clickhouse import create_tables
from driftline.lineage.trust.keys import generate_key

pytestmark = pytest.mark.integration  # real chDB engine

SYNC = {"mutations_sync": 2}
LIFECYCLE = "driftline.lifecycle"
CADENCE = Cadence(interval_ms=10_000, grace_ms=5_000)
LATER = 3_600_000  # verifying an hour on: every row is past the cadence
COLUMNS = [
    "model", "seq", "event_id", "event_type", "version", "actor", "occurred_at", "canonical",
    "prev_hash", "hash", "source_topic", "source_partition", "source_offset", "recorded_at",
]  # fmt: skip


class FakeKafka:
    """What the lifecycle topic and the anchor topic hold; nobody in these tests edits it."""

    def __init__(self) -> None:
        self.records: dict[tuple[str, int, int], SourceRecord] = {}
        self.ends = {0: 0, 1: 0}
        self.anchors = []

    def publish(self, event) -> tuple[str, int, int]:
        partition = 0 if event.model == "fraud" else 1  # keyed by model
        offset = self.ends[partition]
        self.ends[partition] += 1
        self.records[(LIFECYCLE, partition, offset)] = SourceRecord(event, now_ms())
        return LIFECYCLE, partition, offset

    def fetch(self, wanted) -> SourceLog:
        return SourceLog(
            records=dict(self.records),
            extents={(LIFECYCLE, p): (0, end) for p, end in self.ends.items()},
            first_ms={
                LIFECYCLE: min((r.timestamp_ms for r in self.records.values()), default=None)
            },
            complete=frozenset({LIFECYCLE}),
        )


class Lineage:
    """The lineage role in miniature: events to Kafka and the audit log, checkpoints."""

    def __init__(self, client, db: str) -> None:
        self.client, self.db = client, db
        self.kafka = FakeKafka()
        self.key = generate_key("lineage-writer")
        self.writer_key = WriterKey("lineage-writer", self.key.public_key)
        self.audit = AuditLogWriter(client, db)
        self.verifier = TailVerifier(
            client, db, self.writer_key, self._sign, fetch=self.kafka.fetch, grace_ms=1_000
        )
        self.events: dict[str, list] = {}

    def _sign(self, model, seq, digest, prev_seq, reason):
        return sign(self.key.private_key, model, seq, digest, prev_seq=prev_seq, reason=reason)

    def record(self, *events) -> None:
        for e in events:
            self.audit.write([(e, *self.kafka.publish(e))])
            self.events.setdefault(e.model, []).append(e)

    def checkpoint(self, reason: str = "interval"):
        result = self.verifier.run(chain_heads(self.client, self.db), reason)
        store_checkpoints(self.client, self.db, result.signed)
        self.kafka.anchors += result.signed
        return result

    def verdict(self, *, kafka: bool = True, later: int = LATER, model: str | None = None):
        evidence = KafkaEvidence("anchors", self.kafka.anchors, self.kafka.fetch) if kafka else None
        return verify_audit(
            self.client,
            self.db,
            self.writer_key,
            CADENCE,
            kafka=evidence,
            kafka_unavailable="no broker in this test",
            model=model,
            now_ms=now_ms() + later,
        )


def event(model: str, n: int):
    return ev.new_event(
        "registered" if n == 1 else "validated",
        model,
        n,
        "alice",
        attributes={"n": str(n)},
        evidence={"p_value": n / 100},
    )


@pytest.fixture
def lineage(chdb_client, fresh_database) -> Lineage:
    """fraud: rows 1..5, checkpoints at seq 3 and 5; churn: rows 1..2, checkpoint at 2."""
    create_tables(chdb_client, fresh_database)
    lin = Lineage(chdb_client, fresh_database)
    lin.record(*(event("fraud", n) for n in (1, 2, 3)), event("churn", 1))
    lin.checkpoint()
    lin.record(event("fraud", 4), event("fraud", 5), event("churn", 2))
    lin.checkpoint("shutdown")
    return lin


def kinds(verdict) -> set[tuple[str, int, str]]:
    return {(p.model, p.seq, p.kind) for p in verdict.problems}


def rows(lin: Lineage, model: str) -> list[tuple]:
    return lin.client.query(
        f"SELECT seq, prev_hash, hash, canonical, source_topic, source_partition, source_offset "
        f"FROM {lin.db}.audit_log WHERE model = {{m:String}} ORDER BY seq",
        parameters={"m": model},
        column_formats={"canonical": "bytes", "prev_hash": "string", "hash": "string"},
    ).result_rows


def append_row(
    lin: Lineage, model: str, e, *, source=(LIFECYCLE, 0, 99), prev=None, recorded_at=None
) -> str:
    """Insert a row chained onto the head, as an attacker who read the table would."""
    seq, _, head, *_ = rows(lin, model)[-1]
    prev = head if prev is None else prev
    body = e.canonical_json()
    digest = chain_hash(prev, body)
    lin.client.insert(
        f"{lin.db}.audit_log",
        [[model, seq + 1, e.event_id, e.type, e.version, e.actor, e.occurred_at, body.decode(),
          prev, digest, *source, now_ms() if recorded_at is None else recorded_at]],
        column_names=COLUMNS,
    )  # fmt: skip
    return digest


def named(verdict, model: str, seq: int, kind: str) -> None:
    assert verdict.status == NOT_INTACT, verdict.summary()
    assert (model, seq, kind) in kinds(verdict), verdict.summary()
    assert f"model {model!r} seq {seq}: {kind}" in verdict.summary()


# -- untampered -----------------------------------------------------------------------


def test_untampered_log_is_intact_only_with_kafka(lineage) -> None:
    verdict = lineage.verdict()
    assert verdict.status == INTACT, verdict.summary()
    assert (verdict.rows_checked, verdict.checkpoints_checked, verdict.sources_checked) == (7, 4, 7)
    signed = sorted((c.model, c.seq, c.prev_seq, c.reason) for c in lineage.kafka.anchors)
    assert signed == [
        ("churn", 1, 0, "interval"),
        ("churn", 2, 1, "shutdown"),
        ("fraud", 3, 0, "interval"),
        ("fraud", 5, 3, "shutdown"),
    ]
    # ClickHouse alone never proves the log intact: truncation with its checkpoints is invisible.
    alone = lineage.verdict(kafka=False)
    assert alone.status == UNVERIFIED and not alone.ok and not alone.problems
    assert "not verified: no broker in this test" in alone.summary()


def test_rows_awaiting_their_checkpoint_are_pending_not_a_failure(lineage) -> None:
    lineage.record(event("fraud", 6))
    fresh = lineage.verdict(later=0)
    assert fresh.status == INTACT, fresh.summary()
    assert any("await their checkpoint" in note for note in fresh.notes)
    late = lineage.verdict()  # an hour later and still not covered
    named(late, "fraud", 6, "unverified_tail")


def test_no_checkpoint_at_all_is_never_signed_checkpoints_hold(chdb_client, fresh_database):
    create_tables(chdb_client, fresh_database)
    lin = Lineage(chdb_client, fresh_database)
    lin.record(event("fraud", 1), event("fraud", 2))
    verdict = lin.verdict()
    named(verdict, "fraud", 1, "unverified_tail")
    assert "no checkpoint covers it" in verdict.summary()


# -- the three forgeries of issue 14 ----------------------------------------------------


def test_forged_row_appended_after_the_head_and_correctly_chained(lineage) -> None:
    forged = ev.promoted("fraud", 2, "mallory", "validated", 1)
    append_row(lineage, "fraud", forged)
    assert lineage.verdict(kafka=False, later=0).status == UNVERIFIED  # never "intact"
    named(lineage.verdict(kafka=False), "fraud", 6, "unverified_tail")
    verdict = lineage.verdict()
    named(verdict, "fraud", 6, "forged")
    assert "no record at driftline.lifecycle[0]@99" in verdict.summary()
    assert kinds(lineage.verdict(model="churn")) == set()


def test_forged_row_citing_a_real_record_differs_from_it(lineage) -> None:
    *_, topic, partition, offset = rows(lineage, "fraud")[1]  # row 2's source coordinates
    append_row(lineage, "fraud", ev.promoted("fraud", 2, "mallory", "validated", 1),
               source=(topic, partition, offset))  # fmt: skip
    verdict = lineage.verdict()
    named(verdict, "fraud", 6, "forged")
    assert "differs from its source record" in verdict.summary()


def test_chain_recomputed_from_an_edited_row_with_checkpoints_truncated(lineage) -> None:
    prev = None
    for seq, p, _, canonical, *_ in rows(lineage, "fraud"):
        if seq < 3:
            continue
        prev = p if prev is None else prev
        if seq == 3:
            canonical = canonical.replace(b'"p_value":0.03', b'"p_value":0.3')
        digest = chain_hash(prev, canonical)
        lineage.client.command(
            f"ALTER TABLE {lineage.db}.audit_log UPDATE canonical = {{c:String}}, "
            "prev_hash = {p:String}, hash = {h:String} WHERE model = 'fraud' AND seq = {s:UInt64}",
            parameters={"c": canonical.decode(), "p": prev, "h": digest, "s": seq},
            settings=SYNC,
        )
        prev = digest
    lineage.client.command(f"TRUNCATE TABLE {lineage.db}.audit_checkpoints")
    named(lineage.verdict(kafka=False), "fraud", 1, "unverified_tail")
    verdict = lineage.verdict()
    named(verdict, "fraud", 3, "forged")  # row 3 no longer says what its source record says
    named(verdict, "fraud", 3, "checkpoint_missing")  # the anchor topic kept them
    named(verdict, "fraud", 5, "checkpoint_missing")
    named(verdict, "fraud", 3, "rewritten")  # the anchored hash of row 3 is not the new one


def test_last_rows_deleted_together_with_the_checkpoints_above_them(lineage) -> None:
    db = lineage.db
    lineage.client.command(
        f"ALTER TABLE {db}.audit_log DELETE WHERE model = 'fraud' AND seq >= 4", settings=SYNC
    )
    lineage.client.command(
        f"ALTER TABLE {db}.audit_checkpoints DELETE WHERE model = 'fraud' AND seq >= 4",
        settings=SYNC,
    )
    # What is left is a consistent shorter log: ClickHouse alone cannot tell.
    alone = lineage.verdict(kafka=False)
    assert alone.status == UNVERIFIED and not alone.problems, alone.summary()
    verdict = lineage.verdict()
    named(verdict, "fraud", 5, "checkpoint_missing")
    named(verdict, "fraud", 5, "truncated")
    named(verdict, "fraud", 4, "row_missing")  # the lifecycle topic still has the events
    named(verdict, "fraud", 5, "row_missing")


def test_rows_deleted_moments_after_they_were_written_are_missed_at_once(lineage) -> None:
    """Inside the writer's grace an unstored event may just be in flight, but not when a
    signed checkpoint covers its seq or the log holds a later record of its partition."""
    db = lineage.db
    lineage.client.command(
        f"ALTER TABLE {db}.audit_log DELETE WHERE model = 'fraud' AND seq IN (2, 5)",
        settings=SYNC,
    )
    lineage.client.command(
        f"ALTER TABLE {db}.audit_checkpoints DELETE WHERE model = 'fraud' AND seq = 5",
        settings=SYNC,
    )
    verdict = lineage.verdict(later=0)
    named(verdict, "fraud", 2, "row_missing")  # row 3 from the same partition came later
    named(verdict, "fraud", 5, "row_missing")  # the anchored checkpoint at seq 5 covers it


def test_an_event_published_but_not_yet_stored_is_not_missing(lineage) -> None:
    lineage.kafka.publish(event("fraud", 6))  # on the topic; the writer has not got to it
    fresh = lineage.verdict(later=0)
    assert fresh.status == INTACT, fresh.summary()
    named(lineage.verdict(), "fraud", 6, "row_missing")  # a grace later it is


def test_a_whole_chain_deleted_with_its_checkpoints(lineage) -> None:
    db = lineage.db
    for table in ("audit_log", "audit_checkpoints"):
        lineage.client.command(
            f"ALTER TABLE {db}.{table} DELETE WHERE model = 'churn'", settings=SYNC
        )
    verdict = lineage.verdict()
    named(verdict, "churn", 2, "checkpoint_missing")
    named(verdict, "churn", 2, "truncated")
    named(verdict, "churn", 1, "row_missing")


# -- edits in the checkpoint table itself ----------------------------------------------


def test_edited_head_hash_in_the_checkpoint_table(lineage) -> None:
    lineage.client.command(
        f"ALTER TABLE {lineage.db}.audit_checkpoints UPDATE hash = repeat('1', 64) "
        "WHERE model = 'fraud' AND seq = 5",
        settings=SYNC,
    )
    named(lineage.verdict(kafka=False), "fraud", 5, "bad_signature")
    named(lineage.verdict(), "fraud", 5, "bad_signature")


@pytest.mark.parametrize(
    ("column", "kind"),
    [("prev_seq = 0", "bad_signature"), ("reason = ''", "bad_signature"),
     ("key_id = 'x'", "untrusted_signer")],
)  # fmt: skip
def test_edited_signed_fields_of_a_checkpoint(lineage, column, kind) -> None:
    lineage.client.command(
        f"ALTER TABLE {lineage.db}.audit_checkpoints UPDATE {column} "
        "WHERE model = 'fraud' AND seq = 5",
        settings=SYNC,
    )
    named(lineage.verdict(kafka=False), "fraud", 5, kind)


def test_deleted_checkpoint_between_two_others(lineage) -> None:
    lineage.client.command(
        f"ALTER TABLE {lineage.db}.audit_checkpoints DELETE WHERE model = 'fraud' AND seq = 3",
        settings=SYNC,
    )
    # The checkpoint at 5 links back to 3: missed even without Kafka.
    named(lineage.verdict(kafka=False), "fraud", 3, "checkpoint_missing")
    named(lineage.verdict(), "fraud", 3, "checkpoint_missing")


def test_checkpoint_signed_by_an_untrusted_key(lineage) -> None:
    # Alice (a data scientist, with a key in the same key directory) forges a row and
    # signs a checkpoint for it.
    alice = generate_key("alice")
    digest = append_row(lineage, "fraud", ev.promoted("fraud", 2, "alice", "validated", 1))
    forged = sign(alice.private_key, "fraud", 6, digest, prev_seq=5, reason="interval")
    store_checkpoints(lineage.client, lineage.db, [forged])
    alone = lineage.verdict(kafka=False)
    named(alone, "fraud", 6, "untrusted_signer")
    named(alone, "fraud", 6, "unverified_tail")  # her checkpoint covers nothing
    assert "only the lineage writer's key 'lineage-writer'" in alone.summary()
    named(lineage.verdict(), "fraud", 6, "forged")


def test_checkpoint_in_the_table_but_never_anchored(lineage) -> None:
    lineage.kafka.anchors = [a for a in lineage.kafka.anchors if a.seq != 5]
    named(lineage.verdict(), "fraud", 5, "checkpoint_unanchored")


def test_old_checkpoint_replayed_for_a_shortened_chain(lineage) -> None:
    # Rows 4..5 deleted and the (genuinely signed) checkpoint at 5 deleted: re-inserting
    # an old genuine checkpoint does not help the forger.
    db = lineage.db
    lineage.client.command(
        f"ALTER TABLE {db}.audit_log DELETE WHERE model = 'fraud' AND seq = 5", settings=SYNC
    )
    named(lineage.verdict(kafka=False), "fraud", 5, "truncated")


def test_replayed_old_event_appended_with_a_valid_link(lineage) -> None:
    *_, topic, partition, offset = rows(lineage, "fraud")[1]
    again = lineage.events["fraud"][1]
    append_row(lineage, "fraud", again, source=(topic, partition, offset))
    named(lineage.verdict(), "fraud", 6, "duplicate")


def test_legacy_checkpoints_still_verify(chdb_client, fresh_database) -> None:
    # Written before prev_seq and reason were signed: the v1 format, no link to check.
    create_tables(chdb_client, fresh_database)
    lin = Lineage(chdb_client, fresh_database)
    lin.record(event("fraud", 1))
    seq, digest = chain_heads(chdb_client, fresh_database)["fraud"]
    signed_at = now_ms()
    v1 = f"driftline.audit.checkpoint.v1:fraud:{seq}:{digest}:{signed_at}".encode()
    chdb_client.insert(
        f"{fresh_database}.audit_checkpoints",
        [["fraud", seq, digest, signed_at, lin.writer_key.key_id,
          lin.key.private_key.sign(v1).hex()]],
        column_names=["model", "seq", "hash", "signed_at", "key_id", "signature"],
    )  # fmt: skip
    (legacy,) = load_checkpoints(chdb_client, fresh_database)
    assert (legacy.reason, legacy.prev_seq) == ("", 0)
    lin.kafka.anchors.append(legacy)
    assert lin.verdict().status == INTACT, lin.verdict().summary()


# -- continuous verification by the writer ----------------------------------------------


def test_writer_signs_only_tails_that_verify(lineage) -> None:
    assert lineage.checkpoint().signed == ()  # nothing moved
    lineage.record(event("fraud", 6))
    result = lineage.checkpoint()
    assert [(c.model, c.seq, c.prev_seq) for c in result.signed] == [("fraud", 6, 5)]
    assert result.problems == ()


def test_writer_refuses_to_sign_a_forged_tail_and_alarms(lineage) -> None:
    append_row(lineage, "fraud", ev.promoted("fraud", 2, "mallory", "validated", 1))
    lineage.record(event("churn", 3))
    result = lineage.checkpoint()
    assert [(c.model, c.seq) for c in result.signed] == [("churn", 3)]
    assert [(p.model, p.seq, p.kind) for p in result.problems] == [("fraud", 6, "forged")]
    assert lineage.verifier.verified["fraud"][0] == 5  # still the last good head
    again = lineage.checkpoint()  # the same problem until someone repairs it
    assert [(p.model, p.seq, p.kind) for p in again.problems] == [("fraud", 6, "forged")]
    evidence = alarm_evidence(result.problems, verified_seq=5)
    alarm = ModelRegistry().plan("raise_alarm", "fraud", None, "lineage-writer", evidence=evidence)
    assert alarm.type == "audit_alarm" and alarm.version is None
    assert alarm.evidence["problems"][0] == {
        "seq": 6,
        "kind": "forged",
        "detail": result.problems[0].detail,
    }
    assert alarm.evidence["verified_seq"] == 5


@pytest.mark.parametrize(
    ("tamper", "expected"),
    [
        ("DELETE WHERE model = 'fraud' AND seq >= 4", ("fraud", 4, "truncated")),
        (
            "UPDATE hash = repeat('a', 64) WHERE model = 'fraud' AND seq = 5",
            ("fraud", 5, "rewritten"),
        ),
        ("DELETE WHERE model = 'churn'", ("churn", 1, "truncated")),
    ],
)
def test_writer_notices_tampering_below_its_verified_head(lineage, tamper, expected) -> None:
    lineage.client.command(f"ALTER TABLE {lineage.db}.audit_log {tamper}", settings=SYNC)
    problems = {(p.model, p.seq, p.kind) for p in lineage.checkpoint().problems}
    assert expected in problems


def test_writer_refuses_a_replayed_event_on_the_tail(lineage) -> None:
    *_, topic, partition, offset = rows(lineage, "fraud")[1]
    append_row(lineage, "fraud", lineage.events["fraud"][1], source=(topic, partition, offset))
    result = lineage.checkpoint()
    assert [(p.model, p.seq, p.kind) for p in result.problems] == [("fraud", 6, "duplicate")]


def test_writer_does_not_sign_while_sources_are_unreadable(lineage) -> None:
    from driftline.lineage.exceptions import SourcesUnavailable

    def down(wanted):
        raise SourcesUnavailable("broker down")

    lineage.verifier.fetch = down
    lineage.record(event("fraud", 6))
    result = lineage.checkpoint()
    assert result.signed == () and result.problems == ()
    assert result.deferred == ("fraud: broker down",)


def test_alarm_needs_a_problem() -> None:
    with pytest.raises(ValueError, match="needs at least one problem"):
        alarm_evidence([], verified_seq=0)


def test_chain_hash_is_sha256_of_prev_and_body() -> None:
    assert chain_hash("00" * 32, b"x") == hashlib.sha256(bytes(32) + b"x").hexdigest()


def test_broker_that_kept_nothing_across_a_restart_is_not_forgery(lineage) -> None:
    # The embedded broker restarts empty and reuses offsets: rows older than anything the
    # topic holds are checked against the (re-published) checkpoints only.
    time.sleep(0.01)
    lineage.kafka.records.clear()
    lineage.kafka.ends = {0: 0, 1: 0}
    lineage.record(event("fraud", 6), event("churn", 3))  # at offsets 0 again
    lineage.checkpoint()
    verdict = lineage.verdict()
    assert verdict.status == INTACT, verdict.summary()
    assert verdict.sources_checked == 2
    assert any("7 row(s) predate the oldest record" in note for note in verdict.notes)


def test_checkpoint_table_from_before_the_link_columns_is_upgraded(chdb_client, fresh_database):
    chdb_client.command(
        f"CREATE TABLE {fresh_database}.audit_checkpoints (model String, seq UInt64, "
        "hash String, signed_at DateTime64(3, 'UTC'), key_id String, signature String) "
        "ENGINE = MergeTree ORDER BY (model, seq, signed_at)"
    )
    chdb_client.insert(
        f"{fresh_database}.audit_checkpoints",
        [["fraud", 1, "ab" * 32, 1_700_000_000_000, "k", "00"]],
        column_names=["model", "seq", "hash", "signed_at", "key_id", "signature"],
    )
    create_tables(chdb_client, fresh_database)
    create_tables(chdb_client, fresh_database)  # idempotent
    (old,) = load_checkpoints(chdb_client, fresh_database)
    assert (old.seq, old.prev_seq, old.reason) == (1, 0, "")


def test_writer_refuses_a_backdated_row_whose_source_cannot_be_found(lineage) -> None:
    # recorded_at is not hashed: dated before anything the topic holds, the row has no
    # source to compare with, but it is past a head signed long after that date.
    forged = ev.promoted("fraud", 2, "mallory", "validated", 1)
    append_row(lineage, "fraud", forged, recorded_at=1_000)
    result = lineage.checkpoint()
    assert [(p.model, p.seq, p.kind) for p in result.problems] == [("fraud", 6, "forged")]
    assert "a backdated row" in result.problems[0].detail
    named(lineage.verdict(), "fraud", 6, "unverified_tail")


def test_writer_takes_an_unsourced_tail_left_by_a_crash_before_a_broker_restart(lineage):
    lineage.record(event("fraud", 6))  # written, then the stack died before a checkpoint
    time.sleep(0.01)
    lineage.kafka.records.clear()  # the embedded broker restarts empty
    lineage.kafka.ends = {0: 0, 1: 0}
    result = lineage.checkpoint()
    assert [(c.model, c.seq) for c in result.signed] == [("fraud", 6)] and not result.problems


def test_writer_does_not_vouch_for_an_unsourced_chain_it_never_checkpointed(
    chdb_client, fresh_database
) -> None:
    create_tables(chdb_client, fresh_database)
    lin = Lineage(chdb_client, fresh_database)
    lin.record(event("fraud", 1))
    time.sleep(0.01)
    lin.kafka.records.clear()
    lin.kafka.ends = {0: 0, 1: 0}
    result = lin.checkpoint()
    assert result.signed == ()
    assert [(p.model, p.seq, p.kind) for p in result.problems] == [("fraud", 1, "unverified_tail")]
