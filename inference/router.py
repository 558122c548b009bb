"""The live routing tables: per model name, which loaded versions serve and shadow it.

The tables are copy-on-write: a swap builds a new dict and replaces the
reference in one assignment, so a reader that grabbed a table mid-batch keeps
a consistent view and a swap never blocks scoring. Swaps happen between two
batches (the worker's event loop runs one at a time), so a record is scored by
exactly one table: none is lost or scored twice across a change.
"""

from __future__ import annotations

from typing import Any

from driftline.inference.model import LoadedModel
from driftline.inference.routing import RoutingTable


class Router:
    """Per model name, the :class:`RoutingTable` currently in force."""

    def __init__(self) -> None:
        self._tables: dict[str, RoutingTable] = {}

    def set_table(self, table: RoutingTable) -> RoutingTable | None:
        """Put ``table`` in force for ``table.model``; return the one it replaces, if any."""
        previous = self._tables.get(table.model)
        self._tables = {**self._tables, table.model: table}
        return previous

    def set_champion(self, model: LoadedModel) -> LoadedModel | None:
        """Serve ``model`` alone (no experiment); return the champion it replaces, if any."""
        previous = self.set_table(RoutingTable.champion_only(model))
        return None if previous is None else previous.champion

    def table(self, name: str) -> RoutingTable | None:
        return self._tables.get(name)

    def champion(self, name: str) -> LoadedModel | None:
        table = self._tables.get(name)
        return None if table is None else table.champion

    def arms(self, name: str) -> list[tuple[str, LoadedModel]]:
        """Every arm scoring ``name`` records, served arms first, then shadows."""
        table = self._tables.get(name)
        if table is None:
            return []
        served = [(arm.name, arm.model) for arm in table.served]
        return served + [("shadow", model) for model in table.shadows]

    def loaded(self) -> dict[str, dict[str, Any]]:
        """Summary for a status endpoint: name -> champion version, digest, arms, experiment."""
        out: dict[str, dict[str, Any]] = {}
        for name, table in sorted(self._tables.items()):
            champion = table.champion
            out[name] = {
                "version": None if champion is None else champion.version,
                "digest": None if champion is None else champion.digest,
                "loaded_at": None if champion is None else champion.loaded_at,
                "experiment_id": table.experiment_id,
                "arms": [
                    {"arm": a.name, "version": a.model.version, "traffic_bp": a.traffic_bp}
                    for a in table.served
                ]
                + [{"arm": "shadow", "version": m.version, "traffic_bp": 0} for m in table.shadows],
            }
        return out
