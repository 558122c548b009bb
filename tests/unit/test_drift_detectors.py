"""River adapters: one contract for every detector, pinned alarms on seeded streams, catalog."""

from __future__ import annotations

import inspect
import json
import math
import pickle
from functools import cache

import numpy as np
import pytest

from driftline.drift.adwin import ADWIN
from driftline.drift.base import DriftDetector
from driftline.drift.catalog import BINARY_DETECTORS, DETECTORS, make_detector
from driftline.drift.ddm import DDM
from driftline.drift.eddm import EDDM
from driftline.drift.exceptions import InvalidDetectorConfig, InvalidValue, SnapshotError
from driftline.drift.hddm_a import HDDM_A
from driftline.drift.hddm_w import HDDM_W
from driftline.drift.kswin import KSWIN
from driftline.drift.page_hinkley import PageHinkley

NAMES = sorted(DETECTORS)

# Non-default values, some ints where floats are allowed: params() must keep them as given.
CUSTOM = {
    "adwin": {"delta": 0.01, "clock": 16},
    "page_hinkley": {"threshold": 20, "mode": "up"},
    "kswin": {"alpha": 0.001, "seed": 7},
    "ddm": {"warm_start": 50, "drift_threshold": 3},
    "eddm": {"alpha": 0.9, "beta": 0.8},
    "hddm_a": {"drift_confidence": 0.0005, "two_sided_test": True},
    "hddm_w": {"lambda_val": 0.1, "two_sided_test": True},
}


@cache
def stream(name: str) -> np.ndarray:
    """Three regimes of 300 values, so every detector alarms more than once."""
    rng = np.random.default_rng(42)
    if name in BINARY_DETECTORS:
        rates = np.repeat([0.1, 0.5, 0.9], 300)
        return (rng.random(900) < rates).astype(np.int64)
    return rng.normal(np.repeat([0.0, 2.0, 4.0], 300), 1.0)


@cache
def reference_alarms(name: str) -> tuple[int, ...]:
    """Alarms of a fresh default detector fed one value at a time."""
    det = DETECTORS[name]()
    alarms = []
    for i, x in enumerate(stream(name).tolist()):
        det.update(x)
        if det.drift_detected:
            alarms.append(i)
    return tuple(alarms)


@pytest.fixture(params=NAMES)
def name(request: pytest.FixtureRequest) -> str:
    return request.param


class TestContract:
    def test_implements_the_protocol(self, name: str) -> None:
        det = DETECTORS[name]()
        assert isinstance(det, DriftDetector)
        assert det.name == name
        assert (det.n_seen, det.drift_detected) == (0, False)

    def test_params_exactly_as_given_and_json(self, name: str) -> None:
        cls = DETECTORS[name]
        sig = inspect.signature(cls.__init__).parameters.values()
        expected = {p.name: p.default for p in sig if p.name != "self"} | CUSTOM[name]
        params = cls(**CUSTOM[name]).params()
        assert params == expected
        assert {k: type(v) for k, v in params.items()} == {k: type(v) for k, v in expected.items()}
        assert json.loads(json.dumps(params)) == params
        assert repr(cls(**CUSTOM[name])) == (
            f"{cls.__name__}({', '.join(f'{k}={v!r}' for k, v in expected.items())})"
        )

    def test_update_many_matches_update(self, name: str) -> None:
        det = DETECTORS[name]()
        got = det.update_many(stream(name))
        assert got.dtype == np.int64
        assert len(reference_alarms(name)) >= 2
        assert got.tolist() == list(reference_alarms(name))
        assert det.n_seen == len(stream(name))

    def test_clone_has_equal_params_and_no_state(self, name: str) -> None:
        det = DETECTORS[name](**CUSTOM[name])
        det.update_many(stream(name)[:450])
        twin = det.clone()
        assert type(twin) is type(det) and twin is not det
        assert twin.params() == det.params()
        assert (twin.n_seen, twin.drift_detected) == (0, False)
        assert twin.update_many(stream(name)).tolist() == (
            DETECTORS[name](**CUSTOM[name]).update_many(stream(name)).tolist()
        )

    def test_pickle_round_trip(self, name: str) -> None:
        det = DETECTORS[name]()
        det.update_many(stream(name)[:450])
        copy = pickle.loads(pickle.dumps(det))
        assert copy.params() == det.params() and copy.n_seen == 450
        rest = stream(name)[450:]
        assert copy.update_many(rest).tolist() == det.update_many(rest).tolist()
        assert copy.reading() == det.reading()

    @pytest.mark.parametrize("where", ["mid_stream", "right_after_alarm"])
    def test_snapshot_resumes_exactly(self, name: str, where: str) -> None:
        ref = reference_alarms(name)
        cut = 450 if where == "mid_stream" else ref[0] + 1
        det = DETECTORS[name]()
        det.update_many(stream(name)[:cut])
        restored = DETECTORS[name]()
        restored.restore(det.snapshot())
        assert (restored.n_seen, restored.drift_detected) == (cut, det.drift_detected)
        assert restored.reading() == det.reading()
        later = [i for i in ref if i >= cut]
        assert later, "the stream must alarm after the cut for this test to mean anything"
        assert (restored.update_many(stream(name)[cut:]) + cut).tolist() == later

    def test_restore_refuses_another_detector(self, name: str) -> None:
        other = NAMES[(NAMES.index(name) + 1) % len(NAMES)]
        det = DETECTORS[name]()
        det.update_many(stream(name)[:10])
        with pytest.raises(SnapshotError, match=f"expected detector '{name}', found '{other}'"):
            det.restore(DETECTORS[other]().snapshot())
        assert det.n_seen == 10

    def test_restore_refuses_other_params(self, name: str) -> None:
        with pytest.raises(SnapshotError, match="expected params"):
            DETECTORS[name]().restore(DETECTORS[name](**CUSTOM[name]).snapshot())

    @pytest.mark.parametrize("damage", ["empty", "garbage", "truncated", "flipped", "version"])
    def test_restore_refuses_corrupt_bytes(self, name: str, damage: str) -> None:
        det = DETECTORS[name]()
        det.update_many(stream(name)[:20])
        snap = bytearray(det.snapshot())
        if damage == "flipped":
            snap[-5] ^= 0xFF
        elif damage == "version":
            snap[7] = 99
        bad = {"empty": b"", "garbage": b"not a snapshot at all", "truncated": snap[:-9]}.get(
            damage, bytes(snap)
        )
        with pytest.raises(SnapshotError, match="expected"):
            det.restore(bad)
        assert det.n_seen == 20

    def test_reset_forgets_state(self, name: str) -> None:
        det = DETECTORS[name]()
        det.update_many(stream(name))
        det.reset()
        assert (det.n_seen, det.drift_detected) == (0, False)
        assert det.reading().details["n_drifts"] == 0
        assert det.reading().details["last_drift_index"] is None
        assert det.update_many(stream(name)).tolist() == list(reference_alarms(name))

    @pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, "1.0", None, 1j])
    def test_refuses_unusable_value(self, name: str, bad: object) -> None:
        det = DETECTORS[name]()
        with pytest.raises(InvalidValue, match=name):
            det.update(bad)  # type: ignore[arg-type]
        assert det.n_seen == 0

    def test_update_many_validates_up_front(self, name: str) -> None:
        det = DETECTORS[name]()
        with pytest.raises(InvalidValue, match="index 3"):
            det.update_many(np.array([0.0, 1.0, 0.0, np.nan, 1.0]))
        with pytest.raises(InvalidValue, match="1-D"):
            det.update_many(np.zeros((2, 2)))
        assert det.n_seen == 0

    def test_error_streams_are_0_or_1(self, name: str) -> None:
        det = DETECTORS[name]()
        if name not in BINARY_DETECTORS:
            assert det.update(2.5).n_seen == 1
            return
        with pytest.raises(InvalidValue, match="2.5"):
            det.update(2.5)
        with pytest.raises(InvalidValue, match="2.5 at index 2"):
            det.update_many(np.array([0.0, 1.0, 2.5]))
        det.update(True).update(0).update(1.0).update(np.False_)
        assert det.update_many(np.array([True, False])).size == 0
        assert det.n_seen == 6

    def test_reading_explains_each_alarm(self, name: str) -> None:
        det = DETECTORS[name]()
        previous = -1
        for i, x in enumerate(stream(name).tolist()):
            det.update(x)
            if not det.drift_detected:
                continue
            r = det.reading()
            assert (r.n_seen, r.details["last_drift_index"]) == (i + 1, i)
            if name == "kswin":
                assert r.window_size == det.params()["window_size"]
            else:  # River starts over after an alarm: the test saw the values since
                assert r.window_size == i - previous
            previous = i
            assert r.details["last_drift_statistic"] == r.statistic
            if name == "eddm":  # EDDM alarms when its level falls below beta
                assert r.statistic < r.threshold
            elif name == "adwin":  # threshold is delta: River hides the cut bound
                assert r.statistic > 0 and r.window_size > r.details["width"]
            else:
                assert r.statistic >= r.threshold
        assert det.reading().details["n_drifts"] == len(reference_alarms(name))


def shifted_normal() -> np.ndarray:
    rng = np.random.default_rng(0)
    return np.concatenate([rng.normal(0.0, 1.0, 1000), rng.normal(1.0, 1.0, 1000)])


def error_jump() -> np.ndarray:
    rng = np.random.default_rng(0)
    return np.concatenate([rng.random(1000) < 0.1, rng.random(1000) < 0.5])


@pytest.mark.parametrize(
    ("det", "first"),
    [(ADWIN(), 1055), (PageHinkley(), 1048), (KSWIN(alpha=0.0001), 1025)],
    ids=repr,
)
def test_pinned_alarm_on_mean_shift(det: DriftDetector, first: int) -> None:
    alarms = det.update_many(shifted_normal())
    assert alarms.size and alarms[0] == first  # and so none before the shift at 1000


@pytest.mark.parametrize(
    ("det", "first"),
    [(DDM(), 1034), (EDDM(alpha=0.9, beta=0.8), 1084), (HDDM_A(), 1013), (HDDM_W(), 1013)],
    ids=repr,
)
def test_pinned_alarm_on_error_rate_jump(det: DriftDetector, first: int) -> None:
    alarms = det.update_many(error_jump())
    assert alarms.size and alarms[0] == first


def test_eddm_defaults_false_alarm_at_a_low_error_rate() -> None:
    # Pinned so a River upgrade that changes this shows up: at a 10 % error
    # rate EDDM's default levels alarm long before the jump.
    assert EDDM().update_many(error_jump())[:3].tolist() == [289, 674, 1006]


def test_adwin_alarms_only_on_its_clock() -> None:
    # River restarts the clock (and the window) after every alarm.
    alarms = ADWIN(clock=8).update_many(stream("adwin")).tolist()
    assert len(alarms) >= 2
    assert [(b - a) % 8 for a, b in zip([-1, *alarms], alarms, strict=False)] == [0] * len(alarms)


class TestCatalog:
    def test_names_and_binary_set(self) -> None:
        assert NAMES == ["adwin", "ddm", "eddm", "hddm_a", "hddm_w", "kswin", "page_hinkley"]
        assert sorted(BINARY_DETECTORS) == ["ddm", "eddm", "hddm_a", "hddm_w"]
        assert all(cls.name == key for key, cls in DETECTORS.items())

    def test_make_detector_passes_params(self) -> None:
        det = make_detector("kswin", {"alpha": 0.001, "seed": 3})
        assert isinstance(det, KSWIN) and det.params()["seed"] == 3
        assert make_detector("adwin", None).params() == ADWIN().params()

    def test_unknown_name_lists_known_ones(self) -> None:
        with pytest.raises(InvalidDetectorConfig, match="'cusum'.*adwin, ddm, eddm"):
            make_detector("cusum")

    def test_unknown_param_names_key_and_accepted(self) -> None:
        with pytest.raises(InvalidDetectorConfig, match="lambda.*accepted: min_instances, delta"):
            make_detector("page_hinkley", {"lambda": 10.0})

    @pytest.mark.parametrize(
        ("name", "params", "fragment"),
        [
            ("adwin", {"delta": -0.1}, "delta=-0.1 is out of range; expected 0 < delta < 1"),
            ("adwin", {"delta": 1.5}, "delta=1.5"),
            ("adwin", {"clock": 0}, "clock=0 is invalid; expected an int >= 1"),
            ("adwin", {"clock": 2.5}, "clock=2.5"),
            ("kswin", {"window_size": 50, "stat_size": 30}, "window_size=50.*int >= 60"),
            ("kswin", {"alpha": 0.0}, "alpha=0.0 is out of range"),
            ("kswin", {"alpha": 1e-9, "stat_size": 5, "window_size": 10}, "never be reached"),
            ("kswin", {"seed": None}, "seed=None"),
            ("page_hinkley", {"mode": "sideways"}, "mode='sideways'.*'up', 'down', 'both'"),
            ("page_hinkley", {"threshold": 0}, "threshold=0"),
            ("ddm", {"warm_start": True}, "warm_start=True"),
            ("ddm", {"warning_threshold": 4.0}, "warning_threshold=4.0 must be <="),
            ("eddm", {"beta": 0.96}, "beta=0.96 must be <= alpha=0.95"),
            ("hddm_a", {"drift_confidence": 0.01}, "drift_confidence=0.01 must be <="),
            ("hddm_w", {"lambda_val": 0.0}, "lambda_val=0.0 is out of range"),
            ("hddm_w", {"two_sided_test": 1}, "two_sided_test=1"),
        ],
    )
    def test_bad_values_name_param_value_and_range(
        self, name: str, params: dict, fragment: str
    ) -> None:
        with pytest.raises(InvalidDetectorConfig, match=fragment):
            make_detector(name, params)
