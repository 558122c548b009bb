"""The promotion policy file: quality gates and drift rules, validated on load.

::

    [gates]                        # `driftline model validate`, and on `registered`
    holdout = "holdout.csv"        # labelled rows (CSV or Parquet); relative to this file
    label_column = "label"
    latency_budget_ms = 50         # p99 of one batch predict
    latency_batch_rows = 1000
    thresholds = { auc = 0.6 }     # floors (auc, accuracy) or ceilings (log_loss, brier)
    max_regression = { auc = 0.02 }  # how much worse than the champion, absolute

    [canary]                       # see driftline.lineage.promotion.canary
    steps = [1, 5, 25, 50, 100]    # percent of entities; 100 = promote
    bake_s = 60
    min_samples = 500

    [experiment]                   # see driftline.lineage.promotion.experiments
    metric = "error_rate"
    mode = "auto"                  # or "manual": recommend only

    [[drift_rules]]                # see driftline.lineage.promotion.drift_rules
    name = "champion-errors"
    action = "rollback"
    arms = ["champion"]
    streams = ["error"]

Without a file (or without a section) the defaults below apply, and every
decision's evidence records the configuration it was made under.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from driftline.lineage.exceptions import PolicyFileError
from driftline.lineage.promotion.canary import CanaryConfig
from driftline.lineage.promotion.drift_rules import DEFAULT_RULES, DriftRule
from driftline.lineage.promotion.experiments import ExperimentConfig
from driftline.lineage.promotion.gates import GateConfig

DEFAULT_GATES = {
    "latency_budget_ms": 50.0,
    "thresholds": {"auc": 0.6},
    "max_regression": {"auc": 0.02},
}
SECTIONS = ("gates", "drift_rules", "canary", "experiment")


@dataclass(frozen=True)
class PromotionPolicy:
    gates: GateConfig
    holdout: Path | None
    label_column: str
    drift_rules: tuple[DriftRule, ...]
    source: str
    canary: CanaryConfig = CanaryConfig()
    experiment: ExperimentConfig = ExperimentConfig()

    @classmethod
    def load(cls, path: Path | None) -> PromotionPolicy:
        """The policy in ``path``; the built-in defaults when it is None or does not exist."""
        if path is None or not Path(path).exists():
            return cls.from_mapping({}, source="built-in defaults")
        try:
            data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise PolicyFileError(f"cannot read policy file {path}: {exc}") from exc
        return cls.from_mapping(data, source=str(path), base=Path(path).parent)

    @classmethod
    def from_mapping(
        cls, data: Mapping[str, Any], *, source: str, base: Path | None = None
    ) -> PromotionPolicy:
        unknown = sorted(set(data) - set(SECTIONS))
        if unknown:
            raise PolicyFileError(
                f"{source}: unknown section(s) {unknown}; known: {list(SECTIONS)}"
            )
        gates = dict(data.get("gates", {}))
        holdout = gates.pop("holdout", None)
        label_column = str(gates.pop("label_column", "label"))
        try:
            gate_config = GateConfig.from_mapping({**DEFAULT_GATES, **gates})
            rules = data.get("drift_rules")
            drift_rules = (
                DEFAULT_RULES if rules is None else tuple(DriftRule.from_mapping(r) for r in rules)
            )
            canary = CanaryConfig.from_mapping(data.get("canary", {}))
            experiment = ExperimentConfig.from_mapping(data.get("experiment", {}))
        except (ValueError, TypeError) as exc:
            raise PolicyFileError(f"{source}: {exc}") from exc
        names = [r.name for r in drift_rules]
        if len(set(names)) != len(names):
            raise PolicyFileError(f"{source}: drift rule names repeat: {names}")
        if holdout is not None:
            holdout = Path(holdout)
            if base is not None and not holdout.is_absolute():
                holdout = base / holdout
        return cls(gate_config, holdout, label_column, drift_rules, source, canary, experiment)

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "gates": self.gates.as_dict(),
            "holdout": None if self.holdout is None else str(self.holdout),
            "drift_rules": [r.as_dict() for r in self.drift_rules],
            "canary": self.canary.as_dict(),
            "experiment": self.experiment.as_dict(),
        }
