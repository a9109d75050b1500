"""Card buttons. Every callback query is answered at once with a toast; changes show on the card."""

from __future__ import annotations

import asyncio
import contextlib

import structlog
from aiogram import Router
from aiogram.exceptions import TelegramAPIError
from aiogram.types import CallbackQuery

from bot.callbacks import IncidentCb, ListCb
from bot.render import Renderer, html_to_text
from handlers.telegram.common import actor_of
from services.actions import ActionResult, Actor
from services.analysis import AnalysisService
from services.approvals import ApprovalService
from services.chat import ChatService, result_context
from services.errors import IncidentNotFound
from services.incidents import incident_ref
from services.ports import CardAction
from services.silences import SilenceService

log = structlog.get_logger(__name__)
ANSWER_WITHIN_SECONDS = 3.0  # Telegram drops an unanswered press after ~15 s; answer well before



async def on_card_button_clicked(
    query: CallbackQuery,
    callback_data: IncidentCb,
    approvals: ApprovalService,
    analysis: AnalysisService,
    chat: ChatService,
    silences: SilenceService,
    renderer: Renderer,
) -> None:
    if query.message is None:  # Telegram no longer says where the card is
        await _answer(query, _toast(renderer, {"outcome": "stale_button", "ref": ""}), show_alert=True)
        return
    actor = actor_of(query.from_user, query.message.chat)
    ref = incident_ref(callback_data.incident_id)
    work = asyncio.ensure_future(_dispatch(callback_data, actor, approvals, analysis, chat, silences))
    try:
        async with asyncio.timeout(ANSWER_WITHIN_SECONDS):  # not wait_for: it can swallow a cancellation
            result = await asyncio.shield(work)
    except IncidentNotFound:
        await _answer(query, _toast(renderer, {"outcome": "not_found", "ref": ref}), show_alert=True)
        return
    except TimeoutError:
        # Telegram gives up on an unanswered press after ~15 s: say it arrived; the card shows the result.
        await _answer(query, _toast(renderer, {"outcome": "working", "ref": ref}))
        with contextlib.suppress(IncidentNotFound):
            await work
        return
    await _answer(query, _toast(renderer, result_context(result)), show_alert=not result.ok)


async def _answer(query: CallbackQuery, text: str | None, show_alert: bool = False) -> None:
    """The toast. Telegram refuses it for a press older than ~15 s (processed after a restart, or taken over
    from a replica that died): the press still counts, and the card and thread show its result."""
    try:
        await query.answer(text, show_alert=show_alert)
    except TelegramAPIError as exc:
        log.info("callback_answer_refused", error=exc.message)


async def on_list_button_clicked(query: CallbackQuery, callback_data: ListCb, chat: ChatService,
                                  renderer: Renderer) -> None:
    """A message's "List incidents" (the storm digest): answered at once, the list follows as /incidents'."""
    if query.message is None:
        await _answer(query, _toast(renderer, {"outcome": "stale_button", "ref": ""}), show_alert=True)
        return
    await _answer(query, None)
    await chat.incidents(actor_of(query.from_user, query.message.chat), reply_to=None)


async def on_stale_button_clicked(query: CallbackQuery, renderer: Renderer) -> None:
    """Callback data this version does not know (an older prefix, or garbage): say so, change nothing."""
    await _answer(query, _toast(renderer, {"outcome": "stale_button", "ref": ""}), show_alert=True)


async def _dispatch(
    data: IncidentCb,
    actor: Actor,
    approvals: ApprovalService,
    analysis: AnalysisService,
    chat: ChatService,
    silences: SilenceService,
) -> ActionResult:
    if data.action in (CardAction.APPROVE, CardAction.REJECT):
        return await approvals.decide(incident_id=data.incident_id, actor=actor, approve=data.action is CardAction.APPROVE)
    if data.action is CardAction.REANALYSE:
        return await analysis.reanalyse(incident_id=data.incident_id, actor=actor)
    if data.action is CardAction.SILENCE:
        return await silences.silence_incident(incident_id=data.incident_id, actor=actor)
    if data.action is CardAction.DETAILS:
        return await chat.details(incident_id=data.incident_id, actor=actor)
    return await chat.history(incident_id=data.incident_id, actor=actor)


def _toast(renderer: Renderer, context: dict[str, object]) -> str:
    """Callback answers are plain text of at most 200 characters."""
    context = {"state": None, "by": None, "needed_role": None, **context}
    return html_to_text(renderer.render("telegram/action_result.html.j2", **context))[:200]



def build_router() -> Router:
    """A fresh router per dispatcher (aiogram attaches a router to one parent only)."""
    router = Router(name=__name__)
    router.callback_query.register(on_card_button_clicked, IncidentCb.filter())
    router.callback_query.register(on_list_button_clicked, ListCb.filter())
    router.callback_query.register(on_stale_button_clicked)
    return router
