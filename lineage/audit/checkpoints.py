"""Signed checkpoints of the audit log's chain heads.

A hash chain shows edits, deletions, insertions and reorderings *inside* a
chain, but not rows cut off its end, nor a chain recomputed from scratch by
someone with write access. A checkpoint is the head (model, seq, hash) signed
with the lineage writer's Ed25519 key, kept in ``audit_checkpoints`` and
published to the anchor topic (outside ClickHouse). Each checkpoint also signs
``prev_seq``, the seq of the model's previous checkpoint, so a checkpoint
removed from between two others is missing from that sequence, and ``reason``
(``interval``: the writer's timer, ``shutdown``: a clean stop).

Only the key the configuration names (:class:`WriterKey`) is trusted to sign;
a checkpoint signed by any other key, even one of a known actor, is
``untrusted_signer``. Checkpoints written before ``prev_seq`` existed (reason
``""``) verify under the older signing format and have no link to check.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from driftline.lineage.audit.chain import AuditProblem
from driftline.lineage.events import now_ms
from driftline.lineage.exceptions import InvalidRecord, StoreError
from driftline.lineage.store.clickhouse import (
    AUDIT_LOG,
    CHECKPOINTS,
    ClickHouseClient,
    check_identifier,
    insert_and_release,
)
from driftline.lineage.trust.keys import key_id

REASONS = ("interval", "shutdown")
_COLUMNS = ("model", "seq", "hash", "signed_at", "key_id", "signature", "prev_seq", "reason")


@dataclass(frozen=True)
class WriterKey:
    """The one key allowed to sign checkpoints: ``name`` as configured, and its public key."""

    name: str
    public_key: Ed25519PublicKey

    @property
    def key_id(self) -> str:
        return key_id(self.public_key)


@dataclass(frozen=True)
class Checkpoint:
    model: str
    seq: int
    hash: str
    signed_at: int
    key_id: str
    signature: bytes
    prev_seq: int = 0
    reason: str = ""  # "" = written before prev_seq and reason were signed

    def signing_bytes(self) -> bytes:
        return signing_bytes(
            self.model, self.seq, self.hash, self.signed_at, self.prev_seq, self.reason
        )

    def verifies(self, public_key: Ed25519PublicKey) -> bool:
        try:
            public_key.verify(self.signature, self.signing_bytes())
        except InvalidSignature:
            return False
        return True

    def to_json(self) -> bytes:
        """The record published to the anchor topic."""
        body = asdict(self) | {"signature": self.signature.hex()}
        return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Checkpoint:
        try:
            body = json.loads(data)
            return cls(
                model=_str(body["model"]),
                seq=_int(body["seq"]),
                hash=_str(body["hash"]),
                signed_at=_int(body["signed_at"]),
                key_id=_str(body["key_id"]),
                signature=bytes.fromhex(_str(body["signature"])),
                prev_seq=_int(body.get("prev_seq", 0)),
                reason=_str(body.get("reason", "")),
            )
        except (ValueError, TypeError, KeyError, UnicodeDecodeError) as exc:
            raise InvalidRecord(f"not a checkpoint record ({exc}): {bytes(data)[:120]!r}") from exc

    def describe(self) -> str:
        return f"checkpoint at seq {self.seq} ({self.reason or 'v1'}, signed_at {self.signed_at})"


def signing_bytes(
    model: str, seq: int, chain_hash: str, signed_at: int, prev_seq: int = 0, reason: str = ""
) -> bytes:
    # Prefixed so a checkpoint signature can never be mistaken for another signed thing.
    if not reason:
        return f"driftline.audit.checkpoint.v1:{model}:{seq}:{chain_hash}:{signed_at}".encode()
    return (
        f"driftline.audit.checkpoint.v2:{model}:{seq}:{chain_hash}:{signed_at}:{prev_seq}:{reason}"
    ).encode()


def sign(
    private_key: Ed25519PrivateKey,
    model: str,
    seq: int,
    chain_hash: str,
    *,
    prev_seq: int,
    reason: str,
    signed_at: int | None = None,
) -> Checkpoint:
    if reason not in REASONS:
        raise ValueError(f"checkpoint reason {reason!r} is not one of {REASONS}")
    signed_at = now_ms() if signed_at is None else signed_at
    data = signing_bytes(model, seq, chain_hash, signed_at, prev_seq, reason)
    return Checkpoint(
        model,
        seq,
        chain_hash,
        signed_at,
        key_id(private_key.public_key()),
        private_key.sign(data),
        prev_seq,
        reason,
    )


def store_checkpoints(
    client: ClickHouseClient, database: str, checkpoints: Sequence[Checkpoint]
) -> None:
    if not checkpoints:
        return
    name = f"{check_identifier(database)}.{CHECKPOINTS}"
    rows = [
        [c.model, c.seq, c.hash, c.signed_at, c.key_id, c.signature.hex(), c.prev_seq, c.reason]
        for c in checkpoints
    ]
    count = len(rows)
    try:
        insert_and_release(client, name, rows, column_names=list(_COLUMNS))
    except Exception as exc:
        raise StoreError(f"inserting {count} checkpoint(s) into {name} failed: {exc}") from exc


def load_checkpoints(
    client: ClickHouseClient, database: str, model: str | None = None, *, newest: bool = False
) -> list[Checkpoint]:
    """Every stored checkpoint (or ``model``'s), by model, seq and signing time; with
    ``newest``, only those at each model's highest checkpointed seq."""
    db = check_identifier(database)
    where = "WHERE model = {model:String}" if model is not None else "WHERE 1"
    if newest:
        where += (
            f" AND (model, seq) IN (SELECT model, max(seq) FROM {db}.{CHECKPOINTS} GROUP BY model)"
        )
    rows = _rows(
        client,
        f"SELECT model, seq, hash, toUnixTimestamp64Milli(signed_at), key_id, signature, "
        f"prev_seq, reason FROM {db}.{CHECKPOINTS} {where} ORDER BY model, seq, signed_at",
        {"model": model} if model is not None else {},
    )
    checkpoints = []
    for m, seq, digest, signed_at, signer, signature, prev_seq, reason in rows:
        try:
            raw = bytes.fromhex(_text(signature))
        except ValueError:
            raw = b""  # reported as bad_signature
        checkpoints.append(
            Checkpoint(
                m,
                int(seq),
                _text(digest),
                int(signed_at),
                _text(signer),
                raw,
                int(prev_seq),
                _text(reason),
            )
        )
    return checkpoints


def chain_heads(client: ClickHouseClient, database: str) -> dict[str, tuple[int, str]]:
    """model -> (seq, hash) of the newest row in the audit log."""
    db = check_identifier(database)
    rows = _rows(
        client, f"SELECT model, max(seq), argMax(hash, seq) FROM {db}.{AUDIT_LOG} GROUP BY model"
    )
    return {model: (int(seq), _text(digest)) for model, seq, digest in rows}


def checkpoint_heads(
    client: ClickHouseClient,
    database: str,
    private_key: Ed25519PrivateKey,
    *,
    reason: str = "interval",
) -> list[Checkpoint]:
    """Sign and store the head of every chain that moved since its last checkpoint, as the
    table says. The lineage role verifies each new tail before it signs
    (``CheckpointKeeper`` in ``driftline.streams.stages.checkpointing``); this is the unchecked
    primitive."""
    done: dict[str, int] = {}
    for c in load_checkpoints(client, database):
        done[c.model] = max(done.get(c.model, 0), c.seq)
    signed_at = now_ms()
    checkpoints = [
        sign(
            private_key,
            model,
            seq,
            digest,
            prev_seq=done.get(model, 0),
            reason=reason,
            signed_at=signed_at,
        )
        for model, (seq, digest) in sorted(chain_heads(client, database).items())
        if done.get(model, 0) < seq
    ]
    store_checkpoints(client, database, checkpoints)
    return checkpoints


def check_signatures(
    checkpoints: Iterable[Checkpoint], writer: WriterKey, where: str = "audit_checkpoints"
) -> tuple[list[Checkpoint], list[AuditProblem]]:
    """(the checkpoints the writer's key signed, problems with the others)."""
    valid, problems = [], []
    for c in checkpoints:
        if c.key_id != writer.key_id:
            problems.append(
                AuditProblem(
                    c.model,
                    c.seq,
                    "untrusted_signer",
                    f"{c.describe()} in {where} is signed by key {c.key_id!r}; only the lineage "
                    f"writer's key {writer.name!r} ({writer.key_id}) may sign checkpoints",
                )
            )
        elif not c.verifies(writer.public_key):
            problems.append(
                AuditProblem(
                    c.model,
                    c.seq,
                    "bad_signature",
                    f"{c.describe()} in {where} does not verify with {writer.name!r}: "
                    "the checkpoint (hash, seq, time or link) was altered after signing",
                )
            )
        else:
            valid.append(c)
    return valid, problems


def check_links(checkpoints: Sequence[Checkpoint]) -> list[AuditProblem]:
    """Each signed checkpoint names its predecessor's seq; a named one that is gone is
    ``checkpoint_missing``. ``checkpoints``: one model's, signatures already checked."""
    seqs = {c.seq for c in checkpoints}
    problems, reported = [], set()
    for c in sorted(checkpoints, key=lambda c: (c.seq, c.signed_at)):
        if not c.reason or c.prev_seq == 0 or c.prev_seq in seqs or c.prev_seq in reported:
            continue
        reported.add(c.prev_seq)
        problems.append(
            AuditProblem(
                c.model,
                c.prev_seq,
                "checkpoint_missing",
                f"the {c.describe()} links back to a checkpoint at seq {c.prev_seq}, "
                "which is gone from audit_checkpoints",
            )
        )
    return problems


def check_rows(
    checkpoints: Iterable[Checkpoint], row_hashes: Mapping[int, Sequence[str]]
) -> list[AuditProblem]:
    """Every checkpointed row must still be in the chain with the signed hash.
    ``row_hashes``: seq -> hashes of the model's rows at that seq."""
    problems, seen = [], set()
    for c in checkpoints:
        if (c.seq, c.hash) in seen:
            continue
        seen.add((c.seq, c.hash))
        hashes = row_hashes.get(c.seq, ())
        if not hashes:
            problems.append(
                AuditProblem(
                    c.model,
                    c.seq,
                    "truncated",
                    f"row {c.seq} is gone from the audit log, but the {c.describe()} signed it",
                )
            )
        elif c.hash not in hashes:
            problems.append(
                AuditProblem(
                    c.model,
                    c.seq,
                    "rewritten",
                    f"row {c.seq} hash {hashes[0][:16]}... is not the signed {c.hash[:16]}... "
                    f"of the {c.describe()}",
                )
            )
    return problems


def _rows(
    client: ClickHouseClient, sql: str, parameters: Mapping[str, Any] | None = None
) -> list[tuple]:
    try:
        return client.query(sql, parameters=dict(parameters or {})).result_rows
    except Exception as exc:
        raise StoreError(f"reading audit checkpoints failed: {exc}") from exc


def _text(value: str | bytes) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {value!r}")
    return value


def _int(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"expected an integer, got {value!r}")
    return value
