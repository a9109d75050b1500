"""Alert ingress: POST /webhooks/alertmanager, /webhooks/grafana and /webhooks/generic (its JSON Schema at
GET /webhooks/generic/schema). Every request is authenticated as one of the sources (services/sources/
credentials.py) before its body is parsed; the 2xx goes out only after the alerts are stored."""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Callable

import structlog
from aiohttp import web

from handlers.http.common import DEPS, MAX_BODY_BYTES, error, unauthorized
from services.errors import InvalidPayload
from services.ingest_model import AlertBatch
from services.metrics import Metrics
from services.sources.alertmanager import parse_alertmanager
from services.sources.credentials import (
    MAX_SKEW_SECONDS,
    AuthFailure,
    Credentials,
    authenticate,
    for_source,
)
from services.sources.generic import GENERIC_SCHEMA, parse_generic
from services.sources.grafana import parse_grafana
from storage.errors import StorageError, WriteConflict

log = structlog.get_logger(__name__)
routes = web.RouteTableDef()

Parser = Callable[[object], list[AlertBatch]]
RAISED_REASONS = {413: "too_large", 400: "bad_json"}  # what a refusal raised before authentication or parsing means


async def read_body(request: web.Request) -> bytes:
    """The raw body, or 413 when it is larger than we take."""
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise web.HTTPRequestEntityTooLarge(max_size=MAX_BODY_BYTES, actual_size=request.content_length)
    return await request.read()  # aiohttp enforces client_max_size for chunked bodies too


def decode_json(raw: bytes) -> object:
    """The JSON body, or an HTTP 400 that says what is wrong with it."""
    if not raw.strip():
        raise web.HTTPBadRequest(text=json.dumps({"error": "empty body: expected a JSON object"}), content_type="application/json")
    try:
        return json.loads(raw)
    except RecursionError as exc:
        raise web.HTTPBadRequest(
            text=json.dumps({"error": "malformed JSON: nested too deeply"}), content_type="application/json"
        ) from exc
    except (ValueError, UnicodeDecodeError) as exc:
        raise web.HTTPBadRequest(
            text=json.dumps({"error": f"malformed JSON: {exc}"}), content_type="application/json"
        ) from exc


def credentials_of(request: web.Request) -> Credentials:
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    bearer = basic = None
    if scheme.lower() == "bearer" and given.strip() and given.isascii():
        bearer = given.strip()
    elif scheme.lower() == "basic" and given.strip():
        try:
            user, colon, password = base64.b64decode(given.strip(), validate=True).decode().partition(":")
        except ValueError:  # not base64 (binascii.Error), not UTF-8, or non-ASCII characters in the header
            user, colon, password = "", "", ""
        if colon:
            basic = (user, password)
    return Credentials(
        bearer=bearer,
        basic=basic,
        token_header=request.headers.get("X-Alertpilot-Token") or None,
        source=request.headers.get("X-Alertpilot-Source") or request.query.get("source") or None,
        signature=request.headers.get("X-Alertpilot-Signature") or None,
        timestamp=request.headers.get("X-Alertpilot-Timestamp") or None,
    )


async def ingest(request: web.Request, kind: str, parse: Parser) -> web.Response:
    """Count every refusal on /metrics by reason (alertpilot_alerts_rejected_total); the alerts taken are
    counted where they are stored (IncidentService.ingest)."""
    metrics = request.app[DEPS].metrics
    try:
        return await _ingest(request, kind, parse, metrics)
    except web.HTTPException as exc:  # read_body's 413, decode_json's 400
        metrics.inc("alertpilot_alerts_rejected_total", kind=kind, reason=RAISED_REASONS.get(exc.status, "other"))
        raise
    except (StorageError, WriteConflict):  # answered 503 by the middleware: the sender retries
        metrics.inc("alertpilot_alerts_rejected_total", kind=kind, reason="storage")
        raise


async def _ingest(request: web.Request, kind: str, parse: Parser, metrics: Metrics) -> web.Response:
    deps = request.app[DEPS]
    raw = await read_body(request)
    credentials = credentials_of(request)
    now = deps.clock()
    try:
        source = authenticate(deps.sources, kind, credentials, raw, now=now.timestamp())
    except AuthFailure as exc:
        log.info("ingest_refused", kind=kind, reason=exc.reason, status=exc.status)
        metrics.inc("alertpilot_alerts_rejected_total", kind=kind, reason="auth" if exc.status == 401 else "forbidden")
        return unauthorized(exc.reason) if exc.status == 401 else error(exc.status, exc.reason)
    if credentials.signature is not None:  # a signature is good once: a replay within the window is refused
        mark = f"{now.isoformat()} {secrets.token_hex(4)}"
        async with deps.db.write() as tx:
            first = await tx.kv.put_if_absent(f"ingest:signature:{source.name}:{credentials.signature[:80]}", mark) == mark
        if not first:
            log.info("ingest_refused", kind=kind, source=source.name, reason="replayed")
            metrics.inc("alertpilot_alerts_rejected_total", kind=kind, reason="replay")
            return unauthorized(f"this signed request was already received (replay); sign each request with a new "
                                f"timestamp, within {MAX_SKEW_SECONDS // 60} minutes")
    body = decode_json(raw)
    try:
        batches = parse(body)
    except InvalidPayload as exc:
        log.info("ingest_rejected", kind=kind, source=source.name, reason=str(exc))
        metrics.inc("alertpilot_alerts_rejected_total", kind=kind, reason="invalid")
        return error(400, str(exc), field=exc.field)
    accepted = new = repeats = resolved = 0
    incidents: list[int] = []
    for batch in batches:
        result = await deps.incidents.ingest(for_source(batch, source))
        accepted, new = accepted + result.accepted, new + result.new_alerts
        repeats, resolved = repeats + result.repeats, resolved + result.resolved_alerts
        incidents += [i for i in result.incident_ids if i not in incidents]
    return web.json_response(
        {
            "status": "ok",
            "source": source.name,
            "accepted": accepted,
            "new": new,
            "repeats": repeats,
            "resolved": resolved,
            "incidents": [f"INC-{i}" for i in incidents],
        }
    )


@routes.post("/webhooks/alertmanager")
async def on_alertmanager_webhook(request: web.Request) -> web.Response:
    return await ingest(request, "alertmanager", lambda body: [parse_alertmanager(body)])


@routes.post("/webhooks/grafana")
async def on_grafana_webhook(request: web.Request) -> web.Response:
    return await ingest(request, "grafana", lambda body: [parse_grafana(body)])


@routes.post("/webhooks/generic")
async def on_generic_webhook(request: web.Request) -> web.Response:
    return await ingest(request, "generic", parse_generic)


@routes.get("/webhooks/generic/schema")
async def on_generic_schema(request: web.Request) -> web.Response:
    """The generic webhook's JSON Schema (no token: it holds nothing secret)."""
    return web.json_response(GENERIC_SCHEMA, content_type="application/schema+json")
