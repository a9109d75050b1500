"""The WeCom 智能机器人 callback: ``GET /wecom/callback`` (URL verification) and ``POST /wecom/callback``
(encrypted messages and events), answered with encrypted passive replies.

Every POST is signature-checked, decrypted, refused when its timestamp is more than 5 minutes off, and
de-duplicated by ``msgid`` (WeCom repeats callbacks). Anything that does not authenticate answers 403
and nothing is processed. What arrives:
- an @mention (``@alertpilot approve INC-12``, with or without "/"): the same grammar as the Telegram
  commands — approve, reject, status (or just ``INC-12``: the incident as a template card with Approve,
  Reject, Details and Silence buttons), incidents, help, whoami, chatid, and summary, ask, report, postmortem,
  silence, silences and unsilence as streamed replies (the first chunk at once, then refreshed by WeCom until
  finished);
- a ``template_card_event`` (a button of that card): applied through the same approval (or silence)
  service as a Telegram button, for ``wecom:<userid>``, and answered within 5 s with ``update_template_card``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import secrets
from dataclasses import dataclass
from typing import Any

import structlog
from aiohttp import web

from bot.chat.wecom_crypto import WeComCrypto, WeComCryptoError
from bot.chat.wecom_streams import WeComStreams
from bot.render import Renderer
from bot.wecom_cards import card_reply, incident_of_task, markdown_reply, outcome_note, update_reply
from handlers.http.common import error, storable
from services.actions import ActionResult, Actor, Outcome
from services.approvals import ApprovalService
from services.assistant import AssistantService
from services.chat import ChatService, refusal, result_context
from services.errors import IncidentNotFound, InvalidIncidentRef
from services.incidents import incident_ref
from services.languages import ChatLanguages
from services.ports import CardAction, ChatTarget
from services.postmortems import PostmortemService
from services.queries import IncidentQueries, parse_incident_ref
from services.reports import ReportService
from services.silences import SilenceService
from storage.clock import Clock
from storage.db import Database

log = structlog.get_logger(__name__)
routes = web.RouteTableDef()

MAX_SKEW_SECONDS = 300
ANSWER_WITHIN_SECONDS = 4.0  # WeCom waits 5 s for the answer to a click
DECISIONS = ("approve", "reject")
LATER = frozenset({"kb", "note", "run", "audit", "playbooks"})
NOT_CONFIGURED = "the WeCom callback is not configured (ALERTPILOT_WECOM_BOT_TOKEN, ALERTPILOT_WECOM_BOT_AES_KEY)"


@dataclass(frozen=True)
class WeComDeps:
    crypto: WeComCrypto
    db: Database
    approvals: ApprovalService
    assistant: AssistantService
    streams: WeComStreams
    chat: ChatService
    queries: IncidentQueries
    renderer: Renderer
    clock: Clock
    silences: SilenceService
    reports: ReportService
    postmortems: PostmortemService
    languages: ChatLanguages


WECOM: web.AppKey[WeComDeps] = web.AppKey("wecom", WeComDeps)


def _query(request: web.Request, *names: str) -> list[str]:
    values = [request.query.get(name, "") for name in names]
    missing = [name for name, value in zip(names, values, strict=True) if not value]
    if missing:
        raise web.HTTPBadRequest(text=json.dumps({"error": f"missing query parameter(s): {', '.join(missing)}"}),
                                 content_type="application/json")
    return values


@routes.get("/wecom/callback")
async def on_wecom_url_verification(request: web.Request) -> web.StreamResponse:
    deps = request.app.get(WECOM)
    if deps is None:
        return error(404, NOT_CONFIGURED)
    signature, timestamp, nonce, echostr = _query(request, "msg_signature", "timestamp", "nonce", "echostr")
    try:
        plain = deps.crypto.verify_url(signature, timestamp, nonce, echostr)
    except WeComCryptoError as exc:
        log.warning("wecom_callback_refused", reason=str(exc), method="GET")
        return error(403, "signature or payload does not verify")
    return web.Response(text=plain, content_type="text/plain")


@routes.post("/wecom/callback")
async def on_wecom_callback(request: web.Request) -> web.StreamResponse:
    deps = request.app.get(WECOM)
    if deps is None:
        return error(404, NOT_CONFIGURED)
    signature, timestamp, nonce = _query(request, "msg_signature", "timestamp", "nonce")
    try:
        body = json.loads(await request.read())
    except ValueError:
        return error(400, "the body is not JSON")
    except RecursionError:
        return error(400, "the body is not JSON: nested too deeply")
    encrypt = body.get("encrypt") if isinstance(body, dict) else None
    if not isinstance(encrypt, str) or not encrypt:
        return error(400, "the body has no encrypt field")
    now = deps.clock()
    try:
        plain = deps.crypto.open(signature, timestamp, nonce, encrypt, now=now.timestamp(), max_skew=MAX_SKEW_SECONDS)
        message = json.loads(plain)
    except WeComCryptoError as exc:
        log.warning("wecom_callback_refused", reason=str(exc), method="POST")
        return error(403, "signature, timestamp or payload does not verify")
    except ValueError:
        return error(400, "the decrypted message is not JSON")
    except RecursionError:
        return error(400, "the decrypted message is not JSON: nested too deeply")
    if not isinstance(message, dict) or not isinstance(message.get("msgid"), str):
        return error(400, "the decrypted message has no msgid")
    if not storable(message):
        return error(400, "the decrypted message has a NUL character or a lone surrogate (\\u0000, \\ud800)")
    mark = f"{now.isoformat()} {secrets.token_hex(4)}"
    async with deps.db.write() as tx:
        first = await tx.kv.put_if_absent(f"wecom:msgid:{message['msgid'][:128]}", mark) == mark
    if not first:
        log.info("wecom_callback_duplicate", msgid=message["msgid"])
        return web.Response(text="")
    reply = await _answer(deps, message)
    if reply is None:
        return web.Response(text="")
    envelope = deps.crypto.seal(json.dumps(reply, ensure_ascii=False), timestamp=int(now.timestamp()),
                                nonce=secrets.token_hex(8))
    return web.json_response(envelope)


def _actor(message: dict[str, Any]) -> Actor | None:
    sender = message.get("from") if isinstance(message.get("from"), dict) else {}
    userid = sender.get("userid") if isinstance(sender, dict) else None
    if not isinstance(userid, str) or not userid:
        return None
    return Actor(id=f"wecom:{userid}", name=userid, target=ChatTarget("wecom", str(message.get("chatid") or userid)))


async def _answer(deps: WeComDeps, message: dict[str, Any]) -> dict[str, Any] | None:
    actor = _actor(message)
    if actor is None:
        return None
    lang = await deps.languages.of(actor.target)  # every answer in the chat's language (/lang)
    deps = dataclasses.replace(deps, renderer=deps.renderer.bound(lang), streams=deps.streams.bound(lang))
    if message.get("msgtype") == "text":
        text = (message.get("text") or {}).get("content", "") if isinstance(message.get("text"), dict) else ""
        return await _command(deps, actor, str(text))
    if message.get("msgtype") == "stream":  # WeCom asks for more of a streamed reply
        stream = message.get("stream") if isinstance(message.get("stream"), dict) else {}
        stream_id = stream.get("id") if isinstance(stream, dict) else None
        return deps.streams.reply(stream_id) if isinstance(stream_id, str) and stream_id else None
    event = message.get("event") if isinstance(message.get("event"), dict) else {}
    if isinstance(event, dict) and event.get("eventtype") == "template_card_event":
        click = event.get("template_card_event")
        if isinstance(click, dict):
            return await _click(deps, actor, str(click.get("event_key", "")), str(click.get("task_id", "")))
    return None


def _words(text: str) -> list[str]:
    """The command's words, without the leading @mention(s) and an optional "/"."""
    words = text.split()
    while words and words[0].startswith("@"):
        words.pop(0)
    if words:
        words[0] = words[0].removeprefix("/").lower()
    return words


async def _command(deps: WeComDeps, actor: Actor, text: str) -> dict[str, Any]:
    words = _words(text)
    name = words[0] if words else "help"
    try:
        if name in DECISIONS or name == "status" or name.startswith("inc-") or name.startswith("#"):
            ref = words[0] if name not in DECISIONS and name != "status" else (words[1] if len(words) > 1 else "")
            if not ref:
                return markdown_reply(deps.renderer, "error", code="usage", command=name)
            incident_id = parse_incident_ref(ref)
            if name in DECISIONS:  # answered with the incident's card in its new state, the outcome on top
                result = await deps.approvals.decide(incident_id=incident_id, actor=actor, approve=name == "approve",
                                                     reason=" ".join(words[2:]))
                if result.outcome is Outcome.NOT_ALLOWED and not deps.chat.may_read(actor):
                    return markdown_reply(deps.renderer, "action_result", **result_context(result))
                note = outcome_note(deps.renderer, result_context(result))
                return card_reply(deps.renderer, await deps.queries.card(incident_id), note=note)
            if not deps.chat.may_read(actor):
                return _refused(deps, ref)
            return card_reply(deps.renderer, await deps.queries.card(incident_id))
        if name == "details":  # what the model looked at and how the analyses voted (the card's Details has the alerts)
            if len(words) < 2:
                return markdown_reply(deps.renderer, "error", code="usage", command="details")
            incident_id = parse_incident_ref(words[1])
            if not deps.chat.may_read(actor):
                return _refused(deps, words[1])
            calls, consensus = await deps.queries.analysis(incident_id)
            ref = incident_ref(incident_id)
            parts = ([deps.renderer.render("wecom/evidence.md.j2", ref=ref, calls=calls)] if calls else []) + (
                [deps.renderer.render("wecom/consensus.md.j2", ref=ref, **consensus)] if consensus else [])
            if not parts:
                return card_reply(deps.renderer, await deps.queries.card(incident_id))
            return {"msgtype": "markdown", "markdown": {"content": "\n\n".join(parts)}}
        if name == "incidents":
            if not deps.chat.may_read(actor):
                return _refused(deps, "")
            items, total = await deps.queries.open_incidents(limit=15)
            return markdown_reply(deps.renderer, "incidents", items=items, total=total)
        if name == "help":
            return markdown_reply(deps.renderer, "help", **deps.chat.help_context(actor))
        if name == "whoami":
            return markdown_reply(deps.renderer, "whoami", **deps.chat.identity(actor))
        if name == "chatid":
            return markdown_reply(deps.renderer, "chatid", **deps.chat.chat_info(actor, private=_single_chat(actor)))
        if name == "lang":  # the chat's language; admins set it (lang zh-CN)
            change = await deps.languages.change(actor, " ".join(words[1:]))
            return markdown_reply(deps.renderer.bound(change.lang), "lang", **change.context())
        if name == "summary":
            if len(words) < 2:
                return markdown_reply(deps.renderer, "error", code="usage", command="summary")
            incident_id = parse_incident_ref(words[1])
            return await deps.streams.start(
                lambda reply: deps.assistant.summary(actor, incident_id, reply_to=None, reply=reply)
            )
        if name == "ask":
            question = " ".join(words[1:])
            return await deps.streams.start(lambda reply: deps.assistant.ask(actor, question, reply_to=None, reply=reply))
        rest = " ".join(words[1:])
        if name == "report":
            return await deps.streams.start(lambda reply: deps.reports.on_demand(actor, rest, reply))
        if name == "postmortem":
            if len(words) < 2:
                return markdown_reply(deps.renderer, "error", code="usage", command="postmortem")
            incident_id = parse_incident_ref(words[1])
            return await deps.streams.start(lambda reply: deps.postmortems.on_demand(actor, incident_id, reply))
        if name == "silence":
            return await deps.streams.start(lambda reply: deps.silences.create(actor, rest, reply))
        if name == "silences":
            return await deps.streams.start(lambda reply: deps.silences.list(actor, reply))
        if name == "unsilence":
            return await deps.streams.start(lambda reply: deps.silences.remove(actor, rest, reply))
    except InvalidIncidentRef as exc:
        return markdown_reply(deps.renderer, "error", code="bad_ref", text=exc.text[:64])
    except IncidentNotFound as exc:
        return markdown_reply(deps.renderer, "error", code="not_found", ref=exc.ref)
    if name in LATER:  # answered in the Telegram group for now: say so, not "unknown"
        return markdown_reply(deps.renderer, "error", code="telegram_only", command=name)
    return markdown_reply(deps.renderer, "error", code="unknown_command", command=name[:64])


def _single_chat(actor: Actor) -> bool:
    """A 1:1 chat with the bot has no chatid: _actor then names the chat after the user."""
    return actor.target.chat_id == actor.name


def _refused(deps: WeComDeps, ref: str) -> dict[str, Any]:
    return markdown_reply(deps.renderer, "action_result", **refusal(ref))


async def _click(deps: WeComDeps, actor: Actor, key: str, task: str) -> dict[str, Any] | None:
    incident_id = incident_of_task(task)
    if incident_id is None:
        return None  # not one of our cards
    try:
        if key in DECISIONS or key == CardAction.SILENCE.value:
            work = asyncio.ensure_future(
                deps.silences.silence_incident(incident_id=incident_id, actor=actor) if key == CardAction.SILENCE.value
                else deps.approvals.decide(incident_id=incident_id, actor=actor, approve=key == "approve")
            )
            work.add_done_callback(_log_failure)
            try:
                async with asyncio.timeout(ANSWER_WITHIN_SECONDS):  # not wait_for: it can swallow a cancellation
                    context = result_context(await asyncio.shield(work))
            except TimeoutError:  # the database is busy: say it arrived; it still applies
                context = {**result_context(ActionResult(Outcome.NO_PROPOSAL, "")), "outcome": "working",
                           "ref": f"INC-{incident_id}"}
            note = outcome_note(deps.renderer, context)
            return update_reply(deps.renderer, await deps.queries.card(incident_id), note=note)
        return update_reply(deps.renderer, await deps.queries.card(incident_id), details=key == "details")
    except IncidentNotFound:
        return None


def _log_failure(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("wecom_click_failed", error=repr(task.exception()))
