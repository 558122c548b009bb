"""Testing helpers: one valid example of each record, for tests across driftline.

from driftline.schemas.testing import sample
value = default_codec().encode("Outcome", sample("Outcome", value=0.0))
"""

from __future__ import annotations

import copy
import struct
from typing import Any

from driftline.schemas.catalog import SCHEMA_NAMES
from driftline.schemas.exceptions import SchemaError, UnknownRecordName

_T0 = 1_700_000_000_000  # 2023-11-14T22:13:20Z in epoch milliseconds

_SAMPLES: dict[str, dict[str, Any]] = {
    "FeatureRecord": {
        "record_id": "rec-1",
        "entity_id": "customer-42",
        "model": "fraud",
        "features": [0.5, 1.25, -3.0, 8.0],
        "feature_names": ["amount", "age_days", "score_delta", "n_items"],
        "event_time": _T0,
    },
    "FeatureFrame": {
        "frame_id": "frame-1",
        "model": "fraud",
        "entity_ids": [],
        "event_times": [],
        "feature_names": ["amount", "age_days", "score_delta"],
        "n_rows": 2,
        "n_features": 3,
        "matrix": struct.pack("<6f", 0.5, 1.0, 1.5, 2.0, 2.5, 3.0),
        "packed_entity_offsets": struct.pack("<3i", 0, 10, 20),
        "packed_entity_ids": b"customer-1customer-2",
        "packed_event_times": struct.pack("<2q", _T0, _T0 + 1),
    },
    "Prediction": {
        "prediction_id": "pred-1",
        "record_id": "rec-1",
        "entity_id": "customer-42",
        "model": "fraud",
        "version": 3,
        "arm": "champion",
        "experiment_id": None,
        "score": 0.875,
        "scores": [0.125, 0.875],
        "event_time": _T0,
        "scored_at": _T0 + 12,
        "latency_ms": 12.0,
        "model_latency_ms": 0.75,
        "feature_service": "scoring@c2a39758fff1",
    },
    "Outcome": {
        "prediction_id": "pred-1",
        "entity_id": "customer-42",
        "value": 1.0,
        "label": None,
        "event_time": _T0 + 86_400_000,
    },
    "DriftEvent": {
        "event_id": "drift-1",
        "model": "fraud",
        "version": 3,
        "arm": "champion",
        "detector": "ks",
        "feature": "amount",
        "statistic": 0.31,
        "threshold": 0.2,
        "p_value": 0.0004,
        "window_size": 1000,
        "evidence": '{"reference_size": 5000}',
        "detected_at": _T0 + 60_000,
    },
    "LifecycleEvent": {
        "event_id": "evt-1",
        "type": "promoted",
        "model": "fraud",
        "version": 3,
        "actor": "policy",
        "state": "champion",
        "previous_state": "canary",
        "attributes": {"digest": "sha256:" + "0" * 64},
        "evidence": '{"p_value": 0.01}',
        "occurred_at": _T0 + 120_000,
    },
    "LifecycleCommand": {
        "command_id": "cmd-1",
        "action": "promote",
        "model": "fraud",
        "version": 3,
        "actor": "alice@example.com",
        "arguments": {"reason": "canary passed"},
        "issued_at": _T0 + 90_000,
        "key_id": "alice-2024",
        "signature": b"\x01" * 64,
    },
    "DeadLetter": {
        "source_topic": "driftline.features",
        "partition": 0,
        "offset": 17,
        "key": b"customer-42",
        "reason": "unknown_magic_byte",
        "detail": "payload starts with byte 0x7b",
        "raw": b'{"not": "avro"}',
        "failed_at": _T0 + 5,
    },
    "PredictionFrame": {
        "frame_id": "frame-1",
        "prediction_frame_id": "0f1e2d3c-4b5a-5968-8776-a5b4c3d2e1f0",
        "model": "fraud",
        "version": 3,
        "arm": "challenger",
        "experiment_id": "fraud-exp-1",
        "n_rows": 2,
        "rows": struct.pack("<2i", 0, 1),
        "entity_ids": [],
        "event_times": [],
        "n_outputs": 2,
        "score": struct.pack("<2d", 0.875, 0.25),
        "scores": struct.pack("<4d", 0.125, 0.875, 0.75, 0.25),
        "scored_at": _T0 + 12,
        "model_latency_ms": 0.5,
        "packed_entity_offsets": struct.pack("<3i", 0, 10, 20),
        "packed_entity_ids": b"customer-1customer-2",
        "packed_event_times": struct.pack("<2q", _T0, _T0 + 1),
        "feature_service": None,
    },
}


def sample(name: str, **overrides: Any) -> dict[str, Any]:
    """Return a valid ``name`` record (a new dict), with ``overrides`` applied."""
    try:
        record = copy.deepcopy(_SAMPLES[name])
    except KeyError:
        raise UnknownRecordName(
            f"no sample for {name!r}: expected one of {', '.join(SCHEMA_NAMES)}"
        ) from None
    unknown = set(overrides) - set(record)
    if unknown:
        raise SchemaError(f"{name} has no field(s) {sorted(unknown)}: check the spelling")
    record.update(overrides)
    return record
