"""Probes. GET /healthz (liveness): the process answers and the database answers. GET /readyz (readiness):
the app has started, is not shutting down (SIGTERM) and its database answers; a load balancer sends it
traffic only then."""

from __future__ import annotations

import structlog
from aiohttp import web

from handlers.http.common import DEPS
from handlers.http.middleware import storage_unavailable

log = structlog.get_logger(__name__)
routes = web.RouteTableDef()


async def _database_error(request: web.Request) -> str | None:
    try:
        await request.app[DEPS].db.ping()
    except Exception as exc:
        log.warning("health_database_down", error=str(exc))
        return f"error: {type(exc).__name__}"
    return None


@routes.get("/healthz")
async def on_healthz(request: web.Request) -> web.Response:
    deps = request.app[DEPS]
    problem = await _database_error(request)
    if problem is not None:
        return storage_unavailable({"status": "unhealthy", "database": problem})
    return web.json_response({"status": "ok", "database": "ok", "telegram": deps.telegram_state()})


@routes.get("/readyz")
async def on_readyz(request: web.Request) -> web.Response:
    deps = request.app.get(DEPS)
    if deps is None:
        return web.json_response({"status": "starting"}, status=503)
    if deps.lifecycle.draining:
        return web.json_response({"status": "draining", "reason": "shutting down (SIGTERM)"}, status=503)
    problem = await _database_error(request)
    if problem is not None:
        return storage_unavailable({"status": "not ready", "database": problem})
    return web.json_response({"status": "ready", "telegram": deps.telegram_state()})
