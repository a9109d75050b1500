"""GET /metrics: Prometheus text format (decisions by source and fallback reason, AI latency, …)."""

from __future__ import annotations

from aiohttp import web

from handlers.http.common import DEPS

routes = web.RouteTableDef()


@routes.get("/metrics")
async def on_metrics(request: web.Request) -> web.Response:
    body = request.app[DEPS].metrics.render()
    return web.Response(text=body, content_type="text/plain", charset="utf-8", headers={"X-Format": "prometheus-0.0.4"})
