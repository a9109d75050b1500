"""POST /telegram/webhook: the updates Telegram posts in webhook mode (ALERTPILOT_TELEGRAM_MODE=webhook).

The secret token Telegram was given at setWebhook must come back in ``X-Telegram-Bot-Api-Secret-Token``
(401 otherwise, nothing stored). A valid update is stored before the 200 (services/inbox.py), so an
acknowledged update is never lost, and processed in the background; one Telegram posts again (to this
replica or another) is acknowledged and not processed twice. When the database cannot store it the answer is
503 and Telegram posts it again later.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiogram.types import Update
from aiohttp import web
from pydantic import ValidationError

from handlers.http.common import error, storable
from services.inbox import UpdateInbox

routes = web.RouteTableDef()
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
MAX_UPDATE_ID = 2**63 - 1


@dataclass(frozen=True)
class TelegramWebhookDeps:
    secret: str
    inbox: UpdateInbox
    received: Callable[[int, dict[str, Any]], None]  # start processing a stored update in the background


TELEGRAM_WEBHOOK: web.AppKey[TelegramWebhookDeps] = web.AppKey("telegram_webhook", TelegramWebhookDeps)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_update(raw: bytes) -> tuple[int, dict[str, Any]] | str:
    """The update's id and body, or why this is not a Telegram update."""
    try:
        body = json.loads(raw, parse_constant=_no_constant)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        return f"the body is not JSON: {str(exc)[:120]}"
    if not isinstance(body, dict):
        return f"an update is a JSON object, not {type(body).__name__}"
    if not storable(body):
        return "the update has a NUL character or a lone surrogate (\\u0000, \\ud800)"
    update_id = body.get("update_id")
    if isinstance(update_id, bool) or not isinstance(update_id, int) or not 0 <= update_id <= MAX_UPDATE_ID:
        return "update_id: a non-negative integer is required"
    try:
        Update.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "update"
        return f"not a Telegram update: {where}: {first['msg']}"[:300]
    except (RecursionError, ValueError, TypeError) as exc:
        return f"not a Telegram update: {type(exc).__name__}"
    return update_id, body


@routes.post("/telegram/webhook")
async def on_update(request: web.Request) -> web.Response:
    deps = request.app.get(TELEGRAM_WEBHOOK)
    if deps is None:
        return error(404, "Telegram webhook mode is off (ALERTPILOT_TELEGRAM_MODE=webhook with "
                          "ALERTPILOT_TELEGRAM_WEBHOOK_URL and ALERTPILOT_TELEGRAM_WEBHOOK_SECRET turns it on)")
    given = request.headers.get(SECRET_HEADER, "")
    if not hmac.compare_digest(given.encode("utf-8", "surrogateescape"), deps.secret.encode()):
        return error(401, f"missing or wrong {SECRET_HEADER} (the ALERTPILOT_TELEGRAM_WEBHOOK_SECRET given to setWebhook)")
    parsed = parse_update(await request.read())
    if isinstance(parsed, str):
        return error(400, parsed)
    update_id, body = parsed
    if not await deps.inbox.accept(update_id, body):
        return web.json_response({"ok": True, "duplicate": True})
    deps.received(update_id, body)
    return web.json_response({"ok": True})
