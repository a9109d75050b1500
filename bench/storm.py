#!/usr/bin/env python3
"""alertpilot's storm and memory benchmark: figures only, no pass/fail on time.

    python bench/storm.py [--quick] [--only storm,soak,memory] [--json-out FILE] [--keep]

Every scenario starts a fresh alertpilot process the way bench/ingest.py does (this interpreter, <repo>/bot.py,
an empty temporary SQLite database, a free loopback port), with Telegram pointed at FakeBotAPI
(tests/fakes/botapi.py) and one WeCom group robot pointed at FakeWeCom (tests/fakes/wecom.py), both served from
this process. The app keeps its DEFAULT pacing (1 message/s per chat, 20/min per Telegram group, 30/s per bot,
20/min per WeCom robot): nothing here relaxes ALERTPILOT_*_RATE_* settings.

Both fakes are wrapped to answer like the real services when a chat goes over the published limits: Telegram
answers 429 with ``retry_after`` after 20 messages (sendMessage and edits) to one group in any 60 s or 30 in
any second to the whole bot; a WeCom robot answers errcode 45009 after 20 messages in any 60 s. So "no 429"
below means the app's own pacing kept it under the limits, not that the fake never says no.

1. storm: --storm-alerts (10,000) alerts from --storm-identities (200) identities in --storm-seconds (60 s).
   alertstorm (../shared/bench/alertstorm.py) has no rate option, so it is run once per --chunk-seconds
   (5 s) slot with an equal share of the alerts, all with the same run id (the same 200 identities, the same
   Alertmanager groups), --per-payload alerts per webhook (10, as a grouping Alertmanager sends them). Every
   slot only fires; the last one also resolves 20 % of the identities. Afterwards: GET /api/stats is polled
   until the outbox is empty (every card, edit and thread message delivered), the verify hook
   (bench/verify_alertpilot.py) checks that every acknowledged alert is stored with the summed repeat count
   and final state, and GET /api/alerts that every alert belongs to an incident. Reported: alerts stored,
   incidents opened, messages per minute per chat (the most in any 60 s sliding window, from the fakes'
   request times), 429 / 45009 answers, the app's own 429 retries and failed rows, the time until the outbox
   backlog is empty, and the app's RSS (/proc/<pid>/status VmRSS, sampled every 2 s: start, peak, end).

2. soak: the same storm shape (the same rate, the same 200 identities) kept up for --soak-seconds (600 s:
   100,000 alerts), for the RSS trend: the slope over the second half shows growth that outlasts warm-up.

3. memory: 100,000 alerts (--memory-alerts) posted as fast as alertstorm goes, 50 per request, concurrency 8,
   a quarter of them distinct identities; RSS before, at the peak, right after, and after --settle seconds
   of idle (the allocator's and the caches' steady state).

--quick: storm 5,000 alerts in 30 s (the same rate), soak 150 s, memory unchanged (100,000 alerts take ~30 s).
Results are printed as a table and, with --json-out, written as one JSON document. The exit status is 1 when a scenario
could not run, lost or miscounted an alert, or left the outbox undelivered, else 0. Everything binds to
127.0.0.1; every wait is bounded; the processes started here are stopped in ``finally``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import os
import platform
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import aiohttp
from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import verify_alertpilot  # noqa: E402
from bench.ingest import (  # noqa: E402
    ALERTSTORM,
    BOT_TOKEN,
    CHAT_ID,
    INGEST_TOKEN,
    VERIFY_HOOK,
    AppProcess,
    fmt,
    run_alertstorm,
)
from bench.stats import (  # noqa: E402
    max_in_window,
    per_minute_series,
    read_rss_kib,
    rss_summary,
    split_evenly,
    text_table,
)
from tests.fakes.botapi import FakeBotAPI, Request  # noqa: E402
from tests.fakes.wecom import FakeWeCom  # noqa: E402

WECOM_KEY = "benchrobot-" + uuid.uuid4().hex[:12]
RSS_EVERY = 2.0
# the Bot API calls that put text in a chat: Telegram counts them against a group's 20 messages a minute
CHAT_METHODS = ("sendMessage", "editMessageText", "editMessageReplyMarkup")
TG_GROUP_PER_MINUTE = 20
TG_BOT_PER_SECOND = 30
WECOM_PER_MINUTE = 20
WECOM_RATE_LIMITED = 45009


# --------------------------------------------------------------------------- fakes with the services' limits


class _Window:
    """Event times of the last ``window`` seconds, for one limit."""

    def __init__(self, limit: int, window: float) -> None:
        self.limit, self.window, self.times = limit, window, []  # type: ignore[var-annotated]

    def wait(self, now: float) -> float:
        self.times = [t for t in self.times if t > now - self.window]
        return 0.0 if len(self.times) < self.limit else self.times[0] + self.window - now


class LimitedBotAPI(FakeBotAPI):
    """FakeBotAPI that answers 429 like Telegram once a group chat (negative id) had 20 messages in the last
    60 s or the bot 30 in the last second; the refused call is recorded with status 429 and changes nothing."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._groups: dict[int, _Window] = {}
        self._bot = _Window(TG_BOT_PER_SECOND, 1.0)
        self.refused: list[Request] = []
        self.refused_early_ms: list[float] = []  # how much too early each refused call came

    async def _read_params(self, request: web.Request) -> dict[str, Any]:
        # a request body can be read once: keep the parameters for the fake's own handler
        if "bench_params" not in request:
            request["bench_params"] = await super()._read_params(request)
        return dict(request["bench_params"])

    async def _handle(self, request: web.Request) -> web.Response:
        method = self._canon(request.path.rstrip("/").rsplit("/", 1)[-1])
        if method not in CHAT_METHODS or not request.path.startswith(f"/bot{self.token}/"):
            return await super()._handle(request)
        try:
            params = await self._read_params(request)
        except Exception:  # a malformed call: the fake's own handler answers it
            return await super()._handle(request)
        now = time.monotonic()
        chat = params.get("chat_id")
        windows = [self._bot]
        if isinstance(chat, int) and chat < 0:
            windows.append(self._groups.setdefault(chat, _Window(TG_GROUP_PER_MINUTE, 60.0)))
        wait = max(w.wait(now) for w in windows)
        if wait > 0:
            retry_after = max(1, int(wait + 0.999))
            body = {"ok": False, "error_code": 429, "description": f"Too Many Requests: retry after {retry_after}",
                    "parameters": {"retry_after": retry_after}}
            record = Request(method=method, params=params, at=now, status=429, response=body,
                             http_method=request.method)
            self.requests.append(record)
            self.refused.append(record)
            self.refused_early_ms.append(round(wait * 1000, 1))
            return web.json_response(body, status=429)
        for w in windows:
            w.times.append(now)
        return await super()._handle(request)


@dataclass
class RobotCall:
    key: str
    at: float
    errcode: int


class LimitedWeCom(FakeWeCom):
    """FakeWeCom that records when each robot message arrived and answers errcode 45009 (WeCom's "api freq
    out of limit") once a robot had 20 messages in the last 60 s."""

    def __init__(self, keys: tuple[str, ...]) -> None:
        super().__init__(keys)
        self._robots: dict[str, _Window] = {}
        self.calls: list[RobotCall] = []

    def _errcode(self, key: str, body: Any) -> int:
        code = super()._errcode(key, body)
        now = time.monotonic()
        if code == 0:
            window = self._robots.setdefault(key, _Window(WECOM_PER_MINUTE, 60.0))
            if window.wait(now) > 0:
                code = WECOM_RATE_LIMITED
            else:
                window.times.append(now)
        self.calls.append(RobotCall(key, now, code))
        return code


# --------------------------------------------------------------------------- the app, sampled


class RssSampler:
    """The app's VmRSS every ``every`` seconds, labelled with the phase the benchmark is in."""

    def __init__(self, pid: int, every: float = RSS_EVERY) -> None:
        self.pid, self.every = pid, every
        self.t0 = time.monotonic()
        self.phase = "start"
        self.samples: list[tuple[float, float, str]] = []  # (seconds since t0, MiB, phase)
        self._task: asyncio.Task[None] | None = None

    def sample(self) -> float | None:
        kib = read_rss_kib(self.pid)
        if kib is None:
            return None
        mib = kib / 1024
        self.samples.append((round(time.monotonic() - self.t0, 2), round(mib, 1), self.phase))
        return mib

    async def _run(self) -> None:
        while True:
            self.sample()
            await asyncio.sleep(self.every)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def of(self, *phases: str) -> list[tuple[float, float]]:
        return [(t, m) for t, m, p in self.samples if not phases or p in phases]


def app_env(fake: FakeBotAPI, wecom: FakeWeCom) -> dict[str, str]:
    return {
        "ALERTPILOT_TELEGRAM_TOKEN": BOT_TOKEN,
        "ALERTPILOT_TELEGRAM_API_BASE": fake.base_url,
        "ALERTPILOT_TELEGRAM_CHAT_ID": str(CHAT_ID),
        "ALERTPILOT_TELEGRAM_POLLING_TIMEOUT": "1",
        "ALERTPILOT_WECOM_WEBHOOK_KEYS": WECOM_KEY,
        "ALERTPILOT_WECOM_API_BASE": wecom.base_url,
    }


async def outbox_backlog(app: AppProcess) -> tuple[int, dict[str, Any]]:
    """Rows not delivered yet (pending or being sent), and the whole /api/stats answer."""
    stats = await app.api("/api/stats")
    outbox = stats.get("outbox") or {}
    return int(outbox.get("pending", 0)) + int(outbox.get("sending", 0)), stats


async def wait_drained(app: AppProcess, timeout: float, quiet: float = 3.0) -> tuple[float | None, int]:
    """Poll /api/stats until the outbox holds nothing undelivered for ``quiet`` seconds in a row. Returns when
    it first became (and stayed) empty, as time.monotonic(), or None on timeout; and the last backlog seen."""
    deadline = time.monotonic() + timeout
    empty_since: float | None = None
    backlog = -1
    while time.monotonic() < deadline:
        try:
            backlog, _ = await outbox_backlog(app)
        except (aiohttp.ClientError, TimeoutError, ValueError):
            backlog = -1
        now = time.monotonic()
        if backlog == 0:
            empty_since = empty_since or now
            if now - empty_since >= quiet:
                return empty_since, 0
        else:
            empty_since = None
        await asyncio.sleep(1.0)
    return None, backlog


async def all_alerts(app: AppProcess) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    offset = 0
    while True:
        page = await app.api(f"/api/alerts?limit=500&offset={offset}")
        items += page["items"]
        offset += 500
        if offset >= int(page["total"]) or not page["items"]:
            return items


def app_log_counts(app: AppProcess) -> dict[str, int]:
    """The app's own account of throttling (warning level and up): 429 / 45009 retries and given-up rows."""
    try:
        text = app.log.read_text(errors="replace")
    except OSError:
        return {}
    lines = text.splitlines()
    return {
        "retries_429": sum(1 for line in lines if "outbox_retry" in line and ("429" in line or "45009" in line)),
        "outbox_failed": sum(1 for line in lines if "outbox_failed" in line),
        "errors": sum(1 for line in lines if "[error" in line.lower() or '"level": "error"' in line),
    }


def chat_rates(fake: LimitedBotAPI, wecom: LimitedWeCom, since: float) -> dict[str, Any]:
    """Messages each chat received (delivered ones only), the busiest 60 s, and the per-minute series."""
    out: dict[str, Any] = {}
    by_chat: dict[str, list[float]] = {}
    kinds: dict[str, dict[str, int]] = {}
    for r in fake.requests:
        if r.method in CHAT_METHODS and r.status == 200:
            chat = f"tg:{r.params.get('chat_id')}"
            by_chat.setdefault(chat, []).append(r.at)
            kinds.setdefault(chat, {}).setdefault(r.method, 0)
            kinds[chat][r.method] += 1
    for c in wecom.calls:
        if c.errcode == 0:
            chat = f"wecom:{c.key[:10]}…"
            by_chat.setdefault(chat, []).append(c.at)
            kinds.setdefault(chat, {}).setdefault("robot send", 0)
            kinds[chat]["robot send"] += 1
    for chat, times in by_chat.items():
        out[chat] = {
            "messages": len(times),
            "by_kind": kinds[chat],
            "max_per_60s": max_in_window(times, 60.0),
            "per_minute": per_minute_series(times, since),
            "last_at_s": round(max(times) - since, 1),
        }
    return out


# --------------------------------------------------------------------------- alertstorm, in slots


def load_alertstorm() -> ModuleType:
    """The shared load generator as a module, only to recompute its (seeded, deterministic) plan per slot."""
    spec = importlib.util.spec_from_file_location("alertstorm_plan", ALERTSTORM)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def alertstorm_args(app: AppProcess, *, total: int, identities: int, per_payload: int, concurrency: int,
                    resolve_fraction: float, run_id: str, max_seconds: float, out_file: Path, label: str,
                    verify: bool) -> list[str]:
    args = [
        "--url", f"{app.base_url}/webhooks/alertmanager",
        "--header", f"Authorization: Bearer {INGEST_TOKEN}",
        "--total", str(total), "--identities", str(identities),
        "--per-payload", str(per_payload), "--concurrency", str(concurrency),
        "--resolve-fraction", str(resolve_fraction), "--order", "phased", "--seed", "1",
        "--run-id", run_id, "--max-seconds", str(max_seconds), "--timeout", "60",
        "--label", label, "--json-out", str(out_file),
    ]
    if app.proc is not None:
        args += ["--watch-pids", str(app.proc.pid)]
    if verify:
        args += ["--verify", f"{VERIFY_HOOK}:verify", "--verify-url", app.base_url, "--verify-wait", "20"]
    else:
        args += ["--verify", "none"]
    return args


async def storm_slot(args: list[str], timeout: float, echo: bool) -> dict[str, Any]:
    """One alertstorm run (``args`` name its --json-out); its result record."""
    out_file = Path(args[args.index("--json-out") + 1])
    await run_alertstorm([sys.executable, str(ALERTSTORM), *args], out_file, timeout, echo=echo)
    return json.loads(out_file.read_text().strip().splitlines()[-1])


@dataclass
class StormPlan:
    alerts: int
    identities: int
    seconds: float
    chunk_seconds: float
    per_payload: int
    concurrency: int
    resolve_fraction: float = 0.2

    def slots(self) -> list[int]:
        n = max(1, round(self.seconds / self.chunk_seconds))
        n = min(n, max(1, self.alerts // self.identities))  # every slot sends each identity at least once
        return split_evenly(self.alerts, n)


@dataclass
class StormRun:
    run_id: str
    started: float = 0.0
    ended: float = 0.0
    chunks: list[dict[str, Any]] = field(default_factory=list)
    # identity key -> (firing, resolved) sent, summed over the slots: what was acknowledged while ``exact`` (every
    # slot answered 2xx to everything); otherwise an upper bound, and the verify hook then checks presence only
    acked: dict[int, tuple[int, int]] = field(default_factory=dict)
    exact: bool = True
    expected: dict[str, Any] = field(default_factory=dict)  # alertstorm's ``expected`` for the whole storm


async def drive_storm(app: AppProcess, plan: StormPlan, workdir: Path, label: str) -> StormRun:
    storm_module = load_alertstorm()
    run = StormRun(run_id="s" + uuid.uuid4().hex[:7])
    slots = plan.slots()
    slot_seconds = plan.seconds / len(slots)
    loop = asyncio.get_running_loop()
    run.started = time.monotonic()
    t0 = loop.time()
    print(f"  {plan.alerts} alerts, {plan.identities} identities, {plan.per_payload}/request, concurrency "
          f"{plan.concurrency}: {len(slots)} slots of {slot_seconds:.1f} s (run id {run.run_id})", flush=True)
    for i, total in enumerate(slots):
        await asyncio.sleep(max(0.0, t0 + i * slot_seconds - loop.time()))
        last = i == len(slots) - 1
        resolve = plan.resolve_fraction if last else 0.0
        out_file = workdir / f"storm-{i:04d}.jsonl"
        args = alertstorm_args(app, total=total, identities=plan.identities, per_payload=plan.per_payload,
                               concurrency=plan.concurrency, resolve_fraction=resolve, run_id=run.run_id,
                               max_seconds=max(60.0, 10 * slot_seconds), out_file=out_file,
                               label=f"{label} slot {i + 1}/{len(slots)}", verify=False)
        at = loop.time() - t0
        rec = await storm_slot(args, timeout=max(120.0, 20 * slot_seconds), echo=False)
        # what this slot sent per identity: alertstorm's plan is seeded, so it can be recomputed exactly
        ids, _ = storm_module.plan(storm_module.parse_args(["--url", "http://127.0.0.1:1/", *args[2:]]), run.run_id)
        if rec["errors"] or rec["truncated_by_deadline"]:
            run.exact = False
        for ident in ids:
            f, r = run.acked.get(ident["key"], (0, 0))
            run.acked[ident["key"]] = (f + ident["sent_firing"], r + ident["sent_resolved"])
        lat = rec["latency_ms"]
        run.chunks.append({"slot": i, "at_s": round(at, 2), "alerts": rec["alerts_sent"],
                           "accepted": rec["alerts_accepted"], "errors": rec["errors"], "wall_s": rec["wall_s"],
                           "p50_ms": lat["p50"], "p99_ms": lat["p99"], "max_ms": lat["max"],
                           "app_cpu_s": (rec.get("cpu") or {}).get("target_cpu_s")})
        if len(slots) <= 24 or i % 10 == 0 or last:
            print(f"    slot {i + 1:>3}/{len(slots)} at +{at:6.1f} s: {rec['alerts_accepted']}/{rec['alerts_sent']} "
                  f"accepted in {rec['wall_s']:.2f} s, errors {rec['errors']}, ack p99 {lat['p99']} ms", flush=True)
    run.ended = time.monotonic()
    run.expected = build_expected(storm_module, run, plan)
    return run


def build_expected(storm_module: ModuleType, run: StormRun, plan: StormPlan) -> dict[str, Any]:
    """alertstorm's ``expected`` for the whole storm: the identities of one slot with the acked counts summed
    over every slot (all slots share the run id, so the same identities)."""
    args = storm_module.parse_args(["--url", "http://127.0.0.1:1/", "--total", str(plan.alerts // len(plan.slots())),
                                    "--identities", str(plan.identities), "--per-payload", str(plan.per_payload),
                                    "--seed", "1", "--run-id", run.run_id])
    ids, _ = storm_module.plan(args, run.run_id)
    return storm_module.build_expected(ids, run.run_id, run.acked, run.exact)


async def verify_storm(app: AppProcess, run: StormRun) -> dict[str, Any]:
    async with aiohttp.ClientSession() as session:
        ctx = {"session": session, "url": f"{app.base_url}/webhooks/alertmanager", "verify_url": app.base_url,
               "run_id": run.run_id, "args": argparse.Namespace(header=[]),
               "expected": run.expected,
               "headers": {"Authorization": f"Bearer {INGEST_TOKEN}"}}
        return await verify_alertpilot.verify(ctx)


# --------------------------------------------------------------------------- scenarios


class ScenarioApp:
    """A scenario's app between the fakes that enforce the chat limits, with its RSS sampler; ``start`` it first
    thing in the ``async with``. On the way out, what every scenario does: an exception is recorded in
    ``result["error"]`` (one failed scenario must not hide the others' figures), the sampler and the app stop,
    and the app's log tail and directory are kept when ``result["ok"]`` is not set."""

    def __init__(self, name: str, result: dict[str, Any], keep: bool, every: float = RSS_EVERY) -> None:
        self.name, self.result, self.keep, self.every = name, result, keep, every
        self.sampler: RssSampler | None = None
        self._fakes = contextlib.AsyncExitStack()

    async def __aenter__(self) -> ScenarioApp:
        self.fake = await self._fakes.enter_async_context(LimitedBotAPI(token=BOT_TOKEN))
        self.wecom = await self._fakes.enter_async_context(LimitedWeCom((WECOM_KEY,)))
        self.app = AppProcess(self.name, app_env(self.fake, self.wecom))
        return self

    async def start(self) -> RssSampler:
        await self.app.start()
        assert self.app.proc is not None
        self.sampler = RssSampler(self.app.proc.pid, every=self.every)
        self.sampler.start()
        return self.sampler

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, _tb: object) -> bool:
        result, ok = self.result, bool(self.result.get("ok"))
        if isinstance(exc, Exception):
            result["error"] = f"{type(exc).__name__}: {exc}"
            print(f"  {self.name}: {result['error']}", file=sys.stderr, flush=True)
        try:
            if self.sampler is not None:
                await self.sampler.stop()
            self.app.stop()
            result["app_log_tail"] = self.app.tail(1500) if not ok else ""
            result["workdir"] = str(self.app.dir) if self.keep or not ok else None
            self.app.cleanup(self.keep or not ok)
        finally:
            await self._fakes.aclose()
        return isinstance(exc, Exception)


async def run_storm(name: str, plan: StormPlan, drain_timeout: float, settle: float, keep: bool) -> dict[str, Any]:
    result: dict[str, Any] = {"scenario": name, "plan": plan.__dict__ | {"slots": len(plan.slots())}, "ok": False}
    async with ScenarioApp(name, result, keep) as scenario:
        app, fake, wecom = scenario.app, scenario.fake, scenario.wecom
        sampler = await scenario.start()
        print(f"\n=== {name}: {plan.alerts} alerts from {plan.identities} identities in {plan.seconds:.0f} s "
              "(default pacing; Telegram group + WeCom robot fakes that enforce the limits)", flush=True)
        await asyncio.sleep(3.0)  # idle after start-up: the baseline
        sampler.phase = "storm"
        run = await drive_storm(app, plan, app.dir, name)
        sampler.phase = "drain"
        backlog_at_end, _ = await outbox_backlog(app)
        print(f"  storm sent in {run.ended - run.started:.1f} s; outbox backlog then {backlog_at_end}; "
              f"waiting up to {drain_timeout:.0f} s for it to drain ...", flush=True)
        drained_at, left = await wait_drained(app, drain_timeout)
        sampler.phase = "settle"
        verify = await verify_storm(app, run)
        rows = [a for a in await all_alerts(app) if run.run_id in str((a.get("labels") or {}).get("instance", ""))]
        _, stats = await outbox_backlog(app)
        await asyncio.sleep(settle)
        sampler.sample()
        acked = sum(c["accepted"] for c in run.chunks)
        result.update(
            storm_s=round(run.ended - run.started, 1),
            alerts_sent=sum(c["alerts"] for c in run.chunks),
            alerts_acked=acked,
            request_errors=sum(c["errors"] for c in run.chunks),
            ack_p99_ms_max=max((c["p99_ms"] or 0) for c in run.chunks),
            ack_p50_ms_median=sorted(c["p50_ms"] or 0 for c in run.chunks)[len(run.chunks) // 2],
            # every notification is one of: a row's first sighting, a repeat, or the resolve of a row that fired
            alerts_stored={"rows": len(rows), "instances": sum(1 + int(a["repeat_count"]) for a in rows)
                           + sum(1 for a in rows if a["status"] == "resolved")},
            ungrouped_rows=sum(1 for a in rows if a.get("incident_id") is None),
            incidents=stats.get("incidents"),
            incidents_of_run=len({a["incident_id"] for a in rows if a.get("incident_id") is not None}),
            outbox=stats.get("outbox"),
            outbox_backlog_at_storm_end=backlog_at_end,
            drained=drained_at is not None,
            backlog_left=left,
            drain_s_after_storm=None if drained_at is None else round(max(0.0, drained_at - run.ended), 1),
            backlog_empty_s_after_start=None if drained_at is None else round(drained_at - run.started, 1),
            chats=chat_rates(fake, wecom, run.started),
            telegram_429=len(fake.refused),
            telegram_429_early_ms=fake.refused_early_ms,
            wecom_45009=sum(1 for c in wecom.calls if c.errcode == WECOM_RATE_LIMITED),
            app_log=app_log_counts(app),
            verify=verify,
            chunks=run.chunks,
        )
        result["ok"] = bool(verify.get("ok")) and result["drained"] and not result["ungrouped_rows"] \
            and result["request_errors"] == 0
    if (sampler := scenario.sampler) is not None:
        result["rss"] = rss_summary(sampler.of()) | {
            "idle_mib": max((m for m in (s[1] for s in sampler.samples if s[2] == "start")), default=None),
            "storm_end_mib": next((m for _, m, p in reversed(sampler.samples) if p == "storm"), None),
            "trend": rss_summary(sampler.of("storm")),  # while alerts arrive; drain and settle are in "end"
            "samples": sampler.samples,
        }
    print_storm(result)
    return result


def print_storm(r: dict[str, Any]) -> None:
    if "error" in r:
        return
    print(f"  stored {r['alerts_stored']['instances']} of {r['alerts_acked']} acknowledged alerts "
          f"({r['alerts_stored']['rows']} identities, {r['ungrouped_rows']} outside an incident) in "
          f"{r['incidents_of_run']} incidents; verify {'OK' if r['verify'].get('ok') else 'FAIL'}", flush=True)
    for chat, c in r["chats"].items():
        print(f"  {chat}: {c['messages']} messages {c['by_kind']}, at most {c['max_per_60s']} in any 60 s, "
              f"per minute {c['per_minute']}, last at +{c['last_at_s']} s", flush=True)
    early = f" ({', '.join(f'{ms:g} ms' for ms in r['telegram_429_early_ms'][:5])} too early)" if r["telegram_429"] else ""
    print(f"  rate-limit answers: Telegram 429 x{r['telegram_429']}{early}, WeCom 45009 x{r['wecom_45009']}; "
          f"app log: {r['app_log']}; outbox {r['outbox']}", flush=True)
    rss = r.get("rss") or {}
    print(f"  outbox empty {fmt(r['backlog_empty_s_after_start'])} s after the storm began "
          f"({fmt(r['drain_s_after_storm'])} s after its last alert); RSS idle {fmt(rss.get('idle_mib'))} MiB, "
          f"peak {fmt(rss.get('peak_mib'))}, end {fmt(rss.get('end_mib'))}, slope over the storm's second half "
          f"{fmt((rss.get('trend') or {}).get('slope_mib_per_min'), 2)} MiB/min", flush=True)


async def run_memory(alerts: int, settle: float, keep: bool) -> dict[str, Any]:
    name = "memory"
    identities = alerts // 4
    result: dict[str, Any] = {"scenario": name, "alerts": alerts, "identities": identities, "ok": False}
    async with ScenarioApp(name, result, keep, every=1.0) as scenario:
        app = scenario.app
        sampler = await scenario.start()
        print(f"\n=== {name}: {alerts} alerts ({identities} identities), 50/request, concurrency 8", flush=True)
        await asyncio.sleep(5.0)
        before = sampler.sample()
        sampler.phase = "ingest"
        args = alertstorm_args(app, total=alerts, identities=identities, per_payload=50, concurrency=8,
                               resolve_fraction=0.2, run_id="m" + uuid.uuid4().hex[:7], max_seconds=600,
                               out_file=app.dir / "alertstorm.jsonl", label="alertpilot memory", verify=True)
        rec = await storm_slot(args, timeout=900, echo=True)
        sampler.phase = "after"
        after = sampler.sample()
        await asyncio.sleep(settle)
        sampler.phase = "settled"
        settled = sampler.sample()
        backlog, stats = await outbox_backlog(app)
        result.update(
            alerts_accepted=rec["alerts_accepted"], alerts_per_s=rec["alerts_accepted_per_s"],
            errors=rec["errors"], verify=rec["verify"], wall_s=rec["wall_s"],
            rss_before_mib=before, rss_peak_mib=max(m for _, m in sampler.of()), rss_after_mib=after,
            rss_settled_mib=settled, settle_s=settle, stats=stats, outbox_backlog=backlog,
        )
        result["ok"] = bool(rec["verify"].get("ok")) and rec["errors"] == 0
        print(f"  RSS before {fmt(before)} MiB, peak {fmt(result['rss_peak_mib'])}, right after {fmt(after)}, "
              f"after {settle:.0f} s idle {fmt(settled)} MiB", flush=True)
    if scenario.sampler is not None:
        result["samples"] = scenario.sampler.samples
    return result


# --------------------------------------------------------------------------- report


def table(results: list[dict[str, Any]]) -> str:
    out = []
    storms = [r for r in results if r["scenario"] in ("storm", "soak")]
    if storms:
        rows = []
        for r in storms:
            if "error" in r and "verify" not in r:
                rows.append((r["scenario"], "ERROR " + r["error"][:60]) + ("",) * 10)
                continue
            tg = next((c for k, c in r["chats"].items() if k.startswith("tg:")), {})
            wc = next((c for k, c in r["chats"].items() if k.startswith("wecom:")), {})
            rss, trend = r.get("rss") or {}, (r.get("rss") or {}).get("trend") or {}
            rows.append((
                r["scenario"], f"{r['alerts_acked']}/{r['alerts_sent']} in {r['storm_s']} s",
                f"{r['alerts_stored']['instances']} ({r['alerts_stored']['rows']} ids)", str(r["incidents_of_run"]),
                f"{tg.get('max_per_60s', 0)} ({tg.get('messages', 0)})", f"{wc.get('max_per_60s', 0)} ({wc.get('messages', 0)})",
                f"{r['telegram_429']}/{r['wecom_45009']}", str(r["app_log"].get("outbox_failed", "-")),
                fmt(r["backlog_empty_s_after_start"]) if r["drained"] else f"not in time ({r['backlog_left']} left)",
                f"{fmt(rss.get('idle_mib'))} / {fmt(rss.get('peak_mib'))} / {fmt(rss.get('end_mib'))}",
                fmt(trend.get("slope_mib_per_min"), 2),
                "OK" if r["verify"].get("ok") and not r["ungrouped_rows"] else "FAIL",
            ))
        out.append(text_table(
            ("scenario", "alerts acked", "stored", "incidents", "TG max/60s (all)", "WeCom max/60s (all)",
             "429/45009", "failed rows", "outbox empty s", "RSS idle/peak/end MiB", "slope MiB/min", "verify"),
            rows, left=(0, 1, 11)))
    for r in results:
        if r["scenario"] != "memory":
            continue
        if "error" in r and "verify" not in r:
            out.append(f"memory: ERROR {r['error']}")
            continue
        out.append(
            f"memory ({r['alerts_accepted']} alerts, 50/request, {fmt(r['alerts_per_s'])} alerts/s, verify "
            f"{'OK' if r['verify'].get('ok') else 'FAIL'}): RSS before {fmt(r['rss_before_mib'])} MiB, peak "
            f"{fmt(r['rss_peak_mib'])}, right after {fmt(r['rss_after_mib'])}, after {r['settle_s']:.0f} s idle "
            f"{fmt(r['rss_settled_mib'])} MiB")
    return "\n\n".join(out)


async def amain(args: argparse.Namespace) -> int:
    if not ALERTSTORM.is_file():
        print(f"alertstorm not found at {ALERTSTORM}", file=sys.stderr)
        return 2
    chosen = [s.strip() for s in args.only.split(",") if s.strip()] if args.only else ["storm", "soak", "memory"]
    quick = args.quick
    storm_alerts = args.storm_alerts or (5000 if quick else 10_000)
    storm_seconds = args.storm_seconds or (30.0 if quick else 60.0)
    soak_seconds = args.soak_seconds or (150.0 if quick else 600.0)
    started = time.perf_counter()
    results: list[dict[str, Any]] = []
    timings: dict[str, float] = {}
    for name in chosen:
        t0 = time.perf_counter()
        if name == "storm":
            plan = StormPlan(storm_alerts, args.identities, storm_seconds, args.chunk_seconds, args.per_payload,
                             args.concurrency)
            results.append(await run_storm("storm", plan, args.drain_timeout or (240.0 if quick else 600.0),
                                           settle=5.0, keep=args.keep))
        elif name == "soak":
            rate = storm_alerts / storm_seconds  # the storm's rate, kept up
            plan = StormPlan(round(rate * soak_seconds), args.identities, soak_seconds, args.chunk_seconds,
                             args.per_payload, args.concurrency)
            results.append(await run_storm("soak", plan, args.drain_timeout or (240.0 if quick else 600.0),
                                           settle=10.0, keep=args.keep))
        elif name == "memory":
            results.append(await run_memory(args.memory_alerts, args.settle, args.keep))
        else:
            print(f"unknown scenario {name!r} (storm, soak, memory)", file=sys.stderr)
            return 2
        timings[name] = round(time.perf_counter() - t0, 1)
    print("\n" + table(results), flush=True)
    print("\nwall time: " + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items()), flush=True)
    if args.json_out:
        doc = {
            "benchmark": "alertpilot storm",
            "when": datetime.now(UTC).isoformat(timespec="seconds"),
            "mode": "quick" if quick else "full",
            "host": {"python": platform.python_version(), "platform": platform.platform(), "ncpu": os.cpu_count()},
            "app": {"database": "sqlite+aiosqlite (fresh temporary file per scenario)",
                    "chat": "FakeBotAPI (1 group) + FakeWeCom (1 robot), Telegram/WeCom limits enforced",
                    "pacing": "app defaults", "log_level": "warning"},
            "elapsed_s": round(time.perf_counter() - started, 1),
            "scenario_wall_s": timings,
            "results": results,
        }
        Path(args.json_out).write_text(json.dumps(doc, indent=2) + "\n")
        print(f"results written to {args.json_out}")
    return 0 if all(r.get("ok") for r in results) else 1


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="storm 5,000 alerts in 30 s, soak 150 s (about 6 min in all)")
    p.add_argument("--only", metavar="NAMES", help="comma list of scenarios: storm, soak, memory (default all)")
    p.add_argument("--json-out", metavar="FILE", help="write all results as one JSON document")
    p.add_argument("--storm-alerts", type=int, default=0, help="alerts in the storm (default 10,000; --quick 5,000)")
    p.add_argument("--storm-seconds", type=float, default=0.0, help="the storm's duration (default 60; --quick 30)")
    p.add_argument("--soak-seconds", type=float, default=0.0, help="the soak's duration at the storm's rate "
                                                                    "(default 600; --quick 150)")
    p.add_argument("--identities", type=int, default=200, help="distinct alerts in the storm (default 200)")
    p.add_argument("--per-payload", type=int, default=10, help="alerts per webhook in the storm (default 10)")
    p.add_argument("--concurrency", type=int, default=8, help="requests in flight in the storm (default 8)")
    p.add_argument("--chunk-seconds", type=float, default=5.0,
                   help="one alertstorm run per slot of this length (default 5 s)")
    p.add_argument("--drain-timeout", type=float, default=0.0,
                   help="how long to wait for the outbox to empty after a storm (default 600 s; --quick 240 s)")
    p.add_argument("--memory-alerts", type=int, default=100_000, help="alerts in the memory run (default 100,000)")
    p.add_argument("--settle", type=float, default=15.0, help="idle seconds before the memory run's last RSS sample")
    p.add_argument("--keep", action="store_true", help="keep every temporary directory (database, app log)")
    args = p.parse_args(argv)
    if args.identities < 1 or args.per_payload < 1 or args.concurrency < 1 or args.chunk_seconds <= 0:
        p.error("--identities, --per-payload, --concurrency and --chunk-seconds must be positive")
    return asyncio.run(amain(args))


if __name__ == "__main__":
    sys.exit(main())
