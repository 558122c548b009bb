"""The lineage role's signed checkpoints of the audit chain heads, and verification.

The worker signs with ``<key dir>/<DRIFTLINE_AUDIT_WRITER_KEY>.key`` (default
``lineage-writer``, created on first start). Every checkpoint interval and at
every clean shutdown it verifies each chain's new tail (chain links, repeated
events, the source records on Kafka) before it signs the head, stores the
checkpoint in ClickHouse and publishes it to the anchor topic. A tail that fails
gets an audit alarm instead: a ``raise_alarm`` command signed with the same key,
which the registry turns into the ``audit_alarm`` lifecycle event that freezes the
model's promotions (:mod:`driftline.lineage.audit.alarms`).

Verification trusts ``<key dir>/<DRIFTLINE_AUDIT_WRITER_KEY>.pub`` and nothing
else in the key directory.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from driftline.core.settings import Settings
from driftline.lineage.audit.alarms import alarm_command, alarm_key
from driftline.lineage.audit.chain import AuditProblem
from driftline.lineage.audit.checkpoints import (
    Checkpoint,
    WriterKey,
    chain_heads,
    check_signatures,
    load_checkpoints,
    sign,
    store_checkpoints,
)
from driftline.lineage.audit.sources import SourceLog, Wanted
from driftline.lineage.audit.tail import TailVerifier
from driftline.lineage.audit.verify import AuditVerdict, Cadence, KafkaEvidence, verify_audit
from driftline.lineage.exceptions import SourcesUnavailable
from driftline.lineage.store.clickhouse import ClickHouseClient
from driftline.lineage.trust.keys import (
    generate_key,
    load_private_key,
    load_public_key,
    save_keypair,
)
from driftline.lineage.trust.keys import key_id as fingerprint
from driftline.schemas import SchemaCodec
from driftline.streams.exceptions import BrokerUnavailable, StreamsError
from driftline.streams.kafka.audit_records import AuditKafka

log = logging.getLogger(__name__)


def writer_key(settings: Settings) -> WriterKey:
    """The configured lineage writer's public key: the only one trusted to sign checkpoints."""
    name = settings.audit.writer_key
    path = settings.key_dir / f"{name}.pub"
    if not path.exists():
        raise StreamsError(
            f"the lineage writer's public key {path} is missing (DRIFTLINE_AUDIT_WRITER_KEY="
            f"{name!r}): checkpoints cannot be verified without it. The lineage role creates "
            "it on first start; copy it here from the worker's key directory"
        )
    return WriterKey(name, load_public_key(path))


def writer_private_key(settings: Settings) -> Ed25519PrivateKey:
    """The lineage writer's private key, created (with its .pub) on the first start."""
    name = settings.audit.writer_key
    key_path = settings.key_dir / f"{name}.key"
    if not key_path.exists():
        if key_path.with_suffix(".pub").exists():
            # A new pair would make every checkpoint signed so far untrusted.
            raise StreamsError(
                f"{key_path.with_suffix('.pub')} exists but its private key {key_path} "
                "does not: copy the lineage writer's key here (every lineage worker "
                "signs with the same key), or remove the .pub to start a new one"
            )
        save_keypair(settings.key_dir, generate_key(name))
        log.info("created the audit checkpoint signing key %s", key_path)
    return load_private_key(key_path)


def trusted_writer(settings: Settings) -> WriterKey | None:
    """The lineage writer's public key, or None on a host that has not got it (the
    registry then accepts no audit alarms, and says so when one comes)."""
    try:
        return writer_key(settings)
    except StreamsError as exc:
        log.warning("%s", exc)
        return None


def cadence(settings: Settings) -> Cadence:
    return Cadence(
        interval_ms=int(settings.worker.checkpoint_interval_s * 1000),
        grace_ms=int(settings.audit.grace_s * 1000),
    )


class CheckpointKeeper:
    """Signs verified chain heads (the lineage role) and verifies the whole log (anyone)."""

    def __init__(
        self,
        settings: Settings,
        client: ClickHouseClient,
        *,
        bootstrap: str | None = None,
        codec: SchemaCodec | None = None,
        kafka_unavailable: str = "",
    ) -> None:
        self._settings = settings
        self._client = client
        self._database = settings.clickhouse.database
        self._kafka = (
            AuditKafka(settings, bootstrap, codec)
            if bootstrap is not None and codec is not None
            else None
        )
        self._kafka_unavailable = kafka_unavailable or "no Kafka broker configured"
        self._private_key = None
        self._verifier: TailVerifier | None = None
        self._unanchored: list[Checkpoint] = []  # stored, not yet on the anchor topic
        self._alarmed: set[str] = set()  # alarm keys (model, first problem) raised
        # For /metrics, replaced whole each round (the scrape reads from another thread):
        self.last_signed_at: dict[str, int] = {}  # model -> its newest checkpoint, epoch ms
        self.problems: dict[str, int] = {}  # model -> problems the last round found

    # -- the lineage role -----------------------------------------------------------

    def prepare(self) -> None:
        """Load (or create) the signing key and start from the stored and anchored heads."""
        key_path = self._settings.key_dir / f"{self._settings.audit.writer_key}.key"
        self._private_key = writer_private_key(self._settings)
        writer = writer_key(self._settings)
        if writer.key_id != fingerprint(self._private_key.public_key()):
            raise StreamsError(
                f"{key_path} and {key_path.with_suffix('.pub')} are not one key pair: "
                "checkpoints signed now would not verify"
            )
        self._verifier = TailVerifier(
            self._client,
            self._database,
            writer,
            self._sign,
            fetch=self._fetch if self._kafka is not None else None,
            grace_ms=cadence(self._settings).grace_ms,
        )
        stored = load_checkpoints(self._client, self._database)
        anchored: list[Checkpoint] = []
        if self._kafka is not None:
            try:
                anchored, _ = self._kafka.anchors()
            except BrokerUnavailable as exc:
                log.error("audit anchors unreadable, starting from the table alone: %s", exc)
        for problem in self._verifier.seed(stored + anchored):
            log.error("audit checkpoint problem: %s", problem)
        # Checkpoints the topic lacks (a publish lost in a crash, or a broker that kept
        # nothing across a restart) are published again: their signature proves them.
        on_topic = {(a.model, a.seq, a.signed_at) for a in anchored}
        valid, _ = check_signatures(stored, writer)
        self._note_signed(valid)
        self._unanchored = [c for c in valid if (c.model, c.seq, c.signed_at) not in on_topic]
        self._publish_pending()

    def checkpoint(self, reason: str = "interval") -> int:
        """One round: verify each moved chain's new tail, sign and store the heads that hold,
        publish them to the anchor topic, and raise an alarm for each chain that does not.
        Returns the number of checkpoints signed."""
        if self._verifier is None:
            raise StreamsError("CheckpointKeeper.prepare() must run before checkpoint()")
        result = self._verifier.run(chain_heads(self._client, self._database), reason)
        try:
            store_checkpoints(self._client, self._database, result.signed)
        except Exception:
            self._verifier.forget(c.model for c in result.signed)
            raise
        self._unanchored += result.signed
        self._note_signed(result.signed)
        found: dict[str, int] = {}
        for problem in result.problems:
            found[problem.model] = found.get(problem.model, 0) + 1
        self.problems = {model: found.get(model, 0) for model in {*self.last_signed_at, *found}}
        self._publish_pending()
        for note in result.deferred:
            log.warning("audit tail not signed this round: %s", note)
        self._alarm(result.problems)
        return len(result.signed)

    def _note_signed(self, checkpoints: Sequence[Checkpoint]) -> None:
        newest = dict(self.last_signed_at)
        for c in checkpoints:
            newest[c.model] = max(newest.get(c.model, 0), c.signed_at)
        self.last_signed_at = newest

    def _sign(self, model: str, seq: int, digest: str, prev_seq: int, reason: str) -> Checkpoint:
        return sign(self._private_key, model, seq, digest, prev_seq=prev_seq, reason=reason)

    def _fetch(self, wanted: Wanted) -> SourceLog:
        try:
            # Only the cited records: each round reads what its new tails cite.
            return self._kafka.fetch(wanted, whole_lifecycle=False)
        except BrokerUnavailable as exc:
            raise SourcesUnavailable(str(exc)) from exc

    def _publish_pending(self) -> None:
        if self._kafka is None or not self._unanchored:
            return
        try:
            self._kafka.publish(self._unanchored)
        except BrokerUnavailable as exc:
            log.error("%d checkpoint(s) not anchored yet, retrying: %s", len(self._unanchored), exc)
            return
        self._unanchored = []

    def _alarm(self, problems: Sequence[AuditProblem]) -> None:
        by_model: dict[str, list] = {}
        for problem in problems:
            by_model.setdefault(problem.model, []).append(problem)
        verified = self._verifier.verified
        for model, found in sorted(by_model.items()):
            seq = verified.get(model, (0, ""))[0]
            key = alarm_key(model, seq)
            if key in self._alarmed:
                continue  # one alarm per break while this worker runs
            command = alarm_command(
                model,
                found,
                self._settings.audit.writer_key,
                self._private_key,
                verified_seq=seq,
            )
            for problem in found:
                log.error("AUDIT ALARM: %s", problem)
            if self._kafka is None:
                log.error("no Kafka broker: the audit alarm for %s is not sent", model)
                continue
            try:
                # The registry turns it into the audit_alarm lifecycle event: only it
                # writes lifecycle (and on a secured cluster only it may).
                self._kafka.publish_command(command)
            except BrokerUnavailable as exc:
                log.error("audit alarm for %s not sent, retrying: %s", model, exc)
                continue
            self._alarmed.add(key)

    # -- verification ---------------------------------------------------------------

    def verify(self, model: str | None = None) -> AuditVerdict:
        """Everything `driftline audit verify` checks (see driftline.lineage.audit.verify)."""
        evidence, unavailable = None, self._kafka_unavailable
        if self._kafka is not None:
            try:
                anchors, unreadable = self._kafka.anchors()
                for record in unreadable:
                    log.warning("anchor topic record is not a checkpoint: %s", record)
                evidence = KafkaEvidence(self._kafka.anchor_topic, anchors, self._kafka.fetch)
            except BrokerUnavailable as exc:
                unavailable = str(exc)
        try:
            return verify_audit(
                self._client,
                self._database,
                writer_key(self._settings),
                cadence(self._settings),
                kafka=evidence,
                kafka_unavailable=unavailable,
                model=model,
            )
        except BrokerUnavailable as exc:  # the broker went away half-way through
            return verify_audit(
                self._client,
                self._database,
                writer_key(self._settings),
                cadence(self._settings),
                kafka_unavailable=str(exc),
                model=model,
            )
