"""The live routing table: which loaded model version serves each model name.

The table is copy-on-write: a swap builds a new dict and replaces the
reference in one assignment, so a reader that grabbed the table (or a model
from it) mid-batch keeps a consistent view and a swap never blocks scoring.

Only champions exist for now; :meth:`Router.arms` already returns a list of
``(arm, model)`` pairs so challenger, canary and shadow arms can be added
without changing callers.
"""

from __future__ import annotations

from typing import Any

from inference.model import LoadedModel


class Router:
    """Per model name, the champion currently serving traffic."""

    def __init__(self) -> None:
        self._champions: dict[str, LoadedModel] = {}

    def set_champion(self, model: LoadedModel) -> LoadedModel | None:
        """Make ``model`` the champion for ``model.name``; return the one it replaces, if any."""
        previous = self._champions.get(model.name)
        self._champions = {**self._champions, model.name: model}
        return previous

    def champion(self, name: str) -> LoadedModel | None:
        return self._champions.get(name)

    def arms(self, name: str) -> list[tuple[str, LoadedModel]]:
        """The arms to score a ``name`` record with, champion first; empty if none is loaded."""
        model = self._champions.get(name)
        return [] if model is None else [("champion", model)]

    def loaded(self) -> dict[str, dict[str, Any]]:
        """Summary for a status endpoint: name -> {version, digest, loaded_at (epoch ms)}."""
        return {
            name: {"version": m.version, "digest": m.digest, "loaded_at": m.loaded_at}
            for name, m in sorted(self._champions.items())
        }
