"""The AI model: a client of any OpenAI-compatible chat-completions server (OpenAI, Ollama, vLLM, llama.cpp,
LM Studio, LiteLLM ...), implementing ``services.ports.ChatModel``.

The composition root builds one ``httpx.AsyncClient`` whose ``base_url`` is the server's API root (for example
``http://127.0.0.1:11434/v1``) and hands it in; this module only POSTs ``chat/completions`` relative to it.

Structured output degrades by itself: ``json_schema`` → ``json_object`` → ``prompt`` (no ``response_format``:
the prompt alone asks for JSON). A server that answers 400/422 to one level is asked again one level down, and
the level that worked is remembered so later calls don't waste round trips. Apart from that there are no
retries: the caller has an SLA. Every failure becomes ``ModelTimeout`` or ``ModelUnavailable``; no httpx or
JSON exception escapes.

Tools (OpenAI ``tools`` / ``tool_calls``): ``complete_with_tools(messages, tools)`` sends the conversation with
function tool definitions and returns a ``ModelReply`` whose ``tool_calls`` are parsed and checked (see
``services.ports.ToolChatModel`` for the caller's loop). At most ``MAX_TOOL_CALLS`` calls are kept per reply and
arguments over ``MAX_TOOL_ARGUMENT_CHARS`` are refused on that call; a call with unusable arguments or naming a
tool that was not offered carries an ``error`` instead of failing the reply. Streamed answers are assembled
from their ``tool_calls`` deltas (fragments keyed by ``index``). A server that answers 400/422/500/501 with an
error mentioning tools raises ``ToolsUnsupported`` (``reason == "tools_unsupported"``) and is remembered as
such: later ``complete_with_tools`` calls raise it at once without a round trip. ``complete`` is unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import structlog

from services.errors import ModelError, ModelTimeout, ModelUnavailable, ToolsUnsupported
from services.phrases import phrase
from services.ports import ModelReply, ToolCall

log = structlog.get_logger(__name__)

CHAT_COMPLETIONS_PATH = "chat/completions"  # relative: joined onto the client's base_url (…/v1/)
MAX_BODY_BYTES = 1024 * 1024
STRUCTURED_FORMATS = ("json_schema", "json_object", "prompt")  # best first
_FORMAT_UNSUPPORTED_STATUSES = frozenset({400, 422})
_ERROR_BODY_BYTES = 4096  # of an error answer, enough for the snippet
_SNIPPET_CHARS = 200
MAX_TOOL_CALLS = 8  # per reply; more are dropped (counted in ModelReply.dropped_tool_calls)
MAX_TOOL_ARGUMENT_CHARS = 8192  # of one call's JSON arguments
_TOOLS_UNSUPPORTED_STATUSES = frozenset({400, 422, 500, 501})
_TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # what OpenAI accepts as a function name
_TOOLS_REFUSED = re.compile(
    r"not support\w* (?:for )?(?:tools|tool (?:use|calling|calls)|function calling)"
    r"|(?:tools|tool use|tool calling|tool calls|tool_choice|function calling) (?:is |are )?"
    r"(?:not supported|unsupported|not enabled|not available)"
    r"|tool[ _-]choice requires|tools param requires"
    r"|unrecognized request arguments? supplied: (?:tools|tool_choice)"
)
_EXTRA_FIELD = re.compile(r"extra (?:inputs|fields) (?:are )?not permitted|unknown (?:field|parameter|argument)")
_TOOLS_FIELD = re.compile(r"[\"'`]tool(?:s|_choice)[\"'`]")


class OpenAICompatibleModel:
    """``ChatModel`` over an OpenAI-compatible ``POST chat/completions``."""

    def __init__(
        self, client: httpx.AsyncClient, *, model: str, api_key: str | None, timeout: float, temperature: float = 0.0
    ) -> None:
        """``temperature`` 0 (the default) for one deterministic analysis; above it for independent samples."""
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        if not 0 <= temperature <= 2:
            raise ValueError("temperature must be between 0 and 2")
        self.name = model
        self._temperature = temperature
        self._client = client
        self._api_key = api_key
        self._timeout = timeout
        self._level = 0  # index into STRUCTURED_FORMATS of the best level the server is known to accept
        self._supports_tools: bool | None = None

    @property
    def structured_format(self) -> str:
        """The structured-output level the next ``json_schema`` call starts with."""
        return STRUCTURED_FORMATS[self._level]

    async def complete(
        self, messages: list[dict[str, str]], *, json_schema: dict[str, Any] | None = None, max_tokens: int = 800
    ) -> ModelReply:
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = started + self._timeout
        level = self._level
        fmt = "text" if json_schema is None else STRUCTURED_FORMATS[level]
        status: int | None = None
        try:
            with self._translated_errors():
                async with asyncio.timeout_at(deadline):
                    while True:
                        body = self._body(messages, max_tokens, fmt, json_schema)
                        status = None
                        response = await self._post(body, deadline - loop.time())
                        status, content_type, raw = response.status, response.content_type, response.raw
                        if status in _FORMAT_UNSUPPORTED_STATUSES and fmt in ("json_schema", "json_object"):
                            log.info(
                                "ai_response_format_rejected",
                                model=self.name,
                                status=status,
                                response_format=fmt,
                                detail=_snippet(raw),
                            )
                            level += 1
                            fmt = STRUCTURED_FORMATS[level]
                            continue
                        if not 200 <= status < 300:
                            raise ModelUnavailable(_http_error(status, self.name, _snippet(raw)))
                        reply = _parse_reply(raw, content_type, default_model=self.name, response_format=fmt)
                        break
        except ModelError as exc:
            self._log_request(status, loop.time() - started, fmt, error=exc)
            raise
        if json_schema is not None and level > self._level:
            self._level = level  # remember only a level that worked
        self._log_request(status, loop.time() - started, fmt, reply=reply)
        return reply

    @property
    def supports_tools(self) -> bool | None:
        """None until a request with tools was answered; False once the server refused tools."""
        return self._supports_tools

    async def complete_with_tools(
        self,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]],
        *,
        max_tokens: int = 800,
        tool_choice: str | dict[str, Any] = "auto",
    ) -> ModelReply:
        """One turn of a tool loop: ``messages`` may hold ``assistant`` messages with ``tool_calls`` and
        ``role: tool`` results. ``tools`` are OpenAI function definitions (``{"type": "function", "function":
        {"name", "description", "parameters"}}``); an empty list sends none, which asks for a final answer.

        Returns a ModelReply with ``response_format="tools"``: either ``tool_calls`` (``text`` may be empty) or
        a final ``text``. Raises ModelTimeout / ModelUnavailable like ``complete``, and ToolsUnsupported
        (``reason == "tools_unsupported"``) when the server cannot do tools. A malformed ``tools`` list is a
        programming error: ValueError before any request."""
        names = _tool_names(tools)
        if tools and self._supports_tools is False:
            log.info("ai_request", model=self.name, status=None, response_format="tools", error=ToolsUnsupported.reason)
            raise ToolsUnsupported(f"{self.name} does not support tools (remembered)")
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = started + self._timeout
        body: dict[str, Any] = {
            "model": self.name,
            "messages": messages,
            "max_tokens": max_tokens,
            "temperature": self._temperature,
            "stream": False,
        }
        if tools:
            body["tools"] = tools
            body["tool_choice"] = tool_choice
        status: int | None = None
        try:
            with self._translated_errors():
                async with asyncio.timeout_at(deadline):
                    response = await self._post(body, deadline - loop.time())
                status, content_type, raw = response.status, response.content_type, response.raw
                if tools and status in _TOOLS_UNSUPPORTED_STATUSES and _mentions_tools(raw):
                    self._supports_tools = False
                    raise ToolsUnsupported(_http_error(status, self.name, _snippet(raw)))
                if not 200 <= status < 300:
                    raise ModelUnavailable(_http_error(status, self.name, _snippet(raw)))
                parsed = _parse_answer(raw, content_type)
                reply = _tool_reply(parsed, default_model=self.name, offered=names)
        except ModelError as exc:
            self._log_request(status, loop.time() - started, "tools", error=exc, tools=len(tools))
            raise
        if tools:
            self._supports_tools = True
        self._log_request(
            status, loop.time() - started, "tools", reply=reply, tools=len(tools),
            tool_calls=[call.name for call in reply.tool_calls],
            bad_tool_calls=sum(1 for call in reply.tool_calls if not call.ok),
            dropped_tool_calls=reply.dropped_tool_calls,
        )
        return reply

    def _log_request(
        self, status: int | None, seconds: float, response_format: str, *, error: ModelError | None = None,
        reply: ModelReply | None = None, **extra: Any,
    ) -> None:
        """The one ``ai_request`` log line per request: a warning with the error, or the reply's usage.
        Never the prompt, the arguments or the key."""
        fields: dict[str, Any] = {"model": self.name, "status": status, "latency_ms": round(seconds * 1000),
                                  "response_format": response_format, **extra}
        if error is not None:
            log.warning("ai_request", **fields, error=error.reason, detail=str(error))
        elif reply is not None:
            log.info("ai_request", **fields, prompt_tokens=reply.prompt_tokens,
                     completion_tokens=reply.completion_tokens, finish_reason=reply.finish_reason)

    @contextlib.contextmanager
    def _translated_errors(self) -> Iterator[None]:
        """httpx, socket and deadline exceptions → ModelTimeout / ModelUnavailable."""
        try:
            yield
        except TimeoutError as exc:
            raise ModelTimeout(phrase("no answer from %(name)s within %(seconds)ss", name=self.name,
                                      seconds=f"{self._timeout:g}")) from exc
        except httpx.TimeoutException as exc:
            raise ModelTimeout(phrase("no answer from %(name)s within %(seconds)ss (%(error)s)", name=self.name,
                                      seconds=f"{self._timeout:g}", error=type(exc).__name__)) from exc
        except (httpx.HTTPError, httpx.InvalidURL, httpx.StreamError, OSError) as exc:
            detail = str(exc).strip()
            raise ModelUnavailable(phrase(
                "connection to %(name)s failed: %(error)s", name=self.name,
                error=type(exc).__name__ + (f": {detail}" if detail else ""),
            )) from exc

    def _body(
        self, messages: list[dict[str, str]], max_tokens: int, fmt: str, json_schema: dict[str, Any] | None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.name,
            "messages": messages,
            "max_tokens": max_tokens,
            "temperature": self._temperature,
            "stream": False,
        }
        if fmt == "json_schema":
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "answer", "schema": json_schema, "strict": True},
            }
        elif fmt == "json_object":
            body["response_format"] = {"type": "json_object"}
        return body

    async def _post(self, body: dict[str, Any], remaining: float) -> _Answer:
        headers = {"Accept": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        timeout = httpx.Timeout(max(remaining, 0.001))
        async with self._client.stream(
            "POST", CHAT_COMPLETIONS_PATH, json=body, headers=headers, timeout=timeout
        ) as response:
            ok = 200 <= response.status_code < 300
            try:
                raw = await _read_capped(response, MAX_BODY_BYTES if ok else _ERROR_BODY_BYTES, strict=ok)
            except ModelUnavailable as exc:
                raise ModelUnavailable(_http_error(response.status_code, self.name, str(exc))) from None
            return _Answer(response.status_code, response.headers.get("content-type", ""), raw)


@dataclass(frozen=True)
class _Answer:
    status: int
    content_type: str
    raw: bytes


async def _read_capped(response: httpx.Response, limit: int, *, strict: bool) -> bytes:
    """The (decoded) body, at most ``limit`` bytes: over it, ``strict`` raises, otherwise it is cut short."""
    declared = response.headers.get("content-length", "")
    if strict and declared.isdigit() and int(declared) > limit:
        raise ModelUnavailable(phrase("reply body of %(size)s bytes is over the %(limit)s-byte limit", size=declared,
                                      limit=str(limit)))
    buf = bytearray()
    async for chunk in response.aiter_bytes():
        buf += chunk
        if len(buf) > limit:
            if strict:
                raise ModelUnavailable(phrase("reply body is over the %(limit)s-byte limit", limit=str(limit)))
            return bytes(buf[:limit])
    return bytes(buf)


def _snippet(raw: bytes | str) -> str:
    text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw
    text = " ".join(text.split())
    return (text[:_SNIPPET_CHARS] + "…") if len(text) > _SNIPPET_CHARS else (text or phrase("(empty body)"))


def _http_error(status: int, name: str, detail: str) -> str:
    return phrase("HTTP %(status)s from %(name)s: %(detail)s", status=str(status), name=name, detail=detail)


@dataclass
class _Parsed:
    """A chat completion's first choice, from a JSON envelope or an SSE stream."""

    content: str | None
    finish_reason: str | None
    model: str | None
    usage: Any
    tool_calls: list[dict[str, Any]] = field(default_factory=list)  # raw, in the model's order
    streamed: bool = False


def _parse_reply(raw: bytes, content_type: str, *, default_model: str, response_format: str) -> ModelReply:
    parsed = _parse_answer(raw, content_type)
    if parsed.content is None:
        raise ModelUnavailable(
            phrase("no content in streamed reply (finish_reason=%(reason)s)", reason=str(parsed.finish_reason))
            if parsed.streamed else
            phrase("no content in reply (finish_reason=%(reason)s)", reason=str(parsed.finish_reason))
        )
    prompt_tokens, completion_tokens = _usage(parsed.usage)
    return ModelReply(
        text=parsed.content,
        model=parsed.model or default_model,
        response_format=response_format,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        finish_reason=parsed.finish_reason,
    )


def _parse_answer(raw: bytes, content_type: str) -> _Parsed:
    text = raw.decode("utf-8", errors="replace")
    if "text/event-stream" in content_type.lower() or text.lstrip().startswith("data:"):
        return _parse_stream(text)
    try:
        envelope = json.loads(text)
    except ValueError:
        raise ModelUnavailable(
            phrase("reply is not JSON (%(type)s): %(text)s", type=content_type, text=_snippet(text)) if content_type
            else phrase("reply is not JSON (no content type): %(text)s", text=_snippet(text))
        ) from None
    if not isinstance(envelope, dict):
        raise ModelUnavailable(phrase("reply is not a chat completion: %(text)s", text=_snippet(text)))
    choices = envelope.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise ModelUnavailable(phrase("reply has no choices: %(detail)s",
                                      detail=_error_detail(envelope) or _snippet(text)))
    choice = choices[0]
    message = choice.get("message")
    content = _content(message.get("content")) if isinstance(message, dict) else None
    calls = message.get("tool_calls") if isinstance(message, dict) else None
    return _Parsed(
        content=content,
        finish_reason=_str_or_none(choice.get("finish_reason")),
        model=_str_or_none(envelope.get("model")),
        usage=envelope.get("usage"),
        tool_calls=[call for call in calls if isinstance(call, dict)] if isinstance(calls, list) else [],
    )


def _parse_stream(text: str) -> _Parsed:
    """An SSE body (``data: {chunk}`` events until ``data: [DONE]``), as some servers send despite
    ``stream: false``. ``tool_calls`` deltas are fragments joined by their ``index``: the first brings ``id``
    and the function ``name``, the others pieces of the ``arguments`` string."""
    pieces: list[str] = []
    got_content = False
    finish_reason: str | None = None
    usage: Any = None
    model: str | None = None
    calls: dict[int, dict[str, Any]] = {}  # index -> {"id", "type", "name", "arguments"}
    for payload in _sse_data(text):
        if payload.strip() == "[DONE]":
            break
        try:
            chunk = json.loads(payload)
        except ValueError:
            raise ModelUnavailable(phrase("stream chunk is not JSON: %(text)s", text=_snippet(payload))) from None
        if not isinstance(chunk, dict):
            raise ModelUnavailable(phrase("stream chunk is not an object: %(text)s", text=_snippet(payload)))
        if chunk.get("error") is not None:
            raise ModelUnavailable(phrase("stream error: %(detail)s", detail=str(_error_detail(chunk))))
        model = _str_or_none(chunk.get("model")) or model
        if isinstance(chunk.get("usage"), dict):
            usage = chunk["usage"]
        choices = chunk.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            continue  # e.g. the final usage-only chunk
        choice = choices[0]
        delta = choice.get("delta")
        if not isinstance(delta, dict):
            delta = choice.get("message")
        piece = _content(delta.get("content")) if isinstance(delta, dict) else None
        if piece is not None:
            pieces.append(piece)
            got_content = True
        if isinstance(delta, dict) and isinstance(delta.get("tool_calls"), list):
            _merge_tool_deltas(calls, delta["tool_calls"])
        finish_reason = _str_or_none(choice.get("finish_reason")) or finish_reason
    tool_calls = [
        {"id": c["id"], "type": c["type"], "function": {"name": c["name"], "arguments": c["arguments"]}}
        for _, c in sorted(calls.items())
    ]
    return _Parsed(
        content="".join(pieces) if got_content else None,
        finish_reason=finish_reason,
        model=model,
        usage=usage,
        tool_calls=tool_calls,
        streamed=True,
    )


def _merge_tool_deltas(calls: dict[int, dict[str, Any]], deltas: list[Any]) -> None:
    for delta in deltas:
        if not isinstance(delta, dict):
            continue
        index = delta.get("index")
        if not isinstance(index, int) or isinstance(index, bool):
            index = _index_of(calls, delta.get("id"))
        call = calls.get(index)
        if call is None:
            if len(calls) > MAX_TOOL_CALLS * 4:
                continue  # a runaway stream: the cap drops these anyway
            call = calls[index] = {"id": None, "type": None, "name": "", "arguments": ""}
        if isinstance(delta.get("id"), str) and delta["id"] and not call["id"]:
            call["id"] = delta["id"]
        if isinstance(delta.get("type"), str) and not call["type"]:
            call["type"] = delta["type"]
        function = delta.get("function")
        if not isinstance(function, dict):
            continue
        name = function.get("name")
        if isinstance(name, str) and name != call["name"]:  # some servers repeat the whole name
            call["name"] += name
        arguments = function.get("arguments")
        if isinstance(arguments, str):
            if len(call["arguments"]) <= MAX_TOOL_ARGUMENT_CHARS:
                call["arguments"] += arguments
        elif isinstance(arguments, dict):
            call["arguments"] = arguments  # sent whole, as an object


def _index_of(calls: dict[int, dict[str, Any]], call_id: Any) -> int:
    """Where a delta without ``index`` belongs: the call with its id, a new call for a new id, else the last."""
    if isinstance(call_id, str) and call_id:
        for index, call in calls.items():
            if call["id"] == call_id:
                return index
        return max(calls, default=-1) + 1
    return max(calls, default=0)


def _tool_reply(parsed: _Parsed, *, default_model: str, offered: frozenset[str]) -> ModelReply:
    kept = parsed.tool_calls[:MAX_TOOL_CALLS]
    calls = tuple(_tool_call(raw, position, offered) for position, raw in enumerate(kept))
    if parsed.content is None and not calls:
        raise ModelUnavailable(
            phrase("no content and no tool calls in streamed reply (finish_reason=%(reason)s)",
                   reason=str(parsed.finish_reason)) if parsed.streamed else
            phrase("no content and no tool calls in reply (finish_reason=%(reason)s)", reason=str(parsed.finish_reason))
        )
    prompt_tokens, completion_tokens = _usage(parsed.usage)
    return ModelReply(
        text=parsed.content or "",
        model=parsed.model or default_model,
        response_format="tools",
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        finish_reason=parsed.finish_reason,
        tool_calls=calls,
        dropped_tool_calls=len(parsed.tool_calls) - len(kept),
    )


def _tool_call(raw: dict[str, Any], position: int, offered: frozenset[str]) -> ToolCall:
    """One raw ``tool_calls`` item → a ToolCall, with ``error`` set instead of raising."""
    call_id = raw.get("id") if isinstance(raw.get("id"), str) and raw.get("id") else f"call_{position}"
    function = raw.get("function") if isinstance(raw.get("function"), dict) else {}
    name = function.get("name") if isinstance(function.get("name"), str) else ""
    arguments = function.get("arguments")
    if isinstance(arguments, dict):
        text = json.dumps(arguments, ensure_ascii=False)
    else:
        text = arguments if isinstance(arguments, str) else ""
    shown = text[:MAX_TOOL_ARGUMENT_CHARS]

    def bad(error: str) -> ToolCall:
        return ToolCall(id=call_id, name=name[:64], arguments={}, error=error, raw_arguments=shown)

    kind = raw.get("type")
    if kind is not None and kind != "function":
        return bad(phrase("tool call type %(kind)s is not 'function'", kind=repr(str(kind)[:40])))
    if not name:
        return bad(phrase("the tool call names no function"))
    if not _TOOL_NAME.match(name):
        return bad(phrase("%(name)s is not a valid function name", name=repr(_snippet(name))))
    if name not in offered:
        if not offered:
            return bad(phrase("unknown tool %(name)s; the tools are: none", name=repr(name)))
        return bad(phrase("unknown tool %(name)s; the tools are: %(tools)s", name=repr(name),
                          tools=", ".join(sorted(offered))))
    if len(text) > MAX_TOOL_ARGUMENT_CHARS:
        return bad(phrase("arguments are over %(limit)s characters", limit=str(MAX_TOOL_ARGUMENT_CHARS)))
    if not text.strip():
        parsed: Any = {}  # some servers send "" for a call without parameters
    else:
        try:
            parsed = json.loads(text)
        except ValueError as exc:
            return bad(phrase("arguments are not valid JSON (%(error)s at char %(position)s): %(text)s", error=exc.msg,
                              position=str(exc.pos), text=_snippet(text)))
    if not isinstance(parsed, dict):
        return bad(phrase("arguments must be a JSON object, not %(type)s", type=type(parsed).__name__))
    return ToolCall(id=call_id, name=name, arguments=parsed, raw_arguments=shown)


def _tool_names(tools: list[dict[str, Any]]) -> frozenset[str]:
    """The function names of OpenAI tool definitions; ValueError for a malformed definition."""
    names: list[str] = []
    for tool in tools:
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(tool, dict) or tool.get("type") != "function" or not isinstance(function, dict):
            raise ValueError(f"not an OpenAI function tool: {tool!r:.200}")
        name = function.get("name")
        if not isinstance(name, str) or not _TOOL_NAME.match(name):
            raise ValueError(f"invalid tool function name: {name!r:.80}")
        if not isinstance(function.get("parameters", {}), dict):
            raise ValueError(f"tool {name}: parameters must be a JSON schema object")
        names.append(name)
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate tool names: {sorted(names)}")
    return frozenset(names)


def _mentions_tools(raw: bytes) -> bool:
    """An error body saying that the server cannot take tools: Ollama's "… does not support tools", vLLM's
    '"auto" tool choice requires --enable-auto-tool-choice', llama.cpp's "tools param requires --jinja flag",
    "Unrecognized request argument supplied: tools", a pydantic "Extra inputs are not permitted" at ``tools``.
    Not any error that names tools: a malformed tool conversation is the caller's bug, not a missing feature."""
    text = " ".join(raw.decode("utf-8", errors="replace").lower().split())
    if _TOOLS_REFUSED.search(text):
        return True
    return bool(_EXTRA_FIELD.search(text) and _TOOLS_FIELD.search(text))


def _sse_data(text: str) -> list[str]:
    """The data of each server-sent event (several ``data:`` lines of one event join with newlines)."""
    events: list[str] = []
    lines: list[str] = []
    for line in text.splitlines():
        if not line.strip():
            if lines:
                events.append("\n".join(lines))
                lines = []
        elif line.startswith("data:"):
            value = line[5:]
            lines.append(value.removeprefix(" "))
        # comments (":") and other fields (event:, id:, retry:) carry nothing we need
    if lines:
        events.append("\n".join(lines))
    return events


def _content(value: Any) -> str | None:
    """Message content: a string, or a list of ``{"type": "text", "text": ...}`` parts."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        parts = [p["text"] for p in value if isinstance(p, dict) and isinstance(p.get("text"), str)]
        return "".join(parts) if parts else None
    return None


def _usage(usage: Any) -> tuple[int | None, int | None]:
    if not isinstance(usage, dict):
        return None, None
    return _int_or_none(usage.get("prompt_tokens")), _int_or_none(usage.get("completion_tokens"))


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _error_detail(envelope: dict[str, Any]) -> str:
    error = envelope.get("error")
    if isinstance(error, dict):
        error = error.get("message", error)
    return _snippet(str(error)) if error is not None else ""
