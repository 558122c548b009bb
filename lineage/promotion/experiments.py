"""A/B experiments between the champion and a challenger: is there a winner yet?

:func:`decide_experiment` feeds the cumulative per-arm figures to an
always-valid :class:`~driftline.lineage.promotion.sequential.SequentialTest` (control = champion,
treatment = challenger) and maps its verdict to what the registry can act on:

* ``promote``: the challenger is significantly better; ``winner_version`` is its version.
* ``keep_champion``: the champion is significantly better (``winner_version`` is
  the champion's), or the test stopped without a winner: futility (the
  confidence sequence excludes any effect of ``min_effect`` or more) or the
  sample cap. Keeping the incumbent is the safe default when nothing is shown.
* ``continue``: not enough evidence either way.

Metrics: ``error_rate`` is the binary wrong-decision rate (lower is better,
whatever ``higher_is_better`` says); ``outcome`` is the mean of a continuous
outcome value, in the direction ``higher_is_better`` gives.

``mode = "manual"`` makes every decision a recommendation (``actionable`` is
False): the evidence is recorded, a person promotes. Pure domain code: no Faust,
Kafka or ClickHouse.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from driftline.lineage.exceptions import ExperimentConfigError, SequentialConfigError
from driftline.lineage.promotion.canary import ArmStats, json_safe
from driftline.lineage.promotion.config_tables import table_arguments
from driftline.lineage.promotion.sequential import SequentialConfig, SequentialTest

METRICS = ("error_rate", "outcome")
MODES = ("auto", "manual")
OUTCOMES = ("continue", "promote", "keep_champion")


@dataclass(frozen=True)
class ExperimentConfig:
    """How a champion/challenger experiment is judged; validated on construction."""

    metric: str = "error_rate"  # "error_rate" (binary, lower is better) | "outcome" (mean)
    higher_is_better: bool = True  # only for metric "outcome"
    alpha: float = 0.05
    min_effect: float = 0.02
    min_samples_per_arm: int = 200
    max_samples_per_arm: int | None = None
    mode: str = "auto"  # "auto": the policy promotes the winner itself; "manual": recommends
    tau: float | None = None  # mixing sd of the test; None: min_effect

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise ExperimentConfigError(f"metric={self.metric!r} is not one of {list(METRICS)}")
        if self.mode not in MODES:
            raise ExperimentConfigError(f"mode={self.mode!r} is not one of {list(MODES)}")
        if not isinstance(self.higher_is_better, bool):
            raise ExperimentConfigError(
                f"higher_is_better={self.higher_is_better!r} must be true or false"
            )
        try:
            self.sequential_config()
        except SequentialConfigError as exc:
            raise ExperimentConfigError(f"experiment: {exc}") from exc

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any] | None) -> ExperimentConfig:
        """From a policy-file table; unknown keys are an error (a typo must not go unnoticed)."""
        return cls(**table_arguments(cls, mapping, what="experiment", error=ExperimentConfigError))

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def lower_is_better(self) -> bool:
        return self.metric == "error_rate" or not self.higher_is_better

    def sequential_config(self) -> SequentialConfig:
        return SequentialConfig(
            metric="binary" if self.metric == "error_rate" else "continuous",
            alpha=self.alpha,
            tau=self.tau,
            min_effect=self.min_effect,
            max_samples_per_arm=self.max_samples_per_arm,
            min_samples_per_arm=self.min_samples_per_arm,
            higher_is_better=not self.lower_is_better,
        )


@dataclass(frozen=True)
class ExperimentDecision:
    outcome: str  # "continue" | "promote" (challenger won) | "keep_champion"
    winner_version: int | None
    actionable: bool  # mode == "auto" and outcome != "continue"
    test: dict  # Decision.evidence()
    champion: ArmStats
    challenger: ArmStats
    config: ExperimentConfig
    reason: str = ""

    def evidence(self) -> dict[str, Any]:
        """Strict-JSON record: verdict, one-line reason, the test, both arms and the config."""
        return json_safe(
            {
                "outcome": self.outcome,
                "reason": self.reason,
                "winner_version": self.winner_version,
                "actionable": self.actionable,
                "mode": self.config.mode,
                "metric": self.config.metric,
                "champion_version": self.champion.version,
                "challenger_version": self.challenger.version,
                "test": self.test,
                "champion": self.champion.as_dict(),
                "challenger": self.challenger.as_dict(),
                "config": self.config.as_dict(),
            }
        )


def _check_test(config: ExperimentConfig, test: SequentialTest) -> None:
    """A test of the wrong metric or direction would silently invert the winner: refuse it."""
    want, got = config.sequential_config(), test.config
    if (got.metric, got.higher_is_better) != (want.metric, want.higher_is_better):
        raise ExperimentConfigError(
            f"the test has metric={got.metric!r}, higher_is_better={got.higher_is_better!r}, "
            f"but the experiment needs metric={want.metric!r}, higher_is_better="
            f"{want.higher_is_better!r}: build it from ExperimentConfig.sequential_config()"
        )


def decide_experiment(
    config: ExperimentConfig,
    *,
    champion: ArmStats,
    challenger: ArmStats,
    test: SequentialTest,
) -> ExperimentDecision:
    """One check of the experiment; ``test`` must persist across checks (cumulative figures)."""
    _check_test(config, test)
    if config.metric == "error_rate":
        control, treatment = champion.error_summary(), challenger.error_summary()
    else:
        control, treatment = champion.outcome_summary(), challenger.outcome_summary()
    d = test.update(control, treatment)
    means = (
        f"{config.metric} champion v{champion.version} {d.mean_control:.4g} (n={d.n_control}) vs "
        f"challenger v{challenger.version} {d.mean_treatment:.4g} (n={d.n_treatment})"
    )
    stats = f"p={d.p_value:.4g}, CI [{d.ci_low:.4g}, {d.ci_high:.4g}]"
    winner_version = None
    if d.outcome == "efficacy" and d.winner == "treatment":
        outcome, winner_version = "promote", challenger.version
        reason = f"challenger significantly better: {means}; {stats}"
    elif d.outcome == "efficacy":
        outcome = "keep_champion"
        winner_version = champion.version if d.winner == "control" else None
        reason = f"champion significantly better: {means}; {stats}"
    elif d.outcome == "futility":
        outcome = "keep_champion"
        reason = f"no difference of {config.min_effect:g} or more (futility): {means}; {stats}"
    elif d.outcome == "max_samples":
        outcome = "keep_champion"
        reason = f"sample cap {config.max_samples_per_arm} reached, no winner: {means}; {stats}"
    else:
        outcome = "continue"
        short = min(d.n_control, d.n_treatment) < config.min_samples_per_arm
        why = f"fewer than {config.min_samples_per_arm} per arm" if short else "not significant"
        reason = f"continue ({why}): {means}; {stats}"
    actionable = config.mode == "auto" and outcome != "continue"
    if outcome != "continue" and not actionable:
        reason = f"recommendation (manual mode): {reason}"
    return ExperimentDecision(
        outcome=outcome,
        winner_version=winner_version,
        actionable=actionable,
        test=d.evidence(),
        champion=champion,
        challenger=challenger,
        config=config,
        reason=reason,
    )
