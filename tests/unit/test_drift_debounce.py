"""K-of-N alarm episodes: when they start, how they stay silent, when they re-arm."""

from __future__ import annotations

import numpy as np
import pytest

from driftline.drift.debounce import KOfN
from driftline.drift.exceptions import InvalidDetectorConfig, InvalidValue, SnapshotError


def _run(debounce: KOfN, flags: str) -> str:
    """Feed a one-stream flag string ("1" flagged, "." clean); "A" marks alarm starts."""
    return "".join("A" if debounce.update([c == "1"])[0] else "." for c in flags)


class TestEpisodes:
    def test_two_of_three(self):
        assert _run(KOfN(2, 3, 1), "1.1") == "..A"
        assert _run(KOfN(2, 3, 1), "1..1") == "...."  # the first flag left the window

    def test_no_repeat_while_in_episode_then_rearm_after_n_clean(self):
        debounce = KOfN(2, 3, 1)
        assert _run(debounce, "11111") == ".A..."
        assert debounce.in_episode.tolist() == [True]
        assert _run(debounce, "..") == ".."
        assert debounce.in_episode.tolist() == [True]  # two clean of three: still in episode
        assert _run(debounce, ".") == "."
        assert debounce.in_episode.tolist() == [False]  # third clean window re-arms
        assert _run(debounce, "11") == ".A"  # needs k fresh flags again

    def test_flag_inside_the_clean_run_restarts_the_count(self):
        # flags two windows apart keep the episode alive; only three clean re-arm
        assert _run(KOfN(1, 3, 1), "1..1..1...1") == "A.........A"

    def test_one_of_one_alarms_on_every_flag_after_a_clean_window(self):
        assert _run(KOfN(1, 1, 1), "11.1.") == "A..A."

    def test_streams_are_independent(self):
        debounce = KOfN(2, 2, 3)
        first = debounce.update(np.array([True, True, False]))
        second = debounce.update(np.array([True, False, True]))
        third = debounce.update(np.array([True, True, True]))
        assert first.tolist() == [False, False, False]
        assert second.tolist() == [True, False, False]
        assert third.tolist() == [False, False, True]
        assert debounce.in_episode.tolist() == [True, False, True]
        assert debounce.n_seen == 3

    def test_hysteresis_grey_windows_do_not_rearm(self):
        # "1" flagged, "~" near the threshold (not flagged, not quiet), "." quiet.
        def run(debounce: KOfN, windows: str) -> str:
            return "".join(
                "A" if debounce.update([c == "1"], [c == "."])[0] else "." for c in windows
            )

        debounce = KOfN(2, 3, 1)
        assert run(debounce, "11~~~1~~~1") == ".A........"  # hovering: one alarm
        assert run(debounce, "...11") == "....A"  # three quiet windows re-arm it

    def test_accepts_zero_one_integers(self):
        assert KOfN(1, 2, 2).update(np.array([0, 1])).tolist() == [False, True]


class TestState:
    def test_snapshot_restore_continues_identically(self):
        flags = np.random.default_rng(0).uniform(size=(60, 8)) < 0.3
        debounce = KOfN(3, 5, 8)
        for row in flags[:23]:
            debounce.update(row)
        fresh = KOfN(3, 5, 8)
        fresh.restore(debounce.snapshot())
        assert fresh.n_seen == 23
        np.testing.assert_array_equal(fresh.in_episode, debounce.in_episode)
        for row in flags[23:]:
            np.testing.assert_array_equal(fresh.update(row), debounce.update(row))

    def test_reset_and_params(self):
        debounce = KOfN(1, 4, 2)
        debounce.update([True, True])
        debounce.reset()
        assert debounce.in_episode.tolist() == [False, False] and debounce.n_seen == 0
        assert debounce.params() == {"k": 1, "n": 4, "n_streams": 2}

    def test_restore_refuses_other_shapes_and_garbage(self):
        debounce = KOfN(2, 3, 4)
        with pytest.raises(SnapshotError, match="n=5"):
            debounce.restore(KOfN(2, 5, 4).snapshot())
        with pytest.raises(SnapshotError, match="n_streams=3"):
            debounce.restore(KOfN(2, 3, 3).snapshot())
        with pytest.raises(SnapshotError):
            debounce.restore(b"\x00garbage")


class TestErrors:
    @pytest.mark.parametrize(
        ("k", "n", "n_streams", "named"),
        [(0, 3, 1, "k=0"), (4, 3, 1, "k=4"), (1, 65, 1, "n=65"), (1, 3, 0, "n_streams=0")],
    )
    def test_bad_params(self, k, n, n_streams, named):
        with pytest.raises(InvalidDetectorConfig, match=named):
            KOfN(k, n, n_streams)

    def test_bad_flags(self):
        debounce = KOfN(1, 2, 3)
        with pytest.raises(InvalidValue, match=r"\(3,\)"):
            debounce.update([True, False])
        with pytest.raises(InvalidValue, match="booleans"):
            debounce.update([0.5, 0, 1])
        assert debounce.n_seen == 0
