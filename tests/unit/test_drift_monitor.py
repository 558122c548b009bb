"""ArmMonitor and MonitorSet: what fires, where, and that state survives a snapshot."""

from __future__ import annotations

import numpy as np
import pytest

from drift.config import DriftConfig
from drift.exceptions import InvalidDetectorConfig, SnapshotError
from drift.monitor import ArmMonitor, MonitorKey, MonitorSet
from drift.packing import pack, unpack
from lineage.profile import ReferenceProfile

NAMES = tuple(f"f{i:02d}" for i in range(16))
KEY = MonitorKey("demo", 1, "champion")


@pytest.fixture(scope="module")
def reference() -> ReferenceProfile:
    rng = np.random.default_rng(0)
    return ReferenceProfile.from_matrix(rng.normal(size=(20_000, 16)), list(NAMES))


def _stream(rows: int, shift_at: int | None, feature: int = 3, seed: int = 1):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 16))
    if shift_at is not None:
        x[shift_at:, feature] += 0.5
    scores = 1 / (1 + np.exp(-x[:, 0]))
    return x, scores


def _feed(monitor, x, scores, step=700):
    alarms = []
    for start in range(0, len(x), step):
        alarms += monitor.observe(x[start : start + step], scores[start : start + step])
    return alarms


class TestInputs:
    def test_half_sigma_shift_in_one_feature_fires_on_that_feature_only(self, reference):
        monitor = ArmMonitor(KEY, NAMES, reference, DriftConfig())
        alarms = _feed(monitor, *_stream(40_000, shift_at=20_000))
        inputs = [a for a in alarms if a.stream == "input"]
        assert {(a.detector, a.feature) for a in inputs} == {("ks", "f03"), ("psi", "f03")}
        # Windows of 1000, 2 of 3 significant: the second shifted window closes at 22,000.
        assert {a.position for a in inputs} == {22_000}
        ks = next(a for a in inputs if a.detector == "ks")
        assert ks.p_value < 1e-10 and ks.statistic > 0.1
        assert ks.evidence["reference"] == "training"
        assert ks.evidence["multiplicity"] == "bh" and ks.evidence["features_tested"] == 16
        assert ks.evidence["adjusted_p_value"] <= 0.001

    def test_stationary_stream_raises_nothing(self, reference):
        monitor = ArmMonitor(KEY, NAMES, reference, DriftConfig())
        assert _feed(monitor, *_stream(60_000, shift_at=None, seed=5)) == []

    def test_one_alarm_per_episode_until_rearmed(self, reference):
        monitor = ArmMonitor(KEY, NAMES, reference, DriftConfig(tests=("ks",)))
        alarms = _feed(monitor, *_stream(60_000, shift_at=10_000))
        assert [a.position for a in alarms if a.stream == "input"] == [12_000]
        summary = monitor.summary()
        assert summary["in_alarm"] == ["ks:f03"] and summary["rows_seen"] == 60_000

    def test_without_a_training_profile_the_first_rows_are_the_reference(self):
        config = DriftConfig(baseline_rows=5_000)
        monitor = ArmMonitor(KEY, NAMES, None, config)
        alarms = _feed(monitor, *_stream(30_000, shift_at=15_000))
        inputs = [a for a in alarms if a.stream == "input"]
        assert inputs and {a.feature for a in inputs} == {"f03"}
        assert all(a.evidence["reference"] == "serving_baseline" for a in inputs)
        assert all(a.position == 17_000 for a in inputs)

    def test_profile_of_other_columns_falls_back_to_a_baseline(self, reference):
        names = tuple(f"g{i}" for i in range(16))
        monitor = ArmMonitor(KEY, names, reference, DriftConfig())
        assert monitor.inputs.reference_source == "serving_baseline"


class TestScoresAndErrors:
    def test_score_shift_fires_a_score_alarm(self, reference):
        x, scores = _stream(30_000, shift_at=None)
        scores[15_000:] = np.clip(scores[15_000:] + 0.15, 0, 1)
        monitor = ArmMonitor(KEY, NAMES, reference, DriftConfig())
        alarms = [a for a in _feed(monitor, x, scores) if a.stream == "score"]
        assert len(alarms) == 1 and alarms[0].feature is None
        assert 15_000 < alarms[0].position <= 18_000
        assert alarms[0].evidence["reference"] == "serving_baseline"

    def test_error_rate_jump_fires_error_detectors(self, reference):
        rng = np.random.default_rng(3)
        errors = (rng.random(6_000) < np.r_[np.full(3_000, 0.1), np.full(3_000, 0.4)]).astype(int)
        monitor = ArmMonitor(KEY, NAMES, reference, DriftConfig(error_detectors=("adwin",)))
        alarms = monitor.observe_errors(errors)
        assert alarms and all(a.stream == "error" and a.detector == "adwin" for a in alarms)
        assert all(3_000 < a.position < 3_600 for a in alarms)
        assert alarms[0].evidence["parameters"] == monitor.errors["adwin"].params()


class TestState:
    def test_snapshot_mid_stream_resumes_with_identical_alarms(self, reference):
        x, scores = _stream(40_000, shift_at=20_000)
        errors = (np.random.default_rng(2).random(4_000) < 0.1).astype(int)
        errors[2_000:] = 1
        config = DriftConfig()
        straight = ArmMonitor(KEY, NAMES, reference, config)
        want = _feed(straight, x, scores) + straight.observe_errors(errors)

        first = ArmMonitor(KEY, NAMES, reference, config)
        got = _feed(first, x[:19_350], scores[:19_350])
        got += first.observe_errors(errors[:1_000])
        resumed = ArmMonitor(KEY, NAMES, reference, config)
        resumed.restore(first.snapshot())
        got += _feed(resumed, x[19_350:], scores[19_350:])
        got += resumed.observe_errors(errors[1_000:])
        assert sorted((a.stream, a.detector, a.feature or "", a.position) for a in got) == sorted(
            (a.stream, a.detector, a.feature or "", a.position) for a in want
        )
        assert any(a.stream == "input" for a in want) and any(a.stream == "error" for a in want)

    def test_monitor_set_restores_lazily_and_keeps_untouched_monitors(self, reference):
        config = DriftConfig()
        monitors = MonitorSet(config)
        x, scores = _stream(3_000, shift_at=None)
        monitors.monitor(KEY, NAMES, reference).observe(x, scores)
        other = MonitorKey("demo", 2, "canary")
        monitors.monitor(other, NAMES, reference).observe(x[:500], scores[:500])
        monitors.next_offset = 41
        restored = MonitorSet(config)
        restored.restore(monitors.snapshot())
        assert restored.next_offset == 41
        assert restored.monitor(KEY, NAMES, reference).inputs.seen == 3_000
        # The canary monitor was never touched after the restore: its state is kept as is.
        again = MonitorSet(config)
        again.restore(restored.snapshot())
        assert again.monitor(other, NAMES, reference).inputs.seen == 500

    def test_garbage_and_foreign_snapshots_are_refused(self, reference):
        monitor = ArmMonitor(KEY, NAMES, reference, DriftConfig())
        with pytest.raises(SnapshotError):
            monitor.restore(b"not a snapshot")
        with pytest.raises(SnapshotError, match="expected a arm-monitor"):
            monitor.restore(pack("monitor-set", {}, {}))


class TestConfigAndPacking:
    @pytest.mark.parametrize(
        ("kwargs", "match"),
        [
            ({"tests": ("ks", "chi2")}, "chi2"),
            ({"method": "holm"}, "holm"),
            ({"alpha": 1.5}, "alpha"),
            ({"k": 4, "n": 3}, "k <= n"),
            ({"window": 5}, "window"),
            ({"baseline_rows": 100}, "baseline_rows"),
            ({"error_detectors": ("nope",)}, "nope"),
            ({"error_detectors": ("kswin",)}, "0/1"),
            ({"device": "tpu"}, "device"),
        ],
    )
    def test_bad_config_names_the_setting(self, kwargs, match):
        with pytest.raises(InvalidDetectorConfig, match=match):
            DriftConfig(**kwargs)

    def test_params_are_json_ready(self):
        params = DriftConfig().params()
        assert params["tests"] == ["ks", "psi"] and params["window"] == 1000

    def test_pack_round_trip_and_corruption(self):
        blob = pack("x", {"a": b"1", "b": b"22"}, {"m": 1})
        assert unpack("x", blob) == ({"a": b"1", "b": b"22"}, {"m": 1})
        with pytest.raises(SnapshotError, match="trailing"):
            unpack("x", blob + b"!")
        with pytest.raises(SnapshotError, match="bad magic"):
            unpack("x", b"garbage")
