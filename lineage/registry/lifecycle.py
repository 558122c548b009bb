"""The lifecycle state machine: states, the moves between them, and the aliases.

:data:`TRANSITIONS` is the one table both the registry's planner and its
projection read (see :mod:`driftline.lineage.registry.model_registry` for how events
fold into state)::

    registered -> validated | rejected | champion (an unvalidated promotion)
    validated  -> shadow | challenger | canary | champion
    shadow     -> challenger | canary | champion | archived
    challenger -> canary | champion | archived
    canary     -> champion | archived
    champion   -> archived
    rejected, archived: terminal

``champion``, ``challenger`` and ``canary`` are also aliases: per-model
pointers to one version each, held by the version in the state of that name
(several versions may be challengers at once, for A/B/n; the alias names the
latest). ``shadow`` versions are scored on every record and never served.
``traffic`` changes a challenger's or canary's share without moving it
(see :mod:`driftline.lineage.registry.traffic`).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

from driftline.lineage.events import EventType
from driftline.lineage.exceptions import IllegalTransition


class State(StrEnum):
    REGISTERED = "registered"
    VALIDATED = "validated"
    REJECTED = "rejected"
    SHADOW = "shadow"
    CHALLENGER = "challenger"
    CANARY = "canary"
    CHAMPION = "champion"
    ARCHIVED = "archived"


# Current state -> states a command may move a version to (see the module docstring).
TRANSITIONS: dict[str, frozenset[str]] = {
    State.REGISTERED: frozenset({State.VALIDATED, State.REJECTED, State.CHAMPION}),
    State.VALIDATED: frozenset({State.SHADOW, State.CHALLENGER, State.CANARY, State.CHAMPION}),
    State.SHADOW: frozenset({State.CHALLENGER, State.CANARY, State.CHAMPION, State.ARCHIVED}),
    State.CHALLENGER: frozenset({State.CANARY, State.CHAMPION, State.ARCHIVED}),
    State.CANARY: frozenset({State.CHAMPION, State.ARCHIVED}),
    State.CHAMPION: frozenset({State.ARCHIVED}),
    State.REJECTED: frozenset(),
    State.ARCHIVED: frozenset(),
}

# Command actions, in the order error messages list them.
ACTIONS: tuple[str, ...] = (
    "validate",
    "reject",
    "shadow",
    "challenger",
    "canary",
    "traffic",
    "promote",
    "archive",
    "rollback",
    "raise_alarm",
    "clear_alarm",
)

# Action that moves one version -> (event type it publishes, state it moves to).
# "rollback" is model-wide, "traffic" moves no version, and "raise_alarm" and "clear_alarm"
# set and lift an audit alarm's freeze (driftline.lineage.audit.alarms); each is handled on its own.
MOVES: dict[str, tuple[str, str]] = {
    "validate": (EventType.VALIDATED, State.VALIDATED),
    "reject": (EventType.REJECTED, State.REJECTED),
    "shadow": (EventType.SHADOW_STARTED, State.SHADOW),
    "challenger": (EventType.CHALLENGER_ASSIGNED, State.CHALLENGER),
    "canary": (EventType.CANARY_STARTED, State.CANARY),
    "promote": (EventType.PROMOTED, State.CHAMPION),
    "archive": (EventType.ARCHIVED, State.ARCHIVED),
}

# Event type -> the state its version is in afterwards.
EVENT_STATE: dict[str, str] = {etype: state for etype, state in MOVES.values()}
ACTION_FOR_STATE: dict[str, str] = {state: action for action, (_, state) in MOVES.items()}

# Movable pointers; each is named after the state its holder is in.
ALIASES: tuple[str, ...] = (State.CHAMPION, State.CHALLENGER, State.CANARY)


@dataclass(frozen=True)
class HistoryEntry:
    """One event as the registry applied it: who moved which version from where to where.

    ``aliases`` is every alias after the event (alias -> version); ``also_moved``
    lists other versions the event moved as ``(version, from_state, to_state)``
    (the champion a promotion archived, the champion a rollback restored).
    Events that move nothing (``command_rejected``, types this code does not
    know) are recorded with ``from_state == to_state``.
    """

    event_id: str
    occurred_at: int
    event_type: str
    version: int | None
    actor: str
    from_state: str | None
    to_state: str | None
    aliases: dict[str, int]
    evidence: dict[str, Any]
    also_moved: tuple[tuple[int, str, str], ...] = ()


class PlacedVersion(Protocol):
    """What a move is checked against: a version and the state it is in (a ModelVersion)."""

    name: str
    version: int
    state: str


def check_move(action: str, current: PlacedVersion, target: str) -> None:
    """Raise IllegalTransition, listing the allowed moves, unless ``action`` may move
    ``current`` to ``target``."""
    allowed = TRANSITIONS[current.state]
    if target in allowed:
        return
    actions = {ACTION_FOR_STATE[s] for s in allowed}
    moves = ", ".join(a for a in ACTIONS if a in actions) or "none"
    if current.state == State.ARCHIVED:
        moves += " (a rollback of the model can return its previous champion)"
    already = "already " if current.state == target else ""
    who = f"{current.name} v{current.version}"
    raise IllegalTransition(
        f"cannot {action} {who}: {who} is {already}{current.state}; "
        f"allowed moves from {current.state}: {moves}"
    )
