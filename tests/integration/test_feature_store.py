"""Features from Feast: a dataset built point in time, a model registered with it and its
feature service, records and frames that carry only request-time features scored with
the store's values, and the lineage from model to dataset to feature views.

Real Feast (SQLite online store, file offline store), real broker, real worker, real chDB.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from driftline.features.example_repo import (
    DAYS,
    REQUEST_FEATURES,
    SERVICE,
    STORE_FEATURES,
    entity_ids,
    profile_values,
    request_records,
)
from driftline.features.feast_store import FeastFeatureStore
from driftline.inference import LoadedModel
from driftline.lineage.openlineage import lineage_events
from driftline.streams.control.model_commands import ModelCommands, resolve_provenance
from driftline.streams.kafka.producer import FeatureProducer
from driftline.streams.kafka.topics import Topics
from tests.integration.helpers import dead_letters, wait_until, write_model

pytestmark = pytest.mark.integration

N_ENTITIES = 200  # the session's example repository (tests/conftest.py)


def _cli(env: dict, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "driftline.streams.cli", *args],
        env=os.environ | env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr + done.stdout
    return done.stdout


def _entities(path, now: dt.datetime) -> None:
    """Entity rows a day apart, each with its request-time features and a label."""
    rng = np.random.default_rng(5)
    ids = entity_ids(N_ENTITIES) * 2
    # The repository's daily snapshots end when it was written, before ``now``.
    times = [now] * N_ENTITIES + [now - dt.timedelta(hours=12)] * N_ENTITIES
    columns = {
        "customer_id": ids,
        "event_timestamp": pa.array(times, pa.timestamp("us", "UTC")),
        **{name: rng.normal(size=len(ids)).astype(np.float32) for name in REQUEST_FEATURES},
        "label": rng.integers(0, 2, len(ids)),
    }
    pq.write_table(pa.table(columns), path)


def test_features_from_the_store_are_served_and_traced_to_the_dataset(
    stack_env, start_worker, feast_repo, tmp_path
):
    env = stack_env.env | {"DRIFTLINE_FEATURES_REPO": str(feast_repo)}
    settings = stack_env.settings(DRIFTLINE_FEATURES_REPO=str(feast_repo))
    now = dt.datetime.now(dt.UTC)
    _entities(tmp_path / "entities.parquet", now)
    out = _cli(
        env,
        "dataset", "build", "--feature-service", SERVICE,
        "--entities", str(tmp_path / "entities.parquet"), "--entity-column", "customer_id",
        "--out", str(tmp_path / "train.parquet"),
    )  # fmt: skip
    assert f"wrote {2 * N_ENTITIES:,} rows" in out
    train = pq.read_table(tmp_path / "train.parquet")
    # Point in time: a row of now has the latest profile, a row 12 hours ago the day before's.
    np.testing.assert_array_equal(
        train.column("f00").to_numpy()[:N_ENTITIES], profile_values(N_ENTITIES, DAYS - 1)[:, 0]
    )
    np.testing.assert_array_equal(
        train.column("f00").to_numpy()[N_ENTITIES:], profile_values(N_ENTITIES, DAYS - 2)[:, 0]
    )

    worker = start_worker(DRIFTLINE_FEATURES_REPO=str(feast_repo))
    provenance = resolve_provenance(
        settings, feature_service=None, dataset=tmp_path / "train.parquet"
    )
    commands = ModelCommands.from_settings(settings)
    model_path = write_model(tmp_path, seed=4)
    event, created = commands.register(model_path, "demo", "alice", features=provenance)
    assert created
    commands.promote("demo", event.version, "bob")
    service = FeastFeatureStore(feast_repo).service(SERVICE)
    assert event.attributes["feature_service"] == service.label

    wait_until(
        lambda: worker.get("/driftline/models/").get("demo", {}).get("version") == event.version,
        what="demo to be served",
    )
    producer = FeatureProducer(settings, stack_env.bootstrap)
    rng = np.random.default_rng(9)
    request = rng.normal(size=(60, len(REQUEST_FEATURES))).astype(np.float32)
    known = entity_ids(N_ENTITIES)[:50]
    ids = known + [f"stranger-{i}" for i in range(10)]
    event_ms = int(time.time() * 1000)
    for i, entity in enumerate(ids):
        producer.send(
            {
                "record_id": f"r{i}",
                "entity_id": entity,
                "model": "demo",
                "features": request[i].tolist(),
                "feature_names": list(REQUEST_FEATURES),
                "event_time": event_ms,
            }
        )
    producer.send_frame(
        "frame-1", "demo", known[:20], [event_ms] * 20, REQUEST_FEATURES, request[:20]
    )
    producer.flush()
    db = settings.clickhouse.database
    wait_until(
        lambda: worker.sql(f"SELECT count() FROM {db}.predictions")[0][0] >= 70,
        what="70 predictions (50 records, 20 frame rows)",
    )
    rows = worker.sql(
        f"SELECT record_id, entity_id, score, feature_service FROM {db}.predictions FINAL "
        "ORDER BY record_id"
    )
    assert len(rows) == 70
    assert {row[3] for row in rows} == {service.label}
    assert {row[1] for row in rows} <= set(known)
    # The score is the model's on the completed row: the store's latest values + the request.
    full = np.hstack([profile_values(N_ENTITIES, DAYS - 1)[:50], request[:50]])
    data = model_path.read_bytes()
    model = LoadedModel.load(
        data, name="demo", version=event.version, expected_digest=event.attributes["digest"]
    )
    expected = model.predict(full).score
    served = {row[0]: row[2] for row in rows if not row[0].startswith("frame-1")}
    np.testing.assert_allclose([served[f"r{i}"] for i in range(50)], expected, rtol=1e-5)

    letters = dead_letters(stack_env.bootstrap, Topics(stack_env.prefix).name("deadletter"))
    missing = [d for d in letters if d["reason"] == "feature_missing"]
    assert len(missing) == 10 and all("stranger-" in d["detail"] for d in missing)
    stats = worker.get("/driftline/stats/")
    counts = stats["enrichment"]
    assert counts["missing"] == 10 and counts["rows"] == 80
    # One lookup per batch (the records may arrive in several) and one for the frame.
    assert 2 <= counts["lookups"] <= stats["batches"] + 1

    shown = _cli(env, "lineage", "show", "demo", "--version", str(event.version))
    assert provenance.dataset.fingerprint[:30] in shown.replace("\n", "")
    assert "customer_profile@" + service.views[0].version in shown
    assert f"{SERVICE}@{service.version}" in shown and "f12" in shown  # request-time columns

    registry = commands.registry()
    runs = lineage_events(
        [e for e in _lifecycle(commands) if e.type == "registered"],
        kafka_bootstrap=stack_env.bootstrap,
        topics={k: Topics(stack_env.prefix).name(k) for k in ("commands", "lifecycle")},
        clickhouse_namespace="chdb:///x",
        producer="https://github.com/driftline/driftline",
    )
    names = {(d.namespace, d.name) for d in runs[-1].inputs}
    assert ("file", provenance.dataset.path) in names
    assert ("feast", f"{SERVICE}.customer_profile") in names
    assert registry.get("demo", event.version).state


def _lifecycle(commands: ModelCommands):
    from driftline.streams.kafka.codecs import codec_for
    from driftline.streams.kafka.lifecycle_topic import read_lifecycle

    settings = commands.settings
    return read_lifecycle(
        settings,
        commands.bootstrap,
        codec_for(settings),
        Topics(settings.kafka.topic_prefix).lifecycle,
    )


def _send_records(producer, ids, seed: int, prefix: str) -> None:
    for record in request_records("demo", ids, seed=seed, prefix=prefix):
        producer.send(record)
    producer.flush()


def test_a_serving_side_bug_is_a_skew_event_naming_the_feature(
    stack_env, start_worker, feast_repo, tmp_path
):
    repo = tmp_path / "repo"
    shutil.copytree(feast_repo, repo)  # the online store gets broken below
    skew_env = {
        "DRIFTLINE_FEATURES_REPO": str(repo),
        "DRIFTLINE_FEATURES_SERVED_SAMPLE_RATE": "1.0",
        "DRIFTLINE_FEATURES_SKEW_INTERVAL_S": "1",
    }
    settings = stack_env.settings(**skew_env)
    worker = start_worker(**skew_env)
    commands = ModelCommands.from_settings(settings)
    provenance = resolve_provenance(settings, feature_service=SERVICE)
    event, _ = commands.register(
        write_model(tmp_path, seed=4), "demo", "alice", features=provenance
    )
    commands.promote("demo", event.version, "bob")
    wait_until(
        lambda: worker.get("/driftline/models/").get("demo", {}).get("version") == event.version,
        what="demo to be served",
    )
    producer = FeatureProducer(settings, stack_env.bootstrap)
    db = settings.clickhouse.database
    ids = entity_ids(N_ENTITIES)[:100]

    # Nothing wrong: every served row is compared, none differs, no event.
    _send_records(producer, ids, seed=1, prefix="clean-")
    wait_until(
        lambda: worker.get("/driftline/stats/")["skew"].get("rows_compared", 0) >= 100,
        what="the skew check to compare 100 served rows",
    )
    skew = worker.get("/driftline/stats/")["skew"]
    assert skew.get("events", 0) == 0 and set(skew["last"]["demo"].values()) == {0.0}

    # A units bug in the online store's f03 (x100), as a bad materialisation would write.
    store = FeastFeatureStore(repo)
    latest = profile_values(N_ENTITIES, DAYS - 1)
    frame = {
        "customer_id": entity_ids(N_ENTITIES),
        "event_timestamp": [dt.datetime.now(dt.UTC)] * N_ENTITIES,
    }
    frame |= {
        name: latest[:, j] * (100.0 if name == "f03" else 1.0)
        for j, name in enumerate(STORE_FEATURES)
    }
    store.feast.write_to_online_store("customer_profile", pd.DataFrame(frame))
    _send_records(producer, ids, seed=2, prefix="bug-")
    query = (
        f"SELECT feature, version, arm, statistic FROM {db}.drift FINAL "
        "WHERE detector = 'training_serving_skew'"
    )
    wait_until(lambda: len(worker.sql(query)) > 0, what="a training_serving_skew event")
    time.sleep(2)  # later checks must not alarm again, nor name another feature
    rows = worker.sql(query)
    assert [(r[0], r[1], r[2]) for r in rows] == [("f03", event.version, "champion")]
    assert rows[0][3] == 1.0  # every compared row of f03 differs
    audit = worker.sql(
        f"SELECT count() FROM {db}.audit_log WHERE model = 'demo' AND event_type = 'drift_detected'"
    )
    assert audit[0][0] == 1
