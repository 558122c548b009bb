"""Testing helpers: the stream stages without a broker.

:class:`RecordingProducer` stands in for ``confluent_kafka.Producer``: it
keeps what was produced, numbers each message with the next offset of its
topic partition and fires delivery callbacks on ``poll()`` and ``flush()``.

:class:`StageRig` is what any stage needs around it (the codec, that producer, the
delivery tracker, stats and the dead-letter publisher), with builders for the
messages a stage consumes, so one batch can go through any stage and every output
and dead letter be read back::

    rig = StageRig()
    agent = RegistryAgent(codec=rig.codec, delivery=rig.delivery,
                          dead_letters=rig.dead_letters, ...)
    batch = rig.run(agent, [rig.message("commands", "LifecycleCommand", command.to_avro())])
    rig.produced("lifecycle", "LifecycleEvent"), rig.dead()

:class:`DriftLoop` wires the real drift code through it: the scoring side
(:class:`~driftline.streams.stages.drift_reduce.DriftStage`) reduces scored frames and records
read from any number of features partitions, and the decider agent
(:class:`~driftline.streams.stages.drift_decider.DriftDecider`) folds the summaries, so a
seeded stream can be pushed through on 1 partition or 48 and the DriftEvents
compared::

    loop = DriftLoop(DriftConfig(), references=lambda model, version: profile)
    loop.score([(partition, "frame-1", "m", matrix, scores), ...])  # one scoring batch
    loop.events  # DriftEvent records, decoded
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import numpy as np

from driftline.drift.config import DriftConfig
from driftline.drift.decider import References
from driftline.drift.monitor import MonitorKey
from driftline.drift.outcomes import Pending
from driftline.schemas import default_codec
from driftline.streams.kafka.delivery import BatchDelivery, DeliveryTracker
from driftline.streams.stages.deadletter import DeadLetterPublisher
from driftline.streams.stages.drift_decider import DriftDecider
from driftline.streams.stages.drift_reduce import DriftStage
from driftline.streams.stages.outcome_join import OutcomeJoiner
from driftline.streams.stages.scoring import ScoringPipeline
from driftline.streams.stats import WorkerStats


@dataclass(frozen=True)
class Consumed:
    """A message as an agent receives it (the fields of :class:`InboundMessage`)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: object = None


@dataclass
class _Delivered:
    topic: str
    partition: int
    key: bytes | None
    value: bytes | None

    def error(self) -> None:
        return None


@dataclass
class RecordingProducer:
    """What was produced, per topic, as the messages a consumer would read."""

    partitions: int = 1
    produced: dict[str, list[Consumed]] = field(default_factory=lambda: defaultdict(list))
    _callbacks: list[tuple[Callable, _Delivered]] = field(default_factory=list)
    _next: dict[tuple[str, int], int] = field(default_factory=lambda: defaultdict(int))

    def produce(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        *,
        headers: object = None,
        partition: int | None = None,
        on_delivery: Callable | None = None,
    ) -> None:
        where = partition if partition is not None else 0
        offset = self._next[(topic, where)]
        self._next[(topic, where)] += 1
        self.produced[topic].append(Consumed(topic, where, offset, key, value, headers))
        if on_delivery is not None:
            self._callbacks.append((on_delivery, _Delivered(topic, where, key, value)))

    def poll(self, timeout: float = 0) -> int:
        callbacks, self._callbacks = self._callbacks, []
        for callback, message in callbacks:
            callback(None, message)
        return len(callbacks)

    def flush(self, timeout: float = 0) -> int:
        self.poll()
        return 0

    def take(self, topic: str) -> list[Consumed]:
        """Everything produced to ``topic`` since the last take, in produce order."""
        taken, self.produced[topic] = self.produced[topic], []
        return taken


class StageRig:
    """A stage's surroundings without a broker, and the messages it consumes."""

    def __init__(self, codec: Any = None, *, deadletter_topic: str = "deadletter") -> None:
        self.codec = codec or default_codec()
        self.producer = RecordingProducer()
        self.delivery = DeliveryTracker(self.producer)
        self.stats = WorkerStats()
        self.deadletter_topic = deadletter_topic
        self.dead_letters = DeadLetterPublisher(
            codec=self.codec, delivery=self.delivery, topic=deadletter_topic, stats=self.stats
        )
        self._offsets: dict[tuple[str, int], int] = defaultdict(int)

    def raw(
        self,
        topic: str,
        value: bytes | None,
        *,
        key: bytes | None = b"key",
        partition: int = 0,
        headers: object = None,
    ) -> Consumed:
        """A consumed message holding ``value`` as it is, at the partition's next offset."""
        offset = self._offsets[(topic, partition)]
        self._offsets[(topic, partition)] += 1
        return Consumed(topic, partition, offset, key, value, headers)

    def message(self, topic: str, schema: str, record: dict[str, Any], **where: Any) -> Consumed:
        """A consumed message carrying ``record`` as ``schema`` in the wire format."""
        return self.raw(topic, self.codec.encode(schema, record), **where)

    def scoring(self, router: Any, predictions_topic: str = "predictions") -> ScoringPipeline:
        """The scoring stage over this rig, serving what ``router`` holds."""
        return ScoringPipeline(
            codec=self.codec,
            router=router,
            delivery=self.delivery,
            dead_letters=self.dead_letters,
            predictions_topic=predictions_topic,
            stats=self.stats,
        )

    def drift_decider(self, config: DriftConfig) -> DriftDecider:
        """The drift decider agent over this rig, deciding ``config``'s detectors without
        training profiles; DriftEvents go to ``drift``, monitor records to ``drift-state``."""
        return DriftDecider(
            config=config,
            codec=self.codec,
            delivery=self.delivery,
            dead_letters=self.dead_letters,
            drift_topic="drift",
            state_topic="drift-state",
            state_producer=self.producer,
            references=lambda model, version: None,
            stats=self.stats,
        )

    def run(self, stage: Any, messages: list[Consumed]) -> BatchDelivery:
        """One batch through ``stage`` (a :class:`~driftline.streams.stages.stage.Stage`, or
        its ``process``-like function); returns the batch, delivered."""
        fill = getattr(stage, "process", stage)
        batch = self.delivery.batch()
        fill(messages, batch)
        self.producer.flush()
        return batch

    def produced(self, topic: str, schema: str) -> list[dict[str, Any]]:
        """The records produced to ``topic`` since the last read, decoded as ``schema``."""
        return [self.codec.decode_as(schema, m.value) for m in self.producer.take(topic)]

    def dead(self) -> list[dict[str, Any]]:
        """The dead letters published since the last read."""
        return self.produced(self.deadletter_topic, "DeadLetter")


class DriftLoop:
    """The scoring side and the decider of drift detection, joined by a recording producer."""

    SUMMARIES, DRIFT, STATE = "drift-summaries", "drift", "drift-state-changelog"
    JOIN, OUTCOMES = "outcome-join", "outcomes"

    def __init__(
        self,
        config: DriftConfig,
        references: References,
        *,
        decider_partitions: int = 4,
        join_partitions: int = 1,
        version: int = 1,
        arm: str = "champion",
    ) -> None:
        self.codec = default_codec()
        self.producer = RecordingProducer()
        self.delivery = DeliveryTracker(self.producer)
        self.stats = WorkerStats()
        self.version, self.arm = version, arm
        self.stage = DriftStage(
            config=config,
            delivery=self.delivery,
            summaries_topic=self.SUMMARIES,
            partitions=decider_partitions,
            stats=self.stats,
        )
        dead = DeadLetterPublisher(
            codec=self.codec, delivery=self.delivery, topic="deadletter", stats=self.stats
        )
        self._config, self._references, self._dead = config, references, dead
        self.decider = self.new_decider()
        self.joiner = OutcomeJoiner(
            config=config,
            wait_ms=3_600_000,
            max_pending=10_000_000,
            partitions=join_partitions,
            codec=self.codec,
            delivery=self.delivery,
            dead_letters=dead,
            join_topic=self.JOIN,
            summaries_topic=self.SUMMARIES,
            state_topic="outcome-join-changelog",
            state_producer=self.producer,
            stats=self.stats,
        )
        self._offsets: dict[int, int] = defaultdict(int)  # features partition -> next offset
        self.events: list[dict[str, Any]] = []
        self.last_summaries: list[Consumed] = []  # what decide() fed the decider last
        self.clock = 0  # event time (ms) of the last frame or record first scored
        self._sent_at: dict[str, int] = {}  # frame id -> its event time

    def new_decider(self) -> DriftDecider:
        return DriftDecider(
            config=self._config,
            codec=self.codec,
            delivery=self.delivery,
            dead_letters=self._dead,
            drift_topic=self.DRIFT,
            state_topic=self.STATE,
            state_producer=self.producer,
            references=self._references,
            stats=self.stats,
        )

    def restart_decider(self) -> None:
        """A new decider (a restarted worker) that recovers the state table written so far."""
        table = dict(self.decider.table)
        self.decider = self.new_decider()
        self.decider.table = table

    def rewind(self, partition: int, offset: int) -> None:
        """The next frames scored from ``partition`` get offsets from ``offset`` on again
        (a scoring worker re-reading a batch after a crash)."""
        self._offsets[partition] = offset

    def score(self, frames: Iterable[tuple]) -> list[dict[str, Any]]:
        """One scoring batch of frames ``(partition, frame id, model, matrix, scores)``, each
        optionally with its event time (ms; by default frames are sent in the order first
        given, a millisecond apart); the summaries go straight to the decider. Returns the
        batch's DriftEvents."""
        observations = []
        for partition, frame_id, model, matrix, scores, *sent_at in frames:
            offset = self._offsets[partition]
            self._offsets[partition] += 1
            names = tuple(f"f{i:02d}" for i in range(matrix.shape[1]))
            if sent_at:
                self._sent_at[frame_id] = sent_at[0]
            elif frame_id not in self._sent_at:
                self.clock += 1
                self._sent_at[frame_id] = self.clock
            times = np.full(len(matrix), self._sent_at[frame_id], dtype=np.int64)
            frame = SimpleNamespace(
                frame_id=frame_id, feature_names=names, matrix=matrix, event_times=times
            )
            part = {
                "n_rows": len(matrix),
                "rows": b"",
                "score": np.asarray(scores, dtype="<f8").tobytes(),
                "model": model,
                "version": self.version,
                "arm": self.arm,
            }
            observations.append(self.stage.frame(partition, offset, frame, part))
        self.stage.fold(observations, BatchDelivery())
        return self.decide()

    def records(
        self, partition: int, model: str, rows: np.ndarray, scores: np.ndarray
    ) -> list[dict[str, Any]]:
        """One scoring batch of single records from one partition."""
        start = self._offsets[partition]
        self._offsets[partition] += len(rows)
        names = tuple(f"f{i:02d}" for i in range(rows.shape[1]))
        key = MonitorKey(model, self.version, self.arm)
        offsets = np.arange(start, start + len(rows))
        times = self.clock + np.arange(1, len(rows) + 1)
        self.clock += len(rows)
        observation = self.stage.records(partition, offsets, times, key, names, rows, scores)
        self.stage.fold([observation], BatchDelivery())
        return self.decide()

    def join(self, predictions: Iterable[tuple[str, str, float, float]]) -> list[dict[str, Any]]:
        """Predictions ``(prediction id, model, score, outcome value)`` of single records:
        their pending entries and then their outcomes go through the outcomes join
        (every join partition) and on to the decider. Returns the DriftEvents."""
        now = time.time_ns() // 1_000_000
        predictions = list(predictions)
        pending = [
            (pid, Pending(model, self.version, self.arm, now, np.array([score])))
            for pid, model, score, _ in predictions
        ]
        self.joiner.publish_pending(pending, BatchDelivery())
        outcomes = [
            Consumed(self.OUTCOMES, 0, i, pid.encode(), self._outcome(pid, value, now))
            for i, (pid, _, _, value) in enumerate(predictions)
        ]
        self.joiner.route(outcomes, BatchDelivery())
        joined = self.producer.take(self.JOIN)
        for partition in sorted({m.partition for m in joined}):
            batch = BatchDelivery()
            self.joiner.process([m for m in joined if m.partition == partition], batch)
        self.producer.poll()
        return self.decide()

    def _outcome(self, prediction_id: str, value: float, now: int) -> bytes:
        record = {
            "prediction_id": prediction_id,
            "entity_id": None,
            "value": value,
            "label": None,
            "event_time": now,
        }
        return self.codec.encode("Outcome", record)

    def decide(self, messages: list[Consumed] | None = None) -> list[dict[str, Any]]:
        """Feed summary messages (by default all produced since last time) to the decider."""
        messages = self.producer.take(self.SUMMARIES) if messages is None else messages
        self.last_summaries = messages
        for partition in sorted({m.partition for m in messages}):
            batch = BatchDelivery()
            self.decider.process([m for m in messages if m.partition == partition], batch)
        self.producer.poll()
        drift = self.producer.take(self.DRIFT)
        events = [self.codec.decode_as("DriftEvent", m.value) for m in drift]
        self.events += events
        return events
