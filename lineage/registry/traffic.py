"""Traffic split per model: which versions serve what share, and which are shadows.

The split is part of the lifecycle, so it is a projection of lifecycle events
like everything else in the registry:

- ``challenger_assigned`` and ``canary_started`` carry the arm's share as the
  ``traffic_bp`` attribute (basis points, 1/100 of a percent) and the
  experiment id as ``experiment_id``.
- ``traffic_changed`` moves the share of a version already in ``challenger``
  or ``canary`` (a canary step 1 -> 5 -> 25 %) without changing its state.
- Versions in ``shadow`` are scored on every record and never served.
- The champion serves whatever the other served arms leave.

Shares are basis points so that a split is exact integer arithmetic; an
entity's bucket (``0..9999``, see :mod:`driftline.inference.routing`) picks its arm.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from driftline.lineage.exceptions import IllegalTransition
from driftline.lineage.registry.lifecycle import State

BASIS_POINTS = 10_000

# Default share of a new arm when the command names none, in percent.
DEFAULT_PERCENT = {"challenger": 10.0, "canary": 1.0}

# Command arguments that set the split (the CLI's --percent and --experiment).
PERCENT_ARGUMENT = "percent"
EXPERIMENT_ARGUMENT = "experiment"


@dataclass(frozen=True)
class ServedArm:
    arm: str  # champion | challenger | canary
    version: int
    traffic_bp: int


@dataclass(frozen=True)
class TrafficSplit:
    """The routing table of one model, as lifecycle events left it.

    ``served`` lists the non-champion arms first (canary, then challengers by
    version) and the champion last, with the remainder; ``shadows`` are
    versions scored on every record but never served.
    """

    model: str
    experiment_id: str | None
    served: tuple[ServedArm, ...]
    shadows: tuple[int, ...]

    def share(self, version: int) -> int:
        return next((a.traffic_bp for a in self.served if a.version == version), 0)


def percent_to_bp(value: str, *, what: str) -> int:
    """Parse a percentage argument ("5", "12.5") into basis points, or raise IllegalTransition."""
    try:
        percent = float(value)
    except ValueError:
        percent = math.nan
    if not math.isfinite(percent) or not 0 <= percent <= 100:
        raise IllegalTransition(
            f"{what}: percent must be a number from 0 to 100, got {value!r}; "
            "for example --percent 5 sends 5% of entities to this version"
        )
    bp = round(percent * 100)
    if abs(bp - percent * 100) > 1e-6:
        raise IllegalTransition(
            f"{what}: percent {value!r} is finer than 0.01%, the resolution of a split"
        )
    return bp


def plan_attributes(
    action: str,
    name: str,
    version: int,
    arguments: Mapping[str, str],
    current: TrafficSplit,
) -> dict[str, str]:
    """The ``traffic_bp``/``experiment_id`` attributes of a challenger, canary or traffic event.

    Refuses a split whose non-champion shares add up to more than 100%.
    """
    what = f"cannot {action} {name} v{version}"
    arm_kind = {"challenger": "challenger", "canary": "canary"}.get(action)
    if PERCENT_ARGUMENT in arguments:
        bp = percent_to_bp(arguments[PERCENT_ARGUMENT], what=what)
    elif arm_kind is not None:
        bp = round(DEFAULT_PERCENT[arm_kind] * 100)
    else:
        raise IllegalTransition(f"{what}: traffic needs --percent, the version's new share")
    others = sum(
        a.traffic_bp for a in current.served if a.arm != "champion" and a.version != version
    )
    if others + bp > BASIS_POINTS:
        raise IllegalTransition(
            f"{what}: {bp / 100:g}% on top of the {others / 100:g}% other challengers and "
            "canaries already take is more than 100%; lower --percent or archive an arm first"
        )
    experiment = arguments.get(EXPERIMENT_ARGUMENT) or current.experiment_id
    if not experiment:
        experiment = f"{name}-v{version}-{action}"
    if not experiment.isprintable() or len(experiment) > 200:
        raise IllegalTransition(f"{what}: experiment id {experiment!r} must be printable, <= 200")
    return {"traffic_bp": str(bp), "experiment_id": experiment}


class TrafficBook:
    """Per model: the share of each served non-champion version and the experiment id.

    Fed by the registry as it applies events; :meth:`split` combines it with the
    versions' states.
    """

    def __init__(self) -> None:
        self._shares: dict[str, dict[int, int]] = {}
        self._experiment: dict[str, str | None] = {}

    def set(self, model: str, version: int, attributes: Mapping[str, str]) -> None:
        bp = _int_or_none(attributes.get("traffic_bp"))
        if bp is not None and 0 <= bp <= BASIS_POINTS:
            self._shares.setdefault(model, {})[version] = bp
        if attributes.get("experiment_id"):
            self._experiment[model] = attributes["experiment_id"]

    def split(self, model: str, states: Mapping[int, str]) -> TrafficSplit:
        shares = self._shares.get(model, {})
        canaries = sorted(v for v, s in states.items() if s == State.CANARY)
        challengers = sorted(v for v, s in states.items() if s == State.CHALLENGER)
        champions = [v for v, s in states.items() if s == State.CHAMPION]
        served: list[ServedArm] = []
        remaining = BASIS_POINTS
        for arm, versions in (("canary", canaries), ("challenger", challengers)):
            for version in versions:
                default = round(DEFAULT_PERCENT[arm] * 100)
                bp = min(shares.get(version, default), remaining)
                served.append(ServedArm(arm, version, bp))
                remaining -= bp
        for version in champions:
            served.append(ServedArm("champion", version, remaining))
        experiment = self._experiment.get(model) if len(served) > len(champions) else None
        shadows = tuple(sorted(v for v, s in states.items() if s == State.SHADOW))
        return TrafficSplit(model, experiment, tuple(served), shadows)

    def forget_experiment(self, model: str) -> None:
        """Called when no non-champion arm is left: the next arm starts a new experiment."""
        self._experiment.pop(model, None)


def _int_or_none(value: str | None) -> int | None:
    try:
        return None if value is None else int(value)
    except ValueError:
        return None
