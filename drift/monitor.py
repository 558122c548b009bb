"""Watching one model version on one arm: inputs, scores and errors.

An :class:`ArmMonitor` owns, for one ``(model, version, arm)``:

- the input window tests (KS and PSI, one family under the multiplicity
  control, see :mod:`driftline.drift.window_stream`) over all features against the
  version's training reference profile (training-serving skew and covariate
  drift), or, when the version was registered without one, against its first
  ``baseline_rows`` served rows (covariate drift only; the alarm says which);
- a KS test of the score distribution against the version's first
  ``baseline_rows`` scores on that arm (prediction drift);
- River detectors on the 0/1 error stream built from joined outcomes
  (concept drift), combined: the first flag of any of them raises the alarm,
  and flags within ``error_rearm`` outcomes of the last one belong to the
  same episode.

So one shift is one alarm: per feature for the inputs, per arm for scores
and errors, and every alarm carries the numbers of every test or detector
behind it. Monitors are per arm so drift that shows on a canary but not on
the champion (a bad version) can be told apart from drift on every arm (a
shift in the world). In a worker one monitor per arm sees every partition's
rows: see :mod:`driftline.drift.decider`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from driftline.drift.catalog import make_detector
from driftline.drift.config import DriftConfig
from driftline.drift.exceptions import InvalidValue, SnapshotError
from driftline.drift.packing import pack, unpack
from driftline.drift.profile import ReferenceProfile
from driftline.drift.window_stream import Fired, WindowStream

SCORE = "score"


@dataclass(frozen=True)
class MonitorKey:
    model: str
    version: int
    arm: str

    def label(self) -> str:
        return f"{self.model}/v{self.version}/{self.arm}"

    def text(self) -> str:
        """The key as a JSON list: how state records name their monitor."""
        return json.dumps([self.model, self.version, self.arm])

    @classmethod
    def from_list(cls, value: Any) -> MonitorKey:
        model, version, arm = value
        return cls(str(model), int(version), str(arm))


@dataclass(frozen=True)
class DriftAlarm:
    """A debounced, multiplicity-controlled alarm; the fields of a DriftEvent but its id and time.

    ``stream`` is ``input``, ``score`` or ``error``; ``position`` is how many
    records (outcomes, for errors) of that stream the monitor had seen when it
    fired, which pins the alarm to a record and makes its event id stable
    across redelivery.
    """

    key: MonitorKey
    stream: str
    detector: str
    feature: str | None
    statistic: float
    threshold: float
    p_value: float | None
    window_size: int
    position: int
    evidence: dict[str, Any] = field(default_factory=dict)


class ArmMonitor:
    """Inputs, scores and errors of one ``(model, version, arm)``.

    ``feature_names=None`` builds a monitor whose inputs are not known yet (its
    outcomes came first); :meth:`watch_inputs` names them later.
    """

    def __init__(
        self,
        key: MonitorKey,
        feature_names: tuple[str, ...] | None,
        reference: ReferenceProfile | None,
        config: DriftConfig,
    ) -> None:
        self.key, self.config = key, config
        self.inputs: WindowStream | None = None
        self._inputs_blob: bytes | None = None  # restored before the inputs were named
        self.scores = WindowStream((SCORE,), None, ("ks",), config)
        self.errors = {name: make_detector(name) for name in config.error_detectors}
        self.outcomes_seen = 0
        self.error_flags = 0  # flags of any error detector, episodes included
        self._last_error_flag: int | None = None  # outcome position of the latest flag
        if feature_names is not None:
            self.watch_inputs(feature_names, reference)

    def watch_inputs(
        self, feature_names: tuple[str, ...], reference: ReferenceProfile | None
    ) -> None:
        """Name the input columns (once); the first call builds the input tests."""
        names = tuple(feature_names)
        if self.inputs is not None:
            if names != self.inputs.names:
                raise InvalidValue(
                    f"{self.key.label()}: rows name features {list(names)}, but this monitor "
                    f"watches {list(self.inputs.names)}"
                )
            return
        if reference is not None and tuple(reference.feature_names) != names:
            reference = None  # a profile of other columns cannot be compared; use a baseline
        self.inputs = WindowStream(names, reference, self.config.tests, self.config)
        if self._inputs_blob is not None:
            blob, self._inputs_blob = self._inputs_blob, None
            self.inputs.restore(blob)

    def observe(
        self,
        rows: np.ndarray,
        scores: np.ndarray,
        positions: np.ndarray | None = None,
        times: np.ndarray | None = None,
    ) -> list[DriftAlarm]:
        """Fold in scored rows (``[n, k]``) and their scores (``[n]``), in order.

        ``positions[i]``: the record row ``i`` is in the stream (1-based), when
        rows are a sample of the records; by default every row is a record.
        ``times[i]``: its event time (ms), which keeps a signal in its alarm episode
        while rows older than the alarm's arrive (partitions read out of step).
        """
        if self.inputs is None:
            raise InvalidValue(f"{self.key.label()}: watch_inputs() before observe()")
        alarms = [
            self._window_alarm("input", self.inputs, fired)
            for fired in self.inputs.update(rows, positions, times)
        ]
        alarms += [
            self._window_alarm("score", self.scores, fired)
            for fired in self.scores.update(np.asarray(scores)[:, None], positions, times)
        ]
        return alarms

    def observe_errors(self, errors: np.ndarray) -> list[DriftAlarm]:
        """Fold in a 0/1 error stream (1 = the prediction was wrong), in order.

        The detectors step together, value by value (River's detectors are
        per-value Python anyway), so an alarm carries every detector's reading
        at that outcome. An alarm resets them all: the new error rate is the new
        normal, and a slower detector does not report the same change later.
        """
        values = np.asarray(errors)
        if values.ndim != 1 or not np.isin(values, (0, 1)).all():
            raise InvalidValue(f"{self.key.label()}: errors must be a 1-D array of 0 and 1")
        alarms = []
        for x in values.astype(np.int64).tolist():
            self.outcomes_seen += 1
            flagged = []
            for name, detector in self.errors.items():
                if detector.update(x).drift_detected:
                    flagged.append(name)
            if not flagged:
                continue
            position = self.outcomes_seen
            last, self._last_error_flag = self._last_error_flag, position
            self.error_flags += len(flagged)
            if last is not None and position - last <= self.config.error_rearm:
                continue  # the episode goes on: one change, one alarm
            alarms.append(self._error_alarm(position, flagged))
            for detector in self.errors.values():
                detector.reset()
        return alarms

    def _error_alarm(self, position: int, flagged: list[str]) -> DriftAlarm:
        readings = {name: detector.reading() for name, detector in self.errors.items()}
        first = flagged[0]
        reading = readings[first]
        return DriftAlarm(
            key=self.key,
            stream="error",
            detector="+".join(self.errors),
            feature=None,
            statistic=float(reading.statistic),
            threshold=float(reading.threshold),
            p_value=reading.p_value,
            window_size=int(reading.window_size),
            position=position,
            evidence={
                "stream": "error",
                "decided_by": first,
                "flagged": list(flagged),
                "parameters": self.errors[first].params(),
                "outcomes_seen": position,
                "details": dict(reading.details),
                "detectors": {
                    name: {
                        "parameters": self.errors[name].params(),
                        "statistic": float(r.statistic),
                        "threshold": float(r.threshold),
                        "p_value": r.p_value,
                        "window_size": int(r.window_size),
                        "details": dict(r.details),
                    }
                    for name, r in readings.items()
                },
                "rearm_outcomes": self.config.error_rearm,
                "config": self.config.params(),
            },
        )

    def _window_alarm(self, stream: str, source: WindowStream, fired: Fired) -> DriftAlarm:
        j, best = fired.column, fired.decided_by
        result = fired.results[best]
        tests = {
            r.test: {
                "statistic": float(r.statistic[j]),
                "p_value": float(r.p_value[j]),
                "adjusted_p_value": float(fired.adjusted[i]),
                "min_effect": float(r.threshold),
                "significant": bool(fired.significant[i]),
            }
            for i, r in enumerate(fired.results)
        }
        return DriftAlarm(
            key=self.key,
            stream=stream,
            detector=source.label,
            feature=result.feature_names[j] if stream == "input" else None,
            statistic=float(result.statistic[j]),
            threshold=float(self.config.alpha),
            p_value=float(result.p_value[j]),
            window_size=int(result.rows),
            position=fired.position,
            evidence={
                "stream": stream,
                "reference": source.reference_source,
                "reference_n": int(result.reference_n),
                "window_rows": int(result.rows),
                "window_index": int(result.window_index),
                "decided_by": result.test,
                "adjusted_p_value": float(fired.adjusted[best]),
                "tests": tests,
                "multiplicity": fired.method,
                "hypotheses": int(fired.hypotheses),
                "features_tested": len(result.feature_names),
                "debounce": {"k": self.config.k, "n": self.config.n},
                "config": self.config.params(),
            },
        )

    def summary(self) -> dict[str, Any]:
        """What this monitor has seen and which signals are in an alarm episode (for the API)."""
        alarming = [] if self.inputs is None else self.inputs.in_alarm()
        alarming += self.scores.in_alarm()
        last = self._last_error_flag
        if last is not None and self.outcomes_seen - last <= self.config.error_rearm:
            alarming.append(f"{'+'.join(self.errors)}:error")
        return {
            "model": self.key.model,
            "version": self.key.version,
            "arm": self.key.arm,
            "rows_tested": 0 if self.inputs is None else self.inputs.seen,
            "reference": None if self.inputs is None else self.inputs.reference_source,
            "outcomes_seen": self.outcomes_seen,
            "in_alarm": alarming,
        }

    def snapshot(self) -> bytes:
        parts = {"scores": self.scores.snapshot()}
        inputs = self.inputs.snapshot() if self.inputs is not None else self._inputs_blob
        if inputs is not None:
            parts["inputs"] = inputs
        parts |= {f"error:{name}": d.snapshot() for name, d in self.errors.items()}
        meta = {
            "key": [self.key.model, self.key.version, self.key.arm],
            "outcomes_seen": self.outcomes_seen,
            "error_flags": self.error_flags,
            "last_error_flag": self._last_error_flag,
        }
        return pack("arm-monitor", parts, meta)

    def restore(self, blob: bytes) -> None:
        parts, meta = unpack("arm-monitor", blob)
        if MonitorKey.from_list(meta["key"]) != self.key:
            raise SnapshotError(f"snapshot of monitor {meta['key']}, not {self.key.label()}")
        self.scores.restore(parts["scores"])
        if "inputs" in parts:
            if self.inputs is not None:
                self.inputs.restore(parts["inputs"])
            else:
                self._inputs_blob = parts["inputs"]
        for name, detector in self.errors.items():
            detector.restore(parts[f"error:{name}"])
        self.outcomes_seen = meta["outcomes_seen"]
        self.error_flags = meta["error_flags"]
        self._last_error_flag = meta["last_error_flag"]
