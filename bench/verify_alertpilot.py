"""alertstorm verify hook for alertpilot: what did alertpilot store for this run, and does it match what
alertstorm sent and got a 2xx for?

    python ../shared/bench/alertstorm.py --url http://127.0.0.1:PORT/webhooks/alertmanager \
        --header "Authorization: Bearer $ALERTPILOT_INGEST_TOKEN" \
        --verify bench/verify_alertpilot.py:verify --verify-url http://127.0.0.1:PORT ...

It reads alertpilot's read API, GET /api/alerts (bearer token: the run's --header "Authorization: ...",
else the environment variable ALERTPILOT_INGEST_TOKEN). Two ways to find the run's alerts:

* ``page`` (the default): page through every stored alert, 500 at a time in id order, and keep those whose
  ``labels.instance`` contains the run id. 20 000 identities are 40 requests.
* ``fingerprint``: one GET /api/alerts?fingerprint=... per identity (a few in flight). Cheaper only when the
  database holds far more alerts than this run sent; chosen automatically in that case for small runs.
  ALERTPILOT_VERIFY_MODE=page|fingerprint forces one.

alertpilot's semantics, per identity (one alert row per receiver|fingerprint while its incident is open):

* every acknowledged identity is stored, exactly once (one row);
* ``repeat_count`` counts re-notifications: every firing notification after the first, and every resolved
  notification after the first resolve (the first resolve is a state change, not a repeat), so for
  --order phased it is ``acked_firing - 1 + max(acked_resolved - 1, 0)``;
* the final ``status`` is ``resolved`` when a resolved instance was acknowledged, else ``firing``.

With --order random only presence is checked strictly (the final state then depends on arrival order).
"""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp

PAGE = 500  # the read API's maximum page size
PAGE_CONCURRENCY = 4
FINGERPRINT_CONCURRENCY = 16
FINGERPRINT_MODE_MAX_IDENTITIES = 2000
SAMPLES = 3
REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=120)


class _ApiError(Exception):
    pass


def _base(ctx: dict[str, Any]) -> str:
    if ctx.get("verify_url"):
        return str(ctx["verify_url"]).rstrip("/")
    u = urlsplit(ctx["url"])
    cut = u.path.find("/webhooks/")
    path = u.path[:cut] if cut >= 0 else ""
    return urlunsplit((u.scheme, u.netloc, path, "", "")).rstrip("/")


def _headers(ctx: dict[str, Any]) -> dict[str, str]:
    """The run's own headers (alertstorm passes its --header values as ctx["headers"]); the bearer token
    falls back to ALERTPILOT_INGEST_TOKEN."""
    headers = {str(k): str(v) for k, v in (ctx.get("headers") or {}).items()}
    args = ctx.get("args")
    for raw in getattr(args, "header", None) or []:
        name, _, value = str(raw).partition(":")
        headers.setdefault(name.strip(), value.strip())
    if not any(k.lower() == "authorization" for k in headers):
        token = os.environ.get("ALERTPILOT_INGEST_TOKEN", "").strip()
        if token:
            headers["Authorization"] = f"Bearer {token}"
    return headers


async def _get(session: aiohttp.ClientSession, url: str, headers: dict[str, str], params: dict[str, str]) -> dict[str, Any]:
    async with session.get(url, params=params, headers=headers, timeout=REQUEST_TIMEOUT) as r:
        if r.status != 200:
            raise _ApiError(f"GET {r.url.path_qs} -> HTTP {r.status}: {(await r.text())[:200]}")
        return await r.json()


async def _page_all(session: aiohttp.ClientSession, url: str, headers: dict[str, str],
                    first: dict[str, Any]) -> tuple[list[dict[str, Any]], int]:
    """Every stored alert, fetched 500 at a time (the first page is already in hand)."""
    total = int(first["total"])
    offsets = list(range(PAGE, total, PAGE))
    pages: dict[int, list[dict[str, Any]]] = {0: first["items"]}
    gate = asyncio.Semaphore(PAGE_CONCURRENCY)

    async def one(offset: int) -> None:
        async with gate:
            body = await _get(session, url, headers, {"limit": str(PAGE), "offset": str(offset)})
            pages[offset] = body["items"]

    await asyncio.gather(*(one(o) for o in offsets))
    items = [a for o in sorted(pages) for a in pages[o]]
    return items, 1 + len(offsets)


async def _by_fingerprint(session: aiohttp.ClientSession, url: str, headers: dict[str, str],
                          fingerprints: list[str]) -> tuple[list[dict[str, Any]], int]:
    gate = asyncio.Semaphore(FINGERPRINT_CONCURRENCY)
    found: list[dict[str, Any]] = []
    requests = 0

    async def one(fp: str) -> None:
        nonlocal requests
        async with gate:
            offset = 0
            while True:  # an identity normally has one row; page anyway
                body = await _get(session, url, headers, {"fingerprint": fp, "limit": str(PAGE), "offset": str(offset)})
                requests += 1
                found.extend(body["items"])
                offset += PAGE
                if offset >= int(body["total"]) or not body["items"]:
                    return

    await asyncio.gather(*(one(fp) for fp in fingerprints))
    return found, requests


async def verify(ctx: dict[str, Any]) -> dict[str, Any]:
    session: aiohttp.ClientSession = ctx["session"]
    exp = ctx["expected"]
    run_id = exp["run_id"]
    url = _base(ctx) + "/api/alerts"
    headers = _headers(ctx)
    identities = exp["identities"]
    strict = bool(exp.get("deterministic"))

    try:
        first = await _get(session, url, headers, {"limit": str(PAGE), "offset": "0"})
        mode = os.environ.get("ALERTPILOT_VERIFY_MODE", "").strip().lower()
        if mode not in ("page", "fingerprint"):
            many_others = int(first["total"]) > 4 * max(1, len(identities))
            mode = "fingerprint" if many_others and len(identities) <= FINGERPRINT_MODE_MAX_IDENTITIES else "page"
        if mode == "page":
            items, requests = await _page_all(session, url, headers, first)
        else:
            items, requests = await _by_fingerprint(session, url, headers, [e["fingerprint"] for e in identities])
            requests += 1
    except (TimeoutError, _ApiError, aiohttp.ClientError, KeyError, ValueError) as exc:
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}

    # this run's rows, grouped by fingerprint, in id order
    rows: dict[str, list[dict[str, Any]]] = {}
    seen_ids: set[Any] = set()
    for a in items:
        instance = str((a.get("labels") or {}).get("instance", ""))
        if run_id not in instance or a.get("id") in seen_ids:
            continue
        seen_ids.add(a.get("id"))
        rows.setdefault(a["fingerprint"], []).append(a)
    for group in rows.values():
        group.sort(key=lambda a: a.get("id") or 0)

    by_fp = {e["fingerprint"]: e for e in identities}
    missing, extra, split, repeat_mismatch, state_mismatch, unacked_stored = [], [], [], [], [], []
    for fp, group in rows.items():
        e = by_fp.get(fp)
        if e is None:
            extra.append((fp, group[0]["labels"].get("instance")))
            continue
        instance = e["labels"]["instance"]
        if not e["acked_any"]:
            unacked_stored.append((fp, instance))  # stored although its request got no 2xx (timeout, ...)
            continue
        if len(group) > 1:
            split.append({"fingerprint": fp, "instance": instance, "rows": len(group),
                          "row_ids": [a.get("id") for a in group][:5],
                          "statuses": [a["status"] for a in group][:5],
                          "repeat_counts": [a["repeat_count"] for a in group][:5]})
        stored_instances = sum(1 + int(a["repeat_count"]) for a in group)
        stored_repeat = stored_instances - 1
        want_repeat = expected_repeats(e)
        if stored_repeat != want_repeat:
            repeat_mismatch.append({"fingerprint": fp, "instance": instance, "stored_repeat_count": stored_repeat,
                                    "expected_repeat_count": want_repeat, "acked_firing": e["acked_firing"],
                                    "acked_resolved": e["acked_resolved"]})
        stored_status = group[-1]["status"]
        want_status = "resolved" if e["acked_resolved"] else "firing"
        if stored_status != want_status:
            state_mismatch.append({"fingerprint": fp, "instance": instance, "stored_status": stored_status,
                                   "expected_status": want_status, "acked_firing": e["acked_firing"],
                                   "acked_resolved": e["acked_resolved"]})
    for e in identities:
        if e["acked_any"] and e["fingerprint"] not in rows:
            missing.append({"fingerprint": e["fingerprint"], "instance": e["labels"]["instance"],
                            "acked_firing": e["acked_firing"], "acked_resolved": e["acked_resolved"]})

    all_rows = [a for group in rows.values() for a in group]
    observed_repeat = sum(int(a["repeat_count"]) for a in all_rows)
    acked_ids = [e for e in identities if e["acked_any"]]
    expected_repeat = sum(expected_repeats(e) for e in acked_ids)
    t = exp["totals"]
    ok = not missing and not extra and len(rows) - len(unacked_stored) == t["expected_identities_acked"]
    if strict:
        ok = ok and not split and not repeat_mismatch and not state_mismatch
    return {
        "ok": ok,
        "mode": mode,
        "api_requests": requests,
        "observed_alerts": len(rows),
        "observed_rows": len(all_rows),
        "expected_alerts": t["identities"],
        "expected_alerts_acked": t["expected_identities_acked"],
        "observed_repeat_sum": observed_repeat,
        "expected_repeat_sum_acked": expected_repeat,
        "observed_instances": len(all_rows) + observed_repeat,
        "expected_instances_acked": t["alerts_acked"],
        "observed_status": dict(Counter(a["status"] for a in all_rows)),
        "expected_status": {"firing": sum(1 for e in acked_ids if not e["acked_resolved"]),
                            "resolved": sum(1 for e in acked_ids if e["acked_resolved"])},
        "missing_identities": len(missing),
        "extra_identities": len(extra),
        "split_identities": len(split),
        "unacked_but_stored": len(unacked_stored),
        "repeat_mismatches": len(repeat_mismatch),
        # how far off the mismatches are, split by whether the identity was resolved: tells a systematic
        # rule difference (e.g. always -1 on resolved identities) from lost or double-counted instances
        "repeat_mismatch_deltas": dict(Counter(
            f"{m['stored_repeat_count'] - m['expected_repeat_count']:+d} ({'resolved' if m['acked_resolved'] else 'firing'})"
            for m in repeat_mismatch)),
        "state_mismatches": len(state_mismatch),
        "samples": {
            "missing": missing[:SAMPLES],
            "extra": extra[:SAMPLES],
            "split": split[:SAMPLES],
            "repeat_mismatch": repeat_mismatch[:SAMPLES],
            "state_mismatch": state_mismatch[:SAMPLES],
        },
        "strict": strict,
    }


def expected_repeats(e: dict) -> int:
    """alertpilot's repeat count for an identity: repeats of firing, plus repeats of the resolve."""
    firing, resolved = e["acked_firing"], e["acked_resolved"]
    if not firing:  # only resolves arrived: the first is the alert's first sighting
        return max(resolved - 1, 0)
    return firing - 1 + max(resolved - 1, 0)
