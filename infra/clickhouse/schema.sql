-- GENERATED from lineage/store/tables.sql by infra/clickhouse/generate_schema.py.
-- Do not edit here: edit lineage/store/tables.sql and regenerate (a unit test checks).
-- Apply as an admin: clickhouse-client --multiquery < schema.sql

-- driftline ClickHouse tables. Source of truth for the column lists:
-- driftline.lineage.store.clickhouse.create_tables() runs this file (chDB or a server), and
-- infra/clickhouse/schema.sql is generated from it (a unit test keeps them equal).
-- The database name placeholder is replaced by a validated identifier.
-- Statements are split on semicolons, so keep semicolons out of comments.
--
-- On a replicated cluster: add ON CLUSTER <cluster> to each CREATE and use
--   ENGINE = ReplicatedMergeTree('/clickhouse/tables/<shard>/driftline/audit_log', '<replica>')
-- (ReplicatedReplacingMergeTree for the ReplacingMergeTree tables), with the
-- shard and replica macros of your cluster. Replicated tables deduplicate
-- inserts by default, so the non_replicated_deduplication_window settings can
-- then be dropped.

CREATE DATABASE IF NOT EXISTS driftline;

-- Append-only, hash-chained audit log. Plain MergeTree: rows are never
-- replaced or collapsed, and the writer account holds INSERT and SELECT only.
-- Per model: hash = sha256(unhex(prev_hash) || canonical), seq counts from 1.
CREATE TABLE IF NOT EXISTS driftline.audit_log
(
    model String,
    seq UInt64,
    event_id String,
    event_type LowCardinality(String),
    version Nullable(Int32),
    actor String,
    occurred_at DateTime64(3, 'UTC'),
    canonical String,
    prev_hash FixedString(64),
    hash FixedString(64),
    source_topic String,
    source_partition Int32,
    source_offset Int64,
    recorded_at DateTime64(3, 'UTC') DEFAULT now64(3),
    -- The writer looks up each batch's event ids to skip re-deliveries.
    INDEX event_id_idx event_id TYPE bloom_filter GRANULARITY 1
)
ENGINE = MergeTree
ORDER BY (model, seq);

-- One row per scored record. Re-delivered predictions collapse on
-- (model, prediction_id): query with FINAL or uniqExact(prediction_id).
-- Identical retried inserts are dropped earlier by insert_deduplication_token.
CREATE TABLE IF NOT EXISTS driftline.predictions
(
    prediction_id String,
    record_id String,
    entity_id String,
    model LowCardinality(String),
    version Int32,
    arm LowCardinality(String),
    experiment_id Nullable(String),
    score Float64,
    scores Array(Float64),
    event_time DateTime64(3, 'UTC'),
    scored_at DateTime64(3, 'UTC'),
    latency_ms Float64,
    model_latency_ms Float64,
    trace_id String DEFAULT '',
    -- name@version of the feature service that supplied features; NULL when none did.
    feature_service LowCardinality(Nullable(String)),
    -- Replay looks up what was served by the replayed rows' event times.
    INDEX event_time_idx event_time TYPE minmax GRANULARITY 1
)
ENGINE = ReplacingMergeTree
ORDER BY (model, prediction_id)
SETTINGS non_replicated_deduplication_window = 1000;

-- Records that could not be processed, with the raw bytes to replay them.
-- ReplacingMergeTree on the source coordinates, so a dead letter delivered
-- twice is one row under FINAL.
CREATE TABLE IF NOT EXISTS driftline.deadletters
(
    source_topic LowCardinality(String),
    partition Int32,
    offset Int64,
    key Nullable(String),
    reason LowCardinality(String),
    detail String,
    raw String,
    failed_at DateTime64(3, 'UTC'),
    recorded_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
ORDER BY (source_topic, partition, offset, reason)
SETTINGS non_replicated_deduplication_window = 1000;

-- Signed checkpoints of each model's audit chain head (lineage/audit/checkpoints.py):
-- they expose rows cut off a chain's end and chains recomputed from scratch.
-- prev_seq is the seq of the model's previous checkpoint (signed too), so a
-- checkpoint deleted from between two others is missed. reason: interval or
-- shutdown ('' for checkpoints written before these columns existed).
CREATE TABLE IF NOT EXISTS driftline.audit_checkpoints
(
    model String,
    seq UInt64,
    hash String,
    signed_at DateTime64(3, 'UTC'),
    key_id String,
    signature String,
    prev_seq UInt64 DEFAULT 0,
    reason LowCardinality(String) DEFAULT ''
)
ENGINE = MergeTree
ORDER BY (model, seq, signed_at);

-- Upgrades a table created before prev_seq and reason (a no-op otherwise).
ALTER TABLE driftline.audit_checkpoints ADD COLUMN IF NOT EXISTS prev_seq UInt64 DEFAULT 0;
ALTER TABLE driftline.predictions
    ADD COLUMN IF NOT EXISTS feature_service LowCardinality(Nullable(String)) AFTER trace_id;
ALTER TABLE driftline.audit_checkpoints
    ADD COLUMN IF NOT EXISTS reason LowCardinality(String) DEFAULT '';

-- Logged feature rows (a configurable sample, chosen by entity so an entity's
-- rows are kept or skipped together) for replay and training-serving skew
-- checks. Frame rows have record_id frame_id:row.
CREATE TABLE IF NOT EXISTS driftline.features
(
    record_id String,
    entity_id String,
    model LowCardinality(String),
    event_time DateTime64(3, 'UTC'),
    feature_names LowCardinality(String),
    features Array(Float32),
    recorded_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
ORDER BY (model, event_time, record_id)
SETTINGS non_replicated_deduplication_window = 1000;

-- Paired predictions from `driftline replay`: a candidate version's score for
-- a logged feature row beside the score that was served for it.
-- Stores from before feature services exist get the column.
ALTER TABLE driftline.features
    ADD COLUMN IF NOT EXISTS feature_service LowCardinality(Nullable(String)) AFTER features;

-- The completed feature rows a sample of served predictions were scored with (the
-- features table logs what producers sent): the training-serving skew check reads them.
CREATE TABLE IF NOT EXISTS driftline.served_features
(
    record_id String,
    entity_id String,
    model LowCardinality(String),
    event_time DateTime64(3, 'UTC'),
    feature_names LowCardinality(String),
    features Array(Float32),
    feature_service LowCardinality(Nullable(String)),
    recorded_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
ORDER BY (model, event_time, record_id)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS driftline.replay_predictions
(
    replay_id String,
    record_id String,
    entity_id String,
    model LowCardinality(String),
    candidate_version Int32,
    candidate_score Float64,
    served_version Nullable(Int32),
    served_arm Nullable(String),
    served_score Nullable(Float64),
    event_time DateTime64(3, 'UTC'),
    replayed_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
ORDER BY (model, replay_id, record_id)
SETTINGS non_replicated_deduplication_window = 1000;

-- One row per DriftEvent from the drift topic (lineage/store/drift_sinks.py). Each
-- alarm is also appended to its model's audit chain as a drift_detected event.
-- Re-delivered alarms collapse on (model, event_id): query with FINAL or
-- uniqExact(event_id). Identical retried inserts are dropped earlier by
-- insert_deduplication_token. stream is the evidence's "stream" key (input,
-- score or error), '' when the evidence has none.
CREATE TABLE IF NOT EXISTS driftline.drift
(
    event_id String,
    model LowCardinality(String),
    version Nullable(Int32),
    arm Nullable(String),
    detector LowCardinality(String),
    feature Nullable(String),
    stream LowCardinality(String),
    statistic Float64,
    threshold Float64,
    p_value Nullable(Float64),
    window_size Int64,
    evidence String,
    detected_at DateTime64(3, 'UTC'),
    recorded_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
ORDER BY (model, event_id)
SETTINGS non_replicated_deduplication_window = 1000;

-- One row per Outcome (a delayed label) from the outcomes topic, with the Kafka
-- coordinates it came from. Several outcomes for one prediction collapse to the
-- one observed last (highest event_time, then the last inserted): query with
-- FINAL, or argMax(value, event_time) grouped by prediction_id.
CREATE TABLE IF NOT EXISTS driftline.outcomes
(
    prediction_id String,
    entity_id Nullable(String),
    value Float64,
    label Nullable(String),
    event_time DateTime64(3, 'UTC'),
    source_partition Int32,
    source_offset Int64,
    recorded_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(event_time)
ORDER BY prediction_id
SETTINGS non_replicated_deduplication_window = 1000;

-- The replacing tables above hold a re-delivered row twice until a background
-- merge, so a plain count() over them over-counts after a crash. These views
-- apply FINAL for you: query them unless you deduplicate yourself.
CREATE VIEW IF NOT EXISTS driftline.predictions_unique AS
SELECT * FROM driftline.predictions FINAL;

CREATE VIEW IF NOT EXISTS driftline.deadletters_unique AS
SELECT * FROM driftline.deadletters FINAL;

CREATE VIEW IF NOT EXISTS driftline.outcomes_unique AS
SELECT * FROM driftline.outcomes FINAL;

CREATE VIEW IF NOT EXISTS driftline.drift_unique AS
SELECT * FROM driftline.drift FINAL;
