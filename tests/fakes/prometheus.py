"""In-process fake of Prometheus' HTTP query API, for tests.

``FakePrometheus`` is a small aiohttp.web server on 127.0.0.1 (ephemeral port), reached through an
``httpx.AsyncClient`` exactly like ``ALERTPILOT_PROMETHEUS_URL``::

    async with FakePrometheus() as prom:
        prom.on("up", vector=[({"job": "api"}, "1")])
        prom.fail("bad(", status=400, error_type="bad_data", error="parse error")
        ...
        assert prom.requests[-1].params["query"] == "up"

Routes: ``GET|POST /api/v1/query`` and ``/api/v1/query_range`` (form parameters for POST, as Prometheus
takes them). Anything else answers 404. A query without a script answers success with an empty result.

Scripting (per exact query text, the last ``on``/``fail`` for it wins): ``on(query, vector=[(labels,
value)])`` answers a vector (instant queries) — stamped with the request's ``time`` or now; ``on(query,
matrix=[(labels, [(ts, value), …])])`` answers a matrix (range queries); ``on(query, scalar=value)``;
``fail(query, status, error_type, error)`` answers Prometheus' error shape; ``hang_next()`` makes the next
request hang until the server stops.

Inspection: ``fake.requests`` (method, path, params as a dict of the last values).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aiohttp import web

from tests.fakes.loopback import LoopbackServer

__all__ = ["FakePrometheus", "PromRequest"]

QUERY_PATH = "/api/v1/query"
RANGE_PATH = "/api/v1/query_range"


@dataclass
class PromRequest:
    method: str
    path: str
    params: dict[str, str]


class FakePrometheus(LoopbackServer):
    def __init__(self) -> None:
        super().__init__()
        self.requests: list[PromRequest] = []
        self._scripts: dict[str, tuple[int, dict[str, Any]]] = {}
        self._hang = 0

    @property
    def base_url(self) -> str:
        if self.port is None:
            raise RuntimeError("FakePrometheus is not started")
        return f"http://{self.host}:{self.port}"

    # ------------------------------------------------------------------ scripting
    def on(self, query: str, *, vector: list[tuple[dict[str, str], str]] | None = None,
           matrix: list[tuple[dict[str, str], list[tuple[float, str]]]] | None = None,
           scalar: str | None = None, warnings: list[str] | None = None) -> FakePrometheus:
        if vector is not None:
            data: dict[str, Any] = {"resultType": "vector",
                                    "result": [{"metric": labels, "value": [None, value]} for labels, value in vector]}
        elif matrix is not None:
            data = {"resultType": "matrix",
                    "result": [{"metric": labels, "values": [[ts, v] for ts, v in points]} for labels, points in matrix]}
        elif scalar is not None:
            data = {"resultType": "scalar", "result": [None, scalar]}
        else:
            raise ValueError("give vector, matrix or scalar")
        body: dict[str, Any] = {"status": "success", "data": data}
        if warnings:
            body["warnings"] = warnings
        self._scripts[query] = (200, body)
        return self

    def fail(self, query: str, *, status: int = 400, error_type: str = "bad_data", error: str = "parse error") -> None:
        self._scripts[query] = (status, {"status": "error", "errorType": error_type, "error": error})

    def hang_next(self) -> None:
        self._hang += 1

    # ------------------------------------------------------------------ serving
    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if request.path not in (QUERY_PATH, RANGE_PATH) or request.method not in ("GET", "POST"):
            return web.json_response({"status": "error", "errorType": "not_found", "error": "404"}, status=404)
        params = dict(request.query)
        if request.method == "POST":
            params.update({k: str(v) for k, v in (await request.post()).items()})
        self.requests.append(PromRequest(request.method, request.path, params))
        if self._hang:
            self._hang -= 1
            await self._stop_event.wait()
            return web.Response(status=503)
        query = params.get("query")
        if not query:
            return web.json_response({"status": "error", "errorType": "bad_data",
                                      "error": 'invalid parameter "query": empty'}, status=400)
        if request.path == RANGE_PATH and not all(params.get(k) for k in ("start", "end", "step")):
            return web.json_response({"status": "error", "errorType": "bad_data",
                                      "error": "start, end and step are required"}, status=400)
        status, body = self._scripts.get(query, (200, None))
        if body is None:
            kind = "matrix" if request.path == RANGE_PATH else "vector"
            body = {"status": "success", "data": {"resultType": kind, "result": []}}
        elif status == 200 and request.path == QUERY_PATH:
            body = _stamped(body, params.get("time"))
        await asyncio.sleep(0)
        return web.json_response(body, status=status)


def _stamped(body: dict[str, Any], at: str | None) -> dict[str, Any]:
    """Instant results carry the evaluation time (the request's ``time``, or now) like Prometheus'."""
    stamp = time.time() if not at else _seconds(at)
    data = dict(body["data"])
    if data["resultType"] == "vector":
        data["result"] = [{"metric": s["metric"], "value": [stamp, s["value"][1]]} for s in data["result"]]
    elif data["resultType"] == "scalar":
        data["result"] = [stamp, data["result"][1]]
    return {**body, "data": data}


def _seconds(value: str) -> float:
    try:
        return float(value)
    except ValueError:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
