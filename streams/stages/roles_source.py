"""The roles file as the worker sees it: re-read when it changes."""

from __future__ import annotations

import logging
from pathlib import Path

from driftline.lineage.trust.roles import Roles

log = logging.getLogger(__name__)


class RolesSource:
    """The roles file, re-read when it changes, so new actors need no restart."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._loaded: tuple[float, Roles] | None = None

    def current(self) -> Roles | None:
        try:
            mtime = self.path.stat().st_mtime
        except FileNotFoundError:
            return None
        if self._loaded is None or self._loaded[0] != mtime:
            self._loaded = (mtime, Roles.load(self.path))
            log.info("loaded roles file %s", self.path)
        return self._loaded[1]
