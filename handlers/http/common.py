"""Shared pieces of the HTTP edge: the typed app keys, bearer auth and JSON error answers."""

from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from services.incidents import IncidentService
from services.metrics import Metrics
from services.queries import IncidentQueries
from services.sources.credentials import Source
from storage.clock import Clock
from storage.db import Database


@dataclass
class Lifecycle:
    """Where the process is: ``draining`` from SIGTERM on (GET /readyz answers 503)."""

    draining: bool = False


@dataclass(frozen=True)
class HttpDeps:
    """What the HTTP handlers need; built by the composition root."""

    db: Database
    incidents: IncidentService
    queries: IncidentQueries
    ingest_token: str  # the read API's token (and the default source's)
    telegram_state: Callable[[], str]  # "polling", "standby: …", "webhook", "not configured"
    metrics: Metrics
    sources: tuple[Source, ...]  # who may post alerts: the default source first
    clock: Clock
    lifecycle: Lifecycle = field(default_factory=Lifecycle)


DEPS: web.AppKey[HttpDeps] = web.AppKey("deps", HttpDeps)
MAX_BODY_BYTES = 1024 * 1024  # 1 MiB


def error(status: int, message: str, **extra: Any) -> web.Response:
    return web.json_response({"error": message, **extra}, status=status)


def authorized(request: web.Request, token: str) -> bool:
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not given or not given.isascii():
        return False
    return hmac.compare_digest(given.strip().encode(), token.encode())


def unauthorized(reason: str = "") -> web.Response:
    """401 for the read API (no reason: its bearer token) or for an alert source (the reason it failed)."""
    if reason:
        message = f"{reason} (sources: ALERTPILOT_SOURCES; the default: Authorization: Bearer <ALERTPILOT_INGEST_TOKEN>)"
    else:
        message = "missing or wrong bearer token (Authorization: Bearer <ALERTPILOT_INGEST_TOKEN>)"
    return web.json_response({"error": message}, status=401, headers={"WWW-Authenticate": 'Bearer realm="alertpilot"'})


def storable(value: Any) -> bool:
    """No string in the JSON value (its keys included) holds a NUL or a lone UTF-16 surrogate, which JSON escapes
    can carry but no database stores and no reply can encode. Iterative: the JSON may nest ~1000 deep."""
    stack: list[Any] = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str):
            if "\x00" in item:
                return False
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return False
    return True
