"""The ledger, under a barrage: sent = stored + dead-lettered, each message in one place.

Hypothesis interleaves random good messages with random hostile ones (see
``hostile.py``) on a real broker and one running worker, on every topic a
worker consumes. After each example every good message has its output, every
hostile one is a dead letter with a reason that names its cause, no message is
in both places or in neither, the worker is alive, and the consumer group has
committed every offset. One explicit example sends every fixed hostile kind.
"""

from __future__ import annotations

import uuid
from collections import Counter, defaultdict
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from driftline.lineage.events import LifecycleEvent
from driftline.lineage.trust.commands import new_command
from driftline.schemas import default_codec
from driftline.streams.control.model_commands import ModelCommands
from driftline.streams.demo.loadgen import synthetic_records
from driftline.streams.kafka.topics import Topics
from tests.integration.helpers import read_topic, wait_until
from tests.integration.hostile import (
    DECODE_REASONS,
    Hostile,
    Sent,
    common_hostile,
    feature_hostile,
    fixed_feature_hostile,
    fixed_hostile,
    send_all,
)
from tests.integration.test_hostile_input import committed_offsets

pytestmark = pytest.mark.integration

CODEC = default_codec()
BARRAGE = settings(
    max_examples=5,
    deadline=None,
    derandomize=True,  # CI reruns the same barrage; run with --hypothesis-seed to explore
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
TALLY: defaultdict[str, Counter] = defaultdict(Counter)
GOOD_RECORD = next(synthetic_records(model="demo", count=1, entities=5, seed=900, n_features=16))
OUTCOME = {"prediction_id": "p", "value": 1.0, "event_time": 1_700_000_000_000}


def interleaved(hostile: st.SearchStrategy) -> st.SearchStrategy[list]:
    """(partition, is_good, hostile) items, at least one good and one hostile."""
    item = st.tuples(st.integers(0, 1), st.booleans(), hostile)
    return st.lists(item, min_size=2, max_size=24).filter(
        lambda items: any(good for _, good, _ in items) and not all(good for _, good, _ in items)
    )


def every_kind(kinds: list[Hostile]) -> list:
    """The explicit example: one good message, then every fixed hostile kind, then one good."""
    return [(0, True, None), *((i % 2, False, h) for i, h in enumerate(kinds)), (1, True, None)]


def _dead_lettered(worker, db: str, topic: str, sent: Sent) -> dict[tuple[int, int], set[str]]:
    offsets = ", ".join(f"({p}, {o})" for p, o in (*sent.good, *sent.bad))
    rows = worker.sql(
        f"SELECT partition, offset, groupUniqArray(reason) FROM {db}.deadletters "
        f"WHERE source_topic = '{topic}' AND (partition, offset) IN ({offsets}) "
        "GROUP BY partition, offset"
    )
    return {(p, o): set(reasons) for p, o, reasons in rows}


def barrage_once(
    stack_env,
    worker,
    topic: str,
    items: list,
    good_value: Callable[[str], bytes],
    outputs: Callable[[str], set[str]],
    *,
    also_allowed: frozenset[str] = frozenset(),
) -> None:
    """Send ``items`` and check the ledger; ``outputs(prefix)`` lists good ids that landed."""
    example_id = uuid.uuid4().hex[:8]
    plan = []
    for i, (partition, good, hostile) in enumerate(items):
        if good:
            good_id = f"{example_id}-{i}"
            plan.append((partition, good_id, None, good_value(good_id)))
        else:
            plan.append((partition, None, hostile, b""))
    sent = send_all(stack_env.bootstrap, topic, plan)
    # The barrage's size, for `pytest -s`: good messages and hostile ones by kind.
    TALLY[topic]["good"] += len(sent.good)
    TALLY[topic].update(h.kind for h in sent.bad.values())
    db = stack_env.settings().clickhouse.database

    def landed() -> tuple[set[str], dict]:
        return outputs(example_id), _dead_lettered(worker, db, topic, sent)

    wait_until(
        lambda: len(landed()[0]) >= len(sent.good) and len(landed()[1]) >= len(sent.bad),
        timeout_s=60,
        what=lambda: f"{len(sent.good)} outputs and {len(sent.bad)} dead letters, got {landed()}",
    )
    stored, dead = landed()
    assert stored == set(sent.good.values()), "every good message has its output, no other"
    assert set(dead) == set(sent.bad), "every hostile message dead-lettered, no good one"
    for where, hostile in sent.bad.items():
        allowed = hostile.reasons | also_allowed
        assert dead[where] <= allowed, (hostile.kind, dead[where], allowed)
    assert worker.proc.poll() is None
    ends: dict[int, int] = {}
    for partition, offset in (*sent.good, *sent.bad):
        ends[partition] = max(ends.get(partition, 0), offset + 1)
    wait_until(
        lambda: all(committed_offsets(stack_env, topic).get(p, -1) >= e for p, e in ends.items()),
        timeout_s=30,
        what=lambda: f"committed offsets {committed_offsets(stack_env, topic)} to reach {ends}",
    )


def _distinct(worker, db: str, table: str, column: str, prefix: str) -> set[str]:
    """Values of ``column`` in ``table`` that start with this example's prefix."""
    query = f"SELECT DISTINCT {column} FROM {db}.{table} WHERE {column} LIKE '{prefix}-%'"
    return {row[0] for row in worker.sql(query)}


def test_features_ledger(stack_env, serving_worker):
    topic = Topics(stack_env.prefix).features
    db = stack_env.settings().clickhouse.database

    def good_value(record_id: str) -> bytes:
        return CODEC.encode("FeatureRecord", dict(GOOD_RECORD, record_id=record_id))

    def scored(prefix: str) -> set[str]:
        return _distinct(serving_worker, db, "predictions", "record_id", prefix)

    @BARRAGE
    @given(items=interleaved(feature_hostile(GOOD_RECORD)))
    @example(items=every_kind(fixed_feature_hostile(GOOD_RECORD)))
    def barrage(items):
        barrage_once(stack_env, serving_worker, topic, items, good_value, scored)

    barrage()


def test_outcomes_ledger(stack_env, serving_worker):
    topic = Topics(stack_env.prefix).name("outcomes")
    db = stack_env.settings().clickhouse.database

    def good_value(prediction_id: str) -> bytes:
        return CODEC.encode("Outcome", dict(OUTCOME, prediction_id=prediction_id))

    def stored(prefix: str) -> set[str]:
        return _distinct(serving_worker, db, "outcomes", "prediction_id", prefix)

    @BARRAGE
    @given(items=interleaved(common_hostile("Outcome", OUTCOME)))
    @example(items=every_kind(fixed_hostile("Outcome", OUTCOME)))
    def barrage(items):
        barrage_once(stack_env, serving_worker, topic, items, good_value, stored)

    barrage()


def test_commands_ledger(stack_env, serving_worker):
    """Good signed commands are answered on the lifecycle topic; bad bytes are dead letters."""
    settings_ = stack_env.settings()
    topics = Topics(stack_env.prefix)
    key = ModelCommands.from_settings(settings_)._private_key("bob")
    ids: dict[str, str] = {}  # our id -> command id

    def good_value(good_id: str) -> bytes:
        command = new_command("promote", "demo", 99, "bob").signed(key)
        ids[good_id] = command.command_id
        return CODEC.encode("LifecycleCommand", command.to_avro())

    def answered(prefix: str) -> set[str]:
        events = read_topic(stack_env.bootstrap, topics.lifecycle, settings_.kafka.partitions)
        answers = {
            LifecycleEvent.from_avro(CODEC.decode_as("LifecycleEvent", m.value())).evidence.get(
                "command_id"
            )
            for m in events
        }
        return {
            good for good, command in ids.items() if good.startswith(prefix) and command in answers
        }

    valid = CODEC.decode_as("LifecycleCommand", good_value("template"))

    @BARRAGE
    @given(items=interleaved(common_hostile("LifecycleCommand", valid)))
    @example(items=every_kind(fixed_hostile("LifecycleCommand", valid)))
    def barrage(items):
        barrage_once(
            stack_env,
            serving_worker,
            topics.name("commands"),
            items,
            good_value,
            answered,
            also_allowed=frozenset({"invalid_command"}),
        )

    barrage()


@pytest.mark.parametrize("kind", ["predictions", "deadletter", "lifecycle", "drift"])
def test_lineage_inputs_ledger(stack_env, serving_worker, kind):
    """The lineage consumer's topics: hostile bytes become dead-letter rows, none stop it.

    On the dead-letter topic a hostile message is kept as a row of its own, raw
    and whole, so its reason is the decode failure rather than too_large.
    """
    topics = Topics(stack_env.prefix)
    topic = topics.name(kind)
    db = stack_env.settings().clickhouse.database
    valid_prediction = {
        "prediction_id": "x",
        "record_id": "x",
        "entity_id": "e",
        "model": "demo",
        "version": 1,
        "arm": "champion",
        "experiment_id": None,
        "score": 0.5,
        "scores": [0.5, 0.5],
        "event_time": 1_700_000_000_000,
        "scored_at": 1_700_000_000_001,
        "latency_ms": 1.0,
        "model_latency_ms": 0.1,
    }

    def good_value(record_id: str) -> bytes:
        unique = {"record_id": record_id, "prediction_id": record_id}
        return CODEC.encode("Prediction", valid_prediction | unique)

    def stored(prefix: str) -> set[str]:
        return _distinct(serving_worker, db, "predictions", "record_id", prefix)

    extra = frozenset(DECODE_REASONS | {"null_value", "invalid_event"})
    hostile_only = kind != "predictions"  # good lifecycle or drift events would act on models
    hostile = common_hostile("Prediction", valid_prediction)
    kinds = fixed_hostile("Prediction", valid_prediction)
    if kind == "deadletter":  # a DeadLetter is that topic's valid record, not a wrong one
        kinds = [h for h in kinds if h.kind != "wrong_schema"]
        hostile = hostile.filter(lambda h: h.kind != "wrong_schema")
    items_strategy = (
        st.lists(st.tuples(st.integers(0, 1), st.just(False), hostile), min_size=1, max_size=12)
        if hostile_only
        else interleaved(hostile)
    )
    fixed = every_kind(kinds)
    if hostile_only:
        fixed = [item for item in fixed if not item[1]]

    @BARRAGE
    @given(items=items_strategy)
    @example(items=fixed)
    def barrage(items):
        barrage_once(
            stack_env,
            serving_worker,
            topic,
            items,
            good_value,
            stored,
            also_allowed=extra if kind == "deadletter" else frozenset({"invalid_event"}),
        )

    barrage()


def teardown_module() -> None:
    for topic, counts in sorted(TALLY.items()):
        print(f"ledger {topic}: {sum(counts.values())} sent, {dict(sorted(counts.items()))}")
