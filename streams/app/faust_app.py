"""The Faust app: wiring only. Agents decode nothing themselves; they hand batches
to the runtime's pipelines and acknowledge offsets after the work is durable."""

from __future__ import annotations

import asyncio
import logging
import time

import faust
from mode.supervisors import CrashingSupervisor

from driftline.core.settings import Settings
from driftline.streams.app import flow as faust_flow
from driftline.streams.app.runtime import WorkerRuntime
from driftline.streams.app.transport import with_fetch_wait
from driftline.streams.app.web import register_views
from driftline.streams.kafka.batching import gather
from driftline.streams.kafka.clients import faust_credentials
from driftline.streams.kafka.delivery import DeliveryTracker, OrderedAcker
from driftline.streams.kafka.feature_consumer import FeatureConsumer, consumer_config
from driftline.streams.stages.drift_decider import STATE_TABLE
from driftline.streams.stages.isolation import isolated, isolated_async
from driftline.streams.stages.outcome_join import JOIN_TABLE

log = logging.getLogger(__name__)


def _faust_broker_url(bootstrap: str) -> str:
    return ";".join(f"kafka://{host}" for host in bootstrap.split(","))


def create_app(
    settings: Settings, bootstrap: str, *, web_port: int
) -> tuple[faust.App, WorkerRuntime]:
    runtime = WorkerRuntime.build(settings, bootstrap)
    worker = settings.worker
    fast_features = runtime.scoring is not None and worker.features_consumer == "kafka"
    # One consumer group per set of roles; two when the features consumer runs.
    agents_group, features_group = runtime.topics.worker_groups(
        worker.role_set, features_consumer=fast_features
    )
    app = faust_flow.App(
        agents_group,
        broker=_faust_broker_url(bootstrap),
        broker_credentials=faust_credentials(settings.kafka),
        broker_session_timeout=worker.session_timeout_s,
        store="memory://",
        # Faust's default data dir is "<app id>-data" in the working directory.
        datadir=str(settings.data.dir / "faust"),
        topic_partitions=settings.kafka.partitions,
        topic_replication_factor=settings.kafka.replication_factor,
        topic_disable_leader=True,
        # prepare_topics (streams/app/worker.py) has created every topic, changelogs included,
        # with its config, before the app exists. Faust's own declare would ask to create
        # them again (CreateTopics), which a worker's ACLs refuse on a secured cluster.
        topic_allow_declare=False,
        consumer_auto_offset_reset="earliest",
        consumer_max_fetch_size=worker.fetch_max_bytes,
        web_enabled=True,
        web_bind=worker.web_host,
        web_host=worker.web_host,
        web_port=web_port,
        # An agent that still raises stops the worker: a restarted agent would skip the
        # rest of its batch and the consumer could commit past it.
        agent_supervisor=CrashingSupervisor,
    )
    app.transport = with_fetch_wait(worker.fetch_max_wait_ms)(app.conf.broker_consumer, app)
    batch_size = worker.batch_size
    within = worker.batch_window_ms / 1000

    def raw_topic(name: str) -> faust.TopicT:
        return app.topic(name, key_serializer="raw", value_serializer="raw")

    follower, delivery = runtime.follower, runtime.delivery
    dead = runtime.dead_letters

    def guarded(fill, what: str):
        return isolated(fill, dead, what)

    if follower is not None:

        @app.task
        async def follow_lifecycle() -> None:
            await follower.run()

    if runtime.registry is not None:
        registry_agent = runtime.registry

        @app.agent(raw_topic(runtime.topics.name("commands")), name="decide-commands")
        async def decide_commands(stream: faust.StreamT) -> None:
            await follower.caught_up.wait()  # decide against the whole history
            decide = guarded(registry_agent.process, "deciding a command")
            await deliver_then_ack(stream, delivery, decide, 100, within)

    if runtime.policy is not None:
        policy_agent = runtime.policy

        @app.agent(raw_topic(runtime.topics.name("drift")), name="policy-drift")
        async def policy_drift(stream: faust.StreamT) -> None:
            # Small batches, no wait: a drift rollback should take well under 2 s.
            respond = guarded(policy_agent.process, "the drift policy")
            await deliver_then_ack(stream, delivery, respond, 100, 0.01)

    if runtime.policy_loop is not None:
        policy_loop = runtime.policy_loop

        @app.timer(settings.policy.interval_s)
        async def evaluate_policy() -> None:
            if not follower.caught_up.is_set():
                return
            batch = delivery.batch()
            try:
                await policy_loop.evaluate(batch)
            except Exception:  # the store is down: try again next tick, keep scoring
                log.exception("policy evaluation failed; trying again next tick")
            await delivery.wait(batch)

    if runtime.drift is not None:
        decider, outcomes = runtime.decider, runtime.outcomes

        def state_table(name: str) -> faust.Table:
            # Recovered from its changelog on start and rebalance; our pipelines write it.
            changelog = app.topic(
                runtime.topics.changelog(name),
                key_type=bytes,
                value_type=bytes,
                key_serializer="raw",
                value_serializer="raw",
                partitions=settings.kafka.partitions,
            )
            return app.Table(
                name,
                key_type=bytes,
                value_type=bytes,
                partitions=settings.kafka.partitions,
                changelog_topic=changelog,
            )

        decider.table = state_table(STATE_TABLE).data
        outcomes.table = state_table(JOIN_TABLE).data

        @app.on_partitions_assigned.connect
        async def _drift_reassigned(sender, assigned, **kwargs) -> None:
            decider.partitions_changed()
            outcomes.partitions_changed()

        @app.task
        async def serve_drift_state() -> None:
            while True:
                decider.poll()
                await asyncio.sleep(0.005)

        @app.agent(raw_topic(runtime.topics.drift_summaries), name="decide-drift")
        async def decide_drift(stream: faust.StreamT) -> None:
            # Every partition's rows and outcomes of a model meet here: one monitor decides.
            await follower.caught_up.wait()  # the versions' training profiles are known
            decide = guarded(decider.process, "deciding drift")
            await deliver_then_ack(stream, delivery, decide, batch_size, within)

        @app.agent(raw_topic(runtime.topics.name("outcomes")), name="route-outcomes")
        async def route_outcomes(stream: faust.StreamT) -> None:
            route = guarded(outcomes.route, "routing outcomes")
            await deliver_then_ack(stream, delivery, route, batch_size, within)

        @app.agent(raw_topic(runtime.topics.outcome_join), name="join-outcomes")
        async def join_outcomes(stream: faust.StreamT) -> None:
            await follower.caught_up.wait()
            join = guarded(outcomes.process, "joining outcomes")
            await deliver_then_ack(stream, delivery, join, batch_size, within)

        @app.timer(max(1.0, min(30.0, settings.drift.outcome_wait_s / 4)))
        async def expire_outcomes() -> None:
            batch = delivery.batch()
            outcomes.expire(batch)
            await delivery.wait(batch)

    if fast_features:
        features = FeatureConsumer(
            config=consumer_config(
                settings.kafka.librdkafka_config(bootstrap),
                group=features_group,
                session_timeout_s=worker.session_timeout_s,
                fetch_max_wait_ms=worker.fetch_max_wait_ms,
                fetch_max_bytes=worker.fetch_max_bytes,
            ),
            topic=runtime.topics.features,
            score=guarded(runtime.scoring.process, "scoring"),
            delivery=delivery,
            stats=runtime.stats,
            batch_size=batch_size,
            max_in_flight=worker.max_in_flight,
            ready=follower.caught_up,
            loop=app.loop,
            beacon=app.beacon,
        )
        runtime.features_consumer = features

        @app.task
        async def start_features_consumer() -> None:
            # Stopped with the app (a runtime dependency), after the Faust consumer.
            await app.add_runtime_dependency(features)

    elif runtime.scoring is not None:
        scoring = runtime.scoring

        @app.agent(raw_topic(runtime.topics.features), name="score-features")
        async def score_features(stream: faust.StreamT) -> None:
            await follower.caught_up.wait()
            acker = OrderedAcker(delivery, stream.ack, max_in_flight=worker.max_in_flight)
            acking = asyncio.ensure_future(acker.run())
            timing = runtime.stats.timing
            score = guarded(scoring.process, "scoring")
            try:
                async for events in gather(stream, batch_size, within):
                    started = time.perf_counter()
                    batch = delivery.batch()
                    score([event.message for event in events], batch)
                    submitted = time.perf_counter()
                    # Waits only while max_in_flight earlier batches await delivery.
                    await acker.submit(events, batch)
                    timing["score_s"] += submitted - started
                    timing["backpressure_s"] += time.perf_counter() - submitted
            finally:
                acking.cancel()

    if runtime.lineage is not None:
        lineage = runtime.lineage
        rows, interval = settings.clickhouse.flush_rows, settings.clickhouse.flush_interval_s

        def persisting(topic: str, name: str, store) -> None:
            store = isolated_async(store, dead, f"storing {name.removeprefix('store-')}")

            @app.agent(raw_topic(topic), name=name)
            async def persist(stream: faust.StreamT) -> None:
                async for events in stream.noack_take(rows, interval):
                    batch = runtime.delivery.batch()  # dead letters raised while storing
                    await store([event.message for event in events], batch)
                    await runtime.delivery.wait(batch)
                    for event in events:
                        await stream.ack(event)

        persisting(runtime.topics.predictions, "store-predictions", lineage.store_predictions)

        @app.agent(raw_topic(runtime.topics.features), name="log-features")
        async def log_features(stream: faust.StreamT) -> None:
            async for events in stream.noack_take(rows, interval):
                await lineage.store_features([event.message for event in events])
                for event in events:
                    await stream.ack(event)

        persisting(runtime.topics.lifecycle, "store-lifecycle", lineage.store_lifecycle)
        persisting(runtime.topics.deadletter, "store-deadletters", lineage.store_dead_letters)
        persisting(runtime.topics.name("drift"), "store-drift", lineage.store_drift)
        persisting(runtime.topics.name("outcomes"), "store-outcomes", lineage.store_outcomes)

        @app.timer(worker.checkpoint_interval_s)
        async def checkpoint_chain_heads() -> None:
            signed = await runtime.store.call(runtime.checkpoints.checkpoint)
            if signed:
                runtime.stats.rows_stored["audit_checkpoints"] += signed

        @app.on_before_shutdown.connect
        async def _checkpoint_at_shutdown(sender, **kwargs) -> None:
            # Consumers are stopped and drained by now: sign the last rows too, so a clean
            # stop leaves no tail for verification to call unverified.
            try:
                await runtime.store.call(lambda: runtime.checkpoints.checkpoint("shutdown"))
            except Exception:
                log.exception("the shutdown checkpoint of the audit chain heads failed")

        @app.on_partitions_assigned.connect
        async def _reassigned(sender, assigned, **kwargs) -> None:
            lineage.partitions_reassigned()

    register_views(app, runtime)

    @app.task
    async def serve_deliveries() -> None:
        await runtime.delivery.serve()

    return app, runtime


async def deliver_then_ack(stream, delivery: DeliveryTracker, fill, size: int, within: float):
    """Feed batches to ``fill(messages, batch)``; ack each batch's messages only once
    everything it produced is delivered, so a crash re-delivers instead of losing."""
    async for events in stream.noack_take(size, within):
        batch = delivery.batch()
        fill([event.message for event in events], batch)
        await delivery.wait(batch)
        for event in events:
            await stream.ack(event)
