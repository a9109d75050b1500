"""The benchmark scripts' pure helpers (bench/stats.py): the figures in the README's Performance section come
from them, so they are checked like product code."""

from __future__ import annotations

import pytest

from bench.stats import (
    max_in_window,
    parse_vmrss_kib,
    per_minute_series,
    rss_summary,
    slope,
    split_evenly,
    text_table,
)


def test_max_in_window_counts_the_busiest_minute() -> None:
    times = [0.0, 1.0, 2.0, 50.0, 61.0, 62.0, 63.0, 64.0]
    # [2, 62) holds 2, 50, 61: three; [50, 110) holds 50, 61, 62, 63, 64: five
    assert max_in_window(times, 60.0) == 5


def test_max_in_window_events_a_full_window_apart_are_separate() -> None:
    assert max_in_window([0.0, 60.0, 120.0], 60.0) == 1
    assert max_in_window([0.0, 59.999], 60.0) == 2


def test_max_in_window_at_the_limit_and_over_it() -> None:
    at_limit = [i * 3.0 for i in range(40)]  # one every 3 s: 20 in any 60 s, never 21
    assert max_in_window(at_limit, 60.0) == 20
    assert max_in_window([*at_limit, 59.5], 60.0) == 21


def test_max_in_window_ignores_order_and_handles_nothing() -> None:
    assert max_in_window([], 60.0) == 0
    assert max_in_window([5.0, 1.0, 3.0], 60.0) == 3


def test_per_minute_series_buckets_from_the_start() -> None:
    assert per_minute_series([10.0, 11.0, 75.0, 200.0, 5.0], start=10.0) == [2, 1, 0, 1]
    assert per_minute_series([], start=0.0) == []


def test_parse_vmrss_reads_kib() -> None:
    status = "Name:\tpython\nVmPeak:\t  300000 kB\nVmRSS:\t  238512 kB\nThreads:\t4\n"
    assert parse_vmrss_kib(status) == 238512
    assert parse_vmrss_kib("Name:\tzombie\nState:\tZ (zombie)\n") is None


def test_rss_summary_slope_of_the_second_half() -> None:
    warm_up = [(float(t), 200.0 + t) for t in range(0, 60, 2)]  # grows 1 MiB/s while warming up
    flat = [(float(t), 260.0) for t in range(60, 180, 2)]
    summary = rss_summary(warm_up + flat)
    assert summary["start_mib"] == 200.0
    assert summary["peak_mib"] == 260.0
    assert summary["end_mib"] == 260.0
    assert summary["slope_mib_per_min"] == 0.0

    leaking = [(float(t), 200.0 + t / 60) for t in range(0, 600, 5)]  # 1 MiB a minute, all along
    assert rss_summary(leaking)["slope_mib_per_min"] == pytest.approx(1.0)
    assert rss_summary([])["peak_mib"] is None


def test_slope_degenerate_inputs() -> None:
    assert slope([]) == 0.0
    assert slope([(1.0, 5.0), (1.0, 7.0)]) == 0.0
    assert slope([(0.0, 1.0), (2.0, 5.0)]) == pytest.approx(2.0)


def test_split_evenly() -> None:
    assert split_evenly(10_000, 12) == [834] * 4 + [833] * 8
    assert sum(split_evenly(7, 3)) == 7
    with pytest.raises(ValueError, match="parts"):
        split_evenly(5, 0)


def test_text_table_aligns_columns() -> None:
    out = text_table(("name", "n"), [("storm", 20), ("soak", None)]).splitlines()
    assert out[0] == "name    n"
    assert set(out[1]) == {"-"}
    assert out[2] == "storm  20"
    assert out[3] == "soak    -"
