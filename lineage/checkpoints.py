"""Signed checkpoints of the audit log's chain heads.

A hash chain shows edits, deletions, insertions and reorderings *inside* a
chain, but not rows cut off its end, nor a chain recomputed from scratch by
someone with write access. A checkpoint is the head (model, seq, hash) signed
with the lineage writer's Ed25519 key, kept in its own table: verification then
also needs every checkpointed row to still be there, with that hash.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from lineage.events import now_ms
from lineage.exceptions import StoreError
from lineage.keys import key_id
from lineage.store import AUDIT_LOG, CHECKPOINTS, check_identifier


@dataclass(frozen=True)
class Checkpoint:
    model: str
    seq: int
    hash: str
    signed_at: int
    key_id: str
    signature: bytes

    def signing_bytes(self) -> bytes:
        return signing_bytes(self.model, self.seq, self.hash, self.signed_at)


@dataclass(frozen=True)
class CheckpointProblem:
    model: str
    seq: int
    kind: str  # bad_signature | unknown_key | truncated | rewritten
    detail: str

    def __str__(self) -> str:
        return f"{self.model} checkpoint at seq {self.seq}: {self.kind}: {self.detail}"


def signing_bytes(model: str, seq: int, chain_hash: str, signed_at: int) -> bytes:
    # Prefixed so a checkpoint signature can never be mistaken for another signed thing.
    return f"driftline.audit.checkpoint.v1:{model}:{seq}:{chain_hash}:{signed_at}".encode()


def checkpoint_heads(
    client: Any, database: str, private_key: Ed25519PrivateKey
) -> list[Checkpoint]:
    """Sign and store the head of every chain that moved since its last checkpoint."""
    db = check_identifier(database)
    heads = _rows(
        client,
        f"SELECT model, max(seq), argMax(hash, seq) FROM {db}.{AUDIT_LOG} GROUP BY model",
    )
    done = dict(_rows(client, f"SELECT model, max(seq) FROM {db}.{CHECKPOINTS} GROUP BY model"))
    signer = key_id(private_key.public_key())
    signed_at = now_ms()
    checkpoints = []
    for model, seq, chain_hash in heads:
        if done.get(model, 0) >= seq:
            continue
        digest = _text(chain_hash)
        signature = private_key.sign(signing_bytes(model, int(seq), digest, signed_at))
        checkpoints.append(Checkpoint(model, int(seq), digest, signed_at, signer, signature))
    if checkpoints:
        client.insert(
            f"{db}.{CHECKPOINTS}",
            [
                [c.model, c.seq, c.hash, c.signed_at, c.key_id, c.signature.hex()]
                for c in checkpoints
            ],
            column_names=["model", "seq", "hash", "signed_at", "key_id", "signature"],
        )
    return checkpoints


def verify_checkpoints(
    client: Any, database: str, public_keys: Mapping[str, Ed25519PublicKey]
) -> list[CheckpointProblem]:
    """Every checkpoint's signature, and that its row is still in the chain unchanged."""
    db = check_identifier(database)
    rows = _rows(
        client,
        f"SELECT c.model, c.seq, c.hash, toUnixTimestamp64Milli(c.signed_at), c.key_id, "
        f"c.signature, a.hash, a.seq FROM {db}.{CHECKPOINTS} AS c "
        f"LEFT JOIN {db}.{AUDIT_LOG} AS a ON a.model = c.model AND a.seq = c.seq "
        "ORDER BY c.model, c.seq",
    )
    problems = []
    for model, seq, chain_hash, signed_at, signer, signature, row_hash, row_seq in rows:
        key = public_keys.get(signer)
        if key is None:
            problems.append(
                CheckpointProblem(
                    model, seq, "unknown_key", f"signed by key {signer!r}, which is not trusted"
                )
            )
            continue
        try:
            key.verify(
                bytes.fromhex(_text(signature)),
                signing_bytes(model, int(seq), _text(chain_hash), int(signed_at)),
            )
        except (InvalidSignature, ValueError):
            problems.append(
                CheckpointProblem(model, seq, "bad_signature", "the checkpoint itself was altered")
            )
            continue
        if not row_seq:
            problems.append(
                CheckpointProblem(model, seq, "truncated", f"row {seq} is gone from the audit log")
            )
        elif _text(row_hash) != _text(chain_hash):
            problems.append(
                CheckpointProblem(
                    model,
                    seq,
                    "rewritten",
                    f"row {seq} hash {_text(row_hash)[:16]} != signed {_text(chain_hash)[:16]}",
                )
            )
    return problems


def _rows(client: Any, sql: str) -> list[tuple]:
    try:
        return client.query(sql).result_rows
    except Exception as exc:
        raise StoreError(f"reading audit checkpoints failed: {exc}") from exc


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value
