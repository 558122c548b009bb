"""Everything one worker process holds, built once from settings.

The Faust app (streams/app/faust_app.py) only wires agents to these objects.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import Producer

from driftline.core.settings import Settings
from driftline.core.telemetry import spans_exported
from driftline.drift.config import DriftConfig
from driftline.inference import Router
from driftline.inference.device import choose_device
from driftline.inference.event_time import EventTimeBounds
from driftline.lineage.audit.chain import AuditLogWriter
from driftline.lineage.promotion.policy import PromotionPolicy
from driftline.lineage.promotion.validation import gate_evidence, load_holdout, validate
from driftline.lineage.registry.model_registry import ModelRegistry
from driftline.lineage.store.clickhouse import TABLES, create_tables, open_client, redact_dsn
from driftline.lineage.store.frame_sinks import FeatureSink, PredictionFrameSink
from driftline.lineage.store.sinks import DeadLetterSink, PredictionSink
from driftline.schemas import SchemaCodec
from driftline.streams.artifact_store import artifact_store
from driftline.streams.exceptions import StreamsError
from driftline.streams.kafka.broker_quirks import detect_quirks
from driftline.streams.kafka.clients import make_producer
from driftline.streams.kafka.codecs import codec_for
from driftline.streams.kafka.delivery import DeliveryTracker
from driftline.streams.kafka.limits import MessageLimit
from driftline.streams.kafka.topics import Topics
from driftline.streams.stages.checkpointing import CheckpointKeeper, trusted_writer
from driftline.streams.stages.deadletter import DeadLetterPublisher
from driftline.streams.stages.drift_decider import STATE_TABLE, DriftDecider
from driftline.streams.stages.drift_reduce import DriftStage
from driftline.streams.stages.follower import LifecycleFollower
from driftline.streams.stages.outcome_join import JOIN_TABLE, OutcomeJoiner
from driftline.streams.stages.persist import LineageWriter, StoreRunner
from driftline.streams.stages.policy_loop import PolicyLoop
from driftline.streams.stages.policy_reflex import DriftPolicyAgent, PolicySigner
from driftline.streams.stages.registry_agent import RegistryAgent
from driftline.streams.stages.roles_source import PolicySource
from driftline.streams.stages.scoring import ScoringPipeline
from driftline.streams.stats import WorkerStats

log = logging.getLogger(__name__)


def require_tables(client, database: str, dsn: str) -> None:
    for table in TABLES:
        try:
            client.query(f"SELECT 1 FROM {database}.{table} LIMIT 0")
        except Exception as exc:
            raise StreamsError(
                f"table {database}.{table} is missing or unreadable on {redact_dsn(dsn)}: "
                "apply infra/clickhouse/schema.sql as an admin"
            ) from exc


@dataclass
class WorkerRuntime:
    settings: Settings
    bootstrap: str
    topics: Topics
    codec: SchemaCodec
    producer: Producer
    delivery: DeliveryTracker
    stats: WorkerStats
    dead_letters: DeadLetterPublisher | None = None
    follower: LifecycleFollower | None = None
    scoring: ScoringPipeline | None = None
    features_consumer: Any = None  # streams.feature_consumer.FeatureConsumer, when it runs
    registry: RegistryAgent | None = None
    checkpoints: CheckpointKeeper | None = None
    lineage: LineageWriter | None = None
    store: StoreRunner | None = None
    store_client: object | None = None
    drift: DriftStage | None = None
    decider: DriftDecider | None = None
    outcomes: OutcomeJoiner | None = None
    policy: DriftPolicyAgent | None = None
    signer: PolicySigner | None = None
    policy_loop: PolicyLoop | None = None

    @classmethod
    def build(cls, settings: Settings, bootstrap: str) -> WorkerRuntime:
        topics = Topics(settings.kafka.topic_prefix)
        codec = codec_for(settings)
        # A consumed batch's outputs are all produced at once: lingering only delays them.
        producer = make_producer(
            settings, bootstrap, **{"linger.ms": settings.worker.output_linger_ms}
        )
        delivery = DeliveryTracker(producer)
        stats = WorkerStats()
        dead = DeadLetterPublisher(
            codec=codec,
            delivery=delivery,
            topic=topics.deadletter,
            stats=stats,
            limit=MessageLimit(settings.kafka.message_max_bytes),
        )
        runtime = cls(settings, bootstrap, topics, codec, producer, delivery, stats)
        runtime.dead_letters = dead
        event_times = EventTimeBounds(int(settings.worker.event_time_max_ahead_s * 1000))
        roles = settings.worker.role_set
        policy = PolicySource(settings.roles_file)
        if roles & {"inference", "registry"}:
            router = Router()
            worker = settings.worker
            device = choose_device(worker.device, device_id=worker.device_id)
            log.info("models run on %s: %s", device.kind, device.reason)
            runtime.follower = LifecycleFollower(
                bootstrap=bootstrap,
                kafka=settings.kafka,
                topic=topics.lifecycle,
                codec=codec,
                registry=ModelRegistry(),
                router=router,
                artifacts=artifact_store(settings),
                stats=stats,
                ort_threads=settings.worker.ort_threads,
                policy=policy,
                require_signature=settings.worker.require_signed_artifacts,
                device=device,
            )
        if "registry" in roles:
            runtime.registry = RegistryAgent(
                codec=codec,
                registry=runtime.follower.registry,
                policy=policy,
                delivery=delivery,
                dead_letters=dead,
                lifecycle_topic=topics.lifecycle,
                audit_writer=lambda: trusted_writer(settings),
            )
        if "inference" in roles and settings.drift.enabled:
            config = DriftConfig.from_settings(settings.drift, device.kind)
            # On Tansu, one message per produce request: its end offset counts batches,
            # and Faust recovers a table only up to it (see streams/kafka/broker_quirks.py).
            quirks = detect_quirks(settings.kafka.librdkafka_config(bootstrap))
            state_producer = make_producer(settings, bootstrap, **quirks.state_producer_overrides)
            runtime.drift = DriftStage(
                config=config,
                delivery=delivery,
                summaries_topic=topics.drift_summaries,
                partitions=settings.kafka.partitions,
                stats=stats,
            )
            runtime.decider = DriftDecider(
                config=config,
                codec=codec,
                delivery=delivery,
                dead_letters=dead,
                drift_topic=topics.name("drift"),
                state_topic=topics.changelog(STATE_TABLE),
                state_producer=state_producer,
                references=runtime.follower.reference,
                stats=stats,
            )
            runtime.outcomes = OutcomeJoiner(
                config=config,
                wait_ms=int(settings.drift.outcome_wait_s * 1000),
                max_pending=settings.drift.max_pending_predictions,
                partitions=settings.kafka.partitions,
                codec=codec,
                delivery=delivery,
                dead_letters=dead,
                join_topic=topics.outcome_join,
                summaries_topic=topics.drift_summaries,
                state_topic=topics.changelog(JOIN_TABLE),
                state_producer=state_producer,
                stats=stats,
                limit=MessageLimit(settings.kafka.message_max_bytes),
                event_times=event_times,
            )
        if "inference" in roles:
            runtime.scoring = ScoringPipeline(
                codec=codec,
                router=router,
                delivery=delivery,
                dead_letters=dead,
                predictions_topic=topics.predictions,
                stats=stats,
                link_records=spans_exported(),
                drift=runtime.drift,
                outcomes=runtime.outcomes,
                limit=MessageLimit(settings.kafka.message_max_bytes),
                event_times=event_times,
            )
        if "lineage" in roles:
            client = open_client(settings.clickhouse_dsn)
            database = settings.clickhouse.database
            if settings.embedded_clickhouse:
                create_tables(client, database)
            else:
                # A production writer holds INSERT only: the DDL is applied by an admin.
                require_tables(client, database, settings.clickhouse_dsn)
            runtime.store_client = client
            runtime.store = StoreRunner(stats)
            runtime.checkpoints = CheckpointKeeper(
                settings, client, bootstrap=bootstrap, codec=codec
            )
            runtime.checkpoints.prepare()
            runtime.lineage = LineageWriter(
                codec=codec,
                store=runtime.store,
                predictions=PredictionSink(client, database),
                frames=PredictionFrameSink(client, database),
                features=FeatureSink(
                    client, database, sample_rate=settings.clickhouse.feature_sample_rate
                ),
                audit=AuditLogWriter(client, database),
                dead_letter_sink=DeadLetterSink(client, database),
                dead_letters=dead,
                stats=stats,
                event_times=event_times,
            )
        if "policy" in roles:
            promotion = PromotionPolicy.load(settings.policy_file)
            runtime.signer = PolicySigner(
                actor=settings.policy.actor,
                key_path=settings.key_dir / f"{settings.policy.actor}.key",
                codec=codec,
                delivery=delivery,
                commands_topic=topics.name("commands"),
                stats=stats,
                source=promotion.source,
            )
            runtime.policy = DriftPolicyAgent(
                policy=promotion,
                signer=runtime.signer,
                codec=codec,
                delivery=delivery,
                dead_letters=dead,
            )
            log.info("policy role: %s", promotion.source)
            runtime.policy_loop = _policy_loop(runtime, promotion)
        return runtime

    def close(self) -> None:
        if self.decider is not None:
            self.decider.flush()
        remaining = self.producer.flush(10)
        if remaining:
            log.error("%d produced messages were not acknowledged before shutdown", remaining)
        if self.store is not None:
            self.store.close()


def _policy_loop(runtime: WorkerRuntime, promotion: PromotionPolicy) -> PolicyLoop | None:
    """Canary steps and experiments read ClickHouse: the embedded store only in its owner."""
    settings = runtime.settings
    if runtime.follower is None:
        log.warning("policy role: no lifecycle follower (add the inference or registry role)")
        return None
    if runtime.store_client is not None:
        client, store = runtime.store_client, runtime.store

        async def query(sql: str) -> list[tuple]:
            return await store.call(lambda: list(client.query(sql).result_rows))

    elif not settings.embedded_clickhouse:
        client = open_client(settings.clickhouse_dsn)
        executor = ThreadPoolExecutor(1, thread_name_prefix="policy-clickhouse")

        async def query(sql: str) -> list[tuple]:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(
                executor, lambda: list(client.query(sql, settings={"readonly": 1}).result_rows)
            )

    else:
        log.warning(
            "policy role: canaries and experiments are evaluated where the embedded store is "
            "(the worker with the lineage role); this worker only reacts to drift events"
        )
        return None
    gate = None
    if promotion.holdout is not None:
        gate_executor = ThreadPoolExecutor(1, thread_name_prefix="policy-gates")

        async def gate(name: str, version: int) -> tuple[bool, dict]:
            def run() -> tuple[bool, dict]:
                # The policy file is read again, so edited gates apply to the next version.
                policy = PromotionPolicy.load(settings.policy_file)
                holdout = load_holdout(Path(policy.holdout), policy.label_column)
                validation = validate(
                    runtime.follower.registry,
                    artifact_store(settings),
                    PolicySource(settings.roles_file).current(),
                    policy,
                    name,
                    version,
                    holdout,
                )
                return validation.report.passed, gate_evidence(validation)

            return await asyncio.get_running_loop().run_in_executor(gate_executor, run)

    return PolicyLoop(
        gate=gate,
        policy=promotion,
        registry=runtime.follower.registry,
        query=query,
        send=runtime.signer.send,
        database=settings.clickhouse.database,
        threshold=settings.drift.decision_threshold,
    )
