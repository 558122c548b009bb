"""ArmMonitor: what fires, where, once per shift, and that state survives a snapshot."""

from __future__ import annotations

import numpy as np
import pytest

from driftline.drift.config import DriftConfig
from driftline.drift.exceptions import InvalidDetectorConfig, InvalidValue, SnapshotError
from driftline.drift.monitor import ArmMonitor, MonitorKey
from driftline.drift.packing import pack, unpack
from driftline.drift.profile import ReferenceProfile

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
    def test_half_sigma_shift_in_one_feature_is_one_alarm_with_both_tests(self, reference):
        monitor = ArmMonitor(KEY, NAMES, reference, DriftConfig())
        alarms = _feed(monitor, *_stream(40_000, shift_at=20_000))
        inputs = [a for a in alarms if a.stream == "input"]
        # KS and PSI are one family: one shift of one feature is one alarm.
        assert [(a.detector, a.feature) for a in inputs] == [("ks+psi", "f03")]
        alarm = inputs[0]
        # Windows of 1000, 2 of 3 significant: the second shifted window closes at 22,000.
        assert alarm.position == 22_000
        tests = alarm.evidence["tests"]
        assert set(tests) == {"ks", "psi"}
        assert tests["ks"]["p_value"] < 1e-10 and tests["ks"]["statistic"] > 0.1
        assert tests["psi"]["statistic"] >= 0.1 and tests["psi"]["significant"]
        decided = tests[alarm.evidence["decided_by"]]
        assert (alarm.statistic, alarm.p_value) == (decided["statistic"], decided["p_value"])
        assert alarm.evidence["reference"] == "training"
        assert alarm.evidence["multiplicity"] == "bh" and alarm.evidence["features_tested"] == 16
        assert alarm.evidence["hypotheses"] == 32  # 16 features x 2 tests, one family
        assert alarm.evidence["adjusted_p_value"] <= 0.001

    def test_either_test_can_carry_the_alarm(self, reference):
        # PSI can never reach an effect of 10: KS alone decides, PSI's numbers still come along.
        monitor = ArmMonitor(KEY, NAMES, reference, DriftConfig(psi_min=10.0))
        alarms = [
            a for a in _feed(monitor, *_stream(30_000, shift_at=20_000)) if a.stream == "input"
        ]
        assert [(a.detector, a.feature, a.position) for a in alarms] == [("ks+psi", "f03", 22_000)]
        evidence = alarms[0].evidence
        assert evidence["decided_by"] == "ks" and not evidence["tests"]["psi"]["significant"]
        assert evidence["tests"]["psi"]["min_effect"] == 10.0

    def test_stationary_stream_raises_nothing(self, reference):
        monitor = ArmMonitor(KEY, NAMES, reference, DriftConfig())
        assert _feed(monitor, *_stream(60_000, shift_at=None, seed=5)) == []

    def test_one_alarm_per_episode_until_rearmed(self, reference):
        monitor = ArmMonitor(KEY, NAMES, reference, DriftConfig(tests=("ks",)))
        alarms = _feed(monitor, *_stream(60_000, shift_at=10_000))
        assert [(a.detector, a.position) for a in alarms if a.stream == "input"] == [("ks", 12_000)]
        summary = monitor.summary()
        assert summary["in_alarm"] == ["ks:f03"] and summary["rows_tested"] == 60_000

    def test_positions_count_records_when_rows_are_a_sample(self, reference):
        # Every 4th record is tested: a window of 1,000 rows spans 4,000 records.
        monitor = ArmMonitor(KEY, NAMES, reference, DriftConfig())
        x, scores = _stream(40_000, shift_at=20_000)
        positions = np.arange(4, 160_001, 4)  # row i is record 4 (i + 1)
        alarms = [a for a in monitor.observe(x, scores, positions) if a.stream == "input"]
        assert [a.position for a in alarms] == [88_000]  # the row of 22,000 is record 88,000

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

    def test_error_detectors_together_raise_one_alarm_per_change(self, reference):
        rng = np.random.default_rng(3)
        errors = (rng.random(8_000) < np.r_[np.full(4_000, 0.1), np.full(4_000, 0.6)]).astype(int)
        config = DriftConfig(error_detectors=("adwin", "hddm_a"))
        monitor = ArmMonitor(KEY, NAMES, reference, config)
        alarms = []
        for start in range(0, 8_000, 250):  # outcomes arrive in small batches
            alarms += monitor.observe_errors(errors[start : start + 250])
        assert len(alarms) == 1, [(a.evidence["decided_by"], a.position) for a in alarms]
        alarm = alarms[0]
        assert alarm.detector == "adwin+hddm_a" and 4_000 < alarm.position < 4_300
        assert set(alarm.evidence["detectors"]) == {"adwin", "hddm_a"}
        assert alarm.evidence["decided_by"] in alarm.evidence["flagged"]
        # The alarm reset both detectors: the slower one does not report the same change later.
        assert all(d.n_seen < 4_000 for d in monitor.errors.values())
        # Still in its episode: it re-arms after error_rearm (5,000) quiet outcomes.
        assert monitor.summary()["in_alarm"] == ["adwin+hddm_a:error"]

    def test_error_stream_rearms_after_quiet_outcomes(self, reference):
        rng = np.random.default_rng(4)
        rates = np.r_[np.full(3_000, 0.1), np.full(3_000, 0.6), np.full(4_000, 0.05)]
        errors = (rng.random(10_000) < rates).astype(int)
        config = DriftConfig(error_detectors=("adwin", "hddm_a"), error_rearm=500)
        monitor = ArmMonitor(KEY, NAMES, reference, config)
        alarms = monitor.observe_errors(errors)
        # Up, then down (HDDM_A watches increases only; ADWIN both): two changes, two alarms.
        assert len(alarms) == 2
        assert 3_000 < alarms[0].position < 3_400 and 6_000 < alarms[1].position < 6_600

    def test_outcomes_first_then_inputs(self, reference):
        monitor = ArmMonitor(KEY, None, None, DriftConfig())
        monitor.observe_errors(np.zeros(100, dtype=int))
        with pytest.raises(InvalidValue, match="watch_inputs"):
            monitor.observe(*_stream(10, shift_at=None))
        blob = monitor.snapshot()
        monitor.watch_inputs(NAMES, reference)
        monitor.observe(*_stream(1_000, shift_at=None))
        resumed = ArmMonitor(KEY, None, None, DriftConfig())
        resumed.restore(monitor.snapshot())
        resumed.watch_inputs(NAMES, reference)  # the inputs' state waited for their names
        assert resumed.inputs.seen == 1_000 and resumed.outcomes_seen == 100
        with pytest.raises(InvalidValue, match="watches"):
            resumed.watch_inputs(tuple(f"g{i}" for i in range(16)), None)
        assert ArmMonitor(KEY, None, None, DriftConfig()).restore(blob) is None


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
            ({"sample_every": 0}, "sample_every"),
            ({"error_rearm": 0}, "error_rearm"),
            ({"rearm_alpha": 0.0001}, "rearm_alpha"),
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
