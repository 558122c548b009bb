"""Signed chain-head checkpoints catch what the chain alone cannot: truncation and rewrites."""

from __future__ import annotations

import pytest

from driftline.lineage import events as ev
from driftline.lineage.audit.chain import AuditLogWriter
from driftline.lineage.audit.checkpoints import (
    Checkpoint,
    WriterKey,
    check_links,
    check_rows,
    check_signatures,
    checkpoint_heads,
    load_checkpoints,
)
from driftline.lineage.exceptions import InvalidRecord
from driftline.lineage.store.clickhouse import create_tables
from driftline.lineage.trust.keys import generate_key

pytestmark = pytest.mark.integration  # real chDB engine


def _event(model: str, n: int):
    return ev.new_event("registered", model, n, "alice", attributes={"n": str(n)})


@pytest.fixture
def db(chdb_client, fresh_database):
    create_tables(chdb_client, fresh_database)
    writer = AuditLogWriter(chdb_client, fresh_database)
    events = [_event("fraud", n) for n in range(1, 5)] + [_event("churn", n) for n in (1, 2)]
    writer.write([(e, "lifecycle", 0, i) for i, e in enumerate(events)])
    return fresh_database


@pytest.fixture
def signer():
    return generate_key("lineage-worker")


def _trusted(signer):
    return WriterKey("lineage-writer", signer.public_key)


def verify_checkpoints(client, db, writer):
    """Signatures, links and rows of every stored checkpoint, as audit verify checks them."""
    valid, problems = check_signatures(load_checkpoints(client, db), writer)
    rows = client.query(f"SELECT model, seq, hash FROM {db}.audit_log").result_rows
    for model in sorted({c.model for c in valid}):
        hashes = {}
        for m, seq, digest in rows:
            if m == model:
                hashes.setdefault(seq, []).append(digest.decode())
        mine = [c for c in valid if c.model == model]
        problems += check_links(mine) + check_rows(mine, hashes)
    return problems


def test_heads_are_signed_once_per_move(chdb_client, db, signer):
    first = checkpoint_heads(chdb_client, db, signer.private_key)
    assert sorted((c.model, c.seq) for c in first) == [("churn", 2), ("fraud", 4)]
    assert checkpoint_heads(chdb_client, db, signer.private_key) == []  # nothing moved
    assert verify_checkpoints(chdb_client, db, _trusted(signer)) == []


def test_truncated_chain_is_detected(chdb_client, db, signer):
    checkpoint_heads(chdb_client, db, signer.private_key)
    chdb_client.command(
        f"ALTER TABLE {db}.audit_log DELETE WHERE model = 'fraud' AND seq = 4",
        settings={"mutations_sync": 2},
    )
    (problem,) = verify_checkpoints(chdb_client, db, _trusted(signer))
    assert (problem.model, problem.seq, problem.kind) == ("fraud", 4, "truncated")


def test_rewritten_chain_is_detected(chdb_client, db, signer):
    checkpoint_heads(chdb_client, db, signer.private_key)
    chdb_client.command(
        f"ALTER TABLE {db}.audit_log UPDATE hash = repeat('0', 64) "
        "WHERE model = 'churn' AND seq = 2",
        settings={"mutations_sync": 2},
    )
    (problem,) = verify_checkpoints(chdb_client, db, _trusted(signer))
    assert (problem.model, problem.seq, problem.kind) == ("churn", 2, "rewritten")


def test_altered_checkpoint_and_unknown_key_are_detected(chdb_client, db, signer):
    checkpoint_heads(chdb_client, db, signer.private_key)
    chdb_client.command(
        f"ALTER TABLE {db}.audit_checkpoints UPDATE hash = repeat('1', 64) WHERE model = 'fraud'",
        settings={"mutations_sync": 2},
    )
    kinds = {(p.model, p.kind) for p in verify_checkpoints(chdb_client, db, _trusted(signer))}
    assert kinds == {("fraud", "bad_signature")}
    stranger = generate_key("someone-else")
    kinds = {p.kind for p in verify_checkpoints(chdb_client, db, _trusted(stranger))}
    assert kinds == {"untrusted_signer"}


def test_checkpoints_link_to_their_predecessor(chdb_client, db, signer):
    first = checkpoint_heads(chdb_client, db, signer.private_key)
    writer = AuditLogWriter(chdb_client, db)
    writer.write([(_event("fraud", 5), "lifecycle", 0, 10)])
    (second,) = checkpoint_heads(chdb_client, db, signer.private_key, reason="shutdown")
    assert (second.model, second.seq, second.prev_seq, second.reason) == ("fraud", 5, 4, "shutdown")
    assert {(c.model, c.prev_seq) for c in first} == {("fraud", 0), ("churn", 0)}
    assert verify_checkpoints(chdb_client, db, _trusted(signer)) == []


def test_anchor_record_round_trips_and_rejects_junk(chdb_client, db, signer):
    (c, *_) = checkpoint_heads(chdb_client, db, signer.private_key)
    again = Checkpoint.from_json(c.to_json())
    assert again == c and again.verifies(signer.public_key)
    for junk in (b"", b"[]", b'{"model": 1}', c.to_json().replace(b'"seq":', b'"seq":"x","_":')):
        with pytest.raises(InvalidRecord, match="not a checkpoint record"):
            Checkpoint.from_json(junk)
