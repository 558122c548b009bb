"""What a drift monitor runs, as one frozen, validated value.

The streams layer builds it from ``DRIFTLINE_DRIFT_*`` settings; tests and the
evaluation harness build it directly. :meth:`DriftConfig.params` is what each
DriftEvent records, so an alarm can be traced to the exact configuration.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from driftline.drift.catalog import BINARY_DETECTORS, DETECTORS
from driftline.drift.exceptions import InvalidDetectorConfig
from driftline.drift.multiplicity import METHODS

if TYPE_CHECKING:
    from driftline.core.settings import DriftSettings

WINDOW_TESTS = ("ks", "psi")


@dataclass(frozen=True)
class DriftConfig:
    """Configuration of every monitor in a worker.

    - ``window``: rows per tumbling window of the input and score tests.
    - ``tests``: window tests on the inputs, any of ``ks`` and ``psi``.
    - ``method`` / ``alpha``: multiplicity control across features within a
      window (Benjamini-Hochberg at false-discovery rate ``alpha``, or
      Bonferroni at family-wise rate ``alpha``); the score test uses ``alpha``.
    - ``k`` of ``n``: a feature must be significant in ``k`` of its last ``n``
      windows before an alarm; it re-arms after ``n`` clean windows, where clean
      means every test's adjusted p-value is above ``rearm_alpha`` (or its PSI
      below ``psi_min``): a drift that hovers near ``alpha`` stays one alarm.
    - ``psi_min``: PSI below this is not an alarm, however small its p-value.
    - ``baseline_rows``: served rows that become the reference where a version
      has no training profile (inputs) and always for scores.
    - ``error_detectors``: River detectors on the 0/1 error stream from outcomes.
    - ``decision_threshold``: score at or above which a prediction counts as
      positive when outcomes are turned into errors.
    - ``device``: ``cpu`` (NumPy) or ``cuda`` (CuPy) for the window tests.
    - ``sample_every``: the window tests see one row in ``sample_every`` of each
      FeatureFrame (a stride from an offset hashed from the frame id, so the
      same rows whatever the partitioning); single records are all seen.
      Windows and ``baseline_rows`` count seen rows; alarm positions count records.
    - ``error_rearm``: after an error-stream alarm, further flags of any error
      detector belong to the same episode until this many outcomes pass
      without one; then the stream re-arms.
    """

    window: int = 1000
    tests: tuple[str, ...] = ("ks", "psi")
    method: str = "bh"
    alpha: float = 0.001
    rearm_alpha: float = 0.05
    k: int = 2
    n: int = 3
    psi_min: float = 0.1
    baseline_rows: int = 2000
    error_detectors: tuple[str, ...] = ("adwin", "hddm_a")
    decision_threshold: float = 0.5
    device: str = "cpu"
    sample_every: int = 16
    error_rearm: int = 5000

    def __post_init__(self) -> None:
        object.__setattr__(self, "tests", tuple(self.tests))
        object.__setattr__(self, "error_detectors", tuple(self.error_detectors))
        unknown = [t for t in self.tests if t not in WINDOW_TESTS]
        if unknown:
            raise InvalidDetectorConfig(
                f"unknown window test(s) {unknown}; choose from {list(WINDOW_TESTS)}"
            )
        if self.method not in METHODS:
            raise InvalidDetectorConfig(f"method {self.method!r} is not one of {list(METHODS)}")
        if not 0 < self.alpha < 1:
            raise InvalidDetectorConfig(f"alpha must be in (0, 1), got {self.alpha}")
        if not self.alpha <= self.rearm_alpha < 1:
            raise InvalidDetectorConfig(
                f"rearm_alpha must be in [alpha, 1) = [{self.alpha}, 1), got {self.rearm_alpha}"
            )
        if not 1 <= self.k <= self.n <= 64:
            raise InvalidDetectorConfig(f"need 1 <= k <= n <= 64, got k={self.k}, n={self.n}")
        if self.window < 20:
            raise InvalidDetectorConfig(f"window must be >= 20 rows, got {self.window}")
        if self.baseline_rows < self.window:
            raise InvalidDetectorConfig(
                f"baseline_rows ({self.baseline_rows}) must be at least one window ({self.window})"
            )
        bad = [d for d in self.error_detectors if d not in DETECTORS]
        if bad:
            raise InvalidDetectorConfig(
                f"unknown error detector(s) {bad}; choose from {sorted(DETECTORS)}"
            )
        not_binary = [d for d in self.error_detectors if d not in BINARY_DETECTORS | {"adwin"}]
        if not_binary:
            raise InvalidDetectorConfig(
                f"error detector(s) {not_binary} do not watch 0/1 streams; use "
                f"{sorted(BINARY_DETECTORS | {'adwin'})}"
            )
        if not 0 < self.decision_threshold < 1:
            raise InvalidDetectorConfig(
                f"decision_threshold must be in (0, 1), got {self.decision_threshold}"
            )
        if self.device not in ("cpu", "cuda"):
            raise InvalidDetectorConfig(f"device must be 'cpu' or 'cuda', got {self.device!r}")
        if not 1 <= self.sample_every <= 1024:
            raise InvalidDetectorConfig(
                f"sample_every must be in [1, 1024] (1 = every row), got {self.sample_every}"
            )
        if self.error_rearm < 1:
            raise InvalidDetectorConfig(f"error_rearm must be >= 1 outcome, got {self.error_rearm}")

    @classmethod
    def from_settings(cls, settings: DriftSettings, worker_device: str = "cpu") -> DriftConfig:
        """The configuration the ``DRIFTLINE_DRIFT_*`` settings describe, on ``worker_device``
        when they ask for ``auto``."""
        return cls(
            window=settings.window,
            tests=_names(settings.tests),
            method=settings.method,
            alpha=settings.alpha,
            k=settings.k,
            n=settings.n,
            psi_min=settings.psi_min,
            baseline_rows=settings.baseline_rows,
            error_detectors=_names(settings.error_detectors),
            decision_threshold=settings.decision_threshold,
            device=worker_device if settings.device == "auto" else settings.device,
            sample_every=settings.sample_every,
        )

    def params(self) -> dict[str, Any]:
        values = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}


def _names(listed: str) -> tuple[str, ...]:
    """``"ks, psi"`` -> ``("ks", "psi")``."""
    return tuple(name.strip() for name in listed.split(",") if name.strip())
