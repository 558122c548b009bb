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
from driftline.features.configured import open_feature_store
from driftline.features.skew import SkewLimits
from driftline.inference import Router
from driftline.inference.device import choose_device
from driftline.inference.event_time import EventTimeBounds
from driftline.lineage.audit.chain import AuditLogWriter
from driftline.lineage.promotion.policy import PromotionPolicy
from driftline.lineage.promotion.validation import gate_evidence, load_holdout, validate
from driftline.lineage.registry.model_registry import ModelRegistry
from driftline.lineage.store.clickhouse import (
    TABLES,
    ClickHouseClient,
    create_tables,
    open_client,
    redact_dsn,
    ttl_changes,
)
from driftline.lineage.store.frame_sinks import FeatureSink, PredictionFrameSink
from driftline.lineage.store.sinks import DeadLetterSink, PredictionSink
from driftline.schemas import SchemaCodec
from driftline.streams.artifact_store import artifact_store
from driftline.streams.exceptions import StreamsError
from driftline.streams.kafka.broker_quirks import detect_quirks
from driftline.streams.kafka.clients import make_producer, worker_output_config
from driftline.streams.kafka.codecs import codec_for
from driftline.streams.kafka.delivery import DeliveryTracker
from driftline.streams.kafka.limits import MessageLimit
from driftline.streams.kafka.topics import Topics
from driftline.streams.stages.checkpointing import CheckpointKeeper, trusted_writer
from driftline.streams.stages.deadletter import DeadLetterPublisher
from driftline.streams.stages.drift_decider import STATE_TABLE, DriftDecider
from driftline.streams.stages.drift_reduce import DriftStage
from driftline.streams.stages.enrichment import FeatureEnrichment
from driftline.streams.stages.follower import LifecycleFollower
from driftline.streams.stages.outcome_join import JOIN_TABLE, OutcomeJoiner
from driftline.streams.stages.persist import LineageWriter, StoreRunner
from driftline.streams.stages.policy_loop import PolicyLoop
from driftline.streams.stages.policy_reflex import DriftPolicyAgent, PolicySigner
from driftline.streams.stages.registry_agent import RegistryAgent
from driftline.streams.stages.roles_source import RolesSource
from driftline.streams.stages.scoring import ScoringPipeline
from driftline.streams.stages.skew_check import SkewChecker
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
    store_client: ClickHouseClient | None = None
    drift: DriftStage | None = None
    decider: DriftDecider | None = None
    outcomes: OutcomeJoiner | None = None
    policy: DriftPolicyAgent | None = None
    signer: PolicySigner | None = None
    policy_loop: PolicyLoop | None = None

    router: Router | None = None
    roles_source: RolesSource | None = None
    event_times: EventTimeBounds | None = None
    device_kind: str = "cpu"

    @classmethod
    def build(cls, settings: Settings, bootstrap: str) -> WorkerRuntime:
        """What a worker with ``settings``' roles holds: the shared parts, then each role's."""
        topics = Topics(settings.kafka.topic_prefix)
        codec = codec_for(settings)
        producer = Producer(worker_output_config(settings, bootstrap))
        delivery = DeliveryTracker(producer)
        stats = WorkerStats()
        runtime = cls(settings, bootstrap, topics, codec, producer, delivery, stats)
        runtime.dead_letters = DeadLetterPublisher(
            codec=codec,
            delivery=delivery,
            topic=topics.deadletter,
            stats=stats,
            limit=MessageLimit(settings.kafka.message_max_bytes),
        )
        runtime.event_times = EventTimeBounds(int(settings.worker.event_time_max_ahead_s * 1000))
        runtime.roles_source = RolesSource(settings.roles_file)
        roles = settings.worker.role_set
        if roles & {"inference", "registry"}:
            runtime._add_follower()
        if "registry" in roles:
            runtime._add_registry()
        if "inference" in roles and settings.drift.enabled:
            runtime._add_drift()
        if "inference" in roles:
            runtime._add_scoring()
        if "lineage" in roles:
            runtime._add_lineage()
        if "policy" in roles:
            runtime._add_policy()
        return runtime

    def _add_follower(self) -> None:
        """The lifecycle follower: the registry, the router and the models it serves."""
        settings, worker = self.settings, self.settings.worker
        device = choose_device(worker.device, device_id=worker.device_id)
        log.info("models run on %s: %s", device.kind, device.reason)
        self.device_kind = device.kind
        self.router = Router()
        self.follower = LifecycleFollower(
            bootstrap=self.bootstrap,
            kafka=settings.kafka,
            topic=self.topics.lifecycle,
            codec=self.codec,
            registry=ModelRegistry(),
            router=self.router,
            artifacts=artifact_store(settings),
            stats=self.stats,
            ort_threads=worker.ort_threads,
            roles=self.roles_source,
            require_signature=worker.require_signed_artifacts,
            device=device,
        )

    def _add_registry(self) -> None:
        """Signed commands decided against the follower's registry."""
        settings = self.settings
        self.registry = RegistryAgent(
            codec=self.codec,
            registry=self.follower.registry,
            roles=self.roles_source,
            delivery=self.delivery,
            dead_letters=self.dead_letters,
            lifecycle_topic=self.topics.lifecycle,
            audit_writer=lambda: trusted_writer(settings),
        )

    def _add_drift(self) -> None:
        """The scoring side's reduction, the decider and the outcomes join."""
        settings, topics = self.settings, self.topics
        config = DriftConfig.from_settings(settings.drift, self.device_kind)
        # On Tansu, one message per produce request: its end offset counts batches,
        # and Faust recovers a table only up to it (see streams/kafka/broker_quirks.py).
        quirks = detect_quirks(settings.kafka.librdkafka_config(self.bootstrap))
        state_producer = make_producer(settings, self.bootstrap, **quirks.state_producer_overrides)
        self.drift = DriftStage(
            config=config,
            delivery=self.delivery,
            summaries_topic=topics.drift_summaries,
            partitions=settings.kafka.partitions,
            stats=self.stats,
        )
        self.decider = DriftDecider(
            config=config,
            codec=self.codec,
            delivery=self.delivery,
            dead_letters=self.dead_letters,
            drift_topic=topics.name("drift"),
            state_topic=topics.changelog(STATE_TABLE),
            state_producer=state_producer,
            references=self.follower.reference,
            stats=self.stats,
        )
        self.outcomes = OutcomeJoiner(
            config=config,
            wait_ms=int(settings.drift.outcome_wait_s * 1000),
            max_pending=settings.drift.max_pending_predictions,
            partitions=settings.kafka.partitions,
            codec=self.codec,
            delivery=self.delivery,
            dead_letters=self.dead_letters,
            join_topic=topics.outcome_join,
            summaries_topic=topics.drift_summaries,
            state_topic=topics.changelog(JOIN_TABLE),
            state_producer=state_producer,
            stats=self.stats,
            limit=MessageLimit(settings.kafka.message_max_bytes),
            event_times=self.event_times,
        )

    def _add_scoring(self) -> None:
        """Features in, predictions out, through the router the follower keeps current."""
        self.scoring = ScoringPipeline(
            codec=self.codec,
            router=self.router,
            delivery=self.delivery,
            dead_letters=self.dead_letters,
            predictions_topic=self.topics.predictions,
            stats=self.stats,
            link_records=spans_exported(),
            drift=self.drift,
            outcomes=self.outcomes,
            limit=MessageLimit(self.settings.kafka.message_max_bytes),
            event_times=self.event_times,
            enrichment=FeatureEnrichment(
                open_feature_store(self.settings.features.repo),
                self.follower.policy,
                self.stats,
                served_sample_rate=self.settings.features.served_sample_rate,
            ),
            served_features_topic=self.topics.served_features,
        )

    def _add_lineage(self) -> None:
        """The store: its client and tables, the sinks, and the audit chain's checkpoints."""
        settings = self.settings
        client = open_client(settings.clickhouse_dsn)
        database = settings.clickhouse.database
        ttls = settings.retention.table_ttls()
        if settings.embedded_clickhouse:
            for change in create_tables(client, database, ttls):
                log.info("time-to-live set: %s", change)
        else:
            # A production writer holds INSERT only: the DDL is applied by an admin.
            require_tables(client, database, settings.clickhouse_dsn)
            for change in ttl_changes(client, database, ttls):
                log.warning(
                    "time-to-live differs from DRIFTLINE_RETENTION_TABLE_*: %s; an admin "
                    "fixes it with: %s",
                    change,
                    change.statement(database),
                )
        self.store_client = client
        self.store = StoreRunner(self.stats)
        self.checkpoints = CheckpointKeeper(
            settings, client, bootstrap=self.bootstrap, codec=self.codec
        )
        self.checkpoints.prepare()
        self.lineage = LineageWriter(
            codec=self.codec,
            store=self.store,
            predictions=PredictionSink(client, database),
            frames=PredictionFrameSink(client, database),
            features=FeatureSink(
                client, database, sample_rate=settings.clickhouse.feature_sample_rate
            ),
            audit=AuditLogWriter(client, database),
            dead_letter_sink=DeadLetterSink(client, database),
            dead_letters=self.dead_letters,
            stats=self.stats,
            event_times=self.event_times,
        )
        self.skew = None
        feature_store = open_feature_store(settings.features.repo)
        if feature_store is not None:
            features = settings.features
            self.skew = SkewChecker(
                client=client,
                database=database,
                store=feature_store,
                limits=SkewLimits(max_rate=features.skew_max_rate, min_rows=features.skew_min_rows),
                rows=features.skew_rows,
                stats=self.stats,
            )

    def _add_policy(self) -> None:
        """The drift reflex and the canary and experiment loop, signing as the policy actor."""
        settings = self.settings
        promotion = PromotionPolicy.load(settings.policy_file)
        self.signer = PolicySigner(
            actor=settings.policy.actor,
            key_path=settings.key_dir / f"{settings.policy.actor}.key",
            codec=self.codec,
            delivery=self.delivery,
            commands_topic=self.topics.name("commands"),
            stats=self.stats,
            source=promotion.source,
        )
        self.policy = DriftPolicyAgent(
            policy=promotion,
            signer=self.signer,
            codec=self.codec,
            delivery=self.delivery,
            dead_letters=self.dead_letters,
        )
        log.info("policy role: %s", promotion.source)
        self.policy_loop = _policy_loop(self, promotion)

    def close(self) -> None:
        if self.decider is not None:
            self.decider.flush()
            self.decider.close()
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
                    runtime.roles_source.current(),
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
