#!/usr/bin/env python3
"""alertpilot's cost-growth benchmark: does a bigger database make ingest or the daily report slower?

    python bench/growth.py [--quick] [--sizes 10000,100000,1000000] [--ingest-seconds 10] [--runs 3]
                           [--json-out FILE] [--keep]

For each size (default 10,000, 100,000 and 1,000,000 stored alerts; --quick: 10,000 and 100,000):

1. Fill. bench/report.py's generator writes 30 days of history into a fresh temporary SQLite file: the given
   number of alerts over a tenth as many incidents, with their proposals, executions, silences, knowledge and
   playbooks (the same shape and seed as ``make bench-report``).
2. Report. ``ReportService.context`` for the daily report (the previous local day), timed in this process as
   bench/report.py times it: the first run, then the median of --runs runs.
3. Ingest. alertpilot is started on that file as a user would (bench/ingest.py's AppProcess: this interpreter,
   <repo>/bot.py, a free loopback port, console channel), and alertstorm posts 1 alert per request with 8 in
   flight for --ingest-seconds (it stops sending at that deadline), 2,000 identities (then repeats), 20 %
   resolving; the verify hook (bench/verify_alertpilot.py) checks every acknowledged alert by fingerprint.

One table: rows per size, with ingest alerts/s, ack p50/p99, app CPU per alert, and the daily report's time.
Flat figures down the table mean the indexes carry the load; a column growing with the size would not.
Figures only: nothing is asserted on time. Exit status 1 when a size could not run or its verification
failed, else 0.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.ingest import ALERTSTORM, INGEST_TOKEN, VERIFY_HOOK, AppProcess, fmt, run_alertstorm  # noqa: E402
from bench.report import generate, report_periods, report_service, timed_runs  # noqa: E402
from bench.stats import text_table  # noqa: E402
from services.schedule import parse_hhmm  # noqa: E402
from storage.db import Database  # noqa: E402

IDENTITIES = 2000  # at most the verify hook's fingerprint mode (one GET per identity), not a page walk of 1M rows
SEED = 7


async def fill_and_time_report(url: str, alerts: int, runs: int, tz: ZoneInfo, at: Any) -> dict[str, Any]:
    db = Database(url)
    try:
        await db.create_schema()
        t0 = time.perf_counter()
        _, now, fired = await generate(db, incidents=max(1, alerts // 10), alerts=alerts, days=30, tz=tz, at=at,
                                       seed=SEED)
        filled = time.perf_counter() - t0
        service = report_service(db, now, tz, at)
        period = report_periods(now, fired, tz, at)["daily"]
        first = await timed_runs(1, lambda: service.context(period))
        rest = await timed_runs(runs, lambda: service.context(period))
        figures = (await service.context(period))["figures"]
        size = Path(db.engine.url.database or "").stat().st_size
    finally:
        await db.dispose()
    return {"fill_s": round(filled, 1), "db_mib": round(size / 2**20, 1), "daily_alerts": figures["alerts"],
            "report_first_s": round(first[0], 3), "report_median_s": round(statistics.median(rest), 3),
            "report_min_s": round(min(rest), 3)}


async def ingest(url: str, label: str, seconds: float, keep: bool) -> dict[str, Any]:
    app = AppProcess(label, {"ALERTPILOT_DATABASE_URL": url})
    result: dict[str, Any] = {}
    try:
        await app.start()
        await asyncio.sleep(3.0)  # start-up work (migrations check, catch-up jobs) out of the way
        out_file = app.dir / "alertstorm.jsonl"
        cmd = [
            sys.executable, str(ALERTSTORM),
            "--url", f"{app.base_url}/webhooks/alertmanager",
            "--header", f"Authorization: Bearer {INGEST_TOKEN}",
            "--total", str(IDENTITIES * 50), "--identities", str(IDENTITIES),
            "--per-payload", "1", "--concurrency", "8", "--resolve-fraction", "0.2", "--order", "phased",
            "--verify", f"{VERIFY_HOOK}:verify", "--verify-url", app.base_url, "--verify-wait", "30",
            "--max-seconds", str(seconds), "--timeout", "60",
            "--watch-pids", str(app.proc.pid if app.proc else ""),
            "--label", label, "--json-out", str(out_file),
        ]
        env = {**os.environ, "ALERTPILOT_VERIFY_MODE": "fingerprint"}
        await run_alertstorm(cmd, out_file, seconds + 300, env=env)
        rec = json.loads(out_file.read_text().strip().splitlines()[-1])
        result.update(
            alerts_accepted=rec["alerts_accepted"], alerts_per_s=rec["alerts_accepted_per_s"],
            ack_p50_ms=rec["latency_ms"]["p50"], ack_p99_ms=rec["latency_ms"]["p99"], errors=rec["errors"],
            app_cpu_ms_per_alert=rec.get("target_cpu_ms_per_alert"), wall_s=rec["wall_s"],
            verify_ok=bool(rec["verify"].get("ok")), verify=rec["verify"],
        )
    finally:
        app.stop()
        if not result.get("verify_ok"):
            result["app_log_tail"] = app.tail(1500)
        app.cleanup(keep or not result.get("verify_ok"))
    return result


def table(results: list[dict[str, Any]]) -> str:
    rows = []
    for r in results:
        if "error" in r:
            rows.append((f"{r['alerts']:,}", "ERROR " + r["error"][:70], *("",) * 8))
            continue
        rows.append((
            f"{r['alerts']:,}", f"{r['db_mib']:,.0f}", f"{r['daily_alerts']:,}", fmt(r["report_first_s"], 3),
            fmt(r["report_median_s"], 3), fmt(r["alerts_per_s"]), fmt(r["ack_p50_ms"]), fmt(r["ack_p99_ms"]),
            fmt(r["app_cpu_ms_per_alert"], 3), "OK" if r["verify_ok"] and not r["errors"] else "FAIL",
        ))
    return text_table(("stored alerts", "db MiB", "alerts in daily", "report first s", "report median s",
                       "ingest alerts/s", "ack p50 ms", "ack p99 ms", "app cpu ms/alert", "verify"), rows,
                      left=(9,))


async def amain(args: argparse.Namespace) -> int:
    if not ALERTSTORM.is_file():
        print(f"alertstorm not found at {ALERTSTORM}", file=sys.stderr)
        return 2
    sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else (
        [10_000, 100_000] if args.quick else [10_000, 100_000, 1_000_000])
    tz, at = ZoneInfo(args.timezone), parse_hhmm(args.at)
    started = time.perf_counter()
    results: list[dict[str, Any]] = []
    for alerts in sizes:
        workdir = Path(tempfile.mkdtemp(prefix=f"apbench-growth-{alerts}-"))
        url = f"sqlite+aiosqlite:///{workdir}/alertpilot.db"
        result: dict[str, Any] = {"alerts": alerts}
        t0 = time.perf_counter()
        print(f"\n=== {alerts:,} stored alerts", flush=True)
        try:
            result.update(await fill_and_time_report(url, alerts, args.runs, tz, at))
            print(f"  daily report: first {result['report_first_s']:.3f} s, median {result['report_median_s']:.3f} s "
                  f"({result['daily_alerts']:,} alerts in the day)", flush=True)
            result.update(await ingest(url, f"growth {alerts}", args.ingest_seconds, args.keep))
        except Exception as exc:  # one failed size must not hide the others' figures
            result["error"] = f"{type(exc).__name__}: {exc}"
            print(f"  {alerts}: {result['error']}", file=sys.stderr, flush=True)
        finally:
            result["wall_s"] = round(time.perf_counter() - t0, 1)
            if args.keep:
                print(f"  kept: {workdir}")
            else:
                shutil.rmtree(workdir, ignore_errors=True)
        results.append(result)
    print(f"\ncost growth (SQLite, daily report median of {args.runs}; ingest 1 alert/request, concurrency 8, "
          f"{args.ingest_seconds:g} s):\n" + table(results), flush=True)
    print("wall time: " + ", ".join(f"{r['alerts']:,} alerts {r['wall_s']:.0f} s" for r in results), flush=True)
    if args.json_out:
        doc = {
            "benchmark": "alertpilot cost growth",
            "when": datetime.now(UTC).isoformat(timespec="seconds"),
            "mode": "quick" if args.quick else "full",
            "host": {"python": platform.python_version(), "platform": platform.platform(), "ncpu": os.cpu_count()},
            "elapsed_s": round(time.perf_counter() - started, 1),
            "results": results,
        }
        Path(args.json_out).write_text(json.dumps(doc, indent=2) + "\n")
        print(f"results written to {args.json_out}")
    return 0 if all("error" not in r and r.get("verify_ok") and not r.get("errors") for r in results) else 1


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="10,000 and 100,000 stored alerts only")
    p.add_argument("--sizes", help="comma list of stored-alert counts (overrides --quick)")
    p.add_argument("--ingest-seconds", type=float, default=10.0, help="how long alertstorm posts (default 10 s)")
    p.add_argument("--runs", type=int, default=3, help="timed daily-report runs after the first (default 3)")
    p.add_argument("--timezone", default="Asia/Taipei", help="the report's time zone (default Asia/Taipei)")
    p.add_argument("--at", default="08:00", help="the daily report's local time (default 08:00)")
    p.add_argument("--json-out", metavar="FILE", help="write all results as one JSON document")
    p.add_argument("--keep", action="store_true", help="keep every temporary directory (database, app log)")
    args = p.parse_args(argv)
    if args.runs < 1 or args.ingest_seconds <= 0:
        p.error("--runs must be >= 1 and --ingest-seconds > 0")
    return asyncio.run(amain(args))


if __name__ == "__main__":
    sys.exit(main())
