"""Telegram webhook mode (ALERTPILOT_TELEGRAM_MODE=webhook): register the webhook, and process the updates
that POST /telegram/webhook stored in the inbox (services/inbox.py) through the same aiogram dispatcher as
polling, in the background, each update once.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import structlog
from aiogram import Bot, Dispatcher
from aiogram.exceptions import TelegramBadRequest, TelegramUnauthorizedError
from aiogram.types import Update
from aiogram.types.update import UpdateTypeLookupError

from services.inbox import UpdateInbox

log = structlog.get_logger(__name__)

SWEEP_SECONDS = 15.0  # how often a replica looks for updates a dead replica left unfinished
CONCURRENCY = 32  # updates processed at once (aiogram's polling has no limit; one slow answer holds no other)


class WebhookUpdates:
    def __init__(self, inbox: UpdateInbox, dp: Dispatcher, bot: Bot, *, sweep_seconds: float = SWEEP_SECONDS) -> None:
        self._inbox, self._dp, self._bot, self._sweep = inbox, dp, bot, sweep_seconds
        self._running: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(CONCURRENCY)

    def received(self, update_id: int, body: dict[str, Any]) -> None:
        """An update was stored and acknowledged: process it now, in the background."""
        task = asyncio.create_task(self._process(update_id, body), name=f"telegram-update-{update_id}")
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _process(self, update_id: int, body: dict[str, Any]) -> None:
        async with self._slots:
            error: str | None = None
            try:
                update = Update.model_validate(body, context={"bot": self._bot})
                try:
                    update.event_type  # noqa: B018  (raises for an update type this aiogram does not know)
                except UpdateTypeLookupError:
                    log.info("telegram_update_unknown_type", update_id=update_id, fields=sorted(body)[:10])
                    await self._inbox.finish(update_id, "an update type alertpilot does not handle")
                    return
                await self._dp.feed_update(self._bot, update)
            except asyncio.CancelledError:
                raise  # shutting down past the grace period: the claim goes stale and another replica redoes it
            except Exception as exc:  # a handler's failure ends this update, as in polling; it is not retried
                error = f"{type(exc).__name__}: {exc}"[:500]
                log.exception("telegram_update_failed", update_id=update_id)
            await self._inbox.finish(update_id, error)

    async def run(self) -> None:
        """Take over updates a replica that died left unfinished, until cancelled."""
        while True:
            try:
                for update_id, body in await self._inbox.claim_abandoned():
                    self.received(update_id, body)
            except Exception:
                log.exception("telegram_inbox_sweep_failed")
            await asyncio.sleep(self._sweep)

    async def drain(self, timeout: float) -> None:
        """Shutting down: let the updates in progress finish (within ``timeout`` seconds)."""
        if self._running:
            log.info("telegram_updates_draining", in_flight=len(self._running))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await asyncio.gather(*self._running, return_exceptions=True)


async def register_webhook(
    dp: Dispatcher, bot: Bot, *, url: str, secret: str, max_backoff: float = 60.0
) -> None:
    """setWebhook with the secret token, retried with backoff while Telegram is unreachable; every replica
    does it at start-up (the same URL and secret: idempotent)."""
    delay = 1.0
    while True:
        try:
            await bot.set_webhook(url=url, secret_token=secret, allowed_updates=dp.resolve_used_update_types(),
                                  drop_pending_updates=False)
            log.info("telegram_webhook_registered", url=url)
            return
        except asyncio.CancelledError:
            raise
        except TelegramUnauthorizedError:
            log.error("telegram_token_rejected", hint="check ALERTPILOT_TELEGRAM_TOKEN", retry_in=max_backoff)
            delay = max_backoff
        except TelegramBadRequest as exc:
            log.error("telegram_webhook_refused", url=url, error=exc.message,
                      hint="ALERTPILOT_TELEGRAM_WEBHOOK_URL must be a public https URL Telegram can reach "
                           "(ports 443, 80, 88 or 8443) that forwards to POST /telegram/webhook")
            delay = max_backoff
        except Exception as exc:
            log.warning("telegram_webhook_retry", error=f"{type(exc).__name__}: {exc}", retry_in=delay)
        await asyncio.sleep(delay)
        delay = min(delay * 2, max_backoff)
