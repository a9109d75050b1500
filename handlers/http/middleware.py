"""The HTTP safety net: bad input gets a 4xx from the handlers; anything unexpected becomes a JSON 5xx
(503 when the database is the cause, so Alertmanager retries) and is logged, and the server keeps going."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import structlog
from aiohttp import web

from storage.errors import StorageError

log = structlog.get_logger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.content_type == "application/json" or exc.status < 400:
            raise
        return web.json_response({"error": exc.reason if not exc.text or exc.text.startswith(str(exc.status)) else exc.text},
                                 status=exc.status, headers={k: v for k, v in exc.headers.items() if k.lower() not in ("content-type", "content-length")})
    except StorageError:
        log.exception("http_storage_error", path=request.path)
        return web.json_response({"error": "storage unavailable; retry later"}, status=503)
    except Exception:
        log.exception("http_unhandled_error", path=request.path)
        return web.json_response({"error": "internal error"}, status=500)
