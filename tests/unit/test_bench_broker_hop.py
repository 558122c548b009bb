"""The broker-hop benchmark's summaries: p50/p99 per stretch of the run."""

from __future__ import annotations

import pytest

from bench.broker_hop import by_stretch, quantiles


def test_each_stretch_gets_its_own_quantiles_in_time_order() -> None:
    # 200 messages a second for 10 s: 1 ms hops in the first 5 s, 10 ms after.
    hops = [(i / 200, 1.0 if i < 1000 else 10.0) for i in range(2000)]
    stretches = by_stretch(hops, 5.0)
    assert [(start, count) for start, _, _, count in stretches] == [(0.0, 1000), (5.0, 1000)]
    assert stretches[0][1:3] == pytest.approx((1.0, 1.0))
    assert stretches[1][1:3] == pytest.approx((10.0, 10.0))


def test_a_stretch_too_short_for_a_p99_is_left_out() -> None:
    hops = [(i / 100, 2.0) for i in range(550)]  # 5.5 s: the last stretch has 50
    assert [start for start, *_ in by_stretch(hops, 5.0)] == [0.0]


def test_p99_reads_the_tail() -> None:
    p50, p99 = quantiles([1.0] * 980 + [50.0] * 20)
    assert p50 == 1.0
    assert p99 == pytest.approx(50.0)


def test_too_few_latencies_for_a_p99_is_an_error() -> None:
    with pytest.raises(ValueError, match="at least 100"):
        quantiles([1.0] * 99)
