"""Read API (bearer token): incidents, one incident with alerts/decision/timeline, alerts, stats."""

from __future__ import annotations

from aiohttp import web

from handlers.http.common import DEPS, authorized, error, unauthorized
from services.errors import IncidentNotFound, InvalidIncidentRef
from services.queries import page_bounds, parse_incident_ref

routes = web.RouteTableDef()
INCIDENT_STATUSES = ("firing", "resolved")
ALERT_STATUSES = ("firing", "resolved")
MAX_OFFSET = 1_000_000_000


def _paging(request: web.Request) -> tuple[int, int]:
    try:
        limit = request.query.get("limit")
        offset = request.query.get("offset")
        if (limit is not None and int(limit) < 1) or (offset is not None and not 0 <= int(offset) <= MAX_OFFSET):
            raise ValueError
        return page_bounds(int(limit) if limit else None, int(offset) if offset else None)
    except ValueError as exc:
        raise web.HTTPBadRequest(
            text='{"error": "limit must be a positive integer (max 500) and offset an integer from 0 to 1000000000"}',
            content_type="application/json",
        ) from exc


def _status(request: web.Request, allowed: tuple[str, ...]) -> str | None:
    status = request.query.get("status") or None
    if status is not None and status not in allowed:
        raise web.HTTPBadRequest(
            text=f'{{"error": "status must be one of {", ".join(allowed)}"}}', content_type="application/json"
        )
    return status


@routes.get("/api/incidents")
async def on_list_incidents(request: web.Request) -> web.Response:
    deps = request.app[DEPS]
    if not authorized(request, deps.ingest_token):
        return unauthorized()
    limit, offset = _paging(request)
    body = await deps.queries.api_incidents(status=_status(request, INCIDENT_STATUSES), limit=limit, offset=offset)
    return web.json_response(body)


@routes.get("/api/incidents/{ref}")
async def on_get_incident(request: web.Request) -> web.Response:
    deps = request.app[DEPS]
    if not authorized(request, deps.ingest_token):
        return unauthorized()
    try:
        body = await deps.queries.api_incident(parse_incident_ref(request.match_info["ref"]))
    except InvalidIncidentRef as exc:
        return error(400, str(exc))
    except IncidentNotFound as exc:
        return error(404, str(exc))
    return web.json_response(body)


@routes.get("/api/alerts")
async def on_list_alerts(request: web.Request) -> web.Response:
    deps = request.app[DEPS]
    if not authorized(request, deps.ingest_token):
        return unauthorized()
    limit, offset = _paging(request)
    body = await deps.queries.api_alerts(
        fingerprint=request.query.get("fingerprint") or None,
        status=_status(request, ALERT_STATUSES),
        limit=limit,
        offset=offset,
    )
    return web.json_response(body)


@routes.get("/api/stats")
async def on_stats(request: web.Request) -> web.Response:
    deps = request.app[DEPS]
    if not authorized(request, deps.ingest_token):
        return unauthorized()
    return web.json_response(await deps.queries.api_stats())
