"""The lineage worker's signed checkpoints of audit chain heads.

The worker signs with `<key dir>/lineage-writer.key` (created on first start);
verification trusts the public keys in the key directory.
"""

from __future__ import annotations

import logging
from typing import Any

from driftline.settings import Settings
from lineage import AuditReport, verify
from lineage.checkpoints import checkpoint_heads, verify_checkpoints
from lineage.keys import KeyRing, generate_key, load_private_key, save_keypair

log = logging.getLogger(__name__)
SIGNER = "lineage-writer"


class CheckpointKeeper:
    def __init__(self, settings: Settings, client: Any) -> None:
        self._settings = settings
        self._client = client
        self._database = settings.clickhouse.database
        self._private_key = None

    def prepare(self) -> None:
        key_path = self._settings.key_dir / f"{SIGNER}.key"
        if not key_path.exists():
            save_keypair(self._settings.key_dir, generate_key(SIGNER))
            log.info("created the audit checkpoint signing key %s", key_path)
        self._private_key = load_private_key(key_path)

    def checkpoint(self) -> int:
        return len(checkpoint_heads(self._client, self._database, self._private_key))

    def verify(self, model: str | None = None) -> tuple[bool, str]:
        """The chains and the signed checkpoints together: (ok, readable summary)."""
        report: AuditReport = verify(self._client, self._database, model)
        trusted = {
            entry.key_id: entry.public_key
            for entry in KeyRing.from_directory(self._settings.key_dir).values()
        }
        problems = [
            p
            for p in verify_checkpoints(self._client, self._database, trusted)
            if model is None or p.model == model
        ]
        lines = [report.summary()]
        lines += [f"checkpoint problem: {p}" for p in problems] or ["signed checkpoints hold"]
        return report.ok and not problems, "\n".join(lines)
