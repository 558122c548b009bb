"""The lineage role's CheckpointKeeper without a broker: its key, its trust, its verdict."""

from __future__ import annotations

import pytest

from driftline.core.settings import Settings
from driftline.lineage import events as ev
from driftline.lineage.audit.chain import AuditLogWriter
from driftline.lineage.audit.checkpoints import load_checkpoints
from driftline.lineage.audit.verify import UNVERIFIED
from driftline.lineage.store.clickhouse import create_tables
from driftline.lineage.trust.keys import generate_key, save_keypair
from driftline.streams.exceptions import StreamsError
from driftline.streams.stages.checkpointing import CheckpointKeeper, writer_key

pytestmark = pytest.mark.integration  # real chDB engine


@pytest.fixture
def settings(tmp_path, chdb_client, fresh_database) -> Settings:
    create_tables(chdb_client, fresh_database)
    return Settings(data={"dir": tmp_path}, clickhouse={"database": fresh_database})


def write(client, db: str, n: int) -> None:
    e = ev.new_event("registered", "fraud", n, "alice", attributes={"n": str(n)})
    AuditLogWriter(client, db).write([(e, "driftline.lifecycle", 0, n)])


def test_keeper_signs_with_the_configured_key_and_trusts_only_it(settings, chdb_client) -> None:
    db = settings.clickhouse.database
    save_keypair(settings.key_dir, generate_key("alice"))  # another actor's key, same dir
    keeper = CheckpointKeeper(settings, chdb_client)
    keeper.prepare()
    assert (settings.key_dir / "lineage-writer.key").exists()
    write(chdb_client, db, 1)
    assert keeper.checkpoint() == 1
    assert keeper.checkpoint("shutdown") == 0  # nothing moved
    write(chdb_client, db, 2)
    assert keeper.checkpoint("shutdown") == 1
    stored = load_checkpoints(chdb_client, db)
    assert [(c.seq, c.prev_seq, c.reason) for c in stored] == [
        (1, 0, "interval"),
        (2, 1, "shutdown"),
    ]
    assert {c.key_id for c in stored} == {writer_key(settings).key_id}
    verdict = keeper.verify()
    # Chains and checkpoints hold, but without Kafka that is not "intact".
    assert verdict.status == UNVERIFIED and not verdict.problems, verdict.summary()
    assert "no Kafka broker configured" in verdict.summary()


def test_writer_key_is_named_by_the_setting(tmp_path, chdb_client, fresh_database) -> None:
    create_tables(chdb_client, fresh_database)
    settings = Settings(
        data={"dir": tmp_path},
        clickhouse={"database": fresh_database},
        audit={"writer_key": "audit-signer"},
    )
    keeper = CheckpointKeeper(settings, chdb_client)
    keeper.prepare()
    assert (settings.key_dir / "audit-signer.pub").exists()
    assert not (settings.key_dir / "lineage-writer.pub").exists()
    assert writer_key(settings).name == "audit-signer"


def test_verification_needs_the_writer_public_key(settings) -> None:
    with pytest.raises(StreamsError, match=r"lineage-writer\.pub is missing"):
        writer_key(settings)


def test_mismatched_key_files_stop_the_writer(settings, chdb_client) -> None:
    save_keypair(settings.key_dir, generate_key("lineage-writer"))
    other = generate_key("lineage-writer")
    (settings.key_dir / "lineage-writer.pub").unlink()
    save_keypair(settings.key_dir / "elsewhere", other)
    (settings.key_dir / "elsewhere" / "lineage-writer.pub").rename(
        settings.key_dir / "lineage-writer.pub"
    )
    with pytest.raises(StreamsError, match="are not one key pair"):
        CheckpointKeeper(settings, chdb_client).prepare()


def test_a_public_key_without_its_private_key_is_not_replaced(settings, chdb_client) -> None:
    save_keypair(settings.key_dir, generate_key("lineage-writer"))
    (settings.key_dir / "lineage-writer.key").unlink()
    with pytest.raises(StreamsError, match="exists but its private key"):
        CheckpointKeeper(settings, chdb_client).prepare()
