"""Sticky, weighted assignment of entities to arms, vectorised over a batch.

An entity's bucket is ``FNV-1a-64(salt + "\\x1f" + entity_id) mod 10000``,
with the experiment id as salt: the same entity lands in the same bucket on
every worker, in every language, for as long as the experiment runs, and a new
experiment reshuffles everyone. Arms own consecutive bucket ranges in the
order :class:`driftline.lineage.registry.traffic.TrafficSplit` lists them (canary, challengers,
champion last), so growing the canary from 1% to 5% keeps the entities it had.

The hash runs column-wise over a ``[n, width]`` byte matrix in NumPy, a few
vector operations per byte of the longest id, instead of one Python call per
entity.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from driftline.inference.columns import PackedStrings
from driftline.inference.model import LoadedModel

BUCKETS = 10_000
FNV_OFFSET = 0xCBF29CE484222325
FNV_PRIME = 0x100000001B3
_MASK64 = (1 << 64) - 1
SALT_SEPARATOR = "\x1f"


def fnv1a64(data: bytes, start: int = FNV_OFFSET) -> int:
    """Reference FNV-1a 64 (one byte at a time); the vectorised version must agree with it."""
    h = start
    for byte in data:
        h = ((h ^ byte) * FNV_PRIME) & _MASK64
    return h


def _as_byte_matrix(entity_ids: Sequence[str]) -> np.ndarray:
    try:
        fixed = np.array(entity_ids, dtype=np.bytes_)  # ASCII fast path, in C
    except UnicodeEncodeError:
        fixed = np.array([e.encode() for e in entity_ids], dtype=np.bytes_)
    width = fixed.dtype.itemsize
    return fixed.view(np.uint8).reshape(len(entity_ids), width)


def entity_buckets(entity_ids: Sequence[str] | PackedStrings, salt: str) -> np.ndarray:
    """Bucket ``0..9999`` of each entity id under ``salt`` (see the module docstring).

    Ids given as strings must not contain NUL: NumPy pads fixed-width bytes
    with NUL, so a NUL byte is read as the end of the id. Packed ids carry
    their lengths and have no such limit.
    """
    n = len(entity_ids)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    start = fnv1a64((salt + SALT_SEPARATOR).encode())
    if isinstance(entity_ids, PackedStrings):
        matrix, lengths = entity_ids.byte_matrix(), entity_ids.lengths
    else:
        matrix, lengths = _as_byte_matrix(entity_ids), None
    h = np.full(n, start, dtype=np.uint64)
    prime = np.uint64(FNV_PRIME)
    for index, column in enumerate(np.ascontiguousarray(matrix.T)):
        byte = column.astype(np.uint64)
        # Rows whose id has ended keep their hash.
        inside = column != 0 if lengths is None else lengths > index
        np.copyto(h, (h ^ byte) * prime, where=inside)
    return (h % np.uint64(BUCKETS)).astype(np.int64)


def bucket_of(entity_id: str, salt: str) -> int:
    """One entity's bucket, by the reference hash (for tests and for other tools)."""
    start = fnv1a64((salt + SALT_SEPARATOR).encode())
    return fnv1a64(entity_id.encode(), start) % BUCKETS


@dataclass(frozen=True)
class Arm:
    """A served arm: ``name`` is champion, challenger or canary."""

    name: str
    model: LoadedModel
    traffic_bp: int


@dataclass(frozen=True)
class RoutingTable:
    """Which loaded versions serve one model, with what share, and which shadow it.

    ``served`` arms are in bucket order; their shares add up to at most 10000.
    Entities whose bucket lies past the last arm (no champion loaded) are not
    served: :meth:`assign` gives them -1.
    """

    model: str
    served: tuple[Arm, ...]
    shadows: tuple[LoadedModel, ...] = ()
    experiment_id: str | None = None
    _bounds: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        total = sum(arm.traffic_bp for arm in self.served)
        if total > BUCKETS or any(arm.traffic_bp < 0 for arm in self.served):
            shares = {f"{a.name} v{a.model.version}": a.traffic_bp for a in self.served}
            raise ValueError(f"arm shares of {self.model} must be 0..10000 in all, got {shares}")
        bounds = np.cumsum([arm.traffic_bp for arm in self.served], dtype=np.int64)
        object.__setattr__(self, "_bounds", bounds)

    @classmethod
    def champion_only(cls, model: LoadedModel) -> RoutingTable:
        return cls(model.name, (Arm("champion", model, BUCKETS),))

    @property
    def champion(self) -> LoadedModel | None:
        return next((a.model for a in self.served if a.name == "champion"), None)

    @property
    def is_split(self) -> bool:
        """True when entities must be hashed: more than one arm, or a gap with no arm."""
        return not (len(self.served) == 1 and self.served[0].traffic_bp == BUCKETS)

    def assign(self, entity_ids: Sequence[str] | PackedStrings) -> np.ndarray:
        """Index into :attr:`served` for each entity, or -1 where no arm covers its bucket."""
        n = len(entity_ids)
        if not self.is_split:
            return np.zeros(n, dtype=np.int64)
        buckets = entity_buckets(entity_ids, self.experiment_id or self.model)
        index = np.searchsorted(self._bounds, buckets, side="right")
        index[index >= len(self.served)] = -1
        return index

    def versions(self) -> dict[str, list[int]]:
        """For status output: arm -> versions."""
        out: dict[str, list[int]] = {}
        for arm in self.served:
            out.setdefault(arm.name, []).append(arm.model.version)
        if self.shadows:
            out["shadow"] = [m.version for m in self.shadows]
        return out
