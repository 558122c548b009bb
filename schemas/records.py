"""The Avro records, as the dicts the codec decodes and encodes, typed for the code that
passes them between modules. ``tests/unit/test_schemas_records.py`` keeps each TypedDict
field for field with its ``.avsc``, so neither can change without the other."""

from __future__ import annotations

from typing import TypedDict


class FeatureRecord(TypedDict):
    record_id: str
    entity_id: str
    model: str
    features: list[float]
    feature_names: list[str] | None
    event_time: int


class FeatureFrame(TypedDict):
    frame_id: str
    model: str
    entity_ids: list[str]
    event_times: list[int]
    feature_names: list[str]
    n_rows: int
    n_features: int
    matrix: bytes
    packed_entity_offsets: bytes
    packed_entity_ids: bytes
    packed_event_times: bytes


class Prediction(TypedDict):
    prediction_id: str
    record_id: str
    entity_id: str
    model: str
    version: int
    arm: str
    experiment_id: str | None
    score: float
    scores: list[float]
    event_time: int
    scored_at: int
    latency_ms: float
    model_latency_ms: float
    feature_service: str | None


class PredictionFrame(TypedDict):
    frame_id: str
    prediction_frame_id: str
    model: str
    version: int
    arm: str
    experiment_id: str | None
    n_rows: int
    rows: bytes
    entity_ids: list[str]
    event_times: list[int]
    n_outputs: int
    score: bytes
    scores: bytes
    scored_at: int
    model_latency_ms: float
    packed_entity_offsets: bytes
    packed_entity_ids: bytes
    packed_event_times: bytes
    feature_service: str | None


class Outcome(TypedDict):
    prediction_id: str
    entity_id: str | None
    value: float
    label: str | None
    event_time: int


class DeadLetter(TypedDict):
    source_topic: str
    partition: int
    offset: int
    key: bytes | None
    reason: str
    detail: str
    raw: bytes
    failed_at: int


class DriftEvent(TypedDict):
    event_id: str
    model: str
    version: int | None
    arm: str | None
    detector: str
    feature: str | None
    statistic: float
    threshold: float
    p_value: float | None
    window_size: int
    evidence: str
    detected_at: int


class LifecycleEvent(TypedDict):
    event_id: str
    type: str
    model: str
    version: int | None
    actor: str
    state: str | None
    previous_state: str | None
    attributes: dict[str, str]
    evidence: str
    occurred_at: int


class LifecycleCommand(TypedDict):
    command_id: str
    action: str
    model: str
    version: int | None
    actor: str
    arguments: dict[str, str]
    issued_at: int
    key_id: str | None
    signature: bytes | None


RECORDS: dict[str, type] = {
    cls.__name__: cls
    for cls in (
        FeatureRecord,
        FeatureFrame,
        Prediction,
        PredictionFrame,
        Outcome,
        DeadLetter,
        DriftEvent,
        LifecycleEvent,
        LifecycleCommand,
    )
}
