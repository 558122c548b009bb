"""The registry agent's work: signed commands in, lifecycle events out.

Every command ends as the lifecycle event it asked for or as a
``command_rejected`` event naming the failed check: refused commands are audited
like everything else, never dropped.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable, Sequence

from opentelemetry import trace
from opentelemetry.trace import SpanKind

from driftline.core.errors import DriftlineError
from driftline.lineage.audit.checkpoints import WriterKey
from driftline.lineage.audit.erasure import ERASE, decide_erasure
from driftline.lineage.audit.residency import RESIDENCY, decide_residency
from driftline.lineage.events import LifecycleEvent
from driftline.lineage.exceptions import LineageError
from driftline.lineage.registry.model_registry import ModelRegistry
from driftline.lineage.registry.versions import ModelVersion
from driftline.lineage.trust.commands import LifecycleCommand
from driftline.lineage.trust.rbac import CommandAuthority, approval_evidence, rejected
from driftline.schemas import DecodeError, SchemaCodec
from driftline.streams.kafka.delivery import BatchDelivery, DeliveryTracker
from driftline.streams.kafka.lifecycle_topic import cloudevent_headers
from driftline.streams.kafka.tracing import HEADER_GETTER, PROPAGATOR, trace_headers
from driftline.streams.stages.deadletter import DeadLetterPublisher, InboundMessage
from driftline.streams.stages.roles_source import RolesSource

log = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)


class RegistryAgent:
    def __init__(
        self,
        *,
        codec: SchemaCodec,
        registry: ModelRegistry,
        roles: RolesSource,
        delivery: DeliveryTracker,
        dead_letters: DeadLetterPublisher,
        lifecycle_topic: str,
        audit_writer: Callable[[], WriterKey | None] = lambda: None,
    ) -> None:
        self._codec = codec
        self._audit_writer = audit_writer
        self._registry = registry
        self._roles = roles
        self._delivery = delivery
        self._dead = dead_letters
        self._topic = lifecycle_topic

    def process(
        self, messages: Sequence[InboundMessage], batch: BatchDelivery | None = None
    ) -> BatchDelivery:
        batch = self._delivery.batch() if batch is None else batch
        for message in messages:
            try:
                record = self._codec.decode_as("LifecycleCommand", message.value)
                command = LifecycleCommand.from_avro(record)
            except (DecodeError, LineageError) as exc:
                self._dead.publish(
                    message, getattr(exc, "reason", "invalid_command"), str(exc), batch
                )
                continue
            if self._registry.answered(command.command_id):
                # Redelivered after a crash between publishing the answer and committing.
                log.info("command %s already answered; skipping", command.command_id)
                continue
            # The decision continues the command's trace, so a promotion (or a refusal) can
            # be followed back to whoever sent it.
            parent = PROPAGATOR.extract(message.headers, getter=HEADER_GETTER)
            with tracer.start_as_current_span(
                f"decide {command.action}",
                context=parent,
                kind=SpanKind.CONSUMER,
                attributes={"driftline.command_id": command.command_id},
            ):
                event = self.decide(command)
                headers = cloudevent_headers(event, "driftline/registry") + trace_headers()
            # Applied now, so the next command in this batch sees the new state.
            self._registry.apply(event)
            log.info(
                "command %s %s %s v%s by %s -> %s",
                command.command_id,
                command.action,
                command.model,
                command.version,
                command.actor,
                event.type,
            )
            self._delivery.produce(
                batch,
                self._topic,
                self._codec.encode("LifecycleEvent", event.to_avro()),
                key=event.model.encode(),
                headers=headers,
            )
        return batch

    def decide(self, command: LifecycleCommand) -> LifecycleEvent:
        if command.action == "raise_alarm":
            alarm = self._decide_audit_alarm(command)
            if alarm is not None:
                return alarm
        if command.action == RESIDENCY:
            return decide_residency(command, self._writer_key())
        if command.action == ERASE:
            # Carried out where the store is: this records what the lineage writer did,
            # whatever the roles file says now (it only re-checks the actor's signature).
            try:
                roles = self._roles.current()
            except LineageError:
                roles = None
            return decide_erasure(command, self._writer_key(), roles)
        try:
            roles = self._roles.current()
        except LineageError as exc:
            return rejected(command, "policy", f"the roles file cannot be used: {exc}")
        if roles is None:
            return rejected(
                command,
                "policy",
                f"no roles file at {self._roles.path}: create actors with "
                "`driftline keys new` or set DRIFTLINE_REGISTRY_ROLES_FILE",
            )
        authority = CommandAuthority(roles)
        if command.action != "register":
            return authority.decide(command, self._registry)
        refusal = authority.authorize(command, self._registry)
        return refusal if refusal is not None else self._register(command)

    def _writer_key(self) -> WriterKey | None:
        try:
            return self._audit_writer()
        except DriftlineError as exc:
            log.error("the lineage writer's key is unusable: %s", exc)
            return None

    def _decide_audit_alarm(self, command: LifecycleCommand) -> LifecycleEvent | None:
        """An audit alarm from the lineage writer, signed with the key that signs the
        audit checkpoints: that key speaks for the audit log, so no roles-file entry is
        needed. None for a command signed by another key, which the roles file judges."""
        writer = self._writer_key()
        if writer is None or command.key_id != writer.key_id:
            return None
        if command.actor != writer.name or not command.verify(writer.public_key):
            return rejected(
                command,
                "signature",
                f"raise_alarm {command.command_id} claims the audit writer's key "
                f"{writer.key_id} but is not signed by it as {writer.name!r}",
            )
        try:
            return self._registry.plan(
                "raise_alarm",
                command.model,
                None,
                command.actor,
                evidence=approval_evidence(command),
            )
        except LineageError as exc:
            return rejected(command, "invalid_command", str(exc), signature_verified=True)

    def _register(self, command: LifecycleCommand) -> LifecycleEvent:
        """Registration carries the artifact's digest, path and description as arguments."""
        arguments = command.arguments
        if "refused" in arguments:
            return rejected(command, "region", arguments["refused"], signature_verified=True)
        try:
            attributes = json.loads(arguments.get("attributes", "{}"))
            planned = self._registry.plan_register(
                command.model,
                attributes,
                arguments["digest"],
                arguments["artifact"],
                command.actor,
            )
        except (KeyError, ValueError, LineageError) as exc:
            return rejected(
                command,
                "invalid_command",
                f"register needs digest, artifact and attributes arguments: {exc}",
                signature_verified=True,
            )
        if isinstance(planned, ModelVersion):
            return rejected(
                command,
                "already_registered",
                f"{planned.name} v{planned.version} already holds artifact sha256:{planned.digest}",
                signature_verified=True,
            )
        evidence = {
            key: value
            for key, value in approval_evidence(command).items()
            if key not in ("digest", "artifact", "attributes")
        }
        return dataclasses.replace(planned, evidence=evidence)
