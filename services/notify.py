"""Writes outgoing chat traffic into the outbox, inside the caller's transaction (DESIGN §6).

Nothing is sent from here: the OutboxSender delivers rows. ``wake()`` tells the senders to look now;
call it after the transaction has committed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from services.ports import ChatTarget
from services.routing import chats_of
from storage.repos import Tx
from storage.tables import Incident, Outbox, OutboxKind


class Listener:
    def __init__(self) -> None:
        self._event = asyncio.Event()

    def set(self) -> None:
        self._event.set()

    async def wait(self, timeout: float) -> None:
        """Return when woken (a wake-up that came while busy counts) or after ``timeout`` seconds.

        ``asyncio.timeout``, not ``wait_for``: on Python 3.11 ``wait_for`` swallows a cancellation that
        arrives in the same loop turn as the wake-up, and the worker would then never stop."""
        try:
            async with asyncio.timeout(timeout):
                await self._event.wait()
        except TimeoutError:
            pass
        self._event.clear()


class Wakeup:
    """A broadcast signal from writers to workers: every listener sees every wake-up."""

    def __init__(self) -> None:
        self._listeners: list[Listener] = []
        self._timer: asyncio.TimerHandle | None = None  # the earliest wake-up set for later

    def listener(self) -> Listener:
        listener = Listener()
        self._listeners.append(listener)
        return listener

    def set(self, after: float = 0.0) -> None:
        """Wake every listener now, or in ``after`` seconds (for work that is not due before then: a storm
        opening hundreds of incidents whose cards wait for their proposal wakes the workers once, not once
        per webhook). A later wake-up than one already set changes nothing; the workers find whatever else
        is due by then themselves."""
        if after <= 0:
            for listener in self._listeners:
                listener.set()
            return
        loop = asyncio.get_running_loop()
        when = loop.time() + after
        if self._timer is not None and not self._timer.cancelled() and self._timer.when() <= when:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer = loop.call_at(when, self._fire)

    def _fire(self) -> None:
        self._timer = None
        self.set()


class Notifier:
    def __init__(
        self, card_targets: Sequence[ChatTarget], wakeup: Wakeup, *, routed: Sequence[ChatTarget] = (),
        decisions: Wakeup | None = None,
    ) -> None:
        """``card_targets``: where cards go by default; ``routed``: the chats routes and sources may send an
        incident's card to instead (services/routing.py). ``wakeup``: the senders'; ``decisions``: the
        execution worker's (None: it listens to ``wakeup``)."""
        self.card_targets = tuple(card_targets)
        self.all_card_targets = tuple(dict.fromkeys([*self.card_targets, *routed]))
        self._wakeup, self._decisions = wakeup, decisions

    def wake(self, after: timedelta = timedelta(0), *, decided: bool = True) -> None:
        """Tell the senders to look now (after a commit), or ``after`` from now when nothing queued is due sooner.
        ``decided``: a proposal may have been approved, so the execution worker looks too; False when only chat
        traffic was queued (the ingest, an analysis that decided nothing: a storm's thousands of wake-ups)."""
        self._wakeup.set(after.total_seconds())
        if decided and self._decisions is not None:
            self._decisions.set(after.total_seconds())

    async def targets_of(self, tx: Tx, incident_id: int) -> tuple[ChatTarget, ...]:
        """The chats of this incident's card and thread: its routed chats, or the default card chats."""
        return chats_of(await tx.incidents.chats_of(incident_id)) or self.card_targets

    def targets_for(self, incident: Incident) -> tuple[ChatTarget, ...]:
        """``targets_of`` for an incident row the caller holds."""
        return chats_of(incident.chats) or self.card_targets

    async def card(
        self, tx: Tx, incident_id: int, now: datetime, *, not_before: datetime | None = None,
        incident: Incident | None = None,
    ) -> None:
        """Make the incident's card in every chat of the incident reflect current state (send, or edit in place).
        ``incident``: its row when the caller holds it (its chats are not read again)."""
        targets = self.targets_for(incident) if incident is not None else await self.targets_of(tx, incident_id)
        for target in targets:
            await tx.outbox.enqueue(
                Outbox(
                    channel=target.channel,
                    chat_id=target.chat_id,
                    incident_id=incident_id,
                    kind=OutboxKind.CARD,
                    not_before=not_before or now,
                    created_at=now,
                )
            )

    async def thread(
        self,
        tx: Tx,
        incident_id: int,
        template: str,
        context: dict[str, Any],
        now: datetime,
        *,
        targets: Sequence[ChatTarget] | None = None,
        dedup_key: str | None = None,
        max_attempts: int | None = None,
        fallback: dict[str, Any] | None = None,
    ) -> bool:
        """A message threaded under the incident's card (in every card chat unless ``targets`` narrows it).
        False when ``dedup_key`` had already been queued everywhere (nothing new was queued).
        ``max_attempts``/``fallback``: give up after that many sends and queue the fallback message
        (``{"template": …, "context": …}``) instead (default: retried until delivered)."""
        queued = False
        for target in targets if targets is not None else await self.targets_of(tx, incident_id):
            queued = await tx.outbox.enqueue(
                Outbox(
                    channel=target.channel,
                    chat_id=target.chat_id,
                    incident_id=incident_id,
                    kind=OutboxKind.MESSAGE,
                    template=template,
                    context=context,
                    reply_to_card=True,
                    dedup_key=None if dedup_key is None else f"{dedup_key}:{target.channel}:{target.chat_id}",
                    not_before=now,
                    created_at=now,
                    max_attempts=max_attempts,
                    fallback=fallback,
                )
            ) or queued
        return queued

    async def answer(
        self,
        tx: Tx,
        target: ChatTarget,
        template: str,
        context: dict[str, Any],
        now: datetime,
        *,
        reply_to_message_id: str | None = None,
        incident_id: int | None = None,
        dedup_key: str | None = None,
        max_attempts: int | None = None,
        fallback: dict[str, Any] | None = None,
    ) -> bool:
        """A message to one chat (a command's answer), optionally as a reply to the user's message. False
        when ``dedup_key`` had already been queued. ``max_attempts``/``fallback``: as for ``thread``."""
        return await tx.outbox.enqueue(
            Outbox(
                channel=target.channel,
                chat_id=target.chat_id,
                incident_id=incident_id,
                kind=OutboxKind.MESSAGE,
                template=template,
                context=context,
                reply_to_message_id=reply_to_message_id,
                dedup_key=dedup_key,
                not_before=now,
                created_at=now,
                max_attempts=max_attempts,
                fallback=fallback,
            )
        )
