"""The Faust app: wiring only. Agents decode nothing themselves; they hand batches
to the runtime's pipelines and acknowledge offsets after the work is durable."""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Callable

import faust
from mode.supervisors import CrashingSupervisor

from driftline.core.settings import Settings
from driftline.streams.app import flow as faust_flow
from driftline.streams.app.bounded_take import take_bounded
from driftline.streams.app.runtime import WorkerRuntime
from driftline.streams.app.transport import with_fetch_wait
from driftline.streams.app.web import register_views
from driftline.streams.kafka.batching import gather
from driftline.streams.kafka.clients import faust_credentials
from driftline.streams.kafka.delivery import DeliveryTracker, OrderedAcker
from driftline.streams.kafka.feature_consumer import FeatureConsumer, consumer_config
from driftline.streams.stages.drift_decider import STATE_TABLE
from driftline.streams.stages.isolation import AsyncFill, Fill, isolated, isolated_async
from driftline.streams.stages.outcome_join import JOIN_TABLE

log = logging.getLogger(__name__)
# Messages queued for each store agent before its take (see wire_lineage).
STORE_QUEUE_MESSAGES = 256


def _faust_broker_url(bootstrap: str) -> str:
    return ";".join(f"kafka://{host}" for host in bootstrap.split(","))


def create_app(
    settings: Settings, bootstrap: str, *, web_port: int
) -> tuple[faust.App, WorkerRuntime]:
    """The worker's Faust app: the runtime built from ``settings``, and one wiring per role."""
    runtime = WorkerRuntime.build(settings, bootstrap)
    fast_features = runtime.scoring is not None and settings.worker.features_consumer == "kafka"
    # One consumer group per set of roles; two when the features consumer runs.
    agents_group, features_group = runtime.topics.worker_groups(
        settings.worker.role_set, features_consumer=fast_features
    )
    wiring = Wiring(_new_app(settings, bootstrap, agents_group, web_port), runtime, settings)
    if runtime.follower is not None:
        wiring.task(runtime.follower.run)
    if runtime.registry is not None:
        wire_registry(wiring)
    if runtime.policy is not None or runtime.policy_loop is not None:
        wire_policy(wiring)
    if runtime.drift is not None:
        wire_drift(wiring)
    if runtime.scoring is not None:
        wire_scoring(wiring, features_group if fast_features else None)
    if runtime.lineage is not None:
        wire_lineage(wiring)
    register_views(wiring.app, runtime)
    wiring.task(runtime.delivery.serve)
    return wiring.app, runtime


def _new_app(settings: Settings, bootstrap: str, group: str, web_port: int) -> faust.App:
    worker = settings.worker
    app = faust_flow.App(
        group,
        broker=_faust_broker_url(bootstrap),
        broker_credentials=faust_credentials(settings.kafka),
        broker_session_timeout=worker.session_timeout_s,
        store="memory://",
        # Faust's default data dir is "<app id>-data" in the working directory.
        datadir=str(settings.data.dir / "faust"),
        topic_partitions=settings.kafka.partitions,
        topic_replication_factor=settings.kafka.replication_factor,
        topic_disable_leader=True,
        # prepare_topics (streams/kafka/provision.py) has created every topic, changelogs
        # included, with its config, before the app exists. Faust's own declare would ask to
        # create them again (CreateTopics), which a worker's ACLs refuse on a secured cluster.
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
    return app


class Wiring:
    """What every role's wiring needs: the app, the runtime, and agents over stages."""

    def __init__(self, app: faust.App, runtime: WorkerRuntime, settings: Settings) -> None:
        self.app, self.runtime, self.settings = app, runtime, settings
        self.batch_size = settings.worker.batch_size
        self.within = settings.worker.batch_window_ms / 1000

    def raw_topic(self, name: str, *, maxsize: int | None = None) -> faust.TopicT:
        return self.app.topic(name, key_serializer="raw", value_serializer="raw", maxsize=maxsize)

    def guarded(self, fill: Fill | AsyncFill, what: str) -> Fill | AsyncFill:
        """``fill`` (a function or a coroutine function) dead-lettering what it raises on."""
        if inspect.iscoroutinefunction(fill):
            return isolated_async(fill, self.runtime.dead_letters, what)
        return isolated(fill, self.runtime.dead_letters, what)

    def task(self, run: Callable[[], Awaitable[None]]) -> None:
        async def run_task() -> None:
            await run()

        run_task.__name__ = run_task.__qualname__ = f"task_{_name_of(run)}"
        self.app.task(run_task)

    def stage_agent(
        self,
        topic: str,
        name: str,
        fill: Fill | AsyncFill,
        what: str,
        *,
        size: int | None = None,
        within: float | None = None,
        after_history: bool = True,
    ) -> None:
        """An agent feeding ``topic``'s batches to ``fill`` (a function or a coroutine
        function), acking each batch once what it produced is delivered;
        ``after_history``: not before the lifecycle is caught up."""
        follower, delivery = self.runtime.follower, self.runtime.delivery
        guarded = self.guarded(fill, what)
        size = size or self.batch_size
        within = self.within if within is None else within

        async def agent(stream: faust.StreamT) -> None:
            if after_history:
                await follower.caught_up.wait()
            await deliver_then_ack(stream, delivery, guarded, size, within)

        self.app.agent(self.raw_topic(topic), name=name)(agent)

    def timer(self, interval_s: float, tick: Callable[[], Awaitable[None]]) -> None:
        async def on_tick() -> None:
            await tick()

        on_tick.__name__ = on_tick.__qualname__ = f"timer_{_name_of(tick)}"
        self.app.timer(interval_s)(on_tick)


def wire_registry(w: Wiring) -> None:
    """Signed commands in, lifecycle events out, decided against the whole history."""
    topic = w.runtime.topics.name("commands")
    w.stage_agent(
        topic, "decide-commands", w.runtime.registry.process, "deciding a command", size=100
    )


def wire_policy(w: Wiring) -> None:
    """The drift reflex on drift events, and the canary and experiment loop on a timer."""
    runtime = w.runtime
    if runtime.policy is not None:
        # Small batches, no wait: a drift rollback should take well under 2 s.
        w.stage_agent(
            runtime.topics.name("drift"),
            "policy-drift",
            runtime.policy.process,
            "the drift policy",
            size=100,
            within=0.01,
            after_history=False,
        )
    if runtime.policy_loop is not None:
        follower, delivery, policy_loop = runtime.follower, runtime.delivery, runtime.policy_loop

        async def evaluate_policy() -> None:
            if not follower.caught_up.is_set():
                return
            batch = delivery.batch()
            try:
                await policy_loop.evaluate(batch)
            except Exception:  # the store is down: try again next tick, keep scoring
                log.exception("policy evaluation failed; trying again next tick")
            await delivery.wait(batch)

        w.timer(w.settings.policy.interval_s, evaluate_policy)


def wire_drift(w: Wiring) -> None:
    """The decider and the outcomes join, with their state in changelogged tables."""
    runtime, app, settings = w.runtime, w.app, w.settings
    decider, outcomes, delivery = runtime.decider, runtime.outcomes, runtime.delivery

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
        await decider.partitions_changed_async()
        outcomes.partitions_changed()

    async def serve_drift_state() -> None:
        while True:
            decider.poll()
            await asyncio.sleep(0.005)

    w.task(serve_drift_state)
    # Every partition's rows and outcomes of a model meet here: one monitor decides, once
    # the versions' training profiles are known.
    w.stage_agent(
        runtime.topics.drift_summaries, "decide-drift", decider.process_async, "deciding drift"
    )
    if settings.worker.outcomes_consumer == "kafka":
        wire_batch_consumer(
            w,
            runtime.topics.name("outcomes"),
            f"{w.app.conf.id}.outcomes",
            w.guarded(outcomes.route, "routing outcomes"),
            batch_size=max(w.batch_size, 1000),  # small records: frames-sized batches are few
            take_over_from=w.app.conf.id,  # where the Faust agent left off, after an upgrade
        )
    else:
        w.stage_agent(
            runtime.topics.name("outcomes"),
            "route-outcomes",
            outcomes.route,
            "routing outcomes",
            after_history=False,
        )
    w.stage_agent(
        runtime.topics.outcome_join, "join-outcomes", outcomes.process, "joining outcomes"
    )

    async def expire_outcomes() -> None:
        batch = delivery.batch()
        outcomes.expire(batch)
        await delivery.wait(batch)
        outcomes.note_state()

    w.timer(max(1.0, min(30.0, settings.drift.outcome_wait_s / 4)), expire_outcomes)


def wire_batch_consumer(
    w: Wiring,
    topic: str,
    group: str,
    fill,
    *,
    batch_size: int,
    scoring: bool = False,
    ready: asyncio.Event | None = None,
    take_over_from: str | None = None,
) -> FeatureConsumer:
    """``topic`` read in confluent-kafka batches by a service of the worker, in ``group``:
    commits after delivery, hand-over on rebalance. Features always (Faust's per-event cost),
    outcomes when asked (it capped routing at about 1,000 outcomes/s on a busy worker)."""
    worker = w.settings.worker
    consumer = FeatureConsumer(
        config=consumer_config(
            w.settings.kafka.librdkafka_config(w.runtime.bootstrap),
            group=group,
            session_timeout_s=worker.session_timeout_s,
            fetch_max_wait_ms=worker.fetch_max_wait_ms,
            fetch_max_bytes=worker.fetch_max_bytes,
        ),
        topic=topic,
        score=fill,
        delivery=w.runtime.delivery,
        stats=w.runtime.stats,
        batch_size=batch_size,
        max_in_flight=worker.max_in_flight,
        scoring=scoring,
        ready=ready,
        take_over_from=take_over_from,
        loop=w.app.loop,
        beacon=w.app.beacon,
    )

    async def start_batch_consumer() -> None:
        # Stopped with the app (a runtime dependency), after the Faust consumer.
        await w.app.add_runtime_dependency(consumer)

    w.task(start_batch_consumer)
    return consumer


def wire_scoring(w: Wiring, features_group: str | None) -> None:
    """Features in, predictions out: through the features consumer when it has a group,
    else through a Faust agent."""
    runtime, app, worker = w.runtime, w.app, w.settings.worker
    follower, delivery = runtime.follower, runtime.delivery
    score = w.guarded(runtime.scoring.process, "scoring")
    if features_group is not None:
        runtime.features_consumer = wire_batch_consumer(
            w,
            runtime.topics.features,
            features_group,
            score,
            batch_size=w.batch_size,
            scoring=True,
            ready=follower.caught_up,
        )
        return

    @app.agent(w.raw_topic(runtime.topics.features), name="score-features")
    async def score_features(stream: faust.StreamT) -> None:
        await follower.caught_up.wait()
        acker = OrderedAcker(delivery, stream.ack, max_in_flight=worker.max_in_flight)
        acking = asyncio.ensure_future(acker.run())
        timing = runtime.stats.timing
        try:
            async for events in gather(stream, w.batch_size, w.within):
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


def wire_lineage(w: Wiring) -> None:
    """Every topic the store keeps, written before its offsets are committed, and the
    audit chain heads signed on a timer and at shutdown."""
    runtime, app, settings = w.runtime, w.app, w.settings
    lineage, topics = runtime.lineage, runtime.topics
    store_settings = settings.clickhouse

    def batches(stream: faust.StreamT):
        return take_bounded(stream, store_settings.flush_rows, store_settings.flush_bytes,
                            store_settings.flush_interval_s)  # fmt: skip

    def stored_topic(name: str) -> faust.TopicT:
        # A short queue: the take above bounds a batch by bytes, and Faust's queue before
        # it (4096 messages by default) would otherwise hold thousands of frames.
        return w.raw_topic(name, maxsize=STORE_QUEUE_MESSAGES)

    def persisting(topic: str, name: str, store) -> None:
        store = w.guarded(store, f"storing {name.removeprefix('store-')}")

        @app.agent(stored_topic(topic), name=name)
        async def persist(stream: faust.StreamT) -> None:
            async for events in batches(stream):
                batch = runtime.delivery.batch()  # dead letters raised while storing
                await store([event.message for event in events], batch)
                await runtime.delivery.wait(batch)
                for event in events:
                    await stream.ack(event)

    persisting(topics.predictions, "store-predictions", lineage.store_predictions)

    @app.agent(stored_topic(topics.features), name="log-features")
    async def log_features(stream: faust.StreamT) -> None:
        async for events in batches(stream):
            await lineage.store_features([event.message for event in events])
            for event in events:
                await stream.ack(event)

    persisting(topics.served_features, "store-served-features", lineage.store_served_features)
    persisting(topics.lifecycle, "store-lifecycle", lineage.store_lifecycle)
    persisting(topics.deadletter, "store-deadletters", lineage.store_dead_letters)
    persisting(topics.name("drift"), "store-drift", lineage.store_drift)
    persisting(topics.name("outcomes"), "store-outcomes", lineage.store_outcomes)

    async def checkpoint_chain_heads() -> None:
        signed = await runtime.store.call(runtime.checkpoints.checkpoint)
        if signed:
            runtime.stats.rows_stored["audit_checkpoints"] += signed

    w.timer(settings.worker.checkpoint_interval_s, checkpoint_chain_heads)

    if runtime.skew is not None:
        skew, drift_topic = runtime.skew, topics.name("drift")

        async def check_training_serving_skew() -> None:
            try:
                await _check_skew()
            except Exception:  # a failed check is logged and tried again; it stops nothing
                log.exception("training-serving skew check failed")

        async def _check_skew() -> None:
            served = await runtime.store.call(skew.read_served)
            if not served:
                return
            # Feast's historical retrieval is slow and needs no store: off the store thread.
            events = await asyncio.get_running_loop().run_in_executor(None, skew.check, served)
            batch = runtime.delivery.batch()
            for event in events:
                value = runtime.codec.encode("DriftEvent", event)
                runtime.delivery.produce(batch, drift_topic, value, key=event["model"].encode())
            await runtime.delivery.wait(batch)

        w.timer(settings.features.skew_interval_s, check_training_serving_skew)

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


def _name_of(function: Callable) -> str:
    return getattr(function, "__name__", "run").strip("_") or "run"


async def deliver_then_ack(stream, delivery: DeliveryTracker, fill, size: int, within: float):
    """Feed batches to ``fill(messages, batch)``; ack each batch's messages only once
    everything it produced is delivered, so a crash re-delivers instead of losing."""
    async for events in stream.noack_take(size, within):
        batch = delivery.batch()
        filled = fill([event.message for event in events], batch)
        if inspect.isawaitable(filled):
            await filled
        await delivery.wait(batch)
        for event in events:
            await stream.ack(event)
