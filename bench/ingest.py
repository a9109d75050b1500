#!/usr/bin/env python3
"""alertpilot's ingest benchmark: figures only, no pass/fail on time.

    python bench/ingest.py [--quick] [--json-out FILE] [--only NAME,...] [--no-latency]

1. Ingest throughput. For every scenario a fresh alertpilot process (this interpreter, <repo>/bot.py) starts
   on a free loopback port with an empty temporary SQLite database, a fixed ingest token and no Telegram
   (cards go to its console, which is redirected to a log file in the temporary directory). alertstorm
   (<repo>/../shared/bench/alertstorm.py, run as its own process with its own CLI) then posts Alertmanager
   webhooks at it and checks, through bench/verify_alertpilot.py, that everything acknowledged is stored
   with the right repeat count and final state. Scenarios: 1 alert per request and 50 alerts per request,
   each at 8 and 32 requests in flight; identities are a quarter of the alerts, 20 % end resolved.

2. Webhook -> Telegram latency. A fresh alertpilot talks to FakeBotAPI (tests/fakes/botapi.py, served from
   this process's event loop); single-alert webhooks, each opening a new incident (its own groupKey), are
   posted a few seconds apart, and the time from the POST to the fake receiving the sendMessage that
   carries that incident's card (INC-n from the POST's answer) is measured. Posts are spaced so that the
   app's default pacing (1 message/s per chat, 20/min per group) never holds a card back: the figure is
   the pipeline (store -> analysis -> outbox -> Bot API), not the rate limit.

Results are printed as a table and, with --json-out, written as one JSON document. The exit status is 1
when a scenario could not run or its verification failed, else 0. Everything binds to 127.0.0.1 only; every
wait is bounded; the processes started here are stopped in `finally`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import math
import os
import platform
import pstats
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.fakes.botapi import FakeBotAPI  # noqa: E402

ALERTSTORM = ROOT.parent / "shared" / "bench" / "alertstorm.py"
VERIFY_HOOK = ROOT / "bench" / "verify_alertpilot.py"
BOT_PY = ROOT / "bot.py"
INGEST_TOKEN = "bench-ingest-token-" + uuid.uuid4().hex[:12]
BOT_TOKEN = "123456:BENCH-token"
CHAT_ID = -100123
HEALTH_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0


@dataclass(frozen=True)
class Scenario:
    name: str
    per_payload: int
    concurrency: int
    total: int
    identities: int


def scenarios(quick: bool) -> list[Scenario]:
    single, batched = (1000, 5000) if quick else (5000, 20000)
    out = []
    for per_payload, total in ((1, single), (50, batched)):
        for concurrency in (8, 32):
            out.append(Scenario(f"{per_payload}/req c{concurrency}", per_payload, concurrency, total, total // 4))
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pct(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (the same definition alertstorm uses)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1))]


# --------------------------------------------------------------------------- the app under test


class AppProcess:
    """One alertpilot process with its own temporary directory (database + log)."""

    def __init__(self, label: str, extra_env: dict[str, str] | None = None, *, profile: bool = False) -> None:
        """``profile``: run the app under cProfile; its statistics are written to ``<dir>/app.prof`` when it stops."""
        self.dir = Path(tempfile.mkdtemp(prefix=f"apbench-{re.sub(r'[^a-z0-9]+', '-', label.lower())}-"))
        self.port = free_port()
        self.log = self.dir / "app.log"
        self.base_url = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("ALERTPILOT_")}
        env.update(
            ALERTPILOT_DATABASE_URL=f"sqlite+aiosqlite:///{self.dir}/ap.db",
            ALERTPILOT_HTTP_HOST="127.0.0.1",
            ALERTPILOT_HTTP_PORT=str(self.port),
            ALERTPILOT_INGEST_TOKEN=INGEST_TOKEN,
            ALERTPILOT_LOG_LEVEL="warning",
            ALERTPILOT_TELEGRAM_TOKEN="",  # blank = not configured: cards go to the console (the log file)
            ALERTPILOT_TELEGRAM_CHAT_ID="",
            PYTHONUNBUFFERED="1",
        )
        env.update(extra_env or {})
        self.env = env
        self.profile = self.dir / "app.prof" if profile else None
        self.proc: subprocess.Popen[bytes] | None = None

    async def start(self) -> None:
        with self.log.open("ab") as out:
            # cwd = the temporary directory, so a developer's ./.env cannot leak settings into the run
            prefix = ["-m", "cProfile", "-o", str(self.profile)] if self.profile else []
            self.proc = subprocess.Popen(
                [sys.executable, *prefix, str(BOT_PY)], cwd=self.dir, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + HEALTH_TIMEOUT
        async with aiohttp.ClientSession() as session:
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"alertpilot exited with {self.proc.returncode}; log:\n{self.tail()}")
                with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError):
                    async with session.get(f"{self.base_url}/healthz", timeout=aiohttp.ClientTimeout(total=2)) as r:
                        if r.status == 200:
                            return
                if time.monotonic() > deadline:
                    raise RuntimeError(f"alertpilot not healthy within {HEALTH_TIMEOUT:.0f} s; log:\n{self.tail()}")
                await asyncio.sleep(0.1)

    async def api(self, path: str) -> Any:
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{self.base_url}{path}", headers={"Authorization": f"Bearer {INGEST_TOKEN}"},
                                   timeout=aiohttp.ClientTimeout(total=30)) as r:
                return await r.json()

    def tail(self, chars: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

    def cleanup(self, keep: bool) -> None:
        if not keep:
            shutil.rmtree(self.dir, ignore_errors=True)


# --------------------------------------------------------------------------- 1. ingest throughput



async def run_alertstorm(
    cmd: list[str], out_file: Path, timeout: float, env: dict[str, str] | None = None, *, echo: bool = True
) -> int:
    """Run alertstorm (its own process) and, with ``echo``, print its output indented; its exit code. Raises
    RuntimeError when it overruns ``timeout`` or wrote no result to ``out_file``."""
    proc = await asyncio.create_subprocess_exec(*cmd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
                                                env=env)
    try:
        stdout, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise RuntimeError("alertstorm did not finish in time") from None
    text = stdout.decode(errors="replace")
    if echo:
        print("\n".join("  " + line for line in text.rstrip().splitlines()), flush=True)
    if not out_file.exists():
        raise RuntimeError(f"alertstorm wrote no result (exit {proc.returncode}): {text[-1000:]}")
    assert proc.returncode is not None
    return proc.returncode

async def run_scenario(sc: Scenario, quick: bool, keep: bool, profile: bool = False) -> dict[str, Any]:
    app = AppProcess(sc.name, profile=profile)
    result: dict[str, Any] = {"scenario": asdict(sc), "ok": False}
    verify_wait = 10 if quick else 20  # the app stores before it acks: no lag to wait out
    max_seconds = 300 if quick else 600
    try:
        await app.start()
        out_file = app.dir / "alertstorm.jsonl"
        cmd = [
            sys.executable, str(ALERTSTORM),
            "--url", f"{app.base_url}/webhooks/alertmanager",
            "--header", f"Authorization: Bearer {INGEST_TOKEN}",
            "--total", str(sc.total), "--identities", str(sc.identities),
            "--per-payload", str(sc.per_payload), "--concurrency", str(sc.concurrency),
            "--resolve-fraction", "0.2", "--order", "phased",
            "--verify", f"{VERIFY_HOOK}:verify", "--verify-url", app.base_url, "--verify-wait", str(verify_wait),
            "--max-seconds", str(max_seconds), "--timeout", "60",
            "--watch-pids", str(app.proc.pid if app.proc else ""),
            "--label", f"alertpilot {sc.name}", "--json-out", str(out_file),
        ]
        print(f"\n=== {sc.name}: {sc.total} alerts, {sc.identities} identities, {sc.per_payload}/request, "
              f"concurrency {sc.concurrency}", flush=True)
        result["alertstorm_exit"] = await run_alertstorm(cmd, out_file, max_seconds + verify_wait + 120)
        rec = json.loads(out_file.read_text().strip().splitlines()[-1])
        result["alertstorm"] = rec
        with contextlib.suppress(Exception):
            result["app_stats"] = await app.api("/api/stats")
        result["ok"] = bool(rec["verify"].get("ok")) and rec["errors"] == 0
    except Exception as exc:  # one failed scenario must not hide the others' figures
        result["error"] = f"{type(exc).__name__}: {exc}"
        print(f"  {sc.name}: {result['error']}", file=sys.stderr, flush=True)
    finally:
        app.stop()
        if app.profile is not None:
            result["profile_top"] = profile_top(app.profile)
            print(result["profile_top"], flush=True)
        result["app_log_tail"] = app.tail(1500) if not result.get("ok") else ""
        result["workdir"] = str(app.dir) if keep or not result.get("ok") else None
        app.cleanup(keep or not result.get("ok"))
    return result


def profile_top(path: Path, lines: int = 30) -> str:
    """The app's cProfile statistics (main thread, start-up included), the functions with the most time of their
    own first: coroutines are counted once per resumption, so their cumulative times say little."""
    if not path.exists():
        return f"(no profile at {path}: the app did not exit cleanly)"
    out = io.StringIO()
    pstats.Stats(str(path), stream=out).sort_stats("tottime").print_stats(lines)
    return out.getvalue()


# --------------------------------------------------------------------------- 2. webhook -> sendMessage


def latency_payload(run: str, i: int) -> dict[str, Any]:
    labels = {
        "alertname": f"BenchLatency{i:03d}",
        "severity": "critical",
        "namespace": "bench",
        "service": f"svc-lat-{i:03d}",
        "instance": f"{run}-lat-{i:03d}:9100",
    }
    annotations = {"summary": f"bench latency probe {i} ({run})", "description": "webhook -> sendMessage latency probe"}
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return {
        "version": "4",
        "groupKey": '{}/{bench="' + run + '"}:{alertname="' + labels["alertname"] + '"}',
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "bench-latency",
        "groupLabels": {"alertname": labels["alertname"]},
        "commonLabels": labels,
        "commonAnnotations": annotations,
        "externalURL": "http://127.0.0.1:9093",
        "alerts": [{
            "status": "firing", "labels": labels, "annotations": annotations, "startsAt": now,
            "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "http://127.0.0.1:9090/graph",
        }],
    }


async def run_latency(n: int, spacing: float, settle: float, keep: bool) -> dict[str, Any]:
    result: dict[str, Any] = {"probes": n, "spacing_s": spacing, "ok": False}
    run = "lat" + uuid.uuid4().hex[:6]
    async with FakeBotAPI(token=BOT_TOKEN) as fake:
        app = AppProcess("latency", {
            "ALERTPILOT_TELEGRAM_TOKEN": BOT_TOKEN,
            "ALERTPILOT_TELEGRAM_API_BASE": fake.base_url,
            "ALERTPILOT_TELEGRAM_CHAT_ID": str(CHAT_ID),
            "ALERTPILOT_TELEGRAM_POLLING_TIMEOUT": "1",
        })
        probes: list[dict[str, Any]] = []
        try:
            await app.start()
            print(f"\n=== webhook -> sendMessage: {n} new incidents, one every {spacing} s", flush=True)
            loop = asyncio.get_running_loop()
            start = loop.time() + 0.5
            url = f"{app.base_url}/webhooks/alertmanager"
            headers = {"Authorization": f"Bearer {INGEST_TOKEN}"}
            async with aiohttp.ClientSession() as session:
                for i in range(n):
                    await asyncio.sleep(max(0.0, start + i * spacing - loop.time()))
                    body = latency_payload(run, i)
                    t0 = time.monotonic()  # the fake stamps requests with time.monotonic() too
                    probe: dict[str, Any] = {"i": i, "posted_at": t0}
                    try:
                        async with session.post(url, json=body, headers=headers,
                                                timeout=aiohttp.ClientTimeout(total=30)) as r:
                            answer = await r.json(content_type=None)
                            probe["http_status"] = r.status
                        probe["ack_ms"] = round((time.monotonic() - t0) * 1000, 2)
                        refs = (answer.get("incidents") or []) if isinstance(answer, dict) else []
                        probe["ref"] = refs[0] if len(refs) == 1 else None
                        if len(refs) != 1:
                            probe["error"] = f"expected one incident in the answer, got {answer!r}"[:200]
                    except (TimeoutError, aiohttp.ClientError, ValueError) as exc:
                        probe["error"] = f"{type(exc).__name__}: {exc}"[:200]
                    probes.append(probe)

            def card_sends() -> dict[str, float]:
                """INC-n -> when the fake received the first sendMessage mentioning it."""
                first: dict[str, float] = {}
                for req in fake.calls("sendMessage"):
                    for m in re.finditer(r"\bINC-(\d+)(?!\d)", str(req.params.get("text", ""))):
                        first.setdefault(f"INC-{m.group(1)}", req.at)
                return first

            wanted = {p["ref"] for p in probes if p.get("ref")}
            deadline = time.monotonic() + settle
            while not wanted <= set(card_sends()) and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            sends = card_sends()
            latencies = []
            for p in probes:
                at = sends.get(p.get("ref") or "")
                if at is not None:
                    p["send_ms"] = round((at - p["posted_at"]) * 1000, 1)
                    latencies.append(p["send_ms"])
                p.pop("posted_at", None)
            acks = [p["ack_ms"] for p in probes if "ack_ms" in p]
            undelivered = [p["ref"] or f"probe {p['i']}" for p in probes if "send_ms" not in p]
            result.update(
                delivered=len(latencies),
                undelivered=undelivered,
                send_ms={"p50": pct(latencies, 0.50), "p99": pct(latencies, 0.99),
                         "min": min(latencies, default=None), "max": max(latencies, default=None)},
                ack_ms={"p50": pct(acks, 0.50), "p99": pct(acks, 0.99)},
                bot_api_calls={m: len(fake.calls(m)) for m in ("sendMessage", "editMessageText", "editMessageReplyMarkup")},
                settle_s=settle,
                probes_detail=probes,
                ok=not undelivered and not any("error" in p for p in probes),
            )
        except Exception as exc:
            result["error"] = f"{type(exc).__name__}: {exc}"
            print(f"  latency: {result['error']}", file=sys.stderr, flush=True)
        finally:
            app.stop()
            if not result["ok"]:
                result["app_log_tail"] = app.tail(1500)
            result["workdir"] = str(app.dir) if keep or not result["ok"] else None
            app.cleanup(keep or not result["ok"])
    return result


# --------------------------------------------------------------------------- report


def fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def table(results: list[dict[str, Any]], latency: dict[str, Any] | None) -> str:
    head = ("scenario", "alerts", "ids", "reqs", "errors", "wall s", "alerts/s", "ack p50 ms", "ack p99 ms",
            "app cpu ms/alert", "verify")
    rows = [head]
    for r in results:
        sc, rec = r["scenario"], r.get("alertstorm")
        if rec is None:
            rows.append((sc["name"], str(sc["total"]), str(sc["identities"]), "-", "-", "-", "-", "-", "-", "-",
                         "ERROR"))
            continue
        v = rec["verify"]
        if v.get("ok"):
            verdict = "OK"
        else:
            parts = [f"{k}={v[k]}" for k in ("missing_identities", "extra_identities", "split_identities",
                                              "repeat_mismatches", "state_mismatches") if v.get(k)]
            deltas = v.get("repeat_mismatch_deltas") or {}
            parts += [f"repeat {k}: {n}" for k, n in deltas.items()]
            verdict = "FAIL " + (" ".join(parts) or str(v.get("error", ""))[:60])
        rows.append((
            sc["name"], str(rec["alerts_sent"]), str(sc["identities"]), str(rec["requests"]), str(rec["errors"]),
            fmt(rec["wall_s"], 2), fmt(rec["alerts_accepted_per_s"]), fmt(rec["latency_ms"]["p50"]),
            fmt(rec["latency_ms"]["p99"]), fmt(rec.get("target_cpu_ms_per_alert"), 3), verdict,
        ))
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = ["  ".join(cell.ljust(w) if i in (0, len(head) - 1) else cell.rjust(w)
                       for i, (cell, w) in enumerate(zip(row, widths))).rstrip() for row in rows]
    lines.insert(1, "-" * len(lines[0]))
    if latency is not None:
        lines.append("")
        if "send_ms" in latency:
            s, a, calls = latency["send_ms"], latency["ack_ms"], latency["bot_api_calls"]
            lines.append(
                f"webhook -> sendMessage ({latency['delivered']}/{latency['probes']} new incidents, one every "
                f"{latency['spacing_s']} s): p50 {fmt(s['p50'])} ms  p99 {fmt(s['p99'])} ms  "
                f"(min {fmt(s['min'])}, max {fmt(s['max'])}; webhook ack p50 {fmt(a['p50'])} ms, p99 {fmt(a['p99'])} ms; "
                f"Bot API calls: {calls['sendMessage']} sendMessage, {calls['editMessageText']} editMessageText)"
            )
            if latency["undelivered"]:
                lines.append(f"  no card within {latency['settle_s']} s after the last post: "
                             f"{', '.join(latency['undelivered'][:10])}")
        else:
            lines.append(f"webhook -> sendMessage: ERROR {latency.get('error')}")
    return "\n".join(lines)


async def amain(args: argparse.Namespace) -> int:
    if not ALERTSTORM.is_file():
        print(f"alertstorm not found at {ALERTSTORM}", file=sys.stderr)
        return 2
    chosen = scenarios(args.quick)
    if args.only:
        names = {s.strip() for s in args.only.split(",") if s.strip()}
        chosen = [s for s in chosen if s.name in names or s.name.replace(" ", "-") in names]
    started = time.perf_counter()
    results = [await run_scenario(sc, args.quick, args.keep, args.profile) for sc in chosen]
    latency = None
    if not args.no_latency:
        n = args.latency_n or (8 if args.quick else 19)
        spacing = args.latency_spacing or (1.5 if args.quick else 3.0)
        latency = await run_latency(n, spacing, settle=20.0, keep=args.keep)

    print("\n" + table(results, latency), flush=True)
    doc = {
        "benchmark": "alertpilot ingest",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "mode": "quick" if args.quick else "full",
        "host": {"python": platform.python_version(), "platform": platform.platform(), "ncpu": os.cpu_count()},
        "app": {"database": "sqlite+aiosqlite (fresh temporary file per scenario)", "chat": "console (ingest) / "
                "FakeBotAPI (latency)", "log_level": "warning"},
        "elapsed_s": round(time.perf_counter() - started, 1),
        "scenarios": [
            {
                "name": r["scenario"]["name"],
                **{k: r["scenario"][k] for k in ("per_payload", "concurrency", "total", "identities")},
                "alerts_accepted_per_s": (r.get("alertstorm") or {}).get("alerts_accepted_per_s"),
                "ack_latency_ms": (r.get("alertstorm") or {}).get("latency_ms"),
                "verify_ok": bool((r.get("alertstorm") or {}).get("verify", {}).get("ok")),
                **{k: v for k, v in r.items() if k != "scenario"},
            }
            for r in results
        ],
        "webhook_to_send_message": latency,
    }
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(doc, indent=2) + "\n")
        print(f"\nresults written to {args.json_out}")
    failed = any(not r["ok"] for r in results) or (latency is not None and "send_ms" not in latency)
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="smaller runs (1000 / 5000 alerts, 8 latency probes)")
    p.add_argument("--json-out", metavar="FILE", help="write all results as one JSON document")
    p.add_argument("--only", metavar="NAMES", help="comma list of scenario names to run, e.g. '1/req c8,50/req c32'")
    p.add_argument("--no-latency", action="store_true", help="skip the webhook -> sendMessage measurement")
    p.add_argument("--latency-n", type=int, default=0, help="latency probes (default 19, --quick 8)")
    p.add_argument("--latency-spacing", type=float, default=0.0,
                   help="seconds between probes (default 3.0, --quick 1.5); below 3 s more than 20 probes "
                        "hit the app's 20 messages/min group pacing")
    p.add_argument("--keep", action="store_true", help="keep every temporary directory (database, app log)")
    p.add_argument("--profile", action="store_true",
                   help="run the app under cProfile in the throughput scenarios and print its top functions "
                        "(slows the app down: the figures are then not comparable)")
    args = p.parse_args(argv)
    if args.latency_n < 0 or args.latency_n > 200 or args.latency_spacing < 0:
        p.error("--latency-n must be 0..200 and --latency-spacing >= 0")
    return asyncio.run(amain(args))


if __name__ == "__main__":
    sys.exit(main())
