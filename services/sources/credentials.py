"""Alert sources and their credentials: who may post alerts, how each proves it, and what its alerts get.

A source is declared in ``ALERTPILOT_SOURCES`` (JSON) or ``ALERTPILOT_SOURCES_FILE`` (YAML), both
``{"sources": [...]}`` or a bare list::

    sources:
      - name: payments-grafana        # letters, digits, - and _
        kinds: [grafana]              # which webhooks it may post to (default: all)
        token: "a-long-random-token"  # Authorization: Bearer <token>, basic auth <name>:<token>,
                                      # or X-Alertpilot-Token: <token>
        labels: {team: payments, env: prod}   # added to each of its alerts that lacks them
        chats: ["tg:-100123", "wecom:<robot key>"]   # its incidents' cards go there (default: by routes)
      - name: ci
        kinds: [generic]
        hmac_secret: "another-secret" # X-Alertpilot-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<raw body>">
                                      # X-Alertpilot-Timestamp: <unix seconds>, within 5 minutes
                                      # X-Alertpilot-Source: ci (or ?source=ci)

``ALERTPILOT_INGEST_TOKEN`` stays the default source (every kind, no labels). Secrets are compared in
constant time, and never logged or shown. Pure code: parsing, matching and verification, no I/O (the
HTTP edge remembers signatures against replays).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from services.ingest_model import AlertBatch
from services.ports import ChatTarget

# "tg:-100123" / "wecom:<robot key>" → the chat, or ValueError naming the place (the composition root knows
# which chats this configuration can post to).
ChatResolver = Callable[[str, str], ChatTarget]

KINDS = ("alertmanager", "grafana", "generic")
DEFAULT_SOURCE = "default"
MAX_SKEW_SECONDS = 300
MIN_SECRET = 16
MAX_SOURCES = 200
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,39}$")
_LABEL = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_SIGNATURE = re.compile(r"^sha256=([0-9a-fA-F]{64})$")


class InvalidSources(ValueError):
    """The sources configuration is wrong; the message names the entry and the field."""


class AuthFailure(Exception):
    """The request does not authenticate; ``reason`` says why (safe to show: it names no secret)."""

    def __init__(self, reason: str, *, status: int = 401) -> None:
        super().__init__(reason)
        self.reason, self.status = reason, status


@dataclass(frozen=True)
class Source:
    name: str
    token: str | None = field(default=None, repr=False)
    hmac_secret: str | None = field(default=None, repr=False)
    kinds: frozenset[str] = frozenset(KINDS)
    labels: dict[str, str] = field(default_factory=dict)
    chats: tuple[ChatTarget, ...] = ()  # where its incidents' cards go (empty: by the routes)

    @property
    def is_default(self) -> bool:
        return self.name == DEFAULT_SOURCE


@dataclass(frozen=True)
class Credentials:
    """What a request presents, as the HTTP edge read it."""

    bearer: str | None = None
    basic: tuple[str, str] | None = None
    token_header: str | None = None
    source: str | None = None  # X-Alertpilot-Source or ?source=
    signature: str | None = None
    timestamp: str | None = None


def _no_chats(item: str, where: str) -> ChatTarget:
    raise ValueError(f"{where}: chats are not available here")


def load_sources(json_text: str | None, path: str | None, *, chat: ChatResolver = _no_chats) -> list[Source]:
    """The sources of ALERTPILOT_SOURCES (JSON) and ALERTPILOT_SOURCES_FILE (YAML), together; InvalidSources
    names the setting and the problem."""
    sources: list[Source] = []
    if json_text:
        try:
            sources += parse_sources(json.loads(json_text), chat=chat)
        except ValueError as exc:
            raise InvalidSources(f"ALERTPILOT_SOURCES: {exc if isinstance(exc, InvalidSources) else 'not valid JSON'}") from None
    if path:
        try:
            text = Path(path).expanduser().read_text(encoding="utf-8")
            document = yaml.safe_load(text)
        except OSError as exc:
            raise InvalidSources(f"ALERTPILOT_SOURCES_FILE: {path}: cannot read: {exc.strerror or exc}") from None
        except (UnicodeDecodeError, yaml.YAMLError) as exc:
            raise InvalidSources(f"ALERTPILOT_SOURCES_FILE: {path}: not valid YAML: {str(exc)[:200]}") from None
        try:
            sources += parse_sources(document, chat=chat)
        except InvalidSources as exc:
            raise InvalidSources(f"ALERTPILOT_SOURCES_FILE: {path}: {exc}") from None
    names = [s.name for s in sources]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise InvalidSources(f"source name(s) declared twice: {', '.join(twice)}")
    return sources


def parse_sources(data: Any, *, chat: ChatResolver = _no_chats) -> list[Source]:
    """``{"sources": [...]}`` or a list of source objects → Sources; InvalidSources names the problem."""
    if isinstance(data, dict) and set(data) == {"sources"}:
        data = data["sources"]
    if data is None:
        return []
    if not isinstance(data, list):
        raise InvalidSources('expected a list of sources (or {"sources": [...]})')
    if len(data) > MAX_SOURCES:
        raise InvalidSources(f"at most {MAX_SOURCES} sources")
    sources, names, secrets = [], set(), set()
    for index, raw in enumerate(data):
        where = f"sources[{index}]"
        if not isinstance(raw, dict):
            raise InvalidSources(f"{where}: expected an object with name and token or hmac_secret")
        unknown = set(raw) - {"name", "kinds", "token", "hmac_secret", "labels", "chats"}
        if unknown:
            raise InvalidSources(f"{where}: unknown field(s) {', '.join(sorted(map(str, unknown)))}")
        name = raw.get("name")
        if not isinstance(name, str) or not _NAME.match(name):
            raise InvalidSources(f"{where}.name: required, 1-40 letters, digits, - or _")
        where = f"sources[{index}] ({name})"
        if name == DEFAULT_SOURCE:
            raise InvalidSources(f"{where}.name: {DEFAULT_SOURCE!r} is ALERTPILOT_INGEST_TOKEN's source")
        if name in names:
            raise InvalidSources(f"{where}.name: used twice")
        names.add(name)
        token, secret = _secret(raw, "token", where), _secret(raw, "hmac_secret", where)
        if token is None and secret is None:
            raise InvalidSources(f"{where}: needs a token or an hmac_secret")
        for value in (token, secret):
            if value is not None and value in secrets:
                raise InvalidSources(f"{where}: a token or secret is the same as another source's")
            if value is not None:
                secrets.add(value)
        sources.append(Source(name=name, token=token, hmac_secret=secret, kinds=_kinds(raw.get("kinds"), where),
                              labels=_labels(raw.get("labels"), where), chats=_chats(raw.get("chats"), where, chat)))
    return sources


def _secret(raw: dict[str, Any], key: str, where: str) -> str | None:
    value = raw.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or len(value) < MIN_SECRET or len(value) > 512 or not value.isascii() \
            or any(c.isspace() for c in value):
        raise InvalidSources(f"{where}.{key}: must be {MIN_SECRET}-512 printable ASCII characters without spaces")
    return value


def _chats(value: Any, where: str, chat: ChatResolver) -> tuple[ChatTarget, ...]:
    if value is None:
        return ()
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(i, str) for i in items) or len(items) > 20:
        raise InvalidSources(f"{where}.chats: a list of tg:<chat id> or wecom:<robot key>")
    try:
        return tuple(dict.fromkeys(chat(item, f"{where}.chats") for item in items))
    except ValueError as exc:
        raise InvalidSources(str(exc)) from None


def _kinds(value: Any, where: str) -> frozenset[str]:
    if value is None:
        return frozenset(KINDS)
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items or any(i not in KINDS for i in items):
        raise InvalidSources(f"{where}.kinds: a list of {', '.join(KINDS)}")
    return frozenset(items)


def _labels(value: Any, where: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or len(value) > 20:
        raise InvalidSources(f"{where}.labels: a map of at most 20 label: value pairs")
    labels = {}
    for key, item in value.items():
        if not isinstance(key, str) or not _LABEL.match(key) or not isinstance(item, str | int) or len(str(item)) > 200:
            raise InvalidSources(f"{where}.labels.{str(key)[:40]}: a label name and a short string value")
        labels[key] = str(item)
    return labels


def authenticate(
    sources: Sequence[Source], kind: str, credentials: Credentials, body: bytes, *, now: float
) -> Source:
    """The source the request comes from, or AuthFailure (401; 403 when it may not post to ``kind``)."""
    source = _identify(sources, credentials, body, now)
    if kind not in source.kinds:
        raise AuthFailure(f"source {source.name!r} may not post to /webhooks/{kind}", status=403)
    return source


def _identify(sources: Sequence[Source], credentials: Credentials, body: bytes, now: float) -> Source:
    if credentials.signature is not None:
        return _signed(sources, credentials, body, now)
    if credentials.basic is not None:
        user, password = credentials.basic
        named = next((s for s in sources if s.name == user and s.token is not None), None)
        # compare even when the name is unknown, so timing does not tell which names exist
        expected = named.token if named is not None else "\x00" * MIN_SECRET
        if hmac.compare_digest(_raw(password), (expected or "").encode()) and named is not None:
            return named
        raise AuthFailure("wrong user or password (basic auth: <source name>:<token>)")
    given = credentials.bearer if credentials.bearer is not None else credentials.token_header
    if given is None:
        raise AuthFailure("no credentials: send Authorization: Bearer <token> (or a signed request)")
    found = None
    for source in sources:  # every token is compared: no early exit
        if source.token is not None and hmac.compare_digest(_raw(given), source.token.encode()):
            found = source
    if found is None:
        raise AuthFailure("wrong token")
    return found


def _raw(given: str) -> bytes:
    """A presented secret as bytes: header bytes that are not UTF-8 arrive as lone surrogates (aiohttp decodes
    with surrogateescape) and simply do not match (tokens are ASCII), rather than failing to encode."""
    return given.encode("utf-8", "surrogatepass")


def _signed(sources: Sequence[Source], credentials: Credentials, body: bytes, now: float) -> Source:
    if not credentials.source:
        raise AuthFailure("a signed request names its source: X-Alertpilot-Source: <name> (or ?source=<name>)")
    source = next((s for s in sources if s.name == credentials.source and s.hmac_secret is not None), None)
    if source is None:
        raise AuthFailure(f"no source {credentials.source[:40]!r} with an hmac_secret")
    timestamp = credentials.timestamp or ""
    if not (timestamp.isascii() and timestamp.isdigit()) or len(timestamp) > 12:  # not "²" or "١٢"
        raise AuthFailure("X-Alertpilot-Timestamp: required, unix seconds")
    if abs(now - int(timestamp)) > MAX_SKEW_SECONDS:
        raise AuthFailure(f"X-Alertpilot-Timestamp is more than {MAX_SKEW_SECONDS // 60} minutes off")
    match = _SIGNATURE.match(credentials.signature or "")
    if match is None:
        raise AuthFailure("X-Alertpilot-Signature: expected sha256=<64 hex digits>")
    expected = sign(source.hmac_secret or "", timestamp, body)
    if not hmac.compare_digest(match.group(1).lower(), expected):
        raise AuthFailure("the signature does not match (HMAC-SHA256 of \"<timestamp>.<raw body>\")")
    return source


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The hex HMAC-SHA256 a sender puts in ``X-Alertpilot-Signature: sha256=<hex>``."""
    return hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def for_source(batch: AlertBatch, source: Source) -> AlertBatch:
    """The batch as this source's: its default labels on every alert that lacks them, its chats, and (for a
    named source) its name in the receiver, so two sources' groups and fingerprints never collide."""
    if source.is_default:
        return batch if not source.chats else replace(batch, chats=source.chats, route=source.name)
    alerts = [replace(a, labels={**source.labels, **a.labels}) for a in batch.alerts]
    # a source label is common unless an alert says otherwise
    common = {k: v for k, v in source.labels.items() if all(a.labels.get(k, v) == v for a in batch.alerts)}
    return replace(batch, receiver=f"{source.name}/{batch.receiver}", alerts=alerts,
                   common_labels={**common, **batch.common_labels}, chats=source.chats,
                   route=source.name if source.chats else "")
