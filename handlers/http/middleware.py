"""The HTTP safety net: bad input gets a 4xx from the handlers; anything unexpected becomes a JSON 5xx
(503 with Retry-After when the database is the cause — locked, restarting, unreachable — so the sender retries
and nothing it was told was stored is lost) and is logged, and the server keeps going."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import structlog
from aiohttp import web

from storage.errors import StorageError, WriteConflict

log = structlog.get_logger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
RETRY_AFTER_SECONDS = 5  # what a 503 for a busy or restarting database asks the client to wait


def storage_unavailable(body: dict[str, object] | None = None) -> web.Response:
    """503 with Retry-After: the database is locked, restarting or unreachable; the request may be sent again."""
    return web.json_response(body or {"error": "storage unavailable; retry later"}, status=503,
                             headers={"Retry-After": str(RETRY_AFTER_SECONDS)})


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.content_type == "application/json" or exc.status < 400:
            raise
        return web.json_response({"error": exc.reason if not exc.text or exc.text.startswith(str(exc.status)) else exc.text},
                                 status=exc.status, headers={k: v for k, v in exc.headers.items() if k.lower() not in ("content-type", "content-length")})
    except (StorageError, WriteConflict):  # a conflict still there after the service's retries: try again later
        log.exception("http_storage_error", path=request.path)
        return storage_unavailable()
    except Exception:
        log.exception("http_unhandled_error", path=request.path)
        return web.json_response({"error": "internal error"}, status=500)
