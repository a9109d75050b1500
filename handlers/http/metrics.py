"""GET /metrics: Prometheus text format (alerts, decisions, outbox, executions, jobs, AI; README "Metrics").
The database-wide gauges are read at scrape time; with the database down the process counters still go out,
with ``alertpilot_database_up 0``."""

from __future__ import annotations

from aiohttp import web

from handlers.http.common import DEPS
from services.metrics import read_state

routes = web.RouteTableDef()


@routes.get("/metrics")
async def on_metrics(request: web.Request) -> web.Response:
    deps = request.app[DEPS]
    await read_state(deps.metrics, deps.db, deps.clock())
    body = deps.metrics.render()
    return web.Response(text=body, content_type="text/plain", charset="utf-8", headers={"X-Format": "prometheus-0.0.4"})
