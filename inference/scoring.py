"""Turn decoded FeatureRecord dicts into Prediction dicts for one model.

This is the worker's hot path (~10k records/s on one core inside an event
loop), so per-record Python work is kept to one dict build: the checks and
the model run are batched, arrays are ``.tolist()``-ed once, and prediction
ids are computed without building ``uuid.UUID`` objects.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from driftline.inference.exceptions import InferenceError
from driftline.inference.model import LoadedModel
from driftline.inference.routing import RoutingTable
from driftline.inference.signature import Rejection, check_batch
from driftline.schemas.records import FeatureRecord, Prediction

# uuid5(NAMESPACE_URL, "https://driftline.dev/ns/prediction"), spelled out so
# other languages can compute the same ids.
PREDICTION_NAMESPACE = uuid.UUID("4c7b1a7b-aaee-5228-9774-b05723eb524c")
_NAMESPACE_BYTES = PREDICTION_NAMESPACE.bytes


# sha1 hex digit at position 16 -> RFC 4122 variant digit (binary 10xx).
_VARIANT = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}


def _uuid5_hex(record_id: str, suffix: bytes) -> str:
    # uuid.uuid5 builds a UUID object and formats it from an int (~2 us);
    # slicing the sha1 hex digest gives the same string in well under half that.
    h = hashlib.sha1(_NAMESPACE_BYTES + record_id.encode() + suffix).hexdigest()
    return f"{h[:8]}-{h[8:12]}-5{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:32]}"


SERVED_KEY = "served"


def id_key(arm: str, version: int) -> str:
    """The arm part of a prediction id: one key for every served arm, one per shadow version.

    A record has exactly one served prediction whichever arm served it, so a
    record redelivered after the split changed collapses onto the same id
    instead of being counted twice; each shadow version scores every record,
    so shadows need the version to stay apart.
    """
    return f"shadow-v{version}" if arm == "shadow" else SERVED_KEY


def prediction_id(record_id: str, model: str, key: str) -> str:
    """``str(uuid.uuid5(PREDICTION_NAMESPACE, f"{record_id}|{model}|{key}"))``, computed faster.

    ``key`` is :func:`id_key` of the arm. The model *version* of a served arm
    is deliberately not part of the id: a redelivered record re-scored by a
    newer version gets the same id, so sinks dedup it.
    """
    return _uuid5_hex(record_id, f"|{model}|{key}".encode())


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True)
class ScoredBatch:
    """Predictions for the accepted records, the rejections, and the model's compute time.

    ``predictions[i]`` belongs to ``records[accepted[i]]``; rejection indices
    refer to the input ``records`` too.
    """

    predictions: list[Prediction]
    rejected: list[Rejection]
    model_latency_ms: float
    accepted: list[int]


def score_records(
    model: LoadedModel,
    records: Sequence[FeatureRecord],
    *,
    arm: str = "champion",
    experiment_id: str | None = None,
    now_ms: Callable[[], int] = _wall_ms,
) -> ScoredBatch:
    """Score decoded FeatureRecord dicts with ``model`` and build Avro Prediction dicts.

    Every record must target ``model.name`` (the router picks the model per
    record's ``model`` field); a mismatch is a routing bug and raises
    :class:`InferenceError` rather than scoring with the wrong model.
    """
    name = model.name
    if any(record["model"] != name for record in records):
        wrong = sorted({record["model"] for record in records} - {name})
        raise InferenceError(
            f"score_records got records for {wrong} while scoring with model {name!r}; "
            "group records by their 'model' field before scoring"
        )
    checked = check_batch(model.signature, records)
    if not checked.accepted:
        return ScoredBatch([], checked.rejected, 0.0, [])

    started = time.perf_counter()
    result = model.predict(checked.matrix)
    model_latency_ms = (time.perf_counter() - started) * 1_000.0
    scored_at = now_ms()

    version = model.version
    suffix = f"|{name}|{id_key(arm, version)}".encode()
    accepted = checked.accepted
    chosen = records if len(accepted) == len(records) else [records[i] for i in accepted]
    predictions = [
        {
            "prediction_id": _uuid5_hex(record["record_id"], suffix),
            "record_id": record["record_id"],
            "entity_id": record["entity_id"],
            "model": name,
            "version": version,
            "arm": arm,
            "experiment_id": experiment_id,
            "score": score,
            "scores": scores,
            "event_time": record["event_time"],
            "scored_at": scored_at,
            "latency_ms": float(scored_at - record["event_time"]),
            "model_latency_ms": model_latency_ms,
            "feature_service": None,
        }
        for record, score, scores in zip(
            chosen, result.score.tolist(), result.scores.tolist(), strict=True
        )
    ]
    return ScoredBatch(predictions, checked.rejected, model_latency_ms, accepted)


@dataclass(frozen=True)
class RoutedBatch:
    """Predictions of every arm, rejections, and records no served arm covers.

    Rejection and ``unserved`` indices refer to the input records. A record a
    shadow cannot score but a served arm did is not rejected (it was served);
    those are counted in ``shadow_rejected``.
    """

    predictions: list[Prediction]
    rejected: list[Rejection]
    unserved: list[int]
    shadow_rejected: int = 0
    # ((model, version, arm), predictions) per scored arm: counted without a pass per record.
    arm_counts: list[tuple[tuple[str, int, str], int]] = field(default_factory=list)


def score_routed(table: RoutingTable, records: Sequence[FeatureRecord]) -> RoutedBatch:
    """Split ``records`` between the table's served arms by entity, score each, then the shadows."""
    experiment = table.experiment_id
    if not table.is_split and not table.shadows:
        (arm,) = table.served
        scored = score_records(arm.model, records, arm=arm.name, experiment_id=experiment)
        counts = [((arm.model.name, arm.model.version, arm.name), len(scored.predictions))]
        return RoutedBatch(scored.predictions, scored.rejected, [], arm_counts=counts)
    assigned = table.assign([record["entity_id"] for record in records])
    predictions: list[Prediction] = []
    rejected: list[Rejection] = []
    counts: list[tuple[tuple[str, int, str], int]] = []
    for index, arm in enumerate(table.served):
        mine = np.flatnonzero(assigned == index).tolist()
        if not mine:
            continue
        subset = records if len(mine) == len(records) else [records[i] for i in mine]
        scored = score_records(arm.model, subset, arm=arm.name, experiment_id=experiment)
        predictions += scored.predictions
        counts.append(((arm.model.name, arm.model.version, arm.name), len(scored.predictions)))
        rejected += [Rejection(mine[r.index], r.reason, r.detail) for r in scored.rejected]
    unserved = np.flatnonzero(assigned == -1).tolist()
    shadow_rejected = 0
    for model in table.shadows:
        scored = score_records(model, records, arm="shadow", experiment_id=experiment)
        predictions += scored.predictions
        counts.append(((model.name, model.version, "shadow"), len(scored.predictions)))
        shadow_rejected += len(scored.rejected)
    rejected.sort(key=lambda r: r.index)
    return RoutedBatch(predictions, rejected, unserved, shadow_rejected, counts)
