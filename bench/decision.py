#!/usr/bin/env python3
"""alertpilot's decision benchmark: time to the proposal card per decision source, and fallback counts.

    python bench/decision.py [--incidents N] [--json] [--only NAME,...] [--ai-delay S] [--hanging-sla S]

Each scenario runs the real app in this process (tests/harness.py: ``app_settings`` + ``start_app``) with
its own temporary directory (SQLite database, app log), a FakeBotAPI and, where the scenario needs a
model, a FakeOpenAI, all on 127.0.0.1. Telegram pacing is relaxed as in the tests (the harness does it),
so the figure is the pipeline (store -> decision engine -> outbox -> Bot API), not the rate limit.

Scenarios:
  rules       no AI model configured: the rules answer (fallback ``no_model``);
  playbook    ALERTPILOT_PLAYBOOKS_FILE = a temporary YAML file whose playbook matches the alerts;
  ai          FakeOpenAI answers a valid proposal after --ai-delay seconds (default 1 s);
  ai-hanging  FakeOpenAI never answers; the decision SLA is --hanging-sla (default 3 s instead of the
              30 s default, to keep the run short): ``timeout`` fallbacks, then ``circuit_open``;
  ai-errors   FakeOpenAI answers HTTP 500: ``unavailable`` fallbacks, then ``circuit_open``.

Per scenario, N incidents (default 20) are built from the Alertmanager fixtures
(../shared/fixtures/alertmanager/: the ones that open an incident, in turn), each with its own alertname
(``DiskFull_<run>_<i>``), ``instance`` labels, fingerprints and groupKey, and are POSTed concurrently,
as an Alertmanager burst. Measured per incident: from just before its POST to the arrival at the fake Bot
API of the first ``sendMessage`` / ``editMessageText`` of the card that shows a proposal (its text has
"Proposal:"; the "Analysing…" placeholder does not count). Then ``GET /metrics`` gives
``alertpilot_decisions_total`` by (source, fallback_reason), and ``GET /api/incidents/INC-n`` the decision
rows (outcome used / failed / late) and the stored proposal of every incident.

Figures only: nothing is asserted on time. The exit status is 1 when an incident got no proposal card
within the scenario's SLA + 10 s, when an incident has no stored proposal or not exactly one ``used``
decision row, or when a scenario could not run; else 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import hashlib
import json
import math
import os
import platform
import re
import shutil
import sys
import tempfile
import time
import uuid
import warnings
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import structlog  # noqa: E402

from bot.logging import configure_logging  # noqa: E402
from services.decision import BREAKER_FAILURES, BREAKER_SECONDS  # noqa: E402
from services.incidents import FIRST_CARD_GRACE  # noqa: E402
from tests.fakes.botapi import FakeBotAPI  # noqa: E402
from tests.fakes.openai import VALID_PROPOSAL, FakeOpenAI, Reply  # noqa: E402
from tests.harness import BOT_TOKEN, CHAT_ID, FIXTURES, app_settings, fixture, start_app  # noqa: E402

SCENARIOS = ("rules", "playbook", "ai", "ai-hanging", "ai-errors")
MODEL = "bench-model"
DEFAULT_SLA = 30.0  # bot/settings.py: decision_sla_seconds
CARD_MARGIN = 10.0  # an incident without a proposal card SLA + this after its POST counts as lost
_REF = re.compile(r"\bINC-(\d+)(?!\d)")

DISK_PROPOSAL: dict[str, Any] = {
    **VALID_PROPOSAL,
    "root_cause": "The database volume is filling up with rotated logs.",
    "action": "kubectl exec deployment/db -- journalctl --vacuum-size=500M",
    "risk": "low",
    "confidence": 0.74,
    "reasoning": "DiskFull on the db service; old journal files are the usual cause and safe to vacuum.",
}

PLAYBOOKS_YAML = """\
# written by bench/decision.py: matches the benchmark's DiskFull_* incidents
playbooks:
  - name: bench-disk-full
    description: Free space on a database whose disk is filling up (benchmark playbook)
    root_cause: "the disk of {service} is almost full ({alertname})"
    category: storage
    risk: low
    symptoms:
      alertnames: ["DiskFull*"]
      services: [db]
      severities: [critical]
    steps:
      - name: vacuum-journal
        command: kubectl exec {workload} -- journalctl --vacuum-size=500M
      - name: check
        command: kubectl exec {workload} -- df -h
"""


def pct(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (the definition bench/ingest.py and alertstorm use)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1))]


def say(*parts: Any) -> None:
    print(*parts, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- the incidents


def incident_templates() -> list[str]:
    """The fixtures that open an incident (at least one firing alert), in name order."""
    names = []
    for path in sorted((FIXTURES / "alertmanager").glob("*.json")):
        body = fixture(path.name)
        if any(a.get("status") == "firing" for a in body.get("alerts", [])):
            names.append(path.name)
    if not names:
        raise RuntimeError(f"no firing fixture in {FIXTURES / 'alertmanager'}")
    return names


def incident_payload(template: str, run: str, i: int) -> dict[str, Any]:
    """A copy of the fixture as its own incident: own alertname, instances, fingerprints and groupKey."""
    body = copy.deepcopy(fixture(template))
    alertname = f"DiskFull_{run}_{i:03d}"
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    def relabel(labels: dict[str, Any]) -> None:
        if "alertname" in labels:
            labels["alertname"] = alertname
        if "instance" in labels:
            labels["instance"] = f"{labels['instance']}-{run}-{i:03d}"

    for alert in body["alerts"]:
        relabel(alert["labels"])
        old = str(alert.get("fingerprint", ""))
        alert["fingerprint"] = hashlib.sha256(f"{run}/{i}/{old}".encode()).hexdigest()[:16]
        alert["startsAt"] = now
    relabel(body.get("commonLabels", {}))
    relabel(body.get("groupLabels", {}))
    body["groupKey"] = '{}:{alertname="' + alertname + '",bench="' + run + '"}'
    return body


# --------------------------------------------------------------------------- one scenario


def scenario_settings(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """What the scenario configures, as reported next to its figures."""
    sla = args.hanging_sla if name == "ai-hanging" else DEFAULT_SLA
    info: dict[str, Any] = {"decision_sla_s": sla, "ai": None, "ai_delay_s": None, "playbooks": None}
    if name.startswith("ai"):
        info["ai"] = {"ai": "valid proposal", "ai-hanging": "never answers", "ai-errors": "HTTP 500"}[name]
        info["ai_timeout_s"] = 20.0  # the default: the SLA, not the client timeout, bounds the wait
        if name == "ai":
            info["ai_delay_s"] = args.ai_delay
    if name == "playbook":
        info["playbooks"] = "bench-disk-full: alertnames DiskFull*, services db, severities critical"
    return info


def proposal_cards(bot_api: FakeBotAPI) -> tuple[dict[str, tuple[float, str]], Counter[str]]:
    """INC-n -> (arrival, method) of the first card request showing a proposal; and INC-n -> how many
    placeholder ("Analysing…") card requests came before it."""
    first: dict[str, tuple[float, str]] = {}
    placeholders: Counter[str] = Counter()
    requests = sorted(bot_api.calls("sendMessage") + bot_api.calls("editMessageText"), key=lambda r: r.at)
    for req in requests:
        if req.status != 200 or req.params.get("chat_id") != CHAT_ID:
            continue
        text = str(req.params.get("text", ""))
        found = _REF.search(text)
        if found is None:
            continue
        ref = f"INC-{found.group(1)}"
        if "Proposal:" in text:
            first.setdefault(ref, (req.at, req.method))
        elif ref not in first:
            placeholders[ref] += 1
    return first, placeholders


def parse_decision_metrics(text: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for line in text.splitlines():
        m = re.match(r'alertpilot_decisions_total\{source="([^"]*)",fallback_reason="([^"]*)"\}\s+(\S+)', line)
        if m:
            out[f"{m.group(1)}/{m.group(2)}"] = float(m.group(3))
    return out


async def run_scenario(name: str, args: argparse.Namespace, templates: list[str]) -> dict[str, Any]:
    n = args.incidents
    info = scenario_settings(name, args)
    sla = info["decision_sla_s"]
    workdir = Path(tempfile.mkdtemp(prefix=f"apbench-decision-{name}-"))
    result: dict[str, Any] = {"scenario": name, "incidents": n, "settings": info, "ok": False}
    log_file = (workdir / "app.log").open("w", encoding="utf-8")
    # the app's structured log goes to the scenario's file, not into the figures
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(file=log_file))
    run = uuid.uuid4().hex[:6]
    say(f"=== {name}: {n} incidents, decision SLA {sla:g} s"
        + (f", AI {info['ai']}" if info["ai"] else "")
        + (f" after {info['ai_delay_s']:g} s" if info["ai_delay_s"] else ""))
    try:
        async with contextlib.AsyncExitStack() as stack:
            bot_api = await stack.enter_async_context(FakeBotAPI(token=BOT_TOKEN, bot_username="alertpilot_bot"))
            overrides: dict[str, Any] = {"decision_sla_seconds": sla}
            model: FakeOpenAI | None = None
            if name.startswith("ai"):
                model = await stack.enter_async_context(FakeOpenAI(model=MODEL))
                model.default = {
                    "ai": Reply.slow(args.ai_delay, DISK_PROPOSAL),
                    "ai-hanging": Reply.hang(),
                    "ai-errors": Reply.http_status(500, {"error": {"message": "internal error", "type": "server_error"}}),
                }[name]
                overrides.update(ai_base_url=model.base_url, ai_model=MODEL, ai_api_key="sk-bench")
            if name == "playbook":
                playbooks = workdir / "playbooks.yaml"
                playbooks.write_text(PLAYBOOKS_YAML, encoding="utf-8")
                overrides["playbooks_file"] = str(playbooks)

            app = await start_app(app_settings(workdir, bot_api=bot_api.base_url, **overrides))
            stack.push_async_callback(app.stop)  # before the fakes stop (exit order is reversed)
            await bot_api.wait_for("getUpdates", timeout=10)

            payloads = [incident_payload(templates[i % len(templates)], run, i) for i in range(n)]

            async def post(body: dict[str, Any]) -> dict[str, Any]:
                t0 = time.monotonic()  # the fakes stamp requests with time.monotonic() too
                probe: dict[str, Any] = {"posted_at": t0, "alertname": body["commonLabels"].get("alertname")}
                try:
                    response = await app.post_alerts(body)
                    probe["ack_ms"] = round((time.monotonic() - t0) * 1000, 1)
                    probe["http_status"] = response.status_code
                    refs = response.json().get("incidents") or []
                    probe["ref"] = refs[0] if response.status_code == 200 and len(refs) == 1 else None
                    if probe["ref"] is None:
                        probe["error"] = f"HTTP {response.status_code}: {response.text[:200]}"
                except Exception as exc:  # noqa: BLE001 - reported, not raised: the others still count
                    probe["ref"] = None
                    probe["error"] = f"{type(exc).__name__}: {exc}"[:200]
                return probe

            burst_started = time.monotonic()
            probes = list(await asyncio.gather(*(post(p) for p in payloads)))
            result["burst_ms"] = round((time.monotonic() - burst_started) * 1000, 1)
            refs = {p["ref"] for p in probes if p["ref"]}
            if len(refs) != n:
                result["error"] = f"{n} posts opened {len(refs)} distinct incidents"

            # wait (bounded) for every incident's proposal card: the SLA + CARD_MARGIN after the last POST
            deadline = max(p["posted_at"] for p in probes) + sla + CARD_MARGIN
            while time.monotonic() < deadline:
                cards, _ = proposal_cards(bot_api)
                if refs <= set(cards):
                    break
                await asyncio.sleep(0.05)
            cards, placeholders = proposal_cards(bot_api)

            # what the app says: decision rows, stored proposals, metrics
            outcomes: Counter[str] = Counter()
            failed_reasons: Counter[str] = Counter()
            used_sources: Counter[str] = Counter()
            used_fallbacks: Counter[str] = Counter()
            engine_ms: list[float] = []
            problems: list[str] = []
            for p in probes:
                ref = p["ref"]
                if not ref:
                    problems.append(p.get("error", "post failed"))
                    continue
                card = cards.get(ref)
                if card is not None:
                    p["card_ms"] = round((card[0] - p["posted_at"]) * 1000, 1)
                    p["card_method"] = card[1]
                    if card[0] - p["posted_at"] > sla + CARD_MARGIN:
                        problems.append(f"{ref}: proposal card after {p['card_ms']:.0f} ms (> SLA + {CARD_MARGIN:g} s)")
                else:
                    problems.append(f"{ref}: no proposal card within SLA + {CARD_MARGIN:g} s")
                p["placeholder_cards"] = placeholders.get(ref, 0)
                body = (await app.get(f"/api/incidents/{ref}")).json()
                rows = body.get("decisions") or []
                for row in rows:
                    outcomes[str(row["outcome"])] += 1
                    if row["outcome"] == "failed":
                        failed_reasons[str(row["fallback_reason"])] += 1
                used = [r for r in rows if r["outcome"] == "used"]
                proposal = body.get("decision")
                if len(used) != 1 or proposal is None:
                    problems.append(f"{ref}: {len(used)} used decision rows, proposal {'stored' if proposal else 'missing'}")
                if used:
                    used_sources[str(used[0]["source"])] += 1
                    used_fallbacks[str(used[0]["fallback_reason"] or "none")] += 1
                if proposal is not None:
                    p["source"], p["fallback_reason"] = proposal["source"], proposal["fallback_reason"]
                    p["engine_ms"] = proposal["latency_ms"]
                    engine_ms.append(float(proposal["latency_ms"]))
                p.pop("posted_at", None)

            metrics = parse_decision_metrics((await app.http.get("/metrics")).text)
            card_ms = [p["card_ms"] for p in probes if "card_ms" in p]
            acks = [p["ack_ms"] for p in probes if "ack_ms" in p]
            result.update(
                proposal_cards=len(card_ms),
                card_ms={"p50": pct(card_ms, 0.50), "p95": pct(card_ms, 0.95),
                         "min": min(card_ms, default=None), "max": max(card_ms, default=None)},
                engine_ms={"p50": pct(engine_ms, 0.50), "p95": pct(engine_ms, 0.95), "max": max(engine_ms, default=None)},
                ack_ms={"p50": pct(acks, 0.50), "max": max(acks, default=None)},
                placeholder_first=sum(1 for p in probes if p.get("placeholder_cards")),
                card_methods=dict(Counter(p["card_method"] for p in probes if "card_method" in p)),
                sources=dict(used_sources),
                fallbacks=dict(used_fallbacks),
                failed_attempts=dict(failed_reasons),
                decision_rows=dict(outcomes),
                decisions_total=metrics,
                ai_requests=len(model.requests) if model is not None else None,
                problems=problems,
                probes=probes,
            )
            result["ok"] = not problems and "error" not in result
    except Exception as exc:  # one failed scenario must not hide the others' figures
        result["error"] = f"{type(exc).__name__}: {exc}"
        say(f"  {name}: {result['error']}")
    finally:
        structlog.configure(logger_factory=structlog.PrintLoggerFactory(file=sys.stderr))
        log_file.close()
        if result["ok"] and not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
            result["workdir"] = None
        else:
            result["workdir"] = str(workdir)
    for problem in result.get("problems", [])[:10]:
        say(f"  {name}: {problem}")
    return result


# --------------------------------------------------------------------------- report


def fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.0f}"
    return str(value)


def counts(d: dict[str, Any]) -> str:
    return ", ".join(f"{k} {int(v)}" for k, v in sorted(d.items(), key=lambda kv: (-kv[1], kv[0]))) or "-"


def report(results: list[dict[str, Any]]) -> str:
    head = ("scenario", "incidents", "cards", "p50 ms", "p95 ms", "max ms", "engine p50", "placeholder 1st",
            "sources", "fallbacks")
    rows = [head]
    for r in results:
        if "card_ms" not in r:
            rows.append((r["scenario"], str(r["incidents"]), "-", "-", "-", "-", "-", "-", "ERROR", str(r.get("error"))[:60]))
            continue
        c = r["card_ms"]
        rows.append((
            r["scenario"], str(r["incidents"]), str(r["proposal_cards"]), fmt(c["p50"]), fmt(c["p95"]), fmt(c["max"]),
            fmt(r["engine_ms"]["p50"]), str(r["placeholder_first"]), counts(r["sources"]), counts(r["fallbacks"]),
        ))
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    left = {0, len(head) - 2, len(head) - 1}
    lines = ["  ".join(cell.ljust(w) if i in left else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths))).rstrip()
             for row in rows]
    lines.insert(1, "-" * max(len(line) for line in lines))
    lines.append("")
    lines.append("time to card: from just before the webhook POST to the fake Bot API receiving the first sendMessage/"
                 "editMessageText whose card shows the proposal; engine: the decision's own latency_ms.")
    lines.append(f"'placeholder 1st': incidents whose card went out as 'Analysing…' first (the first card waits "
                 f"{FIRST_CARD_GRACE.total_seconds():g} s for the proposal, then goes out without it).")
    lines.append("")
    for r in results:
        s = r["settings"]
        bits = [f"SLA {s['decision_sla_s']:g} s"]
        if s["ai"]:
            bits.append(f"AI: {s['ai']}" + (f" after {s['ai_delay_s']:g} s" if s["ai_delay_s"] else ""))
            bits.append(f"AI client timeout {s['ai_timeout_s']:g} s")
        if s["playbooks"]:
            bits.append(f"playbook {s['playbooks']}")
        lines.append(f"{r['scenario']}: " + "; ".join(bits))
        if "card_ms" not in r:
            lines.append(f"    ERROR {r.get('error')}")
            continue
        lines.append(f"    decisions_total (metrics): {counts(r['decisions_total'])}")
        lines.append(f"    decision rows: {counts(r['decision_rows'])}"
                     + (f"; failed attempts: {counts(r['failed_attempts'])}" if r["failed_attempts"] else "")
                     + (f"; model requests: {r['ai_requests']}" if r["ai_requests"] is not None else ""))
        lines.append(f"    card requests: {counts(r['card_methods'])}; burst of {r['incidents']} POSTs took "
                     f"{r['burst_ms']:.0f} ms (ack p50 {fmt(r['ack_ms']['p50'])} ms)")
        if r.get("problems"):
            lines.append(f"    PROBLEMS ({len(r['problems'])}): " + "; ".join(r["problems"][:5]))
        if r.get("workdir"):
            lines.append(f"    kept: {r['workdir']} (app.log, alertpilot.db)")
    hanging = next((r for r in results if r["scenario"] == "ai-hanging"), None)
    if hanging is not None:
        lines.append("")
        lines.append(f"ai-hanging runs with a {hanging['settings']['decision_sla_s']:g} s decision SLA (default "
                     f"{DEFAULT_SLA:g} s) to keep the run short. The circuit breaker opens after {BREAKER_FAILURES} "
                     f"failures in a row, for {BREAKER_SECONDS:g} s; requests already in flight still count as failures.")
    return "\n".join(lines)


async def amain(args: argparse.Namespace) -> int:
    chosen = list(SCENARIOS)
    if args.only:
        names = [s.strip() for s in args.only.split(",") if s.strip()]
        unknown = [s for s in names if s not in SCENARIOS]
        if unknown:
            say(f"unknown scenario(s): {', '.join(unknown)} (known: {', '.join(SCENARIOS)})")
            return 2
        chosen = [s for s in SCENARIOS if s in names]
    templates = incident_templates()
    started = time.perf_counter()
    results = [await run_scenario(name, args, templates) for name in chosen]
    elapsed = round(time.perf_counter() - started, 1)
    await asyncio.sleep(0)  # let finished callbacks run before looking for leftovers
    leftovers = [t.get_name() for t in asyncio.all_tasks() if t is not asyncio.current_task() and not t.done()]
    if args.json:
        for r in results:
            if not args.probes:
                r.pop("probes", None)
        doc = {
            "benchmark": "alertpilot decision",
            "when": datetime.now(UTC).isoformat(timespec="seconds"),
            "host": {"python": platform.python_version(), "platform": platform.platform(), "ncpu": os.cpu_count()},
            "fixtures": templates,
            "first_card_grace_s": FIRST_CARD_GRACE.total_seconds(),
            "breaker": {"failures": BREAKER_FAILURES, "seconds": BREAKER_SECONDS},
            "elapsed_s": elapsed,
            "leftover_tasks": leftovers,
            "scenarios": results,
        }
        print(json.dumps(doc, indent=2))
    else:
        print(report(results))
        print(f"\n{len(results)} scenarios in {elapsed:.1f} s; fixtures {', '.join(templates)} in turn")
    if leftovers:
        say(f"tasks still running after the scenarios: {', '.join(leftovers)}")
    return 0 if all(r["ok"] for r in results) and not leftovers else 1


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--incidents", type=int, default=20, help="incidents per scenario (default 20)")
    p.add_argument("--json", action="store_true", help="print the results as one JSON document instead of the table")
    p.add_argument("--probes", action="store_true", help="with --json, include every incident's measurements")
    p.add_argument("--only", metavar="NAMES", help=f"comma list of scenarios ({','.join(SCENARIOS)})")
    p.add_argument("--ai-delay", type=float, default=1.0, help="seconds the fake model takes in 'ai' (default 1)")
    p.add_argument("--hanging-sla", type=float, default=3.0, help="decision SLA in 'ai-hanging' (default 3 s)")
    p.add_argument("--keep", action="store_true", help="keep every scenario's temporary directory")
    args = p.parse_args(argv)
    if not 1 <= args.incidents <= 500:
        p.error("--incidents must be 1..500")
    if args.ai_delay < 0 or not 0 < args.hanging_sla <= 60:
        p.error("--ai-delay must be >= 0 and --hanging-sla in (0, 60]")
    warnings.simplefilter("default")  # unclosed sessions and never-awaited coroutines show up on stderr
    configure_logging("console", "info")  # then pointed at each scenario's app.log
    return asyncio.run(amain(args))


if __name__ == "__main__":
    sys.exit(main())
