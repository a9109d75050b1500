#!/usr/bin/env python3
"""Issue 9's performance targets against the latest benchmark results: one table, met or missed.

    python bench/targets.py DIR

DIR holds the --json-out documents of bench/ingest.py (ingest.json), bench/storm.py (storm.json) and
bench/growth.py (growth.json); a missing one leaves its rows out. ``make bench`` writes them and runs this
last. The targets are reported, never asserted: the exit status is 0 whatever the figures are.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.stats import text_table  # noqa: E402

# the reference the issue gives: a well-known open-source alert manager on this kind of machine
REFERENCE = {1: 110.0, 50: 420.0}
MESSAGES_PER_MINUTE = 20
RSS_LIMIT_MB = 150.0
P99_ACK_MS = 50.0
SEND_P50_MS = 250.0
# "no growth": a slope under this while alerts keep arriving (the second half, after warm-up)
SLOPE_LIMIT_MIB_PER_MIN = 0.5


def load(directory: Path, name: str) -> dict[str, Any] | None:
    path = directory / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def verdict(ok: bool | None) -> str:
    return "-" if ok is None else ("met" if ok else "MISSED")


def ingest_rows(doc: dict[str, Any]) -> list[tuple[str, ...]]:
    rows = []
    for per_payload, target in ((1, 2500.0), (50, 10_000.0)):
        for sc in (s for s in doc["scenarios"] if s["per_payload"] == per_payload):
            rate = sc.get("alerts_accepted_per_s")
            ref = REFERENCE[per_payload]
            rows.append((f"ingest {per_payload}/request, concurrency {sc['concurrency']}", f">= {target:,.0f} alerts/s",
                         "-" if rate is None else f"{rate:,.0f} alerts/s ({rate / ref:.1f}x the reference {ref:g})",
                         verdict(None if rate is None else rate >= target and sc.get("verify_ok"))))
    for sc in (s for s in doc["scenarios"] if s["per_payload"] == 1):
        p99 = (sc.get("ack_latency_ms") or {}).get("p99")
        rows.append((f"ack p99, 1/request, concurrency {sc['concurrency']}", f"<= {P99_ACK_MS:g} ms",
                     "-" if p99 is None else f"{p99:.0f} ms", verdict(None if p99 is None else p99 <= P99_ACK_MS)))
    latency = doc.get("webhook_to_send_message") or {}
    p50 = (latency.get("send_ms") or {}).get("p50")
    rows.append(("webhook -> sendMessage p50 (rules)", f"<= {SEND_P50_MS:g} ms",
                 "-" if p50 is None else f"{p50:.0f} ms (p99 {latency['send_ms']['p99']:.0f} ms)",
                 verdict(None if p50 is None else p50 <= SEND_P50_MS)))
    return rows


def storm_rows(doc: dict[str, Any]) -> list[tuple[str, ...]]:
    rows = []
    by_name = {r["scenario"]: r for r in doc["results"]}
    storm = by_name.get("storm")
    if storm and "verify" in storm:
        p = storm["plan"]
        what = f"storm {p['alerts']:,} alerts / {p['identities']} ids / {p['seconds']:g} s"
        stored = storm["alerts_stored"]["instances"]
        rows.append((f"{what}: stored and grouped", "all", (f"{stored:,} of {storm['alerts_acked']:,}, "
                     f"{storm['ungrouped_rows']} ungrouped, {storm['incidents_of_run']} incidents"),
                     verdict(storm["verify"].get("ok") and not storm["ungrouped_rows"] and stored == storm["alerts_acked"])))
        for chat, c in storm["chats"].items():
            kind = "Telegram group" if chat.startswith("tg:") else "WeCom robot"
            rows.append((f"{what}: messages/min, {kind}", f"<= ~{MESSAGES_PER_MINUTE} in any 60 s",
                         f"{c['max_per_60s']} (per minute {c['per_minute']})",
                         verdict(c["max_per_60s"] <= MESSAGES_PER_MINUTE)))
        failed = storm["app_log"].get("outbox_failed", 0)
        rows.append((f"{what}: unhandled 429", "none", (f"{failed} failed rows; {storm['telegram_429']} x 429 and "
                     f"{storm['wecom_45009']} x 45009 answered, all retried"), verdict(failed == 0 and storm["drained"])))
        rows.append((f"{what}: backlog drained", "(reported)", (f"{storm['backlog_empty_s_after_start']} s after the "
                     f"storm began, {storm['drain_s_after_storm']} s after its end"), "-"))
    memory = by_name.get("memory")
    if memory and "rss_settled_mib" in memory:
        rows.append((f"RSS after {memory['alerts_accepted']:,} alerts", f"<= {RSS_LIMIT_MB:g} MB",
                     f"{memory['rss_settled_mib'] * 1.048576:.0f} MB (idle at start {memory['rss_before_mib'] * 1.048576:.0f} MB)",
                     verdict(memory["rss_settled_mib"] * 1.048576 <= RSS_LIMIT_MB)))
    soak = by_name.get("soak")
    if soak and soak.get("rss"):
        trend = soak["rss"]["trend"]
        rows.append((f"RSS over a {soak['plan']['seconds'] / 60:g}-minute storm", "no growth",
                     (f"{trend['start_mib']} -> {trend['end_mib']} MiB while alerts arrive, second-half slope "
                      f"{trend['slope_mib_per_min']} MiB/min"), verdict(abs(trend["slope_mib_per_min"] or 0) < SLOPE_LIMIT_MIB_PER_MIN)))
    return rows


def growth_rows(doc: dict[str, Any]) -> list[tuple[str, ...]]:
    ok = [r for r in doc["results"] if "error" not in r]
    if len(ok) < 2:
        return []
    small, big = ok[0], ok[-1]
    ingest_ratio = big["alerts_per_s"] / small["alerts_per_s"] if small["alerts_per_s"] else None
    # the generated day grows with the database (the same 30 days hold more): an indexed report costs the same
    # per alert of the day, whatever the table's size; a scan of the whole table would cost more per alert
    per_k = [r["report_median_s"] * 1000 / max(1, r["daily_alerts"] / 1000) for r in (small, big)]
    span = f"{small['alerts']:,} -> {big['alerts']:,} stored"
    return [
        (f"ingest alerts/s, {span}", "flat", (f"{small['alerts_per_s']:.0f} -> {big['alerts_per_s']:.0f} "
         f"({ingest_ratio:.2f}x)"), verdict(ingest_ratio is not None and ingest_ratio >= 0.8)),
        (f"daily report, {span}", "flat per alert of the day",
         (f"{small['report_median_s'] * 1000:.0f} -> {big['report_median_s'] * 1000:.0f} ms for "
         f"{small['daily_alerts']:,} -> {big['daily_alerts']:,} alerts of the day = {per_k[0]:.1f} -> {per_k[1]:.1f} "
         "ms per 1,000"), verdict(per_k[1] <= 1.5 * per_k[0])),
    ]


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    directory = Path(args[0])
    rows: list[tuple[str, ...]] = []
    modes = []
    for name, build in (("ingest", ingest_rows), ("storm", storm_rows), ("growth", growth_rows)):
        doc = load(directory, name)
        if doc is not None:
            rows += build(doc)
            modes.append(f"{name} {doc.get('mode', '?')} ({doc.get('when', '?')})")
    if not rows:
        print(f"no results in {directory}", file=sys.stderr)
        return 0
    print("\nissue 9 targets: " + "; ".join(modes))
    print(text_table(("target", "wanted", "measured", "verdict"), rows, left=(0, 1, 2, 3)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
