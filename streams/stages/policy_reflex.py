"""The policy role's drift reflex: drift events in, signed lifecycle commands out.

The policy acts only as an actor: each action is a ``LifecycleCommand`` signed
with the policy actor's key (``DRIFTLINE_POLICY_ACTOR``, default ``policy``) and
published to the commands topic, where the registry agent checks it like anyone
else's (signature, RBAC, lifecycle rules) and answers with the lifecycle event,
which carries the drift events that triggered it as evidence.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from driftline.lineage.promotion.drift_rules import DriftAction, DriftResponder, DriftSignal
from driftline.lineage.promotion.policy import PromotionPolicy
from driftline.lineage.trust.commands import new_command
from driftline.lineage.trust.keys import load_private_key
from driftline.lineage.trust.rbac import EVIDENCE_ARGUMENT
from driftline.schemas import DecodeError, SchemaCodec
from driftline.streams.kafka.delivery import BatchDelivery, DeliveryTracker
from driftline.streams.kafka.tracing import trace_headers
from driftline.streams.stages.deadletter import DeadLetterPublisher, InboundMessage
from driftline.streams.stats import WorkerStats

log = logging.getLogger(__name__)


class PolicySigner:
    """Signs the policy's commands with its actor's key and publishes them."""

    def __init__(
        self,
        *,
        actor: str,
        key_path: Path,
        codec: SchemaCodec,
        delivery: DeliveryTracker,
        commands_topic: str,
        stats: WorkerStats,
        source: str,
    ) -> None:
        self.actor = actor
        self._key_path = key_path
        self._key: Ed25519PrivateKey | None = None
        self._codec = codec
        self._delivery = delivery
        self._topic = commands_topic
        self._stats = stats
        self._source = source

    def _signing_key(self) -> Ed25519PrivateKey | None:
        if self._key is None and self._key_path.exists():
            self._key = load_private_key(self._key_path)
        return self._key

    def send(
        self,
        batch: BatchDelivery,
        action: str,
        model: str,
        version: int | None,
        arguments: dict[str, str],
        evidence: dict[str, Any],
    ) -> bool:
        """Publish the signed command into ``batch``; False (logged, counted) without a key."""
        key = self._signing_key()
        if key is None:
            # Not dropped silently: logged loudly and counted in /driftline/stats/.
            self._stats.policy_actions_unsigned += 1
            log.error(
                "policy would %s %s v%s but has no key at %s: create it with "
                "`driftline keys new --actor %s --roles policy`",
                action,
                model,
                version,
                self._key_path,
                self.actor,
            )
            return False
        evidence = evidence | {"policy_source": self._source}
        arguments = arguments | {EVIDENCE_ARGUMENT: json.dumps(evidence, sort_keys=True)}
        command = new_command(action, model, version, self.actor, arguments).signed(key)
        self._delivery.produce(
            batch,
            self._topic,
            self._codec.encode("LifecycleCommand", command.to_avro()),
            key=model.encode(),
            headers=trace_headers(),
        )
        self._stats.policy_actions += 1
        self._stats.policy_decisions[decision_kind(action, arguments)] += 1
        return True


def decision_kind(action: str, arguments: dict[str, str]) -> str:
    """The decision a command carries out, as /metrics counts it: a ``traffic`` command to
    0% pauses the version (a halted canary); every other command is its action."""
    if action == "traffic" and arguments.get("percent") in ("0", "0.0"):
        return "pause"
    return action


class DriftPolicyAgent:
    """Drift events in; rollback or pause commands out, by the policy file's rules."""

    def __init__(
        self,
        *,
        policy: PromotionPolicy,
        signer: PolicySigner,
        codec: SchemaCodec,
        delivery: DeliveryTracker,
        dead_letters: DeadLetterPublisher,
    ) -> None:
        self.policy = policy
        self.responder = DriftResponder(policy.drift_rules)
        self.signer = signer
        self._codec = codec
        self._delivery = delivery
        self._dead = dead_letters

    def process(
        self, messages: Sequence[InboundMessage], batch: BatchDelivery | None = None
    ) -> BatchDelivery:
        batch = self._delivery.batch() if batch is None else batch
        now = time.time_ns() // 1_000_000
        for message in messages:
            try:
                signal = DriftSignal.from_record(self._codec.decode_as("DriftEvent", message.value))
            except (DecodeError, KeyError, TypeError, ValueError) as exc:
                self._dead.publish(
                    message, getattr(exc, "reason", "invalid_drift_event"), str(exc), batch
                )
                continue
            for action in self.responder.observe(signal, now):
                self._act(action, batch)
        return batch

    def _act(self, action: DriftAction, batch: BatchDelivery) -> None:
        name, version, arguments = action.command()
        evidence = action.evidence()
        if self.signer.send(batch, name, action.model, version, arguments, evidence):
            log.warning(
                "policy: %s %s v%s (%s) after drift events %s",
                name,
                action.model,
                version or action.version,
                action.rule.name,
                evidence["drift_event_ids"],
            )
