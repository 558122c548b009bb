"""Watching one model version on one arm: inputs, scores and errors.

An :class:`ArmMonitor` owns, for one ``(model, version, arm)``:

- the input window tests (KS, PSI) over all features against the version's
  training reference profile (training-serving skew and covariate drift), or,
  when the version was registered without one, against its first
  ``baseline_rows`` served rows (covariate drift only; the alarm says which);
- a KS test of the score distribution against the version's first
  ``baseline_rows`` scores on that arm (prediction drift);
- River detectors on the 0/1 error stream built from joined outcomes
  (concept drift).

Window tests pass multiplicity control across features, then k-of-n
debouncing, before they become a :class:`DriftAlarm`. Monitors are per arm so
drift that shows on a canary but not on the champion (a bad version) can be
told apart from drift on every arm (a shift in the world).
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from drift.catalog import make_detector
from drift.config import DriftConfig
from drift.debounce import KOfN
from drift.grid_bank import GridBank
from drift.multiplicity import adjust
from drift.packing import pack, unpack
from drift.window_tests import KSBank, PSIBank, WindowResult
from lineage.profile import ReferenceProfile

_BANKS = {"ks": KSBank, "psi": PSIBank}
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


@dataclass(frozen=True)
class DriftAlarm:
    """A debounced, multiplicity-controlled alarm; the fields of a DriftEvent but its id and time.

    ``stream`` is ``input``, ``score`` or ``error``; ``position`` is how many
    values of that stream the monitor had seen when it fired, which pins the
    alarm to a record and makes its event id stable across redelivery.
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


class _WindowTests:
    """The window tests of one stream: a bank over its columns, and a debouncer per test.

    The grid bank computes KS and PSI from one binning pass; a profile whose PSI
    bins are off its quantile grid gets the exact banks instead.
    """

    def __init__(
        self, tests: tuple[str, ...], reference: ReferenceProfile, config: DriftConfig
    ) -> None:
        self.config, self.tests = config, tests
        if "psi" not in tests or GridBank.supports(reference):
            self.banks = [
                GridBank(
                    reference,
                    window=config.window,
                    tests=tests,
                    psi_min=config.psi_min,
                    device=config.device,
                )
            ]
        else:
            self.banks = [
                _BANKS[test](
                    reference,
                    window=config.window,
                    min_effect=config.psi_min if test == "psi" else 0.0,
                    device=config.device,
                )
                for test in tests
            ]
        self.debounce = {test: KOfN(config.k, config.n, reference.n_features) for test in tests}

    def update(self, rows: np.ndarray) -> list[tuple[str, WindowResult, int, float]]:
        """(test, window, feature index, adjusted p) for each feature that starts an alarm."""
        results = [result for bank in self.banks for result in bank.update(rows)]
        results.sort(key=lambda r: (r.window_index, self.tests.index(r.test)))
        fired = []
        for result in results:
            method = self.config.method if len(result.p_value) > 1 else "none"
            adjusted = adjust(result.p_value, method)
            flags = (adjusted <= self.config.alpha) & result.effect_ok
            for j in np.flatnonzero(self.debounce[result.test].update(flags)):
                fired.append((result.test, result, int(j), float(adjusted[j])))
        return fired

    def in_alarm(self) -> list[tuple[str, int]]:
        return [
            (test, int(j))
            for test, kofn in self.debounce.items()
            for j in np.flatnonzero(kofn.in_episode)
        ]

    def snapshot(self) -> bytes:
        parts = {f"bank{i}": bank.snapshot() for i, bank in enumerate(self.banks)}
        parts |= {f"kofn:{test}": kofn.snapshot() for test, kofn in self.debounce.items()}
        return pack("window-tests", parts)

    def restore(self, blob: bytes) -> None:
        parts, _ = unpack("window-tests", blob)
        for i, bank in enumerate(self.banks):
            bank.restore(parts[f"bank{i}"])
        for test, kofn in self.debounce.items():
            kofn.restore(parts[f"kofn:{test}"])


class _Baseline:
    """Collects the first rows of a stream; becomes a ReferenceProfile when full."""

    def __init__(self, names: tuple[str, ...], rows: int) -> None:
        self.names, self.rows = names, rows
        # float32: features arrive as float32 anyway, and it halves the snapshots.
        self.buffer = np.empty((rows, len(names)), dtype=np.float32)
        self.filled = 0

    def take(self, values: np.ndarray) -> tuple[ReferenceProfile | None, np.ndarray]:
        """Absorb what fits; return (the profile once full, the rows left over)."""
        room = self.rows - self.filled
        head, rest = values[:room], values[room:]
        self.buffer[self.filled : self.filled + len(head)] = head
        self.filled += len(head)
        if self.filled < self.rows:
            return None, rest
        return ReferenceProfile.from_matrix(self.buffer, list(self.names)), rest

    def to_bytes(self) -> bytes:
        out = io.BytesIO()
        np.save(out, self.buffer[: self.filled], allow_pickle=False)
        return out.getvalue()

    def load(self, blob: bytes) -> None:
        values = np.load(io.BytesIO(blob), allow_pickle=False)
        self.filled = len(values)
        self.buffer[: self.filled] = values


class _Stream:
    """Window tests over one stream (inputs or scores), starting from a reference or a baseline."""

    def __init__(
        self,
        names: tuple[str, ...],
        reference: ReferenceProfile | None,
        tests: tuple[str, ...],
        config: DriftConfig,
    ) -> None:
        self.names, self.tests, self.config = names, tests, config
        self.reference_source = "training" if reference is not None else "serving_baseline"
        self.baseline = None if reference is not None else _Baseline(names, config.baseline_rows)
        self.reference = reference
        self.window_tests = self._build(reference) if reference is not None else None
        self.seen = 0

    def _build(self, reference: ReferenceProfile) -> _WindowTests:
        return _WindowTests(self.tests, reference, self.config)

    def update(self, values: np.ndarray) -> list[tuple[str, WindowResult, int, float, int]]:
        """(test, window, feature index, adjusted p, stream position) per alarm started."""
        self.seen += len(values)
        if self.reference is None:
            profile, values = self.baseline.take(values)
            if profile is None:
                return []
            self.reference = profile
            self.window_tests = self._build(profile)
        # Banks count only rows after the baseline; positions count the whole stream.
        before = self.baseline.rows if self.baseline is not None else 0
        return [
            (test, result, j, adjusted, before + result.first_row + result.rows)
            for test, result, j, adjusted in self.window_tests.update(values)
        ]

    def snapshot(self) -> bytes:
        parts = {"tests": self.window_tests.snapshot()} if self.window_tests is not None else {}
        if self.baseline is not None:
            # Once the baseline is a profile, the profile (a few kB) stands in for its rows.
            built = self.reference is not None
            parts["baseline"] = (
                json.dumps(self.reference.to_dict()).encode() if built else self.baseline.to_bytes()
            )
        meta = {"seen": self.seen, "built": self.reference is not None}
        return pack("stream", parts, meta)

    def restore(self, blob: bytes) -> None:
        parts, meta = unpack("stream", blob)
        self.seen = meta["seen"]
        if self.baseline is not None:
            if meta["built"]:
                self.baseline.filled = self.baseline.rows
                self.reference = ReferenceProfile.from_dict(json.loads(parts["baseline"]))
                self.window_tests = self._build(self.reference)
            else:
                self.baseline.load(parts["baseline"])
        if self.window_tests is not None:
            self.window_tests.restore(parts["tests"])


class ArmMonitor:
    """Inputs, scores and errors of one ``(model, version, arm)``."""

    def __init__(
        self,
        key: MonitorKey,
        feature_names: tuple[str, ...],
        reference: ReferenceProfile | None,
        config: DriftConfig,
    ) -> None:
        if reference is not None and tuple(reference.feature_names) != tuple(feature_names):
            reference = None  # a profile of other columns cannot be compared; use a baseline
        self.key, self.config = key, config
        self.inputs = _Stream(tuple(feature_names), reference, config.tests, config)
        self.scores = _Stream((SCORE,), None, ("ks",), config)
        self.errors = {name: make_detector(name) for name in config.error_detectors}
        self.outcomes_seen = 0

    def observe(self, rows: np.ndarray, scores: np.ndarray) -> list[DriftAlarm]:
        """Fold in scored rows (``[n, k]``) and their scores (``[n]``), in order."""
        alarms = [
            self._window_alarm("input", test, result, j, adjusted, position)
            for test, result, j, adjusted, position in self.inputs.update(rows)
        ]
        alarms += [
            self._window_alarm("score", test, result, j, adjusted, position)
            for test, result, j, adjusted, position in self.scores.update(scores[:, None])
        ]
        return alarms

    def observe_errors(self, errors: np.ndarray) -> list[DriftAlarm]:
        """Fold in a 0/1 error stream (1 = the prediction was wrong), in order."""
        start, self.outcomes_seen = self.outcomes_seen, self.outcomes_seen + len(errors)
        alarms = []
        for name, detector in self.errors.items():
            for index in detector.update_many(errors.astype(np.float64)):
                reading = detector.reading()
                alarms.append(
                    DriftAlarm(
                        key=self.key,
                        stream="error",
                        detector=name,
                        feature=None,
                        statistic=float(reading.statistic),
                        threshold=float(reading.threshold),
                        p_value=reading.p_value,
                        window_size=int(reading.window_size),
                        position=start + int(index) + 1,
                        evidence={
                            "stream": "error",
                            "parameters": detector.params(),
                            "outcomes_seen": start + int(index) + 1,
                            "details": dict(reading.details),
                        },
                    )
                )
        return alarms

    def _window_alarm(self, stream, test, result, j, adjusted, position) -> DriftAlarm:
        source = self.inputs if stream == "input" else self.scores
        return DriftAlarm(
            key=self.key,
            stream=stream,
            detector=test,
            feature=result.feature_names[j] if stream == "input" else None,
            statistic=float(result.statistic[j]),
            threshold=float(self.config.alpha),
            p_value=float(result.p_value[j]),
            window_size=int(result.rows),
            position=position,
            evidence={
                "stream": stream,
                "reference": source.reference_source,
                "reference_n": int(result.reference_n),
                "window_rows": int(result.rows),
                "window_index": int(result.window_index),
                "adjusted_p_value": adjusted,
                "multiplicity": self.config.method if stream == "input" else "none",
                "features_tested": len(result.feature_names),
                "min_effect": float(result.threshold),
                "debounce": {"k": self.config.k, "n": self.config.n},
                "config": self.config.params(),
            },
        )

    def summary(self) -> dict[str, Any]:
        """What this monitor has seen and which signals are in an alarm episode (for the API)."""
        alarming = []
        for stream in (self.inputs, self.scores):
            if stream.window_tests is not None:
                alarming += [f"{t}:{stream.names[j]}" for t, j in stream.window_tests.in_alarm()]
        return {
            "model": self.key.model,
            "version": self.key.version,
            "arm": self.key.arm,
            "rows_seen": self.inputs.seen,
            "reference": self.inputs.reference_source,
            "outcomes_seen": self.outcomes_seen,
            "in_alarm": alarming,
        }

    def snapshot(self) -> bytes:
        parts = {"inputs": self.inputs.snapshot(), "scores": self.scores.snapshot()}
        parts |= {f"error:{name}": d.snapshot() for name, d in self.errors.items()}
        meta = {"key": [self.key.model, self.key.version, self.key.arm]}
        meta["outcomes_seen"] = self.outcomes_seen
        return pack("arm-monitor", parts, meta)

    def restore(self, blob: bytes) -> None:
        parts, meta = unpack("arm-monitor", blob)
        self.inputs.restore(parts["inputs"])
        self.scores.restore(parts["scores"])
        for name, detector in self.errors.items():
            detector.restore(parts[f"error:{name}"])
        self.outcomes_seen = meta["outcomes_seen"]


class MonitorSet:
    """Every monitor fed from one source partition, and how far into it they have read.

    Kafka delivers at least once; ``next_offset`` makes folding exactly once:
    a redelivered message (offset below it) is scored again but not counted
    twice by the detectors. The whole set is one snapshot, written once per
    batch to the state table's changelog partition that matches the source
    partition, so a rebalanced partition takes its detectors with it.
    """

    def __init__(self, config: DriftConfig) -> None:
        self.config = config
        self.monitors: dict[MonitorKey, ArmMonitor] = {}
        self.next_offset = 0
        self._restored: dict[str, bytes] = {}

    def monitor(
        self, key: MonitorKey, feature_names: tuple[str, ...], reference: ReferenceProfile | None
    ) -> ArmMonitor:
        found = self.monitors.get(key)
        if found is None:
            found = ArmMonitor(key, feature_names, reference, self.config)
            blob = self._restored.pop(key.text(), None)
            if blob is not None:
                found.restore(blob)
            self.monitors[key] = found
        return found

    def snapshot(self) -> bytes:
        parts = {k.text(): m.snapshot() for k, m in self.monitors.items()}
        parts |= self._restored  # monitors not rebuilt since restore keep their state
        return pack("monitor-set", parts, {"next_offset": self.next_offset})

    def restore(self, blob: bytes) -> None:
        """Load a snapshot; each monitor is rebuilt lazily when its key is next seen."""
        parts, meta = unpack("monitor-set", blob)
        self.monitors.clear()
        self._restored = dict(parts)
        self.next_offset = int(meta["next_offset"])
