"""`driftline demo --features`: a model whose features come from Feast, end to end.

On the embedded stack with driftline's example Feast repository: a point-in-time training
dataset, a model trained on it and registered with its feature service and dataset,
records that carry only request-time features scored with the store's values, the model's
lineage to the dataset and feature views, a units bug in the online store caught as
training-serving skew, and one customer's data erased on record.
"""

from __future__ import annotations

import datetime as dt
import shutil
import time

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import SecretStr
from rich.console import Console
from rich.table import Table

from driftline.core.settings import Settings
from driftline.features.datasets import build_dataset
from driftline.features.example_repo import (
    DAYS,
    REQUEST_FEATURES,
    SERVICE,
    STORE_FEATURES,
    VIEW,
    entity_ids,
    profile_values,
    request_records,
    write_example_repo,
)
from driftline.features.feast_store import FeastFeatureStore
from driftline.inference.synthetic import SyntheticFeatures
from driftline.inference.training import train_logistic_on
from driftline.streams.control.erasure import erase
from driftline.streams.control.identity import create_actor
from driftline.streams.control.lineage_view import describe
from driftline.streams.control.model_commands import ModelCommands, resolve_provenance
from driftline.streams.control.store_access import query
from driftline.streams.embedded.stack import EmbeddedStack, http_json
from driftline.streams.kafka.producer import FeatureProducer

MODEL = "fraud"
CUSTOMERS = 500
DEMO_ERASURE_KEY = "demo-erasure-key-for-this-laptop-only-0000"


def run_features_demo(settings: Settings, console: Console) -> None:
    started = time.monotonic()

    def step(text: str) -> None:
        console.print(f"[dim]{time.monotonic() - started:6.1f}s[/]  {text}", highlight=False)

    settings = _fresh(settings)
    repo = settings.data.dir / "feast"
    write_example_repo(repo, CUSTOMERS)
    step(
        f"Feast repository in {repo}: entity customer, view {VIEW} ({len(STORE_FEATURES)} "
        f"features, {DAYS} daily snapshots), service {SERVICE}; SQLite online store"
    )
    env = {
        "DRIFTLINE_FEATURES_REPO": str(repo),
        "DRIFTLINE_FEATURES_SERVED_SAMPLE_RATE": "1.0",
        "DRIFTLINE_FEATURES_SKEW_INTERVAL_S": "2",
        "DRIFTLINE_DATA_ERASURE_KEY": DEMO_ERASURE_KEY,
    }
    settings = settings.model_copy(
        update={
            "features": settings.features.model_copy(update={"repo": repo}),
            "data": settings.data.model_copy(update={"erasure_key": SecretStr(DEMO_ERASURE_KEY)}),
        }
    )
    stack = EmbeddedStack(settings, worker_env=env)
    step("starting Tansu + a worker with the feature store")
    stack.start()
    try:
        for actor, roles in (("demo-trainer", ["data-scientist"]), ("demo-approver", ["approver"]),
                             ("dpo", ["data-protection"])):  # fmt: skip
            create_actor(settings, actor, roles)
        store = FeastFeatureStore(repo)
        dataset = _build_dataset(settings, store, step)
        commands = ModelCommands.from_settings(settings)
        version = _train_and_register(settings, commands, dataset, step)
        commands.promote(MODEL, version, "demo-approver")
        _wait_serving(stack, version)
        step(f"{MODEL} v{version} is champion")

        producer = FeatureProducer(settings, stack.info.bootstrap)
        ids = entity_ids(CUSTOMERS) * 4 + [f"walk-in-{i}" for i in range(20)]
        _send(producer, ids, seed=1)
        step(
            f"sent {len(ids):,} records carrying only {', '.join(REQUEST_FEATURES)} (20 for "
            "customers the store does not know); the worker fetches the rest, one lookup a batch"
        )
        db = settings.clickhouse.database
        scored = _wait(
            lambda: _rows(settings, f"SELECT count() FROM {db}.predictions")[0][0],
            len(ids) - 20,
        )
        served = _rows(settings, f"SELECT DISTINCT feature_service FROM {db}.predictions")
        missing = _rows(
            settings, f"SELECT count() FROM {db}.deadletters WHERE reason = 'feature_missing'"
        )[0][0]
        step(
            f"{scored:,} predictions, each recording feature service {served[0][0]}; "
            f"{missing} dead letters 'feature_missing' (the walk-ins)"
        )
        rows = describe(settings, MODEL, version)
        table = Table("", "", title=f"driftline lineage show {MODEL} --version {version}")
        for row in rows:
            table.add_row(*(str(value) for value in row))
        console.print(table)

        _break_units(store)
        step("a bad materialisation writes f03 in cents, not units (x100) to the online store")
        _send(producer, entity_ids(CUSTOMERS)[:200], seed=2)
        skew = _wait(
            lambda: _rows(
                settings,
                f"SELECT feature, round(statistic, 3), JSONExtractFloat(evidence, 'mean_abs_diff') "
                f"FROM {db}.drift FINAL WHERE detector = 'training_serving_skew'",
            ),
            1,
            length=True,
        )
        for feature, rate, diff in skew:
            step(
                f"training_serving_skew on {feature}: {rate:.0%} of served rows differ from the "
                f"offline store (mean |diff| {diff:.2f}); a DriftEvent, in the audit chain"
            )

        customer = entity_ids(CUSTOMERS)[7]
        done = erase(settings, customer, "dpo", worker_url=stack.worker_url)
        counts = {t: n for t, n in done.outcome["tables"].items() if n}
        step(
            f"erased {customer} as dpo: {counts}, online store "
            f"{done.outcome.get('online_store')} rows; audited as {done.event.type} with "
            f"hmac-sha256:{done.entity_hash[:16]}…, never the id"
        )
        report = http_json(f"{stack.worker_url}/driftline/audit/verify/", timeout=60)
        step(f"audit verify: {report['summary']}")
    finally:
        step("shutting down")
        stack.stop()
    step("[green]done[/]")


def _rows(settings: Settings, sql: str) -> list[list]:
    return query(settings, sql)[1]


def _fresh(settings: Settings) -> Settings:
    """A private data dir and the embedded store: the demo never touches yours."""
    demo_dir = (settings.data.dir / "demo-features").resolve()
    shutil.rmtree(demo_dir, ignore_errors=True)
    return settings.model_copy(
        update={
            "data": settings.data.model_copy(update={"dir": demo_dir}),
            "kafka": settings.kafka.model_copy(update={"bootstrap": None}),
            "clickhouse": settings.clickhouse.model_copy(update={"dsn": None}),
        }
    )


def _build_dataset(settings: Settings, store: FeastFeatureStore, step):
    now = dt.datetime.now(dt.UTC)
    rng = np.random.default_rng(3)
    ids = entity_ids(CUSTOMERS) * 2
    times = [now] * CUSTOMERS + [now - dt.timedelta(hours=12)] * CUSTOMERS
    request = rng.normal(size=(len(ids), len(REQUEST_FEATURES))).astype(np.float32)
    entities = pa.table(
        {
            "entity_id": ids,
            "event_timestamp": pa.array(times, pa.timestamp("us", "UTC")),
            **{name: request[:, j] for j, name in enumerate(REQUEST_FEATURES)},
        }
    )
    out = settings.data.dir / "train.parquet"
    manifest = build_dataset(store, SERVICE, entities, out)
    step(
        f"driftline dataset build --feature-service {SERVICE}: {manifest.rows:,} rows point "
        f"in time, {manifest.fingerprint[:23]}…, manifest beside {out.name}"
    )
    return out


def _train_and_register(settings: Settings, commands: ModelCommands, dataset, step) -> int:
    table = pq.read_table(dataset)
    names = [*STORE_FEATURES, *REQUEST_FEATURES]
    x = np.column_stack([table.column(n).to_numpy() for n in names]).astype(np.float32)
    y = SyntheticFeatures(len(names), seed=1).labels(x)  # the world's answer on these rows
    trained = train_logistic_on(x, y, seed=1)
    path = settings.data.dir / f"{MODEL}.onnx"
    path.write_bytes(trained.onnx_bytes)
    provenance = resolve_provenance(settings, feature_service=SERVICE, dataset=dataset)
    event, _ = commands.register(path, MODEL, "demo-trainer", features=provenance)
    step(
        f"trained on the dataset (AUC {trained.metrics['roc_auc']:.3f}) and registered "
        f"v{event.version} --dataset {dataset.name} --feature-service {SERVICE}"
    )
    return event.version


def _send(producer: FeatureProducer, ids: list[str], seed: int) -> None:
    for record in request_records(MODEL, ids, seed=seed, prefix=f"{seed}-"):
        producer.send(record)
    producer.flush()


def _break_units(store: FeastFeatureStore) -> None:
    latest = profile_values(CUSTOMERS, DAYS - 1)
    rows = {"customer_id": entity_ids(CUSTOMERS)}
    rows["event_timestamp"] = [pd.Timestamp.now(tz="UTC")] * CUSTOMERS
    for j, name in enumerate(STORE_FEATURES):
        rows[name] = latest[:, j] * (100.0 if name == "f03" else 1.0)
    store.feast.write_to_online_store(VIEW, pd.DataFrame(rows))


def _wait_serving(stack: EmbeddedStack, version: int, timeout_s: float = 60.0) -> None:
    _wait(
        lambda: (
            http_json(stack.worker_url + "/driftline/models/").get(MODEL, {}).get("version")
            == version
        ),
        True,
        timeout_s=timeout_s,
    )


def _wait(read, target, *, length: bool = False, timeout_s: float = 90.0):
    deadline = time.monotonic() + timeout_s
    while True:
        value = read()
        reached = len(value) >= target if length else (value is target or value >= target)
        if reached or time.monotonic() > deadline:
            if not reached:
                raise TimeoutError(f"waited {timeout_s:.0f}s; got {value!r}, wanted {target!r}")
            return value
        time.sleep(0.5)
