"""Telling a bad version from a changed world, from the arms that alarmed.

Every arm has its own monitors. A shift in the world reaches every arm that
is served (the same entities' features move, whichever version scores them);
a problem with one version shows only on that version's arm. Given the drift
events of one model over a period and the arms that were served in it,
:func:`classify` says which it is, per signal (stream, detector, feature).

>>> events = [
...     {"arm": "canary", "stream": "error", "detector": "adwin", "feature": None},
...     {"arm": "canary", "stream": "input", "detector": "ks", "feature": "f03"},
...     {"arm": "champion", "stream": "input", "detector": "ks", "feature": "f03"},
... ]
>>> for s in classify(events, served_arms={"champion", "canary"}):
...     print(s.signal, s.scope, s.arms)
('error', 'adwin', None) version ('canary',)
('input', 'ks', 'f03') world ('canary', 'champion')
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

WORLD, VERSION = "world", "version"


@dataclass(frozen=True)
class Scope:
    signal: tuple[str, str, str | None]  # (stream, detector, feature)
    scope: str  # "world" when every served arm alarmed, else "version"
    arms: tuple[str, ...]  # arms that alarmed, sorted


def classify(events: Iterable[Mapping[str, Any]], served_arms: set[str]) -> list[Scope]:
    """One :class:`Scope` per signal, in order of first appearance.

    Shadow arms count as arms that alarmed but are not required for "world":
    they score every row, so they see a world shift too, yet nobody is served by them.
    """
    arms_by_signal: dict[tuple, set[str]] = defaultdict(set)
    for event in events:
        signal = (event["stream"], event["detector"], event.get("feature"))
        arms_by_signal[signal].add(event["arm"])
    required = {arm for arm in served_arms if arm != "shadow"}
    out = []
    for signal, arms in arms_by_signal.items():
        world = len(required) > 1 and required <= arms
        out.append(Scope(signal, WORLD if world else VERSION, tuple(sorted(arms))))
    return out
