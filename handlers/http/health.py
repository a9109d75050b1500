"""GET /healthz: the process answers and the database answers."""

from __future__ import annotations

import structlog
from aiohttp import web

from handlers.http.common import DEPS

log = structlog.get_logger(__name__)
routes = web.RouteTableDef()


@routes.get("/healthz")
async def on_healthz(request: web.Request) -> web.Response:
    deps = request.app[DEPS]
    try:
        await deps.db.ping()
    except Exception as exc:
        log.warning("health_database_down", error=str(exc))
        return web.json_response({"status": "unhealthy", "database": f"error: {type(exc).__name__}"}, status=503)
    return web.json_response({"status": "ok", "database": "ok", "telegram": deps.telegram_state})
