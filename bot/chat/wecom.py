"""WeCom group robots (the ChatGateway port): markdown messages through the robot webhooks.

Robots come from ``ALERTPILOT_WECOM_WEBHOOK_KEYS`` (one or more webhook keys). A key is a secret: its chat
id here (stored in the outbox and message refs, shown by the read API) is ``robot-<digest of the key>``,
and only this gateway maps it back to the key. Robots can neither edit a message nor reply to one: the incident card is posted once,
and every later state change arrives as its own message that names the incident (templates/wecom/*.md.j2).

WeCom answers HTTP 200 even on errors, so ``errcode`` is always checked:
- 45009 (rate limited) → back off at least 60 s and retry (the outbox keeps the message);
- 93000 (invalid webhook key) → a configuration error, logged with the variable to fix; the message fails;
- 40058 (bad parameter, e.g. too long) → shrunk and sent once more as plain text;
- any other code → the message fails with the code and message recorded.
Fields are shrunk before rendering until a message fits (markdown 4096 bytes, text 2048 bytes); the
rendered markdown is never cut.
"""

from __future__ import annotations

import dataclasses
import hashlib
import uuid
from typing import Any

import httpx
import structlog

from bot.render import WECOM_MARKDOWN_LIMIT, WECOM_TEXT_LIMIT, Renderer, clip_bytes, markdown_to_text
from services.errors import PermanentDeliveryError, RateLimited, TransientDeliveryError
from services.ports import ChatTarget, IncidentCard, Languages, ProposalView, card_version

log = structlog.get_logger(__name__)

RATE_LIMITED = 45009
INVALID_KEY = 93000
BAD_PARAMETER = 40058
RATE_LIMIT_BACKOFF_SECONDS = 60.0
SHRINK_STEPS = (400, 200, 120, 60, 30)  # longest string kept per field, tried in turn until a message fits


def mask_key(key: str) -> str:
    """A webhook key for logs and banners: enough to recognise it, not enough to use it."""
    return f"{key[:4]}…{key[-2:]}" if len(key) > 8 else "…"


def robot_id(key: str) -> str:
    return "robot-" + hashlib.sha256(key.encode()).hexdigest()[:10]


def size(text: str) -> int:
    return len(text.encode("utf-8"))


def shrink(value: Any, limit: int) -> Any:
    """``value`` with every string longer than ``limit`` characters cut (with "…"), recursively; lists are
    cut to 10 items (views and contexts are JSON-like: dicts, lists, dataclasses, scalars)."""
    if isinstance(value, str):
        return value if len(value) <= limit else value[: max(1, limit - 1)].rstrip() + "…"
    if isinstance(value, dict):
        return {k: shrink(v, limit) for k, v in value.items()}
    if isinstance(value, list | tuple):
        items = [shrink(v, limit) for v in value[:10]]
        return tuple(items) if isinstance(value, tuple) else items
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.replace(value, **{f.name: shrink(getattr(value, f.name), limit)
                                             for f in dataclasses.fields(value) if f.init})
    return value


class WeComRobotGateway:
    channel = "wecom"
    can_edit = False  # a robot message cannot be edited: card changes arrive as messages

    def __init__(
        self, client: httpx.AsyncClient, renderer: Renderer, keys: tuple[str, ...], *, oncall: tuple[str, ...] = (),
        languages: Languages | None = None, key_languages: dict[str, str] | None = None,
    ) -> None:
        """``key_languages``: robots whose group has its own language (``key@zh-CN``); the others speak the
        default. A robot cannot be asked /lang: its key is all alertpilot knows of its group."""
        self._http, self._render, self._oncall, self._languages = client, renderer, oncall, languages
        self._keys = {robot_id(key): key for key in keys}
        self._robot_languages = {robot_id(key): lang for key, lang in (key_languages or {}).items()}

    @property
    def chat_ids(self) -> tuple[str, ...]:
        """One chat per robot, in the configured order."""
        return tuple(self._keys)

    def is_group(self, chat_id: str) -> bool:
        return True  # a robot posts into its group

    def shows(self, message_id: str, card: IncidentCard) -> bool:
        """The card posted as ``message_id`` still shows this card's proposal (the version is in the id)."""
        return message_id.endswith(f":{card_version(card)}")

    async def send_card(self, chat_id: str, card: IncidentCard, *, edit_message_id: str | None) -> str:
        if edit_message_id is not None and self.shows(edit_message_id, card):
            return edit_message_id  # robots cannot edit; the state change has its own message
        lang = await self._lang(chat_id)
        content = self._fit(
            lambda c: self._render.render("wecom/card.md.j2", lang=lang, card=c, mentions=list(self._oncall)), card)
        return await self._post(chat_id, content, mentions=self._oncall) + f":{card_version(card)}"

    async def send_message(self, chat_id: str, template: str, context: dict[str, Any], *, reply_to: str | None) -> str:
        lang = await self._lang(chat_id)
        content = self._fit(lambda c: self._render.render(f"wecom/{template}.md.j2", lang=lang, **c), context)
        return await self._post(chat_id, content, mentions=wecom_mentions(context))

    async def _lang(self, chat_id: str) -> str:
        if chat_id in self._robot_languages:
            return self._robot_languages[chat_id]
        if self._languages is None:
            return self._render.default_lang
        return await self._languages.of(ChatTarget(self.channel, chat_id))

    def _fit(self, render: Any, view: Any) -> str:
        """Render; while too long, shrink every field of the view and render again."""
        content = render(view)
        for limit in SHRINK_STEPS:
            if size(content) <= WECOM_MARKDOWN_LIMIT:
                return content
            content = render(_shrink_view(view, limit))
        if size(content) <= WECOM_MARKDOWN_LIMIT:
            return content
        raise PermanentDeliveryError(f"the message does not fit WeCom's {WECOM_MARKDOWN_LIMIT} bytes even shrunk")

    async def _post(self, chat_id: str, content: str, *, mentions: tuple[str, ...]) -> str:
        key = self._keys.get(chat_id)
        if key is None:
            raise PermanentDeliveryError(f"{chat_id} is not a configured robot (ALERTPILOT_WECOM_WEBHOOK_KEYS changed?)")
        answer = await self._send(key, {"msgtype": "markdown", "markdown": {"content": content}})
        if answer.get("errcode") == BAD_PARAMETER:
            log.warning("wecom_markdown_refused_sending_text", robot=mask_key(key), errmsg=answer.get("errmsg"))
            text = clip_bytes(markdown_to_text(content), WECOM_TEXT_LIMIT)
            answer = await self._send(key, {"msgtype": "text", "text": {"content": text, "mentioned_list": list(mentions)}})
        self._check(key, answer)
        return f"wecom-{uuid.uuid4().hex[:12]}"  # robots return no message id

    async def _send(self, key: str, body: dict[str, Any]) -> dict[str, Any]:
        try:
            response = await self._http.post("cgi-bin/webhook/send", params={"key": key}, json=body)
        except httpx.HTTPError as exc:
            raise TransientDeliveryError(f"{type(exc).__name__}: {exc}") from exc
        if response.status_code >= 500 or response.status_code == 429:
            raise TransientDeliveryError(f"HTTP {response.status_code} from WeCom")
        if response.status_code != 200:
            raise PermanentDeliveryError(f"HTTP {response.status_code} from WeCom: {response.text[:200]}")
        try:
            answer = response.json()
        except ValueError as exc:
            raise TransientDeliveryError(f"WeCom answered with no JSON: {response.text[:200]}") from exc
        if not isinstance(answer, dict) or not isinstance(answer.get("errcode"), int):
            raise TransientDeliveryError(f"WeCom answered without an errcode: {response.text[:200]}")
        return answer

    def _check(self, key: str, answer: dict[str, Any]) -> None:
        code, message = answer["errcode"], str(answer.get("errmsg", ""))[:300]
        if code == 0:
            return
        if code == RATE_LIMITED:
            raise RateLimited(RATE_LIMIT_BACKOFF_SECONDS, f"errcode 45009: {message}")
        if code == INVALID_KEY:
            log.error("wecom_robot_key_invalid", robot=mask_key(key), errmsg=message,
                      hint="check ALERTPILOT_WECOM_WEBHOOK_KEYS: this robot's webhook key is not valid")
            raise PermanentDeliveryError(f"errcode 93000: invalid webhook key {mask_key(key)} "
                                         "(check ALERTPILOT_WECOM_WEBHOOK_KEYS)")
        raise PermanentDeliveryError(f"errcode {code}: {message}")


def _shrink_view(view: Any, limit: int) -> Any:
    if isinstance(view, IncidentCard):
        proposal = view.proposal
        shrunk = shrink(view, limit)
        if isinstance(proposal, ProposalView):  # keep the command whole while it fits: people copy it
            shrunk = dataclasses.replace(shrunk, proposal=dataclasses.replace(shrink(proposal, limit),
                                                                              command=shrink(proposal.command, 2 * limit)))
        return shrunk
    return shrink(view, limit)


def wecom_mentions(context: dict[str, Any]) -> tuple[str, ...]:
    """The userids a message @mentions: ``mentions`` is this channel's ids, or per channel
    (``{"telegram": [...], "wecom": [...]}``) when one context goes to the chats of several channels."""
    found = context.get("mentions") or ()
    if isinstance(found, dict):
        found = found.get("wecom") or ()
    return tuple(str(m) for m in found)
