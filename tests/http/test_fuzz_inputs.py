"""Fuzzed input at the app's HTTP edge (hypothesis): alert webhook bodies, WeCom callbacks and Telegram
updates (webhook mode), over 10,000 generated requests in all. Whatever arrives, the answer is never a 5xx: a body is stored (2xx) or refused
with a 4xx and a JSON ``{"error": <reason>}``, and the app still answers /healthz afterwards.

The real app runs once per test on its own event-loop thread (SQLite in tmp_path); the hypothesis examples
are plain sync functions that talk to it over loopback HTTP, so pytest-asyncio is not involved and the
examples need no function-scoped fixture. derandomize=True and database=None: CI sees the same inputs on
every run. To fuzz another entry point, start a ``LiveApp`` with its settings and call ``fuzz(name, strategy,
act)`` with an ``act`` that sends one case and checks the answer (and its count in EXAMPLES)."""

from __future__ import annotations

import asyncio
import base64
import http.client
import itertools
import json
import os
import struct
import threading
import urllib.parse
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.chat.wecom_crypto import WeComCrypto
from services.sources.credentials import sign
from tests.fakes.botapi import FakeBotAPI
from tests.harness import (
    BOT_TOKEN,
    CHAT_ID,
    FIXTURES,
    ROLES,
    ROOT,
    TOKEN,
    AppUnderTest,
    app_settings,
    fixture,
    start_app,
)

T = TypeVar("T")
CALLBACKS: dict[str, Any] = json.loads((FIXTURES / "wecom" / "aibot_callbacks.json").read_text())
NOW = datetime.fromtimestamp(int(CALLBACKS["mention_text"]["query"]["timestamp"]), UTC)
LOCAL = ROOT / "tests" / "fixtures"
CI_SECRET = "ci-hmac-secret-0123456789abcdef"
TEAM_TOKEN = "team-token-0123456789abcdef"
SOURCES = [
    {"name": "ci", "kinds": ["generic"], "hmac_secret": CI_SECRET},
    {"name": "team", "kinds": ["grafana"], "token": TEAM_TOKEN, "labels": {"team": "payments"}},
]
WECOM_ROLES = f"{ROLES},wecom:lisi=approver,wecom:zhangsan=operator"
# Examples per category: over 10,000 requests in all, in about a minute (the plausible payloads and the signed
# WeCom messages cost the most: they get through to the database and the command handling).
EXAMPLES = {
    "webhooks: raw bytes": 1000,
    "webhooks: random JSON": 1600,
    "webhooks: plausible alertmanager": 900,
    "webhooks: plausible grafana": 900,
    "webhooks: plausible generic": 900,
    "webhooks: huge or deep": 150,
    "webhooks: credentials": 1000,
    "wecom: random query and body": 1500,
    "wecom: signed garbage ciphertext": 1600,
    "wecom: signed messages": 1200,
    "telegram: bodies and secrets": 600,
    "telegram: plausible updates": 1200,
}
assert sum(EXAMPLES.values()) >= 10_000
SCALE = float(os.environ.get("FUZZ_EXAMPLES_SCALE", "1"))  # e.g. 10 for a long local run, 0.1 for a quick one
COUNTS: dict[str, int] = {}  # examples sent per category (printed by the last test, see -s)
RAW_QUERY_SAFE = "%&=;+?#/:@!$'()*,~"  # what a raw query keeps as it is; the rest is percent-encoded


# --- the app on a background loop ---------------------------------------------------------------------------


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@dataclass(frozen=True)
class Answer:
    status_code: int
    headers: http.client.HTTPMessage
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        return json.loads(self.content)


class Http:
    """A minimal keep-alive HTTP/1.1 client (http.client): the bytes given are the bytes sent, and it costs a
    fraction of httpx per request, which matters for 10,000 of them."""

    def __init__(self, base_url: str) -> None:
        parts = urllib.parse.urlsplit(base_url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=30)

    def request(self, method: str, url: str, *, content: bytes | None = None,
                headers: dict[str, bytes] | None = None) -> Answer:
        for attempt in range(2):
            try:
                self.conn.request(method, url, body=content, headers=headers or {})
                response = self.conn.getresponse()
                answer = Answer(response.status, response.headers, response.read())
                if response.will_close:
                    self.conn.close()
                return answer
            except (ConnectionError, http.client.RemoteDisconnected, http.client.BadStatusLine):
                self.conn.close()  # the server closed the kept-alive connection (after a 413): once more, anew
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def get(self, url: str) -> Answer:
        return self.request("GET", url)

    def close(self) -> None:
        self.conn.close()


class LiveApp:
    """The real app on its own event loop thread; ``http`` is a sync client for it (keep-alive, loopback)."""

    def __init__(self, tmp_path: Path, *, telegram: bool = False, **overrides: Any) -> None:
        """``telegram``: with a fake Bot API (``bot_api``) on the same loop, for Telegram's webhook mode."""
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="fuzz-app", daemon=True)
        self.thread.start()
        self.bot_api: FakeBotAPI | None = None
        try:
            if telegram:
                self.bot_api = self.run(FakeBotAPI(token=BOT_TOKEN).start())
                overrides["bot_api"] = self.bot_api.base_url
            self.app: AppUnderTest = self.run(start_app(app_settings(tmp_path, **overrides), clock=Clock(NOW),
                                                        console=_Null()))
        except BaseException:
            self._stop_loop()
            raise
        self.http = Http(self.app.base_url)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.http.close()
        try:
            self.run(self.app.stop())
            if self.bot_api is not None:
                self.run(self.bot_api.stop())
        finally:
            self._stop_loop()

    def _stop_loop(self) -> None:
        self.run(_cancel_leftovers())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


class _Null:
    """A console that drops the cards (10,000 requests make many)."""

    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass


async def _cancel_leftovers() -> None:
    current = asyncio.current_task()
    tasks = [t for t in asyncio.all_tasks() if t is not current]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveApp]:
    app = LiveApp(
        tmp_path, roles=WECOM_ROLES, sources=json.dumps(SOURCES),
        wecom_bot_token=CALLBACKS["token"], wecom_bot_aes_key=CALLBACKS["encoding_aes_key"],
    )
    try:
        yield app
        health = app.http.get("/healthz")  # the server survived everything it was sent
        assert health.status_code == 200 and health.json()["database"] == "ok", health.text
    finally:
        app.close()


def fuzz(name: str, strategy: st.SearchStrategy[T], act: Callable[[T], None]) -> int:
    """Run ``act`` on EXAMPLES[name] inputs drawn from ``strategy`` (reproducibly); the number of examples run."""
    sent, examples = 0, max(1, round(EXAMPLES[name] * SCALE))

    @settings(max_examples=examples, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much,
                                     HealthCheck.large_base_example])
    @given(strategy)
    def run(case: T) -> None:
        nonlocal sent
        sent += 1
        act(case)

    run()
    COUNTS[name] = COUNTS.get(name, 0) + sent
    assert sent >= examples * 0.9, f"{name}: only {sent} of {examples} examples ran"
    return sent


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    params: dict[str, str] | None = None
    raw_query: str | None = None  # sent as is after "?" (percent escapes and all), instead of params
    content: bytes = b""
    headers: dict[str, bytes] = field(default_factory=dict)


def send(live: LiveApp, request: Request) -> Answer:
    if request.raw_query is not None:  # percent-encode only what cannot go into a request line as it is
        url = f"{request.path}?{urllib.parse.quote(request.raw_query, safe=RAW_QUERY_SAFE)}"
    elif request.params is not None:
        url = f"{request.path}?{urllib.parse.urlencode(request.params)}"
    else:
        url = request.path
    return live.http.request(request.method, url, content=request.content if request.method != "GET" else None,
                             headers=request.headers)


def check_answer(request: Request, response: Answer) -> None:
    """The property: no 5xx, and every refusal is JSON with a non-empty reason."""
    where = f"{request!r:.1500} -> {response.status_code} {response.text[:500]!r}"
    assert response.status_code < 500, where
    if response.status_code >= 400:
        assert response.headers.get("content-type", "").startswith("application/json"), where
        body = response.json()
        assert isinstance(body, dict) and isinstance(body.get("error"), str) and body["error"].strip(), where


# --- building blocks ----------------------------------------------------------------------------------------


@st.composite
def mostly(draw: st.DrawFn, good: st.SearchStrategy[Any], odd: st.SearchStrategy[Any], one_in: int = 6) -> Any:
    """``good``, and about once in ``one_in`` draws ``odd``: enough right values to get past the first check
    (st.one_of picks its branches evenly, and drops repeated ones)."""
    return draw(odd) if draw(st.integers(1, one_in)) == one_in else draw(good)


UNICODE = st.characters(exclude_categories=["Cs"])  # what UTF-8 can carry
ANY_CHAR = UNICODE | st.characters(categories=["Cs"])  # lone surrogates too (as JSON \udXXX escapes)
ODD_TEXT = st.sampled_from([
    "", " ", "\x00", "a\x00b", "\ud800", "x\udfffy", "x" * 5000, "firing", "resolved", "FIRING", "4", "1",
    "2026-11-24T05:06:48Z", "0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "1969-12-31T23:59:59Z",
    "2026-02-30T00:00:00Z", "2026-11-24T25:61:61+99:99", "2026-11-24 05:06:48.123456789123z",
    "javascript:alert(1)", "https://a.example/x", "http://[::1", "/d/abc", "//evil.example", "%", "💥" * 300,
    "INC-1", "inc-0", "#999999999999", "١٢", "²", "\u202e", "null", "{}", "[]",
])
TEXT = mostly(st.text(UNICODE, max_size=20), st.text(ANY_CHAR, max_size=20) | ODD_TEXT, 4)
STAMP = str(int(NOW.timestamp()))
QUERY_TEXT = st.text(UNICODE, max_size=30) | st.sampled_from(  # URLs cannot carry lone surrogates
    ["", "0", STAMP, str(int(NOW.timestamp()) + 301), "9" * 13, "١٢٣", "²", " 1", "0x10", "-1"])
NAME = mostly(st.text(st.characters(codec="ascii", categories=["L", "N"]), min_size=1, max_size=12) |
              st.text(UNICODE, min_size=1, max_size=12), ODD_TEXT)
SCALAR = (st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | TEXT)
JSON = st.recursive(SCALAR, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
                    max_leaves=12)


def maybe(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly ``valid``, sometimes any JSON value (a wrong type, null, junk)."""
    return mostly(valid, JSON, 10)


def shaped(required: dict[str, st.SearchStrategy[Any]], optional: dict[str, st.SearchStrategy[Any]]
           ) -> st.SearchStrategy[dict[str, Any]]:
    """An object with its fields mostly right: now and then a required one missing, or junk fields added."""
    base = st.fixed_dictionaries({k: maybe(v) for k, v in required.items()},
                                 optional={k: maybe(v) for k, v in optional.items()})
    dropped = mostly(st.just(set()), st.sets(st.sampled_from(sorted(required)), max_size=1)) if required \
        else st.just(set())
    extra = mostly(st.just({}), st.dictionaries(TEXT, JSON, max_size=2), 3)
    return st.builds(lambda d, drop, more: {**more, **{k: v for k, v in d.items() if k not in drop}},
                     base, dropped, extra)


DIGITS = st.text(st.characters(categories=["Nd"]) | st.sampled_from("0123456789"), min_size=1, max_size=4)
TIME = mostly(
    st.just(NOW.isoformat()) | st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(2199, 12, 30),
                                            timezones=st.just(UTC)).map(lambda d: d.isoformat().replace("+00:00", "Z")),
    st.one_of(
        st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31)).map(lambda d: d.isoformat() + "Z"),
        st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()),
        st.builds(lambda y, m, d, h, tz: f"{y:0>4}-{m:0>2}-{d:0>2}T{h}:00:00{tz}", DIGITS, DIGITS, DIGITS,
                  st.integers(0, 99), st.sampled_from(["Z", "z", "+08:00", "-23:59", "+24:00", ""])),
        ODD_TEXT,
    ), 3)
URL = st.sampled_from(["https://grafana.example/d/abc?viewPanel=1", "http://x", "/d/rel", "ftp://x", ""]) | TEXT
LABELS = st.builds(lambda named, more: {**more, **named},
                   st.fixed_dictionaries({"alertname": NAME}, optional={
                       "severity": st.sampled_from(["critical", "warning", "info", "page"]) | NAME,
                       "service": NAME, "instance": NAME}),
                   mostly(st.just({}), st.dictionaries(TEXT, maybe(TEXT), max_size=2), 3))
GROUP_LABELS = st.dictionaries(st.sampled_from(["alertname", "severity", "service"]) | TEXT, maybe(NAME), max_size=2)
STATUS = st.sampled_from(["firing", "resolved"])


def alerts_of(alert: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.lists(alert, min_size=1, max_size=3)


AM_ALERT = shaped({"status": STATUS, "labels": LABELS, "startsAt": TIME},
                  {"annotations": LABELS, "endsAt": TIME, "fingerprint": NAME, "generatorURL": URL})
ALERTMANAGER = shaped(
    {"version": st.just("4"), "receiver": NAME, "groupKey": NAME, "status": STATUS, "alerts": alerts_of(AM_ALERT)},
    {"groupLabels": GROUP_LABELS, "commonLabels": GROUP_LABELS, "commonAnnotations": GROUP_LABELS, "externalURL": URL,
     "truncatedAlerts": st.integers(-2, 2**64)},
)
GRAFANA_ALERT = shaped({"status": STATUS}, {
    "labels": LABELS, "annotations": LABELS, "startsAt": TIME, "endsAt": TIME, "fingerprint": NAME,
    "generatorURL": URL, "silenceURL": URL, "dashboardURL": URL, "panelURL": URL, "title": TEXT,
    "valueString": TEXT, "values": st.dictionaries(TEXT, maybe(st.integers(-(2**80), 2**80) | st.floats())),
})
GRAFANA = shaped({"alerts": alerts_of(GRAFANA_ALERT)}, {
    "version": st.sampled_from(["1", "4", 1]), "receiver": NAME, "status": STATUS, "groupKey": NAME,
    "groupLabels": GROUP_LABELS, "commonLabels": GROUP_LABELS, "commonAnnotations": GROUP_LABELS, "externalURL": URL,
    "truncatedAlerts": st.integers(-2, 2**64), "orgId": st.integers(), "title": TEXT, "message": TEXT,
    "ruleName": TEXT, "evalMatches": JSON,
})
GENERIC_ALERT = shaped({"title": NAME}, {
    "severity": NAME, "service": NAME, "namespace": NAME, "status": STATUS, "labels": LABELS,
    "annotations": LABELS, "fingerprint": NAME, "starts_at": TIME, "ends_at": TIME, "description": TEXT,
    "url": URL,
})
GENERIC = GENERIC_ALERT | alerts_of(GENERIC_ALERT) | st.builds(lambda a: {"alerts": a}, maybe(alerts_of(GENERIC_ALERT)))

KINDS = ("alertmanager", "grafana", "generic")
PLAUSIBLE = {"alertmanager": ALERTMANAGER, "grafana": GRAFANA, "generic": GENERIC}
BEARER = {"Authorization": f"Bearer {TOKEN}".encode()}
CONTENT_TYPES = st.sampled_from([
    b"application/json", b"application/json; charset=utf-8", b"text/plain", b"application/x-www-form-urlencoded",
    b"multipart/form-data; boundary=xyz", b"application/json; charset=latin-1", b"", b"\xff/\xfe", b"*/*;;;=",
])
# header values h11 can send: no control characters; any other byte (decoded by aiohttp as UTF-8 or not)
HEADER_TEXT = st.text(st.characters(exclude_categories=["Cs", "Cc", "Zl", "Zp"]), max_size=60).map(
    lambda s: s.strip().encode("utf-8")) | st.binary(max_size=40).map(
    lambda b: bytes(c for c in b if c >= 0x21 and c != 0x7F))


def dump(value: Any, ascii_only: bool) -> bytes:
    """JSON as a sender might write it; lone surrogates raw (invalid UTF-8) when not ASCII-escaped."""
    return json.dumps(value, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")


def webhook(kind: str, body: bytes, headers: dict[str, bytes] | None = None, query: dict[str, str] | None = None
            ) -> Request:
    return Request("POST", f"/webhooks/{kind}", params=query, content=body,
                   headers={**BEARER, "Content-Type": b"application/json"} if headers is None else headers)


# --- (a) the alert webhooks ---------------------------------------------------------------------------------

GARBAGE_WEBHOOKS = st.builds(
    lambda kind, body, ctype, method: replace(webhook(kind, body, {**BEARER, "Content-Type": ctype}), method=method),
    st.sampled_from(KINDS),
    st.binary(max_size=600) | st.text(ANY_CHAR, max_size=300).map(lambda s: s.encode("utf-8", "surrogatepass")),
    CONTENT_TYPES, mostly(st.just("POST"), st.sampled_from(["PUT", "PATCH", "DELETE", "GET", "OPTIONS"]), 8),
)
RANDOM_JSON_WEBHOOKS = st.builds(
    lambda kind, value, ascii_only, ctype: webhook(kind, dump(value, ascii_only), {**BEARER, "Content-Type": ctype}),
    st.sampled_from(KINDS), JSON, st.booleans(), CONTENT_TYPES,
)


def plausible_webhooks(kind: str) -> st.SearchStrategy[Request]:
    return st.builds(lambda value, ascii_only, ctype: webhook(kind, dump(value, ascii_only),
                                                              {**BEARER, "Content-Type": ctype}),
                     PLAUSIBLE[kind], st.booleans() | st.just(True), CONTENT_TYPES)


def _mangled_fixture(kind: str, nest: int, pad: int, count: int, text: str) -> Any:
    """A real payload made huge: a long string, many alerts, deep nesting (at most a few MiB in all)."""
    base: Any = json.loads((LOCAL / "grafana" / "firing.json").read_text()) if kind == "grafana" else (
        json.loads((LOCAL / "generic" / "one.json").read_text()) if kind == "generic"
        else fixture("01-firing-one-alert.json"))
    alerts = base["alerts"] if isinstance(base, dict) and "alerts" in base else None
    if alerts is not None:
        alerts[0].setdefault("annotations", {})["description"] = text * (pad // count)
        base["alerts"] = [dict(alerts[0], fingerprint=f"fp{i}") for i in range(count)]
        deep: Any = "x"
        for _ in range(nest):
            deep = [deep]
        base["extra"] = deep
    else:
        base["description"] = text * pad
        base["extra"] = nest
    return base


HUGE_WEBHOOKS = st.one_of(
    st.builds(lambda kind, nest, pad, count, text: webhook(kind, dump(_mangled_fixture(kind, nest, pad, count, text),
                                                                      True)),
              st.sampled_from(KINDS), st.integers(0, 950), st.integers(0, 60_000), st.integers(1, 120),
              st.sampled_from(["x", "告警", "💥", "\u0301"])),
    st.builds(lambda kind, depth, nest: webhook(kind, nest[0] * depth + b"1" + nest[1] * depth),
              st.sampled_from(KINDS), st.integers(500, 200_000),
              st.sampled_from([(b"[", b"]"), (b'{"a":', b"}"), (b'{"alerts":[', b"]}"), (b"[", b"")])),
    st.builds(lambda kind, size: webhook(kind, b'{"x":"' + b"y" * size + b'"}'), st.sampled_from(KINDS),
              st.integers(1024 * 1024 - 64, 1024 * 1024 + 64)),
)


def _auth_headers(scheme: str, secret: bytes, extra: dict[str, bytes], ctype: bytes) -> dict[str, bytes]:
    headers = {**extra, "Content-Type": ctype}
    if scheme == "none":
        return headers
    if scheme == "basic-b64":
        secret = base64.b64encode(secret)
    return {**headers, "Authorization": (scheme.split("-")[0].encode() + b" " + secret).strip()}


AUTH_SCHEMES = st.sampled_from(["Bearer", "bearer", "Basic", "basic-b64", "Token", "none", ""])
SECRETS = st.sampled_from([
    TOKEN.encode(), TEAM_TOKEN.encode(), b"ci:" + CI_SECRET.encode(), b"team:" + TEAM_TOKEN.encode(),
    b"default:" + TOKEN.encode(), b"", b" ", b"\xff",
]) | HEADER_TEXT
TIMESTAMP = st.sampled_from([str(int(NOW.timestamp())), str(int(NOW.timestamp()) - 10_000), "²", "١٢٣", "0", "-1",
                             "1" * 13, "", "nan"]).map(str.encode) | HEADER_TEXT
EXTRA_HEADERS = st.fixed_dictionaries({}, optional={
    "X-Alertpilot-Token": st.sampled_from([TOKEN.encode(), TEAM_TOKEN.encode()]) | HEADER_TEXT,
    "X-Alertpilot-Source": st.sampled_from([b"ci", b"team", b"default", b"CI"]) | HEADER_TEXT,
    "X-Alertpilot-Signature": st.sampled_from([b"sha256=" + b"0" * 64, b"sha256=", b"md5=abc"]) | HEADER_TEXT,
    "X-Alertpilot-Timestamp": TIMESTAMP,
})


@st.composite
def auth_webhooks(draw: st.DrawFn) -> Request:
    """Every way of (not quite) authenticating, including correctly signed requests for the "ci" source."""
    kind = draw(st.sampled_from(KINDS))
    body = draw(st.one_of(st.just(json.dumps(fixture("01-firing-one-alert.json")).encode()),
                          st.just((LOCAL / "generic" / "one.json").read_bytes()),
                          RANDOM_JSON_WEBHOOKS.map(lambda r: r.content), st.binary(max_size=50)))
    headers = _auth_headers(draw(AUTH_SCHEMES), draw(SECRETS), draw(EXTRA_HEADERS), draw(CONTENT_TYPES))
    query = draw(st.none() | st.fixed_dictionaries({"source": st.sampled_from(["ci", "team", "nope"]) | QUERY_TEXT}))
    if draw(st.booleans()):  # a signature that verifies (a fresh or a stale timestamp; a replay now and then)
        stamp = draw(st.sampled_from([int(NOW.timestamp()), int(NOW.timestamp()) - 1000, int(NOW.timestamp()) + 1]))
        headers.update({"X-Alertpilot-Source": b"ci", "X-Alertpilot-Timestamp": str(stamp).encode(),
                        "X-Alertpilot-Signature": f"sha256={sign(CI_SECRET, str(stamp), body)}".encode()})
    return webhook(kind, body, headers, query)


def test_fuzzed_garbage_and_random_json_at_the_alert_webhooks(live: LiveApp) -> None:
    def act(request: Request) -> None:
        check_answer(request, send(live, request))

    fuzz("webhooks: raw bytes", GARBAGE_WEBHOOKS, act)
    fuzz("webhooks: random JSON", RANDOM_JSON_WEBHOOKS, act)


@pytest.mark.parametrize("kind", KINDS)
def test_fuzzed_plausible_payloads_at_the_alert_webhooks(live: LiveApp, kind: str) -> None:
    statuses: set[int] = set()

    def act(request: Request) -> None:
        response = send(live, request)
        check_answer(request, response)
        statuses.add(response.status_code)
        if response.status_code == 200:
            assert response.json()["status"] == "ok"

    fuzz(f"webhooks: plausible {kind}", plausible_webhooks(kind), act)
    assert {200, 400} <= statuses  # both sides of the parser were reached


def test_fuzzed_huge_and_deep_bodies_at_the_alert_webhooks(live: LiveApp) -> None:
    def act(request: Request) -> None:
        check_answer(request, send(live, request))

    fuzz("webhooks: huge or deep", HUGE_WEBHOOKS, act)


def test_fuzzed_credentials_at_the_alert_webhooks(live: LiveApp) -> None:
    statuses: set[int] = set()

    def act(request: Request) -> None:
        response = send(live, request)
        check_answer(request, response)
        statuses.add(response.status_code)

    fuzz("webhooks: credentials", auth_webhooks(), act)
    assert {200, 401, 403} <= statuses


# --- (b) the WeCom callback ---------------------------------------------------------------------------------

CRYPTO = WeComCrypto(CALLBACKS["token"], CALLBACKS["encoding_aes_key"], CALLBACKS["receive_id"])
AES_KEY = base64.b64decode(CALLBACKS["encoding_aes_key"] + "=")
QUERY_NAMES = ("msg_signature", "timestamp", "nonce", "echostr")


def raw_encrypt(plain: bytes) -> str:
    """AES-256-CBC of ``plain`` (zero-padded to 16 bytes) with the bot's key and IV, bypassing the module's framing."""
    plain += b"\x00" * (-len(plain) % 16)
    encryptor = Cipher(algorithms.AES(AES_KEY), modes.CBC(AES_KEY[:16])).encryptor()
    return base64.b64encode(encryptor.update(plain) + encryptor.finalize()).decode("ascii")


@st.composite
def framed(draw: st.DrawFn) -> str:
    """A ciphertext that decrypts to WXBizMsgCrypt framing gone wrong: the length, padding or receive id."""
    message = draw(st.binary(max_size=80) | st.text(ANY_CHAR, max_size=40).map(
        lambda s: s.encode("utf-8", "surrogatepass")))
    length = draw(st.sampled_from([len(message), 0, 2**32 - 1]) | st.integers(0, 2**32 - 1))
    receive_id = draw(st.sampled_from([b"", b"wwcorp", b"\x00"]))
    plain = bytes(16) + struct.pack(">I", length) + message + receive_id
    pad = draw(st.integers(0, 40))
    return raw_encrypt(plain + bytes([pad % 256]) * draw(st.integers(0, 33)))


GARBAGE_CIPHERTEXT = st.one_of(
    TEXT, st.binary(max_size=200).map(lambda b: base64.b64encode(b).decode()),
    st.binary(min_size=16, max_size=160).map(lambda b: base64.b64encode(b[: len(b) // 16 * 16]).decode()),
    framed(), st.builds(lambda i, m: flip(CALLBACKS["mention_text"]["body"]["encrypt"], i, m),
                        st.integers(0, 351), st.integers(1, 255)),
)


def flip(encrypt: str, index: int, mask: int) -> str:
    """A real ciphertext with one byte changed: CBC garbles that block and flips a byte of the next one."""
    data = bytearray(base64.b64decode(encrypt))
    data[index % len(data)] ^= mask
    return base64.b64encode(bytes(data)).decode("ascii")


def signature(timestamp: str, nonce: str, encrypt: str) -> str:
    """The right signature, or (for an ``encrypt`` with a lone surrogate, which cannot be signed) a wrong one."""
    try:
        return CRYPTO.signature(timestamp, nonce, encrypt)
    except UnicodeEncodeError:
        return "0" * 40


RAW_QUERY_PARTS = st.sampled_from([
    "msg_signature=", "timestamp=", f"timestamp={STAMP}", "nonce=", "echostr=", "&", "&&", "=", ";", "+", "%", "%%",
    "%zz", "%ff", "%ED%A0%80", "%00", "%C0%AF", "%E4%BD%A0", "#", "?", "/", "é", " ", "msg_signature[]=1",
]) | st.text(st.sampled_from("abcdefmsgintuo_=&%;+0123456789"), max_size=8)


def query_of(draw: st.DrawFn, names: tuple[str, ...]) -> dict[str, str] | str:
    """Random query parameters: some missing, some junk, or a raw query string with odd percent escapes."""
    if draw(st.integers(0, 4)) == 0:
        return "".join(draw(st.lists(RAW_QUERY_PARTS, max_size=12)))
    chosen = draw(st.lists(st.sampled_from(names), unique=True, max_size=len(names)))
    params = {name: draw(QUERY_TEXT) for name in chosen}
    params.update(draw(st.dictionaries(QUERY_TEXT, QUERY_TEXT, max_size=2)))
    return params


def wecom_request(method: str, query: dict[str, str] | str, content: bytes = b"") -> Request:
    if isinstance(query, str):
        return Request(method, "/wecom/callback", raw_query=query, content=content)
    return Request(method, "/wecom/callback", params=query, content=content)


@st.composite
def wecom_unsigned(draw: st.DrawFn) -> Request:
    """GET or POST with random query parameters and bodies: refused with 400 or 403."""
    method = draw(st.sampled_from(["GET", "POST"]))
    query = query_of(draw, QUERY_NAMES if method == "GET" else QUERY_NAMES[:3])
    body = draw(st.one_of(st.binary(max_size=200), JSON.map(lambda v: dump(v, True)),
                          st.builds(lambda e: dump({"encrypt": e}, True), maybe(GARBAGE_CIPHERTEXT)),
                          st.integers(500, 100_000).map(lambda n: b"[" * n),
                          st.integers(500, 100_000).map(lambda n: b'{"encrypt":' * n)))
    return wecom_request(method, query, body if method == "POST" else b"")


@st.composite
def wecom_signed_garbage(draw: st.DrawFn) -> Request:
    """A valid signature over a ciphertext that is not one: garbage, bad framing, or a stale timestamp."""
    method = draw(st.sampled_from(["GET", "POST"]))
    encrypt = draw(GARBAGE_CIPHERTEXT)
    timestamp = draw(st.sampled_from([STAMP, str(int(NOW.timestamp()) - 301)]) | QUERY_TEXT)
    nonce = draw(QUERY_TEXT)
    query = {"msg_signature": signature(timestamp, nonce, encrypt), "timestamp": timestamp, "nonce": nonce}
    if method == "GET":  # a URL cannot carry a lone surrogate
        return wecom_request("GET", {**query, "echostr": utf8(encrypt)})
    body = draw(st.sampled_from([{"encrypt": encrypt}, {"encrypt": encrypt, "msgsignature": "x", "extra": [1]}]))
    return wecom_request("POST", query, dump(body, draw(st.booleans())))


COMMANDS = st.sampled_from([
    "approve", "reject", "status", "INC-1", "#2", "inc-3", "details", "incidents", "help", "whoami", "chatid", "lang",
    "summary", "ask", "report", "postmortem", "silence", "silences", "unsilence", "kb", "run", "APPROVE", "/approve",
    "/", "", "inc-", "#", "ınc-1",
])
ARGS = mostly(st.sampled_from([
    "INC-1", "INC-2", "#1", "2", "INC-0", "INC-999999999999", "INC-1234567890123", "١", "zh-CN", "en", "xx-YY", "1h",
    "30m", "0s", "99999d", "-1h", "alertname=DiskFull", "team=~pay.*", "a=(", "for", "because", "INC-1 2h", "all",
]), st.text(UNICODE, max_size=20), 3)
MENTIONS = st.sampled_from(["", "@alertpilot ", "@alertpilot  ", "@a @b ", "@", "  "])
COMMAND_TEXT = mostly(st.builds(lambda m, c, args: m + " ".join([c, *args]), MENTIONS, COMMANDS,
                                st.lists(ARGS, max_size=3)), TEXT)
USERID = mostly(st.sampled_from(["zhangsan", "lisi", "stranger"]), TEXT | JSON)
TASK_ID = mostly(st.sampled_from(["INC-1-1", "INC-2-7", "INC-1", "INC-999999999999-1", "INC-x", "INC-٣-1"]), TEXT)
EVENT_KEY = mostly(st.sampled_from(["approve", "reject", "details", "silence"]), TEXT | JSON)
FRESH = "<a fresh msgid>"  # replaced when sent, so that WeCom's de-duplication does not hide the message


@st.composite
def wecom_message(draw: st.DrawFn) -> dict[str, Any]:
    """A WeCom AI-bot message as the recorded ones, mostly well-formed: a text mention (a command), a card
    click, a stream refresh or something else; now and then a field of the wrong type, missing or added."""
    kind = draw(st.sampled_from(["text", "text", "text", "event", "stream", "other"]))
    message: dict[str, Any] = {
        "msgid": draw(mostly(st.just(FRESH), TEXT | JSON, 8)), "aibotid": "AIBOTID",
        "chattype": draw(st.sampled_from(["group", "single"])),
        "from": draw(maybe(st.fixed_dictionaries({"userid": USERID}, optional={"corpid": TEXT}))),
        "msgtype": kind if kind != "other" else draw(st.sampled_from(["image", "mixed", "voice"]) | TEXT),
    }
    if draw(st.integers(0, 3)):
        message["chatid"] = draw(maybe(NAME))
    if kind == "text":
        message["text"] = draw(maybe(st.fixed_dictionaries({"content": maybe(COMMAND_TEXT)})))
    elif kind == "event":
        click = st.fixed_dictionaries({"event_key": EVENT_KEY, "task_id": maybe(TASK_ID)},
                                      optional={"card_type": st.just("button_interaction")})
        message["event"] = draw(maybe(st.fixed_dictionaries({
            "eventtype": mostly(st.just("template_card_event"), st.sampled_from(["enter_chat"]) | TEXT),
            "template_card_event": maybe(click)})))
    elif kind == "stream":
        message["stream"] = draw(maybe(st.fixed_dictionaries({"id": mostly(st.uuids().map(str), TEXT | JSON)})))
    if draw(st.integers(1, 10)) == 10:  # a field missing
        message.pop(draw(st.sampled_from(sorted(message))))
    return {**draw(mostly(st.just({}), st.dictionaries(TEXT, JSON, max_size=2), 3)), **message}


XML = st.builds(lambda tag, inner: f"<xml><{tag}><![CDATA[{inner}]]></{tag}></xml>",
                st.sampled_from(["ToUserName", "Content", "MsgId", "x"]), st.text(UNICODE, max_size=30))


@dataclass(frozen=True)
class Callback:
    """A callback that authenticates: ``inner`` (a message, or raw text) encrypted and signed when sent."""

    method: str
    nonce: str
    inner: dict[str, Any] | str
    ascii_only: bool = True


def sealed_request(callback: Callback, fresh: Callable[[], str]) -> tuple[Request, str]:
    inner = callback.inner
    if isinstance(inner, dict):
        inner = utf8(json.dumps({**inner, "msgid": fresh()} if inner.get("msgid") == FRESH else inner,
                                ensure_ascii=callback.ascii_only))
    encrypt = CRYPTO.encrypt(inner)
    query = {"msg_signature": CRYPTO.signature(STAMP, callback.nonce, encrypt), "timestamp": STAMP,
             "nonce": callback.nonce}
    if callback.method == "GET":
        return wecom_request("GET", {**query, "echostr": encrypt}), inner
    return wecom_request("POST", query, dump({"encrypt": encrypt}, True)), inner


SMALL_INNER = st.one_of(JSON.map(json.dumps), XML, st.text(UNICODE, max_size=60))
SIGNED_MESSAGES = st.one_of(
    st.builds(Callback, st.just("POST"), st.text(st.characters(codec="ascii", categories=["L", "N"]), min_size=1,
                                                 max_size=12), wecom_message(), st.booleans()),
    st.builds(Callback, st.sampled_from(["GET", "POST"]), st.just("nonce"), SMALL_INNER),
    st.builds(Callback, st.just("POST"), st.just("nonce"), st.integers(500, 5000).map(lambda n: "[" * n + "]" * n)
              | st.integers(500, 5000).map(lambda n: '{"msgid":' * n)),
)


def utf8(text: str) -> str:
    """The text with its lone surrogates made "?" (what can be encrypted: UTF-8)."""
    return text.encode("utf-8", "replace").decode("utf-8")


def open_reply(response: Answer) -> None:
    """A 200 answer to a POST is empty or an encrypted reply that verifies and decrypts to JSON."""
    if not response.content:
        return
    envelope = response.json()
    CRYPTO.verify(envelope["msgsignature"], str(envelope["timestamp"]), envelope["nonce"], envelope["encrypt"])
    assert isinstance(json.loads(CRYPTO.decrypt(envelope["encrypt"])), dict)


def test_fuzzed_unsigned_and_badly_signed_wecom_callbacks(live: LiveApp) -> None:
    statuses: set[int] = set()

    def refused(request: Request) -> None:
        response = send(live, request)
        check_answer(request, response)
        assert response.status_code in (400, 403), (request, response.status_code, response.text[:300])

    def act(request: Request) -> None:  # a flipped byte or a lucky framing can still decrypt to a message
        response = send(live, request)
        check_answer(request, response)
        statuses.add(response.status_code)

    fuzz("wecom: random query and body", wecom_unsigned(), refused)
    fuzz("wecom: signed garbage ciphertext", wecom_signed_garbage(), act)
    assert 403 in statuses


def test_fuzzed_signed_wecom_messages(live: LiveApp) -> None:
    for name in ("01-firing-one-alert.json", "02-firing-two-alerts.json"):  # INC-1 and INC-2, for the commands
        payload = fixture(name)
        payload["groupKey"] += name
        assert send(live, webhook("alertmanager", json.dumps(payload).encode())).status_code == 200
    statuses: set[int] = set()
    msgids = itertools.count(1)

    def act(callback: Callback) -> None:
        request, inner = sealed_request(callback, lambda: f"fuzz-{next(msgids)}")
        response = send(live, request)
        check_answer(request, response)
        statuses.add(response.status_code)
        if request.method == "GET":  # URL verification answers the decrypted echostr
            assert response.status_code == 200 and response.text == inner, (request, response.text[:300])
        elif response.status_code == 200:
            open_reply(response)

    fuzz("wecom: signed messages", SIGNED_MESSAGES, act)
    assert {200, 400} <= statuses
    print("\nfuzzed requests per category:", json.dumps(COUNTS, indent=1), "total", sum(COUNTS.values()))


# --- (c) Telegram updates (webhook mode) ---------------------------------------------------------------------

TG_SECRET = "fuzz-telegram-secret"
TG_HEADERS = {"X-Telegram-Bot-Api-Secret-Token": TG_SECRET.encode(), "Content-Type": b"application/json"}
TG_ID = st.sampled_from([111, 222, 333, 444, 999]) | st.integers(-(2**70), 2**70)
TG_USER = shaped({"id": TG_ID, "is_bot": st.booleans(), "first_name": TEXT},
                 {"username": NAME, "language_code": st.sampled_from(["en", "zh-hans", "zh-hant", "xx"]) | NAME})
TG_CHAT = shaped({"id": st.sampled_from([CHAT_ID, 111, 222, -1009999]) | st.integers(-(2**70), 2**70),
                  "type": st.sampled_from(["private", "group", "supergroup", "channel"]) | NAME},
                 {"title": TEXT, "is_forum": st.booleans()})
COMMANDS = ["/help", "/start", "/status INC-1", "/approve INC-1", "/reject INC-1 not now", "/incidents", "/whoami",
            "/chatid", "/lang zh-TW", "/lang", "/lang default", "/silence db 1h fuzz", "/silences", "/unsilence 1",
            "/run kubectl -n default rollout restart deployment/db INC-1", "/kb disk", "/note INC-1 fuzz",
            "/report", "/report 7d", "/postmortem INC-1", "/summary INC-1", "/audit INC-1", "/playbooks",
            "/approve@alertpilot_bot INC-1", "/approve INC-999999999999", "/status inc-1", "/approve"]
TG_TEXT = mostly(st.sampled_from(COMMANDS) | st.builds(lambda c, a: f"{c} {a}", st.sampled_from(COMMANDS), TEXT),
                 TEXT, 3)
TG_MESSAGE = st.builds(
    lambda message, text: {**message, **({"text": text, "entities": [
        {"type": "bot_command", "offset": 0, "length": len(text.split(" ")[0])}]} if text.startswith("/") else
        {"text": text})},
    shaped({"message_id": st.integers(1, 10**6), "date": st.integers(0, 2**31), "chat": TG_CHAT},
           {"from": TG_USER, "message_thread_id": st.integers(-5, 10**6), "is_topic_message": st.booleans()}),
    TG_TEXT,
)
TG_DATA = mostly(st.builds(lambda a, i: f"inc1:{a}:{i}", st.sampled_from(
    ["approve", "reject", "details", "reanalyse", "history", "silence", "nope"]), st.integers(-5, 2**64)), TEXT, 4)
TG_CALLBACK = shaped({"id": NAME, "from": TG_USER, "chat_instance": NAME}, {"message": TG_MESSAGE, "data": TG_DATA})
TG_MEMBER = shaped({"chat": TG_CHAT, "from": TG_USER, "date": st.integers(0, 2**31),
                    "old_chat_member": shaped({"status": st.sampled_from(["left", "member", "kicked"]),
                                               "user": TG_USER}, {}),
                    "new_chat_member": shaped({"status": st.sampled_from(["member", "administrator", "left"]),
                                               "user": TG_USER}, {})}, {})
TG_PAYLOAD = st.one_of(
    st.builds(lambda m: {"message": m}, TG_MESSAGE), st.builds(lambda m: {"edited_message": m}, TG_MESSAGE),
    st.builds(lambda c: {"callback_query": c}, TG_CALLBACK), st.builds(lambda c: {"my_chat_member": c}, TG_MEMBER),
    st.dictionaries(TEXT, JSON, max_size=3),
)


def telegram_request(body: bytes, headers: dict[str, bytes] | None = None) -> Request:
    return Request("POST", "/telegram/webhook", content=body, headers=TG_HEADERS if headers is None else headers)


@st.composite
def telegram_bodies(draw: st.DrawFn) -> Request:
    """Anything at the webhook: no or a wrong secret, raw bytes, JSON that is no update, wrong update_ids."""
    secret = draw(st.sampled_from([None, b"", b"wrong", TG_SECRET.encode() + b"x", b"\xff"]) |
                  st.just(TG_SECRET.encode()))
    headers = {} if secret is None else {"X-Telegram-Bot-Api-Secret-Token": secret}
    update_id = draw(st.integers(-5, 2**70) | JSON)
    body = draw(st.one_of(st.binary(max_size=200), JSON.map(lambda v: dump(v, True)),
                          st.builds(lambda u, p: dump({"update_id": u, **p}, True), st.just(update_id), TG_PAYLOAD)))
    return telegram_request(body, headers)


@pytest.fixture
def telegram_live(tmp_path: Path) -> Iterator[LiveApp]:
    app = LiveApp(tmp_path, telegram=True, telegram_mode="webhook", telegram_webhook_secret=TG_SECRET,
                  telegram_webhook_url="https://alertpilot.example.com/telegram/webhook")
    try:
        yield app
        health = app.http.get("/healthz")
        assert health.status_code == 200 and health.json()["telegram"] == "webhook", health.text
    finally:
        app.close()


def test_fuzzed_bodies_and_secrets_at_the_telegram_webhook(telegram_live: LiveApp) -> None:
    statuses: set[int] = set()

    def act(request: Request) -> None:
        response = send(telegram_live, request)
        check_answer(request, response)
        statuses.add(response.status_code)
        if request.headers.get("X-Telegram-Bot-Api-Secret-Token") != TG_SECRET.encode():
            assert response.status_code == 401, (request, response.status_code)

    fuzz("telegram: bodies and secrets", telegram_bodies(), act)
    assert {400, 401} <= statuses


def test_fuzzed_plausible_updates_are_acknowledged_once_and_processed_without_a_crash(telegram_live: LiveApp) -> None:
    assert send(telegram_live, webhook("alertmanager", json.dumps(fixture("01-firing-one-alert.json")).encode())
                ).status_code == 200  # INC-1, for the commands and buttons
    ids = itertools.count(1)
    statuses: set[int] = set()
    accepted: list[int] = []

    def act(payload: dict[str, Any]) -> None:
        update_id = next(ids)
        request = telegram_request(dump({"update_id": update_id, **payload}, True))
        response = send(telegram_live, request)
        check_answer(request, response)
        statuses.add(response.status_code)
        if response.status_code == 200:
            accepted.append(update_id)
            again = send(telegram_live, request)  # Telegram posting it again: recognised, not processed twice
            assert again.status_code == 200 and again.json() == {"ok": True, "duplicate": True}

    fuzz("telegram: plausible updates", TG_PAYLOAD, act)
    assert {200, 400} <= statuses

    async def unfinished() -> int:  # every acknowledged update was processed (or its failure recorded)
        for _ in range(400):
            async with telegram_live.app.deps.db.read() as tx:
                left = [u for u in accepted[-50:] if (row := await tx.telegram_updates.get(u)) is None or
                        row.done_at is None]
            if not left:
                return 0
            await asyncio.sleep(0.05)
        return len(left)

    assert telegram_live.run(unfinished()) == 0
