"""The one shape every stage of a worker has, whatever its role.

A stage takes a batch of consumed messages and puts everything it produces (outputs
and dead letters) into ``batch``; the agent that feeds it acknowledges the messages only
once ``batch`` is delivered. Scoring, the registry, the drift reflex, the drift decider
and the outcomes join are all stages, so one wiring serves them all
(:mod:`driftline.streams.app.faust_app`), and each can be driven without a broker
(:mod:`driftline.streams.testing`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from driftline.streams.kafka.delivery import BatchDelivery
from driftline.streams.stages.deadletter import InboundMessage


class Stage(Protocol):
    def process(self, messages: Sequence[InboundMessage], batch: BatchDelivery) -> None:
        """Handle ``messages``: every output and dead letter goes into ``batch``."""
