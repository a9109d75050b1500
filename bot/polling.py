"""Telegram long polling that survives Telegram being down when alertpilot starts.

aiogram retries getUpdates on its own, but the getMe before it is not retried: one failure there would end
polling until the next restart. This supervisor starts polling again with backoff.
"""

from __future__ import annotations

import asyncio

import structlog
from aiogram import Bot, Dispatcher
from aiogram.exceptions import TelegramUnauthorizedError

log = structlog.get_logger(__name__)


async def supervise_polling(dp: Dispatcher, bot: Bot, *, polling_timeout: int, max_backoff: float = 60.0) -> None:
    delay = 1.0
    while True:
        try:
            await dp.start_polling(
                bot,
                handle_signals=False,
                close_bot_session=False,
                polling_timeout=polling_timeout,
                allowed_updates=dp.resolve_used_update_types(),
            )
            return  # stop_polling() was called: shutting down
        except asyncio.CancelledError:
            raise
        except TelegramUnauthorizedError:
            log.error("telegram_token_rejected", hint="check ALERTPILOT_TELEGRAM_TOKEN", retry_in=max_backoff)
            delay = max_backoff
        except Exception as exc:
            log.warning("telegram_polling_restart", error=f"{type(exc).__name__}: {exc}", retry_in=delay)
        await asyncio.sleep(delay)
        delay = min(delay * 2, max_backoff)
