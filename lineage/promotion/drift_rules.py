"""Drift-triggered rollback: which drift events make the policy act, and how.

A :class:`DriftRule` names the drift events it counts (arms, detectors, streams:
``input``, ``score``, ``error``), how many within how long, and the action:

* ``rollback``: the drifting version stops serving. A champion is rolled back to
  the champion it replaced (``rollback``); a canary or challenger is archived.
* ``pause_canary``: a canary's or challenger's traffic share goes to 0% (it stays
  registered and can be resumed with ``traffic``); a champion is left alone.

With ``scope = "version"`` a rule acts only when the drift is the version's own:
if another arm of the same model alarmed on the same stream within the window,
the world shifted (every version sees it) and rolling one back would not help.

:class:`DriftResponder` keeps the recent matching events and returns at most one
:class:`DriftAction` per rule and model version; the action carries the events
that triggered it, which become the lifecycle event's evidence.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any

from driftline.lineage.exceptions import DriftRuleError
from driftline.lineage.promotion.config_tables import table_arguments
from driftline.schemas import records

ACTIONS = ("rollback", "pause_canary")
ARMS = ("champion", "challenger", "canary", "shadow", "any")
SCOPES = ("version", "any")
STREAMS = ("input", "score", "error", "*")


@dataclass(frozen=True)
class DriftRule:
    name: str
    action: str
    arms: tuple[str, ...] = ("any",)
    detectors: tuple[str, ...] = ("*",)
    streams: tuple[str, ...] = ("*",)
    min_events: int = 1
    within_s: float = 600.0
    scope: str = "any"

    def __post_init__(self) -> None:
        what = f"drift rule {self.name!r}"
        if not self.name:
            raise DriftRuleError("a drift rule needs a name")
        if self.action not in ACTIONS:
            raise DriftRuleError(f"{what}: action {self.action!r} is not one of {list(ACTIONS)}")
        for label, values, allowed in (
            ("arms", self.arms, ARMS),
            ("streams", self.streams, STREAMS),
        ):
            bad = [v for v in values if v not in allowed]
            if bad or not values:
                raise DriftRuleError(
                    f"{what}: {label} {bad or values!r}; use some of {list(allowed)}"
                )
        if not self.detectors:
            raise DriftRuleError(f"{what}: detectors is empty; use ['*'] for every detector")
        if not isinstance(self.min_events, int) or self.min_events < 1:
            raise DriftRuleError(f"{what}: min_events {self.min_events!r} must be an int >= 1")
        if not self.within_s > 0:
            raise DriftRuleError(f"{what}: within_s {self.within_s!r} must be > 0 seconds")
        if self.scope not in SCOPES:
            raise DriftRuleError(f"{what}: scope {self.scope!r} is not one of {list(SCOPES)}")

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any]) -> DriftRule:
        name = raw.get("name") if isinstance(raw, Mapping) else None
        values = table_arguments(cls, raw, what=f"drift rule {name!r}", error=DriftRuleError)
        for key in ("arms", "detectors", "streams"):
            if key in values:
                values[key] = tuple(values[key])
        return cls(**values)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "action": self.action,
            "arms": list(self.arms),
            "detectors": list(self.detectors),
            "streams": list(self.streams),
            "min_events": self.min_events,
            "within_s": self.within_s,
            "scope": self.scope,
        }

    def matches(self, event: DriftSignal) -> bool:
        return (
            ("any" in self.arms or event.arm in self.arms)
            and any(fnmatchcase(event.detector, p) for p in self.detectors)
            and ("*" in self.streams or event.stream in self.streams)
        )


DEFAULT_RULES: tuple[DriftRule, ...] = (
    # Concept drift on outcomes of a newly promoted champion: go back to the one before.
    DriftRule("champion-errors", "rollback", arms=("champion",), streams=("error",)),
    # Anything specific to a canary or challenger takes its traffic away.
    DriftRule(
        "candidate-drift",
        "pause_canary",
        arms=("canary", "challenger"),
        streams=("error", "score"),
        scope="version",
    ),
)


@dataclass(frozen=True)
class DriftSignal:
    """The parts of a DriftEvent a rule looks at."""

    event_id: str
    model: str
    version: int
    arm: str
    detector: str
    feature: str
    stream: str
    statistic: float
    p_value: float | None
    detected_at: int

    @classmethod
    def from_record(cls, record: records.DriftEvent | Mapping[str, Any]) -> DriftSignal:
        try:
            evidence = json.loads(record.get("evidence") or "{}")
        except ValueError:
            evidence = {}
        return cls(
            event_id=str(record["event_id"]),
            model=str(record["model"]),
            version=int(record["version"]),
            arm=str(record["arm"]),
            detector=str(record["detector"]),
            feature=str(record.get("feature") or ""),
            stream=str(evidence.get("stream", "input")) if isinstance(evidence, dict) else "",
            statistic=float(record.get("statistic") or 0.0),
            p_value=record.get("p_value"),
            detected_at=int(record.get("detected_at") or 0),
        )

    def summary(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "arm": self.arm,
            "version": self.version,
            "detector": self.detector,
            "stream": self.stream,
            "feature": self.feature,
            "statistic": self.statistic,
            "p_value": self.p_value,
            "detected_at": self.detected_at,
        }


@dataclass(frozen=True)
class DriftAction:
    """What the policy will ask the registry to do, with the drift events behind it."""

    rule: DriftRule
    model: str
    version: int
    arm: str
    triggers: tuple[DriftSignal, ...]

    def command(self) -> tuple[str, int | None, dict[str, str]]:
        """(action, version, arguments) of the lifecycle command carrying this out."""
        if self.rule.action == "rollback" and self.arm == "champion":
            return "rollback", None, {}
        if self.rule.action == "rollback":
            return "archive", self.version, {}
        return "traffic", self.version, {"percent": "0"}

    def evidence(self) -> dict[str, Any]:
        return {
            "reason": f"drift rule {self.rule.name!r}: {self.rule.action} on {self.arm} drift",
            "policy_rule": self.rule.as_dict(),
            "drift_events": [t.summary() for t in self.triggers],
            "drift_event_ids": [t.event_id for t in self.triggers],
            "arm": self.arm,
            "drifting_version": self.version,
        }


@dataclass
class DriftResponder:
    """Counts matching drift events per rule and version; fires each (rule, version) once."""

    rules: Sequence[DriftRule] = DEFAULT_RULES
    _recent: dict[tuple, deque[DriftSignal]] = field(default_factory=dict)
    _by_model: dict[str, deque[DriftSignal]] = field(default_factory=dict)
    _fired: set[tuple[str, str, int]] = field(default_factory=set)

    def observe(self, signal: DriftSignal, now_ms: int) -> list[DriftAction]:
        seen = self._by_model.setdefault(signal.model, deque(maxlen=10_000))
        seen.append(signal)
        actions = []
        for rule in self.rules:
            if not rule.matches(signal) or signal.arm == "shadow" and "shadow" not in rule.arms:
                continue
            fired_key = (rule.name, signal.model, signal.version)
            if fired_key in self._fired or not _applies(rule, signal.arm):
                continue
            horizon = now_ms - rule.within_s * 1000
            if rule.scope == "version" and self._seen_on_other_arm(signal, seen, horizon):
                continue  # a shift in the world, not this version's fault: not counted
            window = self._recent.setdefault((rule.name, signal.model, signal.version), deque())
            window.append(signal)
            while window and window[0].detected_at < horizon:
                window.popleft()
            if len(window) < rule.min_events:
                continue
            self._fired.add(fired_key)
            actions.append(
                DriftAction(rule, signal.model, signal.version, signal.arm, tuple(window))
            )
        return actions

    @property
    def fired(self) -> frozenset[tuple[str, str, int]]:
        """(rule, model, version) pairs that have acted."""
        return frozenset(self._fired)

    @staticmethod
    def _seen_on_other_arm(signal: DriftSignal, seen: deque[DriftSignal], horizon: float) -> bool:
        return any(
            s.version != signal.version
            and s.arm != "shadow"
            and s.stream == signal.stream
            and s.detected_at >= horizon
            for s in seen
        )


def _applies(rule: DriftRule, arm: str) -> bool:
    # Pausing is for versions with a traffic share; a champion has the rest of the traffic.
    return not (rule.action == "pause_canary" and arm == "champion")
