"""Pure helpers shared by the benchmark scripts: sliding-window message rates, RSS figures, chunk plans and
plain-text tables. No I/O except ``read_rss_kib`` (one /proc read); unit-tested in
tests/unit/test_bench_helpers.py."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any


def max_in_window(times: Iterable[float], window: float = 60.0) -> int:
    """The most events in any ``window`` seconds: the busiest half-open interval [t, t + window).

    Telegram's and WeCom's limits ("20 messages a minute") are counted this way, so this is the figure to
    hold against them: with events exactly ``window`` apart, both count as separate windows."""
    ordered = sorted(times)
    best, lo = 0, 0
    for hi, t in enumerate(ordered):
        while ordered[lo] <= t - window:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


def per_minute_series(times: Iterable[float], start: float, window: float = 60.0) -> list[int]:
    """Events in consecutive ``window``-second buckets from ``start`` (events before ``start`` are ignored)."""
    counts: list[int] = []
    for t in sorted(times):
        if t < start:
            continue
        i = int((t - start) // window)
        counts.extend([0] * (i + 1 - len(counts)))
        counts[i] += 1
    return counts


def parse_vmrss_kib(status_text: str) -> int | None:
    """VmRSS from the text of /proc/<pid>/status, in KiB (None when absent, e.g. a zombie)."""
    for line in status_text.splitlines():
        if line.startswith("VmRSS:"):
            parts = line.split()
            return int(parts[1]) if len(parts) >= 2 and parts[1].isdigit() else None
    return None


def read_rss_kib(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            return parse_vmrss_kib(f.read())
    except OSError:
        return None


def rss_summary(samples: Sequence[tuple[float, float]]) -> dict[str, Any]:
    """Samples are (seconds since the start, RSS MiB). Start, peak, end, and the trend of the second half (a
    least-squares slope in MiB per minute): the first half holds the warm-up (caches, the first incidents),
    so a leak shows as a slope that stays positive after it."""
    if not samples:
        return {"samples": 0, "start_mib": None, "peak_mib": None, "end_mib": None, "slope_mib_per_min": None}
    values = [v for _, v in samples]
    half = [s for s in samples if s[0] >= samples[0][0] + (samples[-1][0] - samples[0][0]) / 2]
    return {
        "samples": len(samples),
        "start_mib": round(values[0], 1),
        "peak_mib": round(max(values), 1),
        "end_mib": round(values[-1], 1),
        "slope_mib_per_min": None if len(half) < 3 else round(slope(half) * 60, 2),
    }


def slope(points: Sequence[tuple[float, float]]) -> float:
    """Least-squares slope of y over x (0.0 for fewer than two distinct x)."""
    n = len(points)
    if n < 2:
        return 0.0
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    if sxx == 0:
        return 0.0
    return sum((x - mx) * (y - my) for x, y in points) / sxx


def split_evenly(total: int, parts: int) -> list[int]:
    """``total`` in ``parts`` integers that differ by at most one, larger ones first."""
    if parts < 1:
        raise ValueError("parts must be >= 1")
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def text_table(head: Sequence[str], rows: Sequence[Sequence[Any]], left: Sequence[int] = (0,)) -> str:
    """A plain-text table: columns in ``left`` left-aligned, the others right-aligned; None shows as '-'."""
    cells = [[str(h) for h in head]] + [["-" if c is None else str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip()
             for r in cells]
    lines.insert(1, "-" * max(len(line) for line in lines))
    return "\n".join(lines)
