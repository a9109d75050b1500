"""Telegram long polling (the default ALERTPILOT_TELEGRAM_MODE): one process at a time, and surviving Telegram
being down when alertpilot starts.

Telegram hands each update to one getUpdates caller; two processes polling one bot fight over them (409
Conflict) and each sees only some button presses. So polling holds a database lease: a second alertpilot on
the same database refuses to poll, says so clearly, and stands by; it takes over when the holder stops (it
releases the lease) or dies (its lease expires, or at once when it was a process on this host that no longer
runs). Several replicas answer Telegram in webhook mode instead (bot/webhook.py).

aiogram retries getUpdates on its own, but the getMe before it is not retried: one failure there would end
polling until the next restart. This supervisor starts polling again with backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta

import structlog
from aiogram import Bot, Dispatcher
from aiogram.exceptions import TelegramUnauthorizedError

from services.leases import JobLeases, holder_gone

log = structlog.get_logger(__name__)

LEASE = "telegram:polling"
LEASE_TTL = timedelta(seconds=30)  # a holder renews every third of it; a dead holder's lease lapses after it


class TelegramPolling:
    def __init__(
        self, dp: Dispatcher, bot: Bot, leases: JobLeases, *, polling_timeout: int, ttl: timedelta = LEASE_TTL,
        max_backoff: float = 60.0,
    ) -> None:
        """``leases`` run on the wall clock: a lease is about processes being alive."""
        self._dp, self._bot, self._leases = dp, bot, leases
        self._timeout, self._ttl, self._max_backoff = polling_timeout, ttl, max_backoff
        self.state = "polling (starting)"
        self._lost = False

    async def run(self) -> None:
        """Hold the lease and poll until stop(); stand by while another process holds it."""
        while True:
            await self._take_lease()
            self.state, self._lost = "polling", False
            keeper = asyncio.create_task(self._keep_lease(), name="telegram-polling-lease")
            try:
                await self._poll()
            finally:
                keeper.cancel()
                await asyncio.gather(keeper, return_exceptions=True)
            if not self._lost:
                return  # stop() was called: shutting down

    async def stop(self) -> None:
        """Stop polling and hand the lease over at once (a standby replica takes it within seconds)."""
        with contextlib.suppress(RuntimeError):  # polling was not running
            await self._dp.stop_polling()
        with contextlib.suppress(Exception):  # the database may be gone too: the lease then simply expires
            await self._leases.release(LEASE)

    async def _take_lease(self) -> None:
        refused_by: str | None = None
        while not await self._leases.acquire(LEASE, self._ttl):
            lease = await self._leases.get(LEASE)
            holder = lease.owner if lease is not None else "?"
            if lease is not None and holder_gone(holder) and await self._leases.take_over(LEASE, holder, self._ttl):
                log.info("telegram_polling_taken_over", previous=holder, reason="that process no longer runs")
                return
            if holder != refused_by:
                refused_by = holder
                log.error(
                    "telegram_polling_refused", holder=holder,
                    message=f"another alertpilot ({holder}) is polling Telegram with this database; only one "
                            "process may poll. This one stands by and takes over when that one stops. To run "
                            "several replicas, set ALERTPILOT_TELEGRAM_MODE=webhook.",
                )
            self.state = f"standby: polling is held by {holder}"
            await asyncio.sleep(self._ttl.total_seconds() / 3)

    async def _keep_lease(self) -> None:
        while True:
            await asyncio.sleep(self._ttl.total_seconds() / 3)
            try:
                held = await self._leases.acquire(LEASE, self._ttl)
            except Exception as exc:  # the database is briefly away: keep polling, try again next time
                log.warning("telegram_polling_lease_renewal_failed", error=f"{type(exc).__name__}: {exc}")
                continue
            if not held:
                log.error("telegram_polling_lease_lost", hint="another process took over polling; standing by")
                self._lost = True
                self.state = "standby: polling lease lost"
                with contextlib.suppress(RuntimeError):
                    await self._dp.stop_polling()
                return

    async def _poll(self) -> None:
        delay = 1.0
        with contextlib.suppress(Exception):  # webhook mode was on before: getUpdates is refused until removed
            info = await self._bot.get_webhook_info()
            if info.url:
                log.warning("telegram_webhook_removed", url=info.url, hint="ALERTPILOT_TELEGRAM_MODE=polling")
                await self._bot.delete_webhook(drop_pending_updates=False)
        while True:
            try:
                await self._dp.start_polling(
                    self._bot,
                    handle_signals=False,
                    close_bot_session=False,
                    polling_timeout=self._timeout,
                    allowed_updates=self._dp.resolve_used_update_types(),
                )
                return  # stop_polling() was called: shutting down, or the lease was lost
            except asyncio.CancelledError:
                raise
            except TelegramUnauthorizedError:
                log.error("telegram_token_rejected", hint="check ALERTPILOT_TELEGRAM_TOKEN", retry_in=self._max_backoff)
                delay = self._max_backoff
            except Exception as exc:
                log.warning("telegram_polling_restart", error=f"{type(exc).__name__}: {exc}", retry_in=delay)
            if self._lost:
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._max_backoff)
