"""The policy role's periodic decisions: canary steps and A/B experiments.

Every ``DRIFTLINE_POLICY_INTERVAL_S`` the loop looks at each model's routing
table (the lifecycle projection, i.e. the audit log), reads per-arm statistics
from ClickHouse (predictions joined with outcomes) since the canary or the
challenger started, and asks the domain code what to do:

* a canary advances to its next step, is promoted at the last one, waits, or is
  archived on a guardrail breach (``driftline.lineage.promotion.canary``);
* a challenger's experiment continues, promotes the challenger, or archives it
  when the champion wins or the test stops for futility
  (``driftline.lineage.promotion.experiments``);
  in ``manual`` mode the decision is only recommended (``/driftline/policy/``).

While a model has an uncleared ``audit_alarm`` (its audit trail failed the lineage
role's check), promotions and traffic increases are held back and shown as
``frozen_by``; archiving a failing canary or a losing challenger still goes out.

Each action is a signed command through :class:`driftline.streams.stages.policy_reflex.PolicySigner`
carrying the decision's evidence. A command is sent once per decision: until the
registry reflects it, the same decision is not sent again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from driftline.lineage.promotion.canary import ArmStats, decide_canary
from driftline.lineage.promotion.experiments import decide_experiment
from driftline.lineage.promotion.policy import PromotionPolicy
from driftline.lineage.promotion.queries import arm_stats_from_rows, arm_stats_sql
from driftline.lineage.promotion.sequential import SequentialTest
from driftline.lineage.registry.alarms import FROZEN_ACTIONS
from driftline.lineage.registry.model_registry import ModelRegistry
from driftline.streams.kafka.delivery import BatchDelivery

log = logging.getLogger(__name__)

Query = Callable[[str], Awaitable[list[tuple]]]
# Runs the quality gates on a registered version; returns (passed, evidence).
Gate = Callable[[str, int], Awaitable[tuple[bool, dict[str, Any]]]]
Send = Callable[[BatchDelivery, str, str, int | None, dict[str, str], dict[str, Any]], bool]

# Events after which a version's share is what it is now: the current step began then.
START_EVENTS = ("canary_started", "challenger_assigned")
STEP_EVENTS = (*START_EVENTS, "traffic_changed")


class PolicyLoop:
    def __init__(
        self,
        *,
        policy: PromotionPolicy,
        registry: ModelRegistry,
        query: Query,
        send: Send,
        database: str,
        threshold: float,
        gate: Gate | None = None,
    ) -> None:
        self.policy = policy
        self._registry = registry
        self._query = query
        self._send = send
        self._database = database
        self._threshold = threshold
        self._gate = gate
        self._gated: set[tuple[str, int]] = set()
        self._tests: dict[tuple, SequentialTest] = {}
        self._live_tests: set[tuple] = set()
        self._sent: dict[tuple[str, int], tuple[str, float]] = {}
        self.last: dict[str, Any] = {}  # model -> the latest decisions, for /driftline/policy/
        self.failures = 0

    async def evaluate(self, batch: BatchDelivery, now_ms: int | None = None) -> list[dict]:
        """One pass over every model; returns the decisions acted on (commands in ``batch``)."""
        now_ms = now_ms or time.time_ns() // 1_000_000
        decided = []
        self._live_tests = set()
        for name in self._registry.models():
            if self._gate is not None:
                decided += await self._gate_registered(name, batch)
            split = self._registry.traffic(name)
            champion = next((a for a in split.served if a.arm == "champion"), None)
            if champion is None:
                continue
            for arm in split.served:
                if arm.arm not in ("canary", "challenger"):
                    continue
                try:
                    decision = await self._decide(name, champion.version, arm, now_ms, batch)
                except Exception as exc:  # one model's bad data must not stop the others
                    log.exception("policy: evaluating %s v%d failed: %s", name, arm.version, exc)
                    self.last.setdefault(name, {})[f"v{arm.version}"] = {"error": str(exc)}
                    self.failures += 1
                    continue
                if decision is not None:
                    decided.append(decision)
        # Tests of canaries and challengers that ended (promoted, archived) are dropped.
        self._tests = {k: t for k, t in self._tests.items() if k in self._live_tests}
        return decided

    async def _gate_registered(self, name: str, batch: BatchDelivery) -> list[dict]:
        """Quality gates on every newly registered version (the policy file's holdout)."""
        decided = []
        for version in self._registry.versions(name):
            key = (name, version.version)
            if version.state != "registered" or key in self._gated:
                continue
            self._gated.add(key)  # once: a failure is logged, not retried every tick
            try:
                passed, evidence = await self._gate(name, version.version)
            except Exception as exc:
                log.exception("policy: gates on %s v%d failed to run: %s", *key, exc)
                self.failures += 1
                continue
            action = "validate" if passed else "reject"
            if self._send(batch, action, name, version.version, {}, evidence):
                decided.append({"model": name, "version": version.version, "action": action})
        return decided

    def _started(self, name: str, version: int) -> tuple[int, int]:
        """(when the version started taking traffic, when its current share began)."""
        entries = [h for h in self._registry.history(name) if h.version == version]
        starts = [h.occurred_at for h in entries if h.event_type in START_EVENTS]
        started = max(starts, default=entries[0].occurred_at if entries else 0)
        step = max((h.occurred_at for h in entries if h.event_type in STEP_EVENTS), default=started)
        return started, step

    async def _decide(
        self, name: str, champion_version: int, arm, now_ms: int, batch: BatchDelivery
    ) -> dict | None:
        started, step_started = self._started(name, arm.version)
        sql = arm_stats_sql(self._database, name, started, step_started, self._threshold)
        stats = arm_stats_from_rows(await self._query(sql))
        candidate, step_n = stats.get((arm.version, arm.arm), (_empty(arm.version, arm.arm), 0))
        champion, _ = stats.get(
            (champion_version, "champion"), (_empty(champion_version, "champion"), 0)
        )
        key = (name, arm.version, arm.arm, started)
        self._live_tests.add(key)
        if arm.arm == "canary":
            config = self.policy.canary
            test = self._tests.setdefault(key, SequentialTest(config.sequential_config()))
            decision = decide_canary(
                config,
                percent_now=arm.traffic_bp / 100,
                step_started_ms=step_started,
                now_ms=now_ms,
                step_samples=step_n,
                canary=candidate,
                champion=champion,
                test=test,
            )
            command = _canary_command(decision)
            summary = {"action": decision.action, "reasons": list(decision.reasons)}
        else:
            config = self.policy.experiment
            test = self._tests.setdefault(key, SequentialTest(config.sequential_config()))
            decision = decide_experiment(config, champion=champion, challenger=candidate, test=test)
            command = EXPERIMENT_COMMANDS.get(decision.outcome) if decision.actionable else None
            summary = {"action": decision.outcome, "actionable": decision.actionable}
        summary = {"model": name, "version": arm.version, "arm": arm.arm} | summary
        evidence = decision.evidence()
        self.last.setdefault(name, {})[f"v{arm.version}"] = summary | {"evidence": evidence}
        if command is None:
            return None
        action, arguments = command
        alarm = self._registry.alarm(name)
        if alarm is not None and action in FROZEN_ACTIONS:
            # An audit alarm freezes promotions: the decision is shown, not sent.
            self.last[name][f"v{arm.version}"]["frozen_by"] = alarm.describe()
            held = (action, name, arm.version, alarm.describe())
            log.warning("policy: %s %s v%d held back by %s", *held)
            return None
        if self._already_sent(name, arm.version, action, arm.traffic_bp):
            return None
        if not self._send(batch, action, name, arm.version, arguments, evidence):
            return None
        log.warning("policy: %s %s v%d (%s)", action, name, arm.version, summary["action"])
        return summary

    def _already_sent(self, name: str, version: int, action: str, traffic_bp: int) -> bool:
        # The registry has not applied our last command yet if the share is unchanged.
        marker = f"{action}@{traffic_bp}"
        previous = self._sent.get((name, version))
        now = time.monotonic()
        if previous is not None and previous[0] == marker and now - previous[1] < 30:
            return True
        self._sent[(name, version)] = (marker, now)
        return False


# Experiment outcome -> the command that carries it out (the challenger's version).
EXPERIMENT_COMMANDS = {"promote": ("promote", {}), "keep_champion": ("archive", {})}


def _canary_command(decision) -> tuple[str, dict[str, str]] | None:
    if decision.action == "advance":
        return "traffic", {"percent": f"{decision.next_percent:g}"}
    if decision.action == "promote":
        return "promote", {}
    if decision.action == "rollback":
        return "archive", {}
    return None


def _empty(version: int, arm: str) -> ArmStats:
    nan = float("nan")
    return ArmStats(version, arm, 0, nan, nan, nan, 0, 0)
