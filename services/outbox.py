"""The one sender: delivers outbox rows of one channel through its ChatGateway (DESIGN §6).

- rows of one incident in one chat go in id order: a reply never overtakes the card it threads under;
- and a chat reads in id order across incidents too: one row per chat at a time, and while a row of the chat
  waits for its retry (5xx, timeout, 429) the chat's younger rows wait behind it, so after an outage the
  backlog arrives in the order the events happened rather than in the order each row's backoff ran out;
- consecutive card rows of an incident coalesce: cards render current state, so one send is enough;
- pacing per chat, per group and per bot (services.pacing);
- 429 → retry after ``retry_after``; 5xx, timeouts and network errors → exponential backoff (capped), and
  never given up, so an outage delays messages but loses none; other 4xx → failed, with the error kept;
- a row with ``max_attempts`` (a postmortem) is given up after that many sends, and its ``fallback`` message
  (a short one, with the error) is queued in its place;
- a card edited in place that no longer exists is sent again as a new card and its ref re-pointed;
- a row is claimed (compare-and-set) before it is sent, so several senders never send it twice;
- alert storms (services.storm): a chat with more first cards due than its budget for the next minute allows
  (and at least STORM_MIN) gets one digest, sent first, and cards for the most severe within the budget; the
  other first cards are folded, and so are the later cards and thread rows of an incident folded in that chat.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta

import structlog

from services.errors import (
    IncidentNotFound,
    MessageGone,
    PermanentDeliveryError,
    RateLimited,
    TransientDeliveryError,
)
from services.metrics import Metrics
from services.pacing import Pacer
from services.ports import ChatGateway
from services.queries import IncidentQueries
from services.storm import FOLDED_ERROR, FOLDED_REF, STORM_MIN, STORM_TEMPLATE, FirstCard, digest_context, plan_storm
from storage.clock import Clock
from storage.db import Database
from storage.repos import Tx
from storage.tables import Incident, Outbox, OutboxKind, OutboxState

log = structlog.get_logger(__name__)

CLAIM_TTL = timedelta(seconds=120)
BATCH = 200
FOLD_ROUNDS = 20  # rounds of folding per pass: each folds the next row of every folded incident


class SendResult:
    """A send's result on /metrics (alertpilot_outbox_sends_total{result})."""

    SENT = "sent"
    TRANSIENT_ERROR = "transient_error"  # 5xx, timeout, network: retried with backoff
    RATE_LIMITED = "rate_limited"  # 429: retried after retry_after
    FAILED = "failed"  # another 4xx, a bug, or the last allowed attempt: given up


SEND_RESULTS = (SendResult.SENT, SendResult.TRANSIENT_ERROR, SendResult.RATE_LIMITED, SendResult.FAILED)


def fallback_row(row: Outbox, error: str, now: datetime) -> Outbox:
    """The short message sent instead of a row that could not be delivered (its context gains the error)."""
    assert row.fallback is not None
    return Outbox(
        channel=row.channel,
        chat_id=row.chat_id,
        incident_id=row.incident_id,
        kind=OutboxKind.MESSAGE,
        template=str(row.fallback.get("template", "")),
        context={**dict(row.fallback.get("context") or {}), "error": error[:300]},
        reply_to_card=row.reply_to_card,
        reply_to_message_id=row.reply_to_message_id,
        dedup_key=None if row.dedup_key is None else f"{row.dedup_key}:fallback",
        not_before=now,
        created_at=now,
    )


def _is_digest(row: Outbox) -> bool:
    return row.kind == OutboxKind.MESSAGE and row.template == STORM_TEMPLATE


class OutboxSender:
    def __init__(
        self,
        db: Database,
        gateway: ChatGateway,
        queries: IncidentQueries,
        pacer: Pacer,
        clock: Clock,
        *,
        max_backoff: float = 300.0,
        poll_seconds: float = 1.0,
        monotonic: Callable[[], float] = time.monotonic,
        owner: str | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        """``metrics``: where each send is counted by result (alertpilot_outbox_sends_total; None: a private one)."""
        self._db, self._gw, self._queries, self._pacer, self._now = db, gateway, queries, pacer, clock
        self._max_backoff, self._poll, self._mono = max_backoff, poll_seconds, monotonic
        self._owner = owner or f"{gateway.channel}-{uuid.uuid4().hex[:8]}"
        self.channel = gateway.channel
        self._retrying: dict[str, set[int]] = {}  # chat → its rows waiting for a retry; younger rows wait too
        self._kept: dict[str, set[int]] = {}  # chat → first cards a storm kept: they hold their place in the budget
        self._metrics = metrics if metrics is not None else Metrics()
        for result in SEND_RESULTS:  # every series from the start, so rate() sees the first error
            self._metrics.declare("alertpilot_outbox_sends_total", channel=self.channel, result=result)
        self._metrics.declare("alertpilot_storm_folded_total", channel=self.channel)

    async def run(self, wait: Callable[[float], object]) -> None:
        """Deliver forever; ``wait(seconds)`` sleeps until woken or the time passes."""
        while True:
            try:
                delay = await self.pump()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("outbox_loop_error", channel=self.channel)
                delay = self._poll
            await wait(max(0.01, min(delay, self._poll)))  # type: ignore[misc]

    async def flush(self, timeout: float) -> bool:
        """Shutting down (SIGTERM), with run() still delivering: wait until nothing on this channel is due now
        or being sent (a message that is failing waits for its backoff instead), at most ``timeout`` seconds.
        True when flushed."""
        try:
            async with asyncio.timeout(timeout):
                while True:
                    now = self._now()
                    async with self._db.read() as tx:  # a 'sending' row of any age counts: let it finish
                        if not await tx.outbox.due_heads(self.channel, now, now + CLAIM_TTL,
                                                         skip_chats=tuple(self._retrying), limit=1):
                            return True
                    await asyncio.sleep(0.05)
        except TimeoutError:
            log.warning("outbox_flush_incomplete", channel=self.channel, timeout=timeout)
            return False
        except Exception as exc:  # the database went away: what is unsent goes after the next start
            log.warning("outbox_flush_failed", channel=self.channel, error=f"{type(exc).__name__}: {exc}"[:300])
            return False

    async def pump(self) -> float:
        """Deliver what is due now; returns how long until something may be due."""
        paced_wait = self._poll
        while True:
            now = self._now()
            held = self._pacer.held_chats(self._mono())
            async with self._db.read() as tx:
                await self._forget_finished(tx)
                heads = await tx.outbox.due_heads(self.channel, now, now - CLAIM_TTL, skip_chats=held, limit=BATCH)
            for _ in range(FOLD_ROUNDS):  # folding makes the rows behind the folded ones heads: look again
                if not await self._fold_storms(heads):
                    break
                async with self._db.read() as tx:
                    heads = await tx.outbox.due_heads(self.channel, now, now - CLAIM_TTL, skip_chats=held, limit=BATCH)
            else:
                heads = []  # still folding (an incident with a long thread): go on at the next pump, send nothing unchecked
            heads.sort(key=lambda r: (not _is_digest(r), r.id))  # a storm's digest goes before its kept cards
            sent_any = False
            taken: set[str] = set()  # chats that had their row in this pass: the next one is picked when it is done
            for row in heads:
                assert row.id is not None
                retrying = self._retrying.get(row.chat_id)
                if row.chat_id in taken or (retrying and row.id > min(retrying)):
                    continue  # an older row of this chat goes first (this pass, or when its retry is due)
                wait = self._pacer.delay(row.chat_id, self._mono())
                if wait > 0:  # the chat's (or the bot's) budget went on an earlier row of this pass
                    paced_wait = min(paced_wait, wait)
                    continue
                if row.kind == OutboxKind.CARD:
                    async with self._db.write(small=True) as tx:
                        await tx.outbox.coalesce(await tx.outbox.card_run_after(row))
                taken.add(row.chat_id)
                async with self._db.write(small=True) as tx:
                    if not await tx.outbox.claim(row.id, self._owner, self._now(), self._now() - CLAIM_TTL):
                        continue  # another sender has it
                finished = await self._deliver(row)
                retrying = self._retrying.setdefault(row.chat_id, set())
                (retrying.discard if finished else retrying.add)(row.id)
                if not retrying:
                    del self._retrying[row.chat_id]
                sent_any = finished or sent_any
            if not sent_any:
                break  # rows went out: the rows behind them may be due now, look again
        async with self._db.read() as tx:
            earliest = await tx.outbox.next_head_due(self.channel, self._now())
        waits = [paced_wait, self._pacer.next_free(self._mono())]
        if earliest is not None:
            waits.append((earliest - self._now()).total_seconds())
        return max(0.0, min(waits))

    async def _fold_storms(self, heads: list[Outbox]) -> bool:
        """Fold what an alert storm makes unnecessary (module docstring); True when rows changed."""
        threaded = [r for r in heads if r.incident_id is not None and r.state == OutboxState.PENDING
                    and (r.kind == OutboxKind.CARD or r.reply_to_card)]
        if not threaded:
            return False
        async with self._db.read() as tx:
            kinds = await tx.refs.kinds_in(self.channel, [r.incident_id for r in threaded if r.incident_id])
        follow: list[int] = []
        first: dict[str, list[Outbox]] = {}
        for row in threaded:
            assert row.id is not None and row.incident_id is not None
            refs = kinds.get((row.chat_id, row.incident_id), set())
            if FOLDED_REF in refs and "card" not in refs:
                follow.append(row.id)
            elif row.kind == OutboxKind.CARD and not refs and row.chat_id not in self._retrying:
                first.setdefault(row.chat_id, []).append(row)
        storms: dict[str, tuple[list[Outbox], int, int]] = {}  # chat → (new first cards, room for them, kept)
        for chat_id, rows in first.items():
            kept = self._kept.get(chat_id, set()) & {r.id for r in rows}  # kept cards not sent yet
            if kept:
                self._kept[chat_id] = kept
            else:
                self._kept.pop(chat_id, None)
            new = [r for r in rows if r.id not in kept]
            room = self._pacer.room(chat_id, self._mono()) - len(kept)
            if new and len(rows) >= STORM_MIN and len(new) > room:  # kept cards count towards a storm's size
                storms[chat_id] = (new, room, len(kept))
        if not follow and not storms:
            return False
        incidents: dict[int, Incident] = {}
        if storms:
            async with self._db.read() as tx:
                incidents = await tx.incidents.many(r.incident_id for rows, _, _ in storms.values() for r in rows
                                                    if r.incident_id is not None)
        now = self._now()
        async with self._db.write() as tx:
            changed = await tx.outbox.fold(follow, FOLDED_ERROR) > 0
            for chat_id, (rows, room, kept_count) in storms.items():
                cards = [
                    FirstCard(row.id or 0, i.id or 0, i.severity, i.alertname, i.service, i.created_at)
                    for row in rows if (i := incidents.get(row.incident_id or 0)) is not None
                ]
                plan = plan_storm(cards, room, minimum=STORM_MIN - kept_count)
                if plan is None:
                    continue
                waiting = await tx.outbox.pending_message(self.channel, chat_id, STORM_TEMPLATE)
                if waiting is None or not await tx.outbox.replace_context(
                    waiting.id or 0, digest_context(plan, waiting.context)
                ):  # one digest: a wave while the last is still unsent joins it
                    await tx.outbox.enqueue(Outbox(
                        channel=self.channel, chat_id=chat_id, kind=OutboxKind.MESSAGE, template=STORM_TEMPLATE,
                        context=digest_context(plan), not_before=now, created_at=now,
                    ))
                await tx.outbox.fold([c.row_id for c in plan.folded], FOLDED_ERROR)
                for card in plan.folded:
                    await tx.refs.add_marker(self.channel, chat_id, card.incident_id, FOLDED_REF, now)
                self._kept.setdefault(chat_id, set()).update(c.row_id for c in plan.kept)
                changed = True
                self._metrics.inc("alertpilot_storm_folded_total", len(plan.folded), channel=self.channel)
                log.warning("alert_storm_folded", channel=self.channel, chat_id=chat_id, incidents=len(cards),
                            kept=len(plan.kept), folded=len(plan.folded), room=room)
        if follow:
            log.info("outbox_folded_follow_ups", channel=self.channel, rows=len(follow))
        return changed

    async def _forget_finished(self, tx: Tx) -> None:
        """Stop holding chats back for rows that are done (sent by another replica, say) or gone."""
        for chat_id, row_ids in list(self._retrying.items()):
            for row_id in list(row_ids):
                row = await tx.session.get(Outbox, row_id)
                if row is None or row.state not in (OutboxState.PENDING, OutboxState.SENDING):
                    row_ids.discard(row_id)
            if not row_ids:
                del self._retrying[chat_id]

    async def _deliver(self, row: Outbox) -> bool:
        assert row.id is not None
        try:
            message_id = await self._send(row)
        except RateLimited as exc:
            self._pacer.pause(row.chat_id, self._mono() + exc.retry_after)
            if self._last_attempt(row):
                self._count(SendResult.FAILED)
                await self._fail(row, f"429: {exc}")
                return True
            self._count(SendResult.RATE_LIMITED)
            await self._retry_later(row, exc.retry_after, f"429: {exc}")
            return False
        except TransientDeliveryError as exc:
            if self._last_attempt(row):
                self._count(SendResult.FAILED)
                await self._fail(row, str(exc))
                return True
            self._count(SendResult.TRANSIENT_ERROR)
            await self._retry_later(row, min(self._max_backoff, 2.0 ** min(row.attempts, 20)), str(exc))
            return False
        except (PermanentDeliveryError, IncidentNotFound) as exc:
            self._count(SendResult.FAILED)
            await self._fail(row, str(exc))
            return True
        except Exception as exc:  # a bug (template, view): keep the row, say so loudly
            self._count(SendResult.FAILED)
            log.exception("outbox_send_crashed", channel=self.channel, row_id=row.id)
            await self._fail(row, f"{type(exc).__name__}: {exc}")
            return True
        self._count(SendResult.SENT)
        async with self._db.write(small=True) as tx:
            if row.kind == OutboxKind.CARD and row.incident_id is not None:
                await tx.refs.set_card(self.channel, row.chat_id, row.incident_id, message_id, self._now())
            await tx.outbox.finish(
                row.id, self._owner, state=OutboxState.SENT, message_id=message_id, sent_at=self._now(), last_error=None
            )
        log.info("outbox_sent", channel=self.channel, row_id=row.id, kind=row.kind, incident_id=row.incident_id,
                 chat_id=row.chat_id, message_id=message_id)
        return True

    async def _send(self, row: Outbox) -> str:
        if row.kind == OutboxKind.CARD:
            assert row.incident_id is not None
            async with self._db.read() as tx:
                card = await self._queries.card_in(tx, row.incident_id)
                ref = await tx.refs.card(self.channel, row.chat_id, row.incident_id)
            if ref is not None and not self._gw.can_edit:
                if self._gw.shows(ref.message_id, card):
                    return ref.message_id  # a robot's card stays; this change is sent as its own message
                ref = None  # a new proposal: the robot posts the card again
            self._pacer.record(row.chat_id, self._mono())
            if ref is None:
                return await self._gw.send_card(row.chat_id, card, edit_message_id=None)
            try:
                return await self._gw.send_card(row.chat_id, card, edit_message_id=ref.message_id)
            except MessageGone:
                log.warning("card_gone_resending", channel=self.channel, incident_id=row.incident_id, old=ref.message_id)
                self._pacer.record(row.chat_id, self._mono())
                return await self._gw.send_card(row.chat_id, card, edit_message_id=None)
        self._pacer.record(row.chat_id, self._mono())
        reply_to = row.reply_to_message_id
        if row.reply_to_card and row.incident_id is not None:
            async with self._db.read() as tx:
                ref = await tx.refs.card(self.channel, row.chat_id, row.incident_id)
            reply_to = ref.message_id if ref else None
        return await self._gw.send_message(row.chat_id, row.template, row.context, reply_to=reply_to)

    def _count(self, result: str) -> None:
        self._metrics.inc("alertpilot_outbox_sends_total", channel=self.channel, result=result)

    async def _retry_later(self, row: Outbox, seconds: float, error: str) -> None:
        async with self._db.write() as tx:
            await tx.outbox.finish(
                row.id or 0, self._owner, state=OutboxState.PENDING, not_before=self._now() + timedelta(seconds=seconds),
                last_error=error[:2000], claimed_by=None, claimed_at=None,
            )
        log.warning("outbox_retry", channel=self.channel, row_id=row.id, in_seconds=round(seconds, 2),
                    attempts=row.attempts + 1, error=error[:300])

    @staticmethod
    def _last_attempt(row: Outbox) -> bool:
        """Whether this send was the row's last allowed one (``attempts`` is the count before this claim)."""
        return row.max_attempts is not None and row.attempts + 1 >= row.max_attempts

    async def _fail(self, row: Outbox, error: str) -> None:
        async with self._db.write() as tx:
            finished = await tx.outbox.finish(row.id or 0, self._owner, state=OutboxState.FAILED, last_error=error[:2000])
            if finished and row.fallback:
                await tx.outbox.enqueue(fallback_row(row, error, self._now()))
        if row.fallback:
            log.warning("outbox_fallback_queued", channel=self.channel, row_id=row.id, template=row.fallback.get("template"))
        log.error("outbox_failed", channel=self.channel, row_id=row.id, kind=row.kind, incident_id=row.incident_id,
                  error=error[:500])

    async def release_own_claims(self) -> None:
        """At start-up of a single-process deployment: rows left 'sending' by a killed process go again."""
        async with self._db.write() as tx:
            await tx.outbox.release_claims(self.channel)
