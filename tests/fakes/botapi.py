"""In-process fake of the Telegram Bot API for tests.

``FakeBotAPI`` is a small aiohttp.web server on 127.0.0.1 (ephemeral port).  The
application reaches it exactly as it would reach a self-hosted Bot API server::

    async with FakeBotAPI(token="123:ABC", bot_username="alertpilot_bot") as fake:
        session = AiohttpSession(api=TelegramAPIServer.from_base(fake.base_url))
        bot = Bot("123:ABC", session=session)

Routes: ``GET/POST {base}/bot{token}/{method}``.  ``{base}/file/bot{token}/...``
always answers 404 (file downloads are not faked).  A wrong token answers 401,
an unknown method answers 404 ``Not Found: method not found`` so that a call the
fake does not know about fails loudly instead of silently succeeding.

Request parameters
------------------
Parameters are read from the query string, then overridden by the body
(``multipart/form-data`` as aiogram sends it, ``application/x-www-form-urlencoded``
or a JSON object).  Normalisation applied to every recorded ``Request.params``:

* string values that look like a JSON object/array (``{...}`` / ``[...]``) are
  JSON-decoded (``reply_markup``, ``reply_parameters``, ``allowed_updates``,
  ``entities``, ``commands``, ``scope`` ...).  Free-text fields (``text``,
  ``caption``, ``data``, ``url``, ...) are never decoded.
* ``chat_id``, ``message_id``, ``offset``, ``timeout``, ``limit``, ``user_id``,
  ``message_thread_id``, ``reply_to_message_id``, ``from_chat_id``,
  ``cache_time`` and ``max_connections`` are converted to ``int`` when they are
  an integer literal (so ``"@channel"`` stays a string).
* every other scalar stays exactly as sent: aiogram sends booleans as the
  strings ``"true"`` / ``"false"`` and numbers as strings.  Uploaded files are
  recorded as ``{"filename", "content_type", "data": bytes}``.

Telegram semantics that are modelled
------------------------------------
* per-chat message ids, shared by bot messages and injected user messages
  (a chat that received ``inject_message`` then ``sendMessage`` has ids 1, 2);
* ``parse_mode=HTML`` validation with Telegram's tag set, entity extraction
  (UTF-16 offsets, like Telegram) and the 4096-character limit counted on the
  text *after* entity parsing; Markdown/MarkdownV2 text is not validated and is
  counted as sent;
* replies to missing messages, edits of missing/deleted/foreign messages,
  "message is not modified" (text + entities + inline keyboard compared, and an
  edit without ``reply_markup`` removes the inline keyboard, as in Telegram),
  ``callback_data`` limited to 1..64 bytes, bot command validation;
* ``getUpdates`` long polling with offset confirmation, ``allowed_updates``
  filtering, 409 when a webhook is set, and 409 for an older concurrent
  ``getUpdates`` call ("terminated by other getUpdates request");
  ``deleteWebhook(drop_pending_updates=true)`` drops queued updates;
* ``getChat`` / ``getChatMember`` only with ``FakeBotAPI(chat_lookup=True)`` (otherwise they fail loudly
  like any unknown method): every user is a plain ``member`` unless ``set_member(chat_id, user_id, status,
  **fields)`` says otherwise, and ``block_chat`` makes both answer its error (e.g. 400 "chat not found").

Responses returned to the client are real Bot API ``Message`` objects: their
``text`` is the plain text after entity parsing plus ``entities``.  The stored
state (``fake.messages`` / ``fake.sent_messages()``) keeps the raw ``text`` as
sent together with ``parse_mode``, ``plain_text`` and ``entities``.
"""

from __future__ import annotations

import asyncio
import copy
import json
import re
import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Any

from aiohttp import web

__all__ = ["FakeBotAPI", "Request", "TELEGRAM_TEXT_LIMIT", "parse_telegram_html", "EntityParseError"]

TELEGRAM_TEXT_LIMIT = 4096
CALLBACK_DATA_LIMIT = 64

NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply markup "
    "are exactly the same as a current content and reply markup of the message"
)

_INT_KEYS = frozenset(
    {
        "chat_id",
        "message_id",
        "offset",
        "timeout",
        "limit",
        "user_id",
        "message_thread_id",
        "reply_to_message_id",
        "from_chat_id",
        "cache_time",
        "max_connections",
    }
)
_FREE_TEXT_KEYS = frozenset(
    {
        "text",
        "caption",
        "title",
        "description",
        "short_description",
        "name",
        "query",
        "url",
        "data",
        "callback_query_id",
        "inline_message_id",
        "secret_token",
        "ip_address",
        "parse_mode",
        "language_code",
        "action",
        "emoji",
        "message_text",
        "explanation",
        "question",
    }
)
_INT_RE = re.compile(r"-?\d+")

# Update types delivered when allowed_updates is not specified / empty.
_DEFAULT_EXCLUDED_UPDATES = frozenset({"chat_member", "message_reaction", "message_reaction_count"})

_BOT_COMMAND_RE = re.compile(r"[a-z0-9_]{1,32}")

_BUTTON_ACTIONS = (
    "url",
    "callback_data",
    "web_app",
    "login_url",
    "switch_inline_query",
    "switch_inline_query_current_chat",
    "switch_inline_query_chosen_chat",
    "copy_text",
    "callback_game",
    "pay",
)


def utf16_len(text: str) -> int:
    """Length of ``text`` in UTF-16 code units (the unit of Telegram entity offsets)."""
    return len(text.encode("utf-16-le")) // 2


# --------------------------------------------------------------------------------------
# HTML parse_mode
# --------------------------------------------------------------------------------------


class EntityParseError(ValueError):
    """The text is not valid Telegram HTML; str(exc) is Telegram's reason text."""


_SIMPLE_TAGS = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "u": "underline",
    "ins": "underline",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "tg-spoiler": "spoiler",
    "code": "code",
    "pre": "pre",
}
_SUPPORTED_TAGS = frozenset(_SIMPLE_TAGS) | {"span", "a", "blockquote", "tg-emoji"}
_NAMED_ENTITIES = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}


class _TelegramHTMLParser(HTMLParser):
    def __init__(self, source: str) -> None:
        super().__init__(convert_charrefs=False)
        self.source = source
        self._line_starts = [0]
        for m in re.finditer("\n", source):
            self._line_starts.append(m.end())
        self.parts: list[str] = []
        self.out_len = 0  # UTF-16 units emitted so far
        # stack items: [tag, entity-or-None, start_offset]
        self.stack: list[list[Any]] = []
        self.entities: list[dict[str, Any]] = []

    # -- helpers -------------------------------------------------------------------
    def _index(self) -> int:
        line, col = self.getpos()
        return self._line_starts[line - 1] + col

    def _byte_offset(self) -> int:
        return len(self.source[: self._index()].encode("utf-8"))

    def _fail(self, reason: str) -> None:
        raise EntityParseError(reason)

    def _emit(self, text: str) -> None:
        if text:
            self.parts.append(text)
            self.out_len += utf16_len(text)

    # -- HTMLParser callbacks -----------------------------------------------------
    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in _SUPPORTED_TAGS:
            self._fail(f'Unsupported start tag "{tag}" at byte offset {self._byte_offset()}')
        attr = {k: (v if v is not None else "") for k, v in attrs}
        entity: dict[str, Any] | None
        if tag in _SIMPLE_TAGS:
            entity = {"type": _SIMPLE_TAGS[tag]}
            if tag == "code" and self.stack and self.stack[-1][0] == "pre":
                lang = attr.get("class", "")
                if lang.startswith("language-"):
                    pre_entity = self.stack[-1][1]
                    if pre_entity is not None:
                        pre_entity["language"] = lang[len("language-") :]
                    entity = None
        elif tag == "span":
            if attr.get("class") != "tg-spoiler":
                self._fail(
                    'Tag "span" must have class "tg-spoiler" at byte offset ' f"{self._byte_offset()}"
                )
            entity = {"type": "spoiler"}
        elif tag == "a":
            href = attr.get("href")
            entity = {"type": "text_link", "url": href} if href else None
        elif tag == "blockquote":
            entity = {"type": "expandable_blockquote" if "expandable" in attr else "blockquote"}
        else:  # tg-emoji
            emoji_id = attr.get("emoji-id")
            if not emoji_id:
                self._fail(f"Custom emoji entity must have an emoji identifier at byte offset {self._byte_offset()}")
            entity = {"type": "custom_emoji", "custom_emoji_id": emoji_id}
        self.stack.append([tag, entity, self.out_len])

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._fail(f'Unsupported start tag "{tag}/" at byte offset {self._byte_offset()}')

    def handle_endtag(self, tag: str) -> None:
        if not self.stack:
            self._fail(f'Unexpected end tag "{tag}" at byte offset {self._byte_offset()}')
        open_tag, entity, start = self.stack[-1]
        if open_tag != tag:
            self._fail(
                f'Can\'t find end tag corresponding to start tag "{open_tag}" '
                f"(found end tag \"{tag}\" at byte offset {self._byte_offset()})"
            )
        self.stack.pop()
        length = self.out_len - start
        if entity is not None and length > 0:
            entity["offset"] = start
            entity["length"] = length
            self.entities.append(entity)

    def handle_data(self, data: str) -> None:
        for ch in ("<", "&"):
            pos = data.find(ch)
            if pos != -1:
                byte_offset = self._byte_offset() + len(data[:pos].encode("utf-8"))
                if ch == "<":
                    self._fail(f"Unexpected character '<' at byte offset {byte_offset}; use &lt; instead")
                self._fail(f"Character '&' at byte offset {byte_offset} must be escaped as &amp;")
        self._emit(data)

    def handle_entityref(self, name: str) -> None:
        idx = self._index()
        if name not in _NAMED_ENTITIES or not self.source.startswith(f"&{name};", idx):
            self._fail(
                f'Unsupported HTML entity "&{name}" at byte offset {self._byte_offset()}; '
                "only &lt; &gt; &amp; &quot; and numeric entities are supported"
            )
        self._emit(_NAMED_ENTITIES[name])

    def handle_charref(self, name: str) -> None:
        idx = self._index()
        if not self.source.startswith(f"&#{name};", idx):
            self._fail(f"Unterminated numeric HTML entity at byte offset {self._byte_offset()}")
        try:
            code = int(name[1:], 16) if name[:1] in ("x", "X") else int(name)
            char = chr(code)
        except (ValueError, OverflowError):
            self._fail(f'Invalid numeric HTML entity "&#{name};" at byte offset {self._byte_offset()}')
            return
        self._emit(char)

    def handle_comment(self, data: str) -> None:
        self._fail(f"Unsupported HTML comment at byte offset {self._byte_offset()}")

    def handle_decl(self, decl: str) -> None:
        self._fail(f"Unsupported HTML declaration at byte offset {self._byte_offset()}")

    def unknown_decl(self, data: str) -> None:
        self._fail(f"Unsupported HTML declaration at byte offset {self._byte_offset()}")

    def handle_pi(self, data: str) -> None:
        self._fail(f"Unsupported HTML processing instruction at byte offset {self._byte_offset()}")


def parse_telegram_html(text: str) -> tuple[str, list[dict[str, Any]]]:
    """Parse Telegram HTML into ``(plain_text, entities)``.

    Raises EntityParseError on what Telegram rejects: unknown/unclosed/misnested tags,
    a bare ``<`` or ``&``, named entities other than lt/gt/amp/quot.
    Entity offsets/lengths are in UTF-16 code units, as in the Bot API.
    """
    parser = _TelegramHTMLParser(text)
    parser.feed(text)
    parser.close()
    if parser.stack:
        raise EntityParseError(f'Can\'t find end tag corresponding to start tag "{parser.stack[-1][0]}"')
    entities = sorted(parser.entities, key=lambda e: (e["offset"], -e["length"]))
    return "".join(parser.parts), entities


# --------------------------------------------------------------------------------------
# Data types
# --------------------------------------------------------------------------------------


@dataclass
class Request:
    """One HTTP request received by the fake.

    ``at`` is ``time.monotonic()`` at arrival.  ``status``/``response`` are filled in
    once the fake has produced its answer (they are None while e.g. a getUpdates
    long poll is still waiting).
    """

    method: str
    params: dict[str, Any]
    at: float
    status: int | None = None
    response: Any = None
    http_method: str = "POST"


class _ApiError(Exception):
    def __init__(self, status: int, description: str, parameters: dict[str, Any] | None = None) -> None:
        super().__init__(description)
        self.status = status
        self.description = description
        self.parameters = parameters

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"ok": False, "error_code": self.status, "description": self.description}
        if self.parameters:
            body["parameters"] = self.parameters
        return body


def _bad_request(description: str) -> _ApiError:
    return _ApiError(400, f"Bad Request: {description}")


def _flag(value: Any) -> bool:
    """Interpret a Bot API boolean parameter (aiogram sends "true"/"false")."""
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    return bool(value)


def _normalize_params(raw: dict[str, Any]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for key, value in raw.items():
        if isinstance(value, str):
            stripped = value.strip()
            if (
                key not in _FREE_TEXT_KEYS
                and stripped[:1] in ("{", "[")
                and stripped[-1:] in ("}", "]")
            ):
                try:
                    value = json.loads(stripped)
                except ValueError:
                    pass
            elif key in _INT_KEYS and _INT_RE.fullmatch(stripped):
                value = int(stripped)
        params[key] = value
    return params


def _inline_markup(markup: Any) -> dict[str, Any] | None:
    """The part of reply_markup Telegram attaches to a message (non-empty inline keyboards)."""
    if isinstance(markup, dict) and markup.get("inline_keyboard"):
        return markup
    return None


# --------------------------------------------------------------------------------------
# The fake server
# --------------------------------------------------------------------------------------

class FakeBotAPI:
    """In-process fake Telegram Bot API server.  See the module docstring."""

    def __init__(
        self,
        token: str = "123:ABC",
        bot_username: str = "alertpilot_bot",
        *,
        bot_first_name: str = "AlertPilot",
        group_title: str = "AlertPilot Test Group",
        max_poll_wait: float = 2.0,
        strict_callback_ids: bool = True,
        chat_lookup: bool = False,
    ) -> None:
        self.token = token
        self.bot_username = bot_username
        prefix = token.split(":", 1)[0]
        self.bot_id = int(prefix) if prefix.isdigit() else 1
        self.bot_user: dict[str, Any] = {
            "id": self.bot_id,
            "is_bot": True,
            "first_name": bot_first_name,
            "username": bot_username,
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
        }
        self.group_title = group_title
        self.max_poll_wait = max_poll_wait
        #: answerCallbackQuery with an id that was never injected -> 400 "query is too old".
        self.strict_callback_ids = strict_callback_ids

        self.requests: list[Request] = []
        #: chat_id -> message_id -> stored message dict (bot and injected user messages).
        self.messages: dict[int, dict[int, dict[str, Any]]] = {}
        #: chat_id -> Chat dict used in messages; override with set_chat().
        self.chats: dict[int, dict[str, Any]] = {}
        self.updates: list[dict[str, Any]] = []  # pending (unconfirmed) updates
        self.webhook_url: str = ""
        self.webhook_params: dict[str, Any] = {}
        self.allowed_updates: list[str] | None = None
        self.commands: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self.blocked_chats: dict[int, _ApiError] = {}
        #: (chat_id, user_id) -> ChatMember dict answered by getChatMember; set_member() fills it.
        self.members: dict[tuple[int, int], dict[str, Any]] = {}

        self._sent: list[dict[str, Any]] = []
        self._callback_answers: list[dict[str, Any]] = []
        self._callback_ids: set[str] = set()
        self._next_update_id = 1
        self._next_callback_id = 1
        self._last_message_id: dict[int, int] = defaultdict(int)
        self._failures: dict[str, deque[_ApiError]] = defaultdict(deque)
        self._delays: dict[str, deque[float]] = defaultdict(deque)
        self._poll_generation = 0
        self._closing = False
        self._stop_event = asyncio.Event()
        self._requests_event = asyncio.Event()
        self._updates_event = asyncio.Event()

        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self.host = "127.0.0.1"
        self.port: int | None = None

        self._methods: dict[str, Callable[[dict[str, Any]], Any]] = {
            "getMe": self._get_me,
            "logOut": lambda p: True,
            "close": lambda p: True,
            "setWebhook": self._set_webhook,
            "deleteWebhook": self._delete_webhook,
            "getWebhookInfo": self._get_webhook_info,
            "setMyCommands": self._set_my_commands,
            "deleteMyCommands": self._delete_my_commands,
            "getMyCommands": self._get_my_commands,
            "sendChatAction": self._send_chat_action,
            "sendMessage": self._send_message,
            "editMessageText": self._edit_message_text,
            "editMessageReplyMarkup": self._edit_message_reply_markup,
            "deleteMessage": self._delete_message_api,
            "answerCallbackQuery": self._answer_callback_query,
        }
        if chat_lookup:  # opt-in: without it getChat/getChatMember fail loudly like any unknown method
            self._methods.update(getChat=self._get_chat, getChatMember=self._get_chat_member)
        self._canonical = {name.lower(): name for name in self._methods}
        self._canonical["getupdates"] = "getUpdates"

    # ------------------------------------------------------------------ lifecycle
    @property
    def base_url(self) -> str:
        if self.port is None:
            raise RuntimeError("FakeBotAPI is not started")
        return f"http://{self.host}:{self.port}"

    async def start(self) -> FakeBotAPI:
        if self._runner is not None:
            return self
        self._closing = False
        self._stop_event = asyncio.Event()
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        self._site = web.TCPSite(self._runner, self.host, 0)
        await self._site.start()
        server = self._site._server
        assert server is not None and server.sockets  # type: ignore[union-attr]
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        if self._runner is None:
            return
        self._closing = True
        self._stop_event.set()
        self._wake_pollers()
        runner, self._runner, self._site = self._runner, None, None
        await runner.cleanup()

    async def __aenter__(self) -> FakeBotAPI:
        return await self.start()

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()

    # ------------------------------------------------------------------ inspection
    def _canon(self, method: str) -> str:
        return self._canonical.get(method.lower(), method)

    def calls(self, method: str | None = None) -> list[Request]:
        """Recorded requests for ``method`` (case-insensitive), or all if None."""
        if method is None:
            return list(self.requests)
        name = self._canon(method)
        return [r for r in self.requests if r.method == name]

    def sent_messages(self, chat_id: int | None = None) -> list[dict[str, Any]]:
        """Stored message dicts created by sendMessage, in send order (current state:
        edits update them, deleted ones carry ``deleted=True``)."""
        return [m for m in self._sent if chat_id is None or m["chat_id"] == chat_id]

    def callback_answers(self, callback_query_id: str | None = None) -> list[dict[str, Any]]:
        """Params of answerCallbackQuery calls that succeeded, in order."""
        return [
            a
            for a in self._callback_answers
            if callback_query_id is None or str(a.get("callback_query_id")) == str(callback_query_id)
        ]

    def clear_requests(self) -> None:
        self.requests.clear()

    def dump_requests(self, last: int = 25) -> str:
        lines = []
        base = self.requests[0].at if self.requests else 0.0
        for r in self.requests[-last:]:
            params = {
                k: (v if not isinstance(v, str) or len(v) <= 200 else v[:200] + "...")
                for k, v in r.params.items()
            }
            detail = ""
            if isinstance(r.response, dict) and not r.response.get("ok", True):
                detail = f" -> {r.response.get('description')}"
            lines.append(f"  +{r.at - base:8.3f}s {r.method} [{r.status}]{detail} {params}")
        return "\n".join(lines) if lines else "  (no requests)"

    async def wait_for(
        self,
        method: str,
        count: int = 1,
        timeout: float = 10,
        predicate: Callable[[Request], bool] | None = None,
    ) -> list[Request]:
        """Wait until at least ``count`` requests of ``method`` (filtered by predicate)
        were received; return all matching ones.  AssertionError on timeout."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            matched = [r for r in self.calls(method) if predicate is None or predicate(r)]
            if len(matched) >= count:
                return matched
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(
                    f"FakeBotAPI: timed out after {timeout}s waiting for {count} x {method}"
                    f"{' matching predicate' if predicate else ''}; got {len(matched)} "
                    f"(of {len(self.calls(method))} {method} calls, {len(self.requests)} requests total).\n"
                    f"Recent requests:\n{self.dump_requests()}"
                )
            event = self._requests_event
            try:
                await asyncio.wait_for(event.wait(), remaining)
            except TimeoutError:
                pass

    # ------------------------------------------------------------------ fault injection
    def fail_next(
        self,
        method: str,
        status: int = 429,
        retry_after: int | None = 3,
        description: str | None = None,
        times: int = 1,
        *,
        migrate_to_chat_id: int | None = None,
    ) -> None:
        """Make the next ``times`` calls of ``method`` fail with HTTP ``status``
        without any side effect.  429 carries ``parameters.retry_after``."""
        parameters: dict[str, Any] | None = None
        if status == 429:
            ra = 3 if retry_after is None else int(retry_after)
            parameters = {"retry_after": ra}
            desc = description or f"Too Many Requests: retry after {ra}"
        elif status >= 500:
            desc = description or ("Bad Gateway" if status == 502 else "Internal Server Error")
        else:
            defaults = {
                400: "Bad Request: injected failure",
                401: "Unauthorized",
                403: "Forbidden: bot was blocked by the user",
                404: "Not Found",
                409: "Conflict: terminated by other getUpdates request; "
                "make sure that only one bot instance is running",
            }
            desc = description or defaults.get(status, f"Error {status}")
        if migrate_to_chat_id is not None:
            parameters = {**(parameters or {}), "migrate_to_chat_id": migrate_to_chat_id}
        for _ in range(times):
            self._failures[self._canon(method)].append(_ApiError(status, desc, parameters))

    def delay_next(self, method: str, seconds: float, times: int = 1) -> None:
        """Delay the response of the next ``times`` calls of ``method``.  The call is
        processed first (the message IS sent), only the answer is late, as when the
        client times out on a slow Telegram."""
        for _ in range(times):
            self._delays[self._canon(method)].append(float(seconds))

    def block_chat(self, chat_id: int, description: str | None = None, status: int = 403) -> None:
        """Make every chat-bound call for ``chat_id`` fail (bot blocked / kicked)."""
        if description is None:
            description = (
                "Forbidden: bot was kicked from the supergroup chat"
                if chat_id < 0
                else "Forbidden: bot was blocked by the user"
            )
        self.blocked_chats[chat_id] = _ApiError(status, description)

    def unblock_chat(self, chat_id: int) -> None:
        self.blocked_chats.pop(chat_id, None)

    # ------------------------------------------------------------------ injection
    def set_chat(self, chat_id: int, **fields: Any) -> dict[str, Any]:
        """Override fields of the Chat object used for ``chat_id`` (e.g. title)."""
        chat = self._chat(chat_id)
        chat.update(fields)
        return chat

    def set_member(self, chat_id: int, user_id: int, status: str = "member", **fields: Any) -> dict[str, Any]:
        """What getChatMember answers for ``user_id`` in ``chat_id`` (``chat_lookup=True``): ``status`` is
        creator/administrator/member/restricted/left/kicked; ``fields`` such as ``can_send_messages=False``.
        Without it every user is a plain ``member``."""
        member = {"status": status, "user": self._member_user(user_id), **fields}
        self.members[(chat_id, user_id)] = member
        return copy.deepcopy(member)

    def inject_update(self, update: dict[str, Any]) -> dict[str, Any]:
        """Queue a raw update (update_id is assigned); returns it."""
        update = {"update_id": self._next_update_id, **{k: v for k, v in update.items() if k != "update_id"}}
        self._next_update_id += 1
        self.updates.append(update)
        self._wake_pollers()
        return copy.deepcopy(update)

    def inject_message(
        self,
        chat_id: int,
        user_id: int,
        text: str,
        username: str | None = None,
        first_name: str = "Tester",
        *,
        reply_to_message_id: int | None = None,
        message_thread_id: int | None = None,
        is_topic_message: bool | None = None,
    ) -> dict[str, Any]:
        """A user writes ``text`` in ``chat_id``; returns the queued update. ``message_thread_id`` in a forum
        (``set_chat(chat_id, is_forum=True)``) makes it a topic message (``is_topic_message``), as in Telegram;
        ``is_topic_message`` overrides that."""
        user = self._user(user_id, username, first_name)
        if chat_id > 0:
            chat = self._chat(chat_id)
            chat["first_name"] = first_name
            if username:
                chat["username"] = username
        entities: list[dict[str, Any]] = []
        if text.startswith("/"):
            command = re.split(r"\s", text, maxsplit=1)[0]
            entities.append({"type": "bot_command", "offset": 0, "length": utf16_len(command)})
        message_id = self._new_message_id(chat_id)
        stored = {
            "message_id": message_id,
            "chat_id": chat_id,
            "date": int(time.time()),
            "chat": self._chat(chat_id),
            "from": user,
            "text": text,
            "parse_mode": None,
            "plain_text": text,
            "entities": entities,
            "reply_markup": None,
            "reply_to_message_id": reply_to_message_id,
            "reply_parameters": None,
            "message_thread_id": message_thread_id,
            "edit_date": None,
            "edit_history": [],
            "deleted": False,
        }
        if is_topic_message is None:
            is_topic_message = message_thread_id is not None and bool(self._chat(chat_id).get("is_forum"))
        if is_topic_message:
            stored["is_topic_message"] = True
        self.messages.setdefault(chat_id, {})[message_id] = stored
        return self.inject_update({"message": self._render(stored)})

    def inject_my_chat_member(
        self,
        chat_id: int,
        user_id: int,
        *,
        old_status: str = "left",
        new_status: str = "member",
        username: str | None = None,
        first_name: str = "Tester",
    ) -> dict[str, Any]:
        """User ``user_id`` changes the bot's membership of ``chat_id`` (a ``my_chat_member`` update): adds it
        (left → member, or administrator), removes it (member → left), bans it (→ kicked)."""
        return self.inject_update(
            {
                "my_chat_member": {
                    "chat": copy.deepcopy(self._chat(chat_id)),
                    "from": self._user(user_id, username, first_name),
                    "date": int(time.time()),
                    "old_chat_member": self._bot_member(old_status),
                    "new_chat_member": self._bot_member(new_status),
                }
            }
        )

    def inject_callback(
        self,
        chat_id: int,
        user_id: int,
        message_id: int,
        data: str,
        username: str | None = None,
        first_name: str = "Tester",
    ) -> dict[str, Any]:
        """A user presses an inline button with ``data`` under message ``message_id``."""
        stored = self.messages.get(chat_id, {}).get(message_id)
        if stored is not None and not stored["deleted"]:
            message = self._render(stored)
        else:
            message = {"message_id": message_id, "date": int(time.time()), "chat": copy.deepcopy(self._chat(chat_id))}
        callback_id = str(4_000_000_000_000_000_000 + self._next_callback_id)
        self._next_callback_id += 1
        self._callback_ids.add(callback_id)
        return self.inject_update(
            {
                "callback_query": {
                    "id": callback_id,
                    "from": self._user(user_id, username, first_name),
                    "message": message,
                    "chat_instance": str(abs(chat_id) * 7919 + 13),
                    "data": data,
                }
            }
        )

    def delete_message(self, chat_id: int, message_id: int) -> None:
        """A user deletes a message: later edits/replies/deletes of it fail like in Telegram."""
        stored = self.messages.get(chat_id, {}).get(message_id)
        if stored is not None:
            stored["deleted"] = True

    # ------------------------------------------------------------------ internals
    def _user(self, user_id: int, username: str | None, first_name: str) -> dict[str, Any]:
        user: dict[str, Any] = {"id": user_id, "is_bot": False, "first_name": first_name}
        if username:
            user["username"] = username
        user["language_code"] = "en"
        return user

    def _member_user(self, user_id: int) -> dict[str, Any]:
        if user_id == self.bot_id:
            return copy.deepcopy(self.bot_user)
        return {"id": user_id, "is_bot": False, "first_name": "Tester"}

    def _bot_member(self, status: str) -> dict[str, Any]:
        """The bot as a ChatMember of ``status`` (an administrator with the rights a bot is usually given)."""
        member: dict[str, Any] = {"status": status, "user": copy.deepcopy(self.bot_user)}
        if status == "kicked":
            member["until_date"] = 0
        elif status == "administrator":
            member.update(
                can_be_edited=False, is_anonymous=False, can_manage_chat=True, can_delete_messages=True,
                can_manage_video_chats=False, can_restrict_members=False, can_promote_members=False,
                can_change_info=False, can_invite_users=True, can_post_stories=False, can_edit_stories=False,
                can_delete_stories=False, can_send_welcome_messages=False,
            )
        return member

    def _chat(self, chat_id: int) -> dict[str, Any]:
        chat = self.chats.get(chat_id)
        if chat is None:
            if chat_id < 0:
                chat = {"id": chat_id, "type": "supergroup", "title": self.group_title}
            else:
                chat = {"id": chat_id, "type": "private", "first_name": "Tester"}
            self.chats[chat_id] = chat
        return chat

    def _new_message_id(self, chat_id: int) -> int:
        self._last_message_id[chat_id] += 1
        return self._last_message_id[chat_id]

    def _wake_pollers(self) -> None:
        event, self._updates_event = self._updates_event, asyncio.Event()
        event.set()

    def _notify_requests(self) -> None:
        event, self._requests_event = self._requests_event, asyncio.Event()
        event.set()

    def _render(self, stored: dict[str, Any], with_reply: bool = True) -> dict[str, Any]:
        """The Bot API Message object for a stored message."""
        out: dict[str, Any] = {
            "message_id": stored["message_id"],
            "date": stored["date"],
            "chat": copy.deepcopy(stored["chat"]),
            "from": copy.deepcopy(stored["from"]),
        }
        if stored.get("message_thread_id") is not None:
            out["message_thread_id"] = stored["message_thread_id"]
        if stored.get("is_topic_message"):
            out["is_topic_message"] = True
        reply_id = stored.get("reply_to_message_id")
        if with_reply and reply_id is not None:
            target = self.messages.get(stored["chat_id"], {}).get(reply_id)
            if target is not None and not target["deleted"]:
                out["reply_to_message"] = self._render(target, with_reply=False)
        if stored.get("edit_date"):
            out["edit_date"] = stored["edit_date"]
        out["text"] = stored["plain_text"]
        if stored["entities"]:
            out["entities"] = copy.deepcopy(stored["entities"])
        markup = _inline_markup(stored.get("reply_markup"))
        if markup is not None:
            out["reply_markup"] = copy.deepcopy(markup)
        return out

    # -- HTTP ----------------------------------------------------------------------
    async def _read_params(self, request: web.Request) -> dict[str, Any]:
        raw: dict[str, Any] = dict(request.query.items())
        if request.can_read_body:
            ctype = request.content_type
            if ctype == "application/json":
                try:
                    body = await request.json()
                except ValueError as exc:
                    raise _bad_request(f"can't parse JSON body: {exc}") from exc
                if not isinstance(body, dict):
                    raise _bad_request("request body must be a JSON object")
                raw.update(body)
            elif ctype in ("multipart/form-data", "application/x-www-form-urlencoded"):
                form = await request.post()
                for key, value in form.items():
                    if isinstance(value, web.FileField):
                        value = {
                            "filename": value.filename,
                            "content_type": value.content_type,
                            "data": value.file.read(),
                        }
                    raw[key] = value
        return _normalize_params(raw)

    async def _handle(self, request: web.Request) -> web.Response:
        path = request.path
        if path.startswith("/file/"):
            return web.json_response({"ok": False, "error_code": 404, "description": "Not Found"}, status=404)
        match = re.fullmatch(r"/bot([^/]+)/([^/]+)/?", path)
        if match is None:
            return web.json_response({"ok": False, "error_code": 404, "description": "Not Found"}, status=404)
        token, raw_method = match.groups()
        method = self._canon(raw_method)
        error: _ApiError | None = None
        try:
            params = await self._read_params(request)
        except _ApiError as exc:
            params, error = {}, exc
        record = Request(method=method, params=params, at=time.monotonic(), http_method=request.method)
        self.requests.append(record)
        self._notify_requests()

        result: Any = None
        if token != self.token:
            error = _ApiError(401, "Unauthorized")
        elif error is None and self._failures[method]:
            error = self._failures[method].popleft()
        elif error is None:
            try:
                if method == "getUpdates":
                    result = await self._get_updates(params)
                elif method in self._methods:
                    result = self._methods[method](params)
                else:
                    error = _ApiError(404, "Not Found: method not found")
            except _ApiError as exc:
                error = exc

        if error is not None:
            status, body = error.status, error.body()
        else:
            status, body = 200, {"ok": True, "result": result}
        record.status, record.response = status, body
        if token == self.token and self._delays[method]:
            delay = self._delays[method].popleft()
            try:  # cut short by stop()
                await asyncio.wait_for(self._stop_event.wait(), delay)
            except TimeoutError:
                pass
        return web.json_response(body, status=status)

    # -- validation helpers -------------------------------------------------------
    def _chat_id(self, params: dict[str, Any]) -> int:
        chat_id = params.get("chat_id")
        if chat_id is None or chat_id == "":
            raise _bad_request("chat_id is empty")
        if not isinstance(chat_id, int):
            raise _bad_request("chat not found")
        blocked = self.blocked_chats.get(chat_id)
        if blocked is not None:
            raise blocked
        return chat_id

    def _message_id(self, params: dict[str, Any]) -> int:
        message_id = params.get("message_id")
        if message_id is None or message_id == "":
            raise _bad_request("message identifier is not specified")
        if not isinstance(message_id, int):
            raise _bad_request("MESSAGE_ID_INVALID")
        return message_id

    def _text_and_entities(self, params: dict[str, Any], empty_error: str) -> tuple[str, str | None, str, list]:
        text = params.get("text")
        if text is None or text == "":
            raise _bad_request(empty_error)
        text = str(text)
        parse_mode = params.get("parse_mode") or None
        mode = parse_mode.lower() if isinstance(parse_mode, str) else None
        if mode is None:
            plain = text
            entities = params.get("entities")
            entities = copy.deepcopy(entities) if isinstance(entities, list) else []
        elif mode == "html":
            try:
                plain, entities = parse_telegram_html(text)
            except EntityParseError as exc:
                raise _bad_request(f"can't parse entities: {exc}") from exc
        elif mode in ("markdown", "markdownv2"):
            plain, entities = text, []  # not validated
        else:
            raise _bad_request("unsupported parse_mode")
        if not plain.strip():
            raise _bad_request(empty_error)
        if len(plain) > TELEGRAM_TEXT_LIMIT:
            raise _bad_request("message is too long")
        return text, parse_mode, plain, entities

    def _reply_markup(self, params: dict[str, Any]) -> dict[str, Any] | None:
        if "reply_markup" not in params:
            return None
        markup = params["reply_markup"]
        if not isinstance(markup, dict):
            raise _bad_request("can't parse reply keyboard markup JSON object")
        if "inline_keyboard" in markup:
            rows = markup["inline_keyboard"]
            if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows):
                raise _bad_request("can't parse inline keyboard button: field \"inline_keyboard\" must be an Array of Arrays")
            for row in rows:
                for button in row:
                    if not isinstance(button, dict) or not str(button.get("text", "")).strip():
                        raise _bad_request("can't parse inline keyboard button: Text must be non-empty")
                    if not any(key in button for key in _BUTTON_ACTIONS):
                        raise _bad_request(
                            "can't parse inline keyboard button: Text buttons are unallowed in the inline keyboard"
                        )
                    if "callback_data" in button:
                        size = len(str(button["callback_data"]).encode("utf-8"))
                        if not 1 <= size <= CALLBACK_DATA_LIMIT:
                            raise _bad_request("BUTTON_DATA_INVALID")
        return copy.deepcopy(markup)

    def _find(self, chat_id: int, message_id: int) -> dict[str, Any] | None:
        stored = self.messages.get(chat_id, {}).get(message_id)
        if stored is None or stored["deleted"]:
            return None
        return stored

    # -- methods -------------------------------------------------------------------
    def _get_me(self, params: dict[str, Any]) -> dict[str, Any]:
        return copy.deepcopy(self.bot_user)

    def _get_chat(self, params: dict[str, Any]) -> dict[str, Any]:
        """A ChatFullInfo (chat_lookup=True); a blocked chat answers its error (block_chat, e.g. 400 chat not found)."""
        chat = copy.deepcopy(self._chat(self._chat_id(params)))
        chat.setdefault("accent_color_id", 0)
        chat.setdefault("max_reaction_count", 11)
        return chat

    def _get_chat_member(self, params: dict[str, Any]) -> dict[str, Any]:
        chat_id = self._chat_id(params)
        user_id = params.get("user_id")
        if not isinstance(user_id, int):
            raise _bad_request("invalid user_id specified")
        member = self.members.get((chat_id, user_id))
        if member is None:
            member = {"status": "member", "user": self._member_user(user_id)}
        return copy.deepcopy(member)

    def _set_webhook(self, params: dict[str, Any]) -> bool:
        url = params.get("url")
        if not url:
            raise _bad_request("bad webhook: An HTTPS URL must be provided for webhook")
        self.webhook_url = str(url)
        self.webhook_params = dict(params)
        if isinstance(params.get("allowed_updates"), list):
            self.allowed_updates = list(params["allowed_updates"])
        if _flag(params.get("drop_pending_updates", False)):
            self.updates.clear()
        return True

    def _delete_webhook(self, params: dict[str, Any]) -> bool:
        self.webhook_url = ""
        self.webhook_params = {}
        if _flag(params.get("drop_pending_updates", False)):
            self.updates.clear()
        return True

    def _get_webhook_info(self, params: dict[str, Any]) -> dict[str, Any]:
        info: dict[str, Any] = {
            "url": self.webhook_url,
            "has_custom_certificate": False,
            "pending_update_count": len(self.updates),
        }
        if self.webhook_url:
            info["max_connections"] = int(self.webhook_params.get("max_connections", 40))
            if self.allowed_updates:
                info["allowed_updates"] = list(self.allowed_updates)
        return info

    @staticmethod
    def _commands_key(params: dict[str, Any]) -> tuple[str, str]:
        scope = params.get("scope") or {"type": "default"}
        return json.dumps(scope, sort_keys=True), str(params.get("language_code") or "")

    def _set_my_commands(self, params: dict[str, Any]) -> bool:
        commands = params.get("commands")
        if not isinstance(commands, list):
            raise _bad_request("can't parse commands JSON object")
        if len(commands) > 100:
            raise _bad_request("BOT_COMMANDS_TOO_MUCH")
        for cmd in commands:
            if not isinstance(cmd, dict) or not _BOT_COMMAND_RE.fullmatch(str(cmd.get("command", ""))):
                raise _bad_request("BOT_COMMAND_INVALID")
            if not 1 <= len(str(cmd.get("description", "")).strip()) <= 256:
                raise _bad_request("BOT_COMMAND_DESCRIPTION_INVALID")
        self.commands[self._commands_key(params)] = copy.deepcopy(commands)
        return True

    def _delete_my_commands(self, params: dict[str, Any]) -> bool:
        self.commands.pop(self._commands_key(params), None)
        return True

    def _get_my_commands(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        return copy.deepcopy(self.commands.get(self._commands_key(params), []))

    def _send_chat_action(self, params: dict[str, Any]) -> bool:
        self._chat_id(params)
        if not params.get("action"):
            raise _bad_request("wrong parameter action in request")
        return True

    def _send_message(self, params: dict[str, Any]) -> dict[str, Any]:
        chat_id = self._chat_id(params)
        text, parse_mode, plain, entities = self._text_and_entities(params, "message text is empty")
        markup = self._reply_markup(params)

        reply_parameters = params.get("reply_parameters")
        if reply_parameters is not None and not isinstance(reply_parameters, dict):
            raise _bad_request("can't parse reply parameters JSON object")
        reply_to: int | None = None
        reply_chat = chat_id
        allow_without = _flag(params.get("allow_sending_without_reply", False))
        if reply_parameters:
            reply_to = reply_parameters.get("message_id")
            if isinstance(reply_parameters.get("chat_id"), int):
                reply_chat = reply_parameters["chat_id"]
            allow_without = allow_without or _flag(reply_parameters.get("allow_sending_without_reply", False))
        elif params.get("reply_to_message_id") not in (None, ""):
            reply_to = params["reply_to_message_id"]
        if reply_to is not None:
            if not isinstance(reply_to, int) or self._find(reply_chat, reply_to) is None:
                if not allow_without:
                    raise _bad_request("message to be replied not found")
                reply_to = None
            elif reply_chat != chat_id:
                reply_to = None  # cross-chat reply: not rendered as reply_to_message

        message_id = self._new_message_id(chat_id)
        stored: dict[str, Any] = {
            "message_id": message_id,
            "chat_id": chat_id,
            "date": int(time.time()),
            "chat": self._chat(chat_id),
            "from": copy.deepcopy(self.bot_user),
            "text": text,
            "parse_mode": parse_mode,
            "plain_text": plain,
            "entities": entities,
            "reply_markup": markup,
            "reply_to_message_id": reply_to,
            "reply_parameters": copy.deepcopy(reply_parameters),
            "message_thread_id": params.get("message_thread_id"),
            "disable_notification": _flag(params.get("disable_notification", False)),
            "edit_date": None,
            "edit_history": [],
            "deleted": False,
        }
        self.messages.setdefault(chat_id, {})[message_id] = stored
        self._sent.append(stored)
        return self._render(stored)

    def _editable(self, params: dict[str, Any]) -> dict[str, Any]:
        if params.get("inline_message_id"):
            raise _bad_request("MESSAGE_ID_INVALID")
        chat_id = self._chat_id(params)
        message_id = self._message_id(params)
        stored = self._find(chat_id, message_id)
        if stored is None:
            raise _bad_request("message to edit not found")
        if stored["from"].get("id") != self.bot_id:
            raise _bad_request("message can't be edited")
        return stored

    @staticmethod
    def _snapshot(stored: dict[str, Any]) -> dict[str, Any]:
        return {
            "text": stored["text"],
            "parse_mode": stored["parse_mode"],
            "reply_markup": copy.deepcopy(stored["reply_markup"]),
            "edit_date": stored["edit_date"],
        }

    def _edit_message_text(self, params: dict[str, Any]) -> dict[str, Any]:
        stored = self._editable(params)
        text, parse_mode, plain, entities = self._text_and_entities(params, "text must be non-empty")
        markup = self._reply_markup(params)
        if (
            plain == stored["plain_text"]
            and entities == stored["entities"]
            and _inline_markup(markup) == _inline_markup(stored["reply_markup"])
        ):
            raise _bad_request(NOT_MODIFIED[len("Bad Request: ") :])
        stored["edit_history"].append(self._snapshot(stored))
        stored.update(
            text=text,
            parse_mode=parse_mode,
            plain_text=plain,
            entities=entities,
            reply_markup=markup,
            edit_date=int(time.time()),
        )
        return self._render(stored)

    def _edit_message_reply_markup(self, params: dict[str, Any]) -> dict[str, Any]:
        stored = self._editable(params)
        markup = self._reply_markup(params)
        if _inline_markup(markup) == _inline_markup(stored["reply_markup"]):
            raise _bad_request(NOT_MODIFIED[len("Bad Request: ") :])
        stored["edit_history"].append(self._snapshot(stored))
        stored.update(reply_markup=markup, edit_date=int(time.time()))
        return self._render(stored)

    def _delete_message_api(self, params: dict[str, Any]) -> bool:
        chat_id = self._chat_id(params)
        message_id = self._message_id(params)
        stored = self._find(chat_id, message_id)
        if stored is None:
            raise _bad_request("message to delete not found")
        stored["deleted"] = True
        return True

    def _answer_callback_query(self, params: dict[str, Any]) -> bool:
        callback_id = params.get("callback_query_id")
        if not callback_id:
            raise _bad_request("QUERY_ID_INVALID")
        if self.strict_callback_ids and str(callback_id) not in self._callback_ids:
            raise _bad_request("query is too old and response timeout expired or query ID is invalid")
        text = params.get("text")
        if text is not None and len(str(text)) > 200:
            raise _bad_request("MESSAGE_TOO_LONG")
        self._callback_answers.append(dict(params))
        return True

    # -- getUpdates ----------------------------------------------------------------
    def _update_allowed(self, update: dict[str, Any]) -> bool:
        kinds = [k for k in update if k != "update_id"]
        kind = kinds[0] if kinds else ""
        if self.allowed_updates:
            return kind in self.allowed_updates
        return kind not in _DEFAULT_EXCLUDED_UPDATES

    async def _get_updates(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        if self.webhook_url:
            raise _ApiError(
                409,
                "Conflict: can't use getUpdates method while webhook is active; "
                "use deleteWebhook to delete the webhook first",
            )
        offset = params.get("offset")
        limit = params.get("limit", 100)
        limit = limit if isinstance(limit, int) and 1 <= limit <= 100 else 100
        timeout = params.get("timeout", 0)
        timeout = timeout if isinstance(timeout, int) and timeout > 0 else 0
        if isinstance(params.get("allowed_updates"), list):
            self.allowed_updates = list(params["allowed_updates"])

        # Confirm (forget) updates below offset, as Telegram does.
        if isinstance(offset, int) and offset > 0:
            self.updates = [u for u in self.updates if u["update_id"] >= offset]
        elif isinstance(offset, int) and offset < 0:
            self.updates = self.updates[offset:]

        # A newer getUpdates terminates an older pending one (409 for the older).
        self._poll_generation += 1
        generation = self._poll_generation
        self._wake_pollers()

        loop = asyncio.get_running_loop()
        deadline = loop.time() + min(float(timeout), self.max_poll_wait)
        while True:
            if generation != self._poll_generation:
                raise _ApiError(
                    409,
                    "Conflict: terminated by other getUpdates request; "
                    "make sure that only one bot instance is running",
                )
            batch = [u for u in self.updates if self._update_allowed(u)][:limit]
            if batch or self._closing:
                return copy.deepcopy(batch)
            remaining = deadline - loop.time()
            if remaining <= 0:
                return []
            event = self._updates_event
            try:
                await asyncio.wait_for(event.wait(), remaining)
            except TimeoutError:
                pass
