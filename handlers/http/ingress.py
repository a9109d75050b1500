"""Alert ingress: POST /webhooks/alertmanager. The 2xx goes out only after the alerts are stored."""

from __future__ import annotations

import json

import structlog
from aiohttp import web

from handlers.http.common import DEPS, MAX_BODY_BYTES, authorized, error, unauthorized
from services.errors import InvalidPayload
from services.sources.alertmanager import parse_alertmanager

log = structlog.get_logger(__name__)
routes = web.RouteTableDef()


async def read_json(request: web.Request) -> object:
    """The JSON body, or an HTTP error that says what is wrong with it (413 / 400)."""
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise web.HTTPRequestEntityTooLarge(max_size=MAX_BODY_BYTES, actual_size=request.content_length)
    raw = await request.read()  # aiohttp enforces client_max_size for chunked bodies too
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


@routes.post("/webhooks/alertmanager")
async def on_alertmanager_webhook(request: web.Request) -> web.Response:
    deps = request.app[DEPS]
    if not authorized(request, deps.ingest_token):
        return unauthorized()
    body = await read_json(request)
    try:
        batch = parse_alertmanager(body)
    except InvalidPayload as exc:
        log.info("ingest_rejected", reason=str(exc))
        return error(400, str(exc), field=exc.field)
    result = await deps.incidents.ingest(batch)
    return web.json_response(
        {
            "status": "ok",
            "accepted": result.accepted,
            "new": result.new_alerts,
            "repeats": result.repeats,
            "resolved": result.resolved_alerts,
            "incidents": [f"INC-{i}" for i in result.incident_ids],
        }
    )
