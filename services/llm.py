"""The AI model: a client of any OpenAI-compatible chat-completions server (OpenAI, Ollama, vLLM, llama.cpp,
LM Studio, LiteLLM ...), implementing ``services.ports.ChatModel``.

The composition root builds one ``httpx.AsyncClient`` whose ``base_url`` is the server's API root (for example
``http://127.0.0.1:11434/v1``) and hands it in; this module only POSTs ``chat/completions`` relative to it.

Structured output degrades by itself: ``json_schema`` → ``json_object`` → ``prompt`` (no ``response_format``:
the prompt alone asks for JSON). A server that answers 400/422 to one level is asked again one level down, and
the level that worked is remembered so later calls don't waste round trips. Apart from that there are no
retries: the caller has an SLA. Every failure becomes ``ModelTimeout`` or ``ModelUnavailable``; no httpx or
JSON exception escapes.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

import httpx
import structlog

from services.errors import ModelError, ModelTimeout, ModelUnavailable
from services.ports import ModelReply

log = structlog.get_logger(__name__)

CHAT_COMPLETIONS_PATH = "chat/completions"  # relative: joined onto the client's base_url (…/v1/)
MAX_BODY_BYTES = 1024 * 1024
STRUCTURED_FORMATS = ("json_schema", "json_object", "prompt")  # best first
_FORMAT_UNSUPPORTED_STATUSES = frozenset({400, 422})
_ERROR_BODY_BYTES = 4096  # of an error answer, enough for the snippet
_SNIPPET_CHARS = 200


class OpenAICompatibleModel:
    """``ChatModel`` over an OpenAI-compatible ``POST chat/completions``."""

    def __init__(self, client: httpx.AsyncClient, *, model: str, api_key: str | None, timeout: float) -> None:
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self.name = model
        self._client = client
        self._api_key = api_key
        self._timeout = timeout
        self._level = 0  # index into STRUCTURED_FORMATS of the best level the server is known to accept

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
            try:
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
                            raise ModelUnavailable(f"HTTP {status} from {self.name}: {_snippet(raw)}")
                        reply = _parse_reply(raw, content_type, default_model=self.name, response_format=fmt)
                        break
            except TimeoutError as exc:
                raise ModelTimeout(f"no answer from {self.name} within {self._timeout:g}s") from exc
            except httpx.TimeoutException as exc:
                raise ModelTimeout(
                    f"no answer from {self.name} within {self._timeout:g}s ({type(exc).__name__})"
                ) from exc
            except (httpx.HTTPError, httpx.InvalidURL, httpx.StreamError, OSError) as exc:
                detail = str(exc).strip()
                raise ModelUnavailable(
                    f"connection to {self.name} failed: {type(exc).__name__}" + (f": {detail}" if detail else "")
                ) from exc
        except ModelError as exc:
            log.warning(
                "ai_request",
                model=self.name,
                status=status,
                latency_ms=round((loop.time() - started) * 1000),
                response_format=fmt,
                error=exc.reason,
                detail=str(exc),
            )
            raise
        if json_schema is not None and level > self._level:
            self._level = level  # remember only a level that worked
        log.info(
            "ai_request",
            model=self.name,
            status=status,
            latency_ms=round((loop.time() - started) * 1000),
            response_format=fmt,
            prompt_tokens=reply.prompt_tokens,
            completion_tokens=reply.completion_tokens,
            finish_reason=reply.finish_reason,
        )
        return reply

    def _body(
        self, messages: list[dict[str, str]], max_tokens: int, fmt: str, json_schema: dict[str, Any] | None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.name,
            "messages": messages,
            "max_tokens": max_tokens,
            "temperature": 0,
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
                raise ModelUnavailable(f"HTTP {response.status_code} from {self.name}: {exc}") from None
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
        raise ModelUnavailable(f"reply body of {declared} bytes is over the {limit}-byte limit")
    buf = bytearray()
    async for chunk in response.aiter_bytes():
        buf += chunk
        if len(buf) > limit:
            if strict:
                raise ModelUnavailable(f"reply body is over the {limit}-byte limit")
            return bytes(buf[:limit])
    return bytes(buf)


def _snippet(raw: bytes | str) -> str:
    text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw
    text = " ".join(text.split())
    return (text[:_SNIPPET_CHARS] + "…") if len(text) > _SNIPPET_CHARS else (text or "(empty body)")


def _parse_reply(raw: bytes, content_type: str, *, default_model: str, response_format: str) -> ModelReply:
    text = raw.decode("utf-8", errors="replace")
    if "text/event-stream" in content_type.lower() or text.lstrip().startswith("data:"):
        return _parse_stream(text, default_model=default_model, response_format=response_format)
    try:
        envelope = json.loads(text)
    except ValueError:
        raise ModelUnavailable(f"reply is not JSON ({content_type or 'no content type'}): {_snippet(text)}") from None
    if not isinstance(envelope, dict):
        raise ModelUnavailable(f"reply is not a chat completion: {_snippet(text)}")
    choices = envelope.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise ModelUnavailable(f"reply has no choices: {_error_detail(envelope) or _snippet(text)}")
    choice = choices[0]
    message = choice.get("message")
    content = _content(message.get("content")) if isinstance(message, dict) else None
    finish_reason = _str_or_none(choice.get("finish_reason"))
    if content is None:
        raise ModelUnavailable(f"no content in reply (finish_reason={finish_reason})")
    prompt_tokens, completion_tokens = _usage(envelope.get("usage"))
    return ModelReply(
        text=content,
        model=_str_or_none(envelope.get("model")) or default_model,
        response_format=response_format,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        finish_reason=finish_reason,
    )


def _parse_stream(text: str, *, default_model: str, response_format: str) -> ModelReply:
    """An SSE body (``data: {chunk}`` events until ``data: [DONE]``), as some servers send despite
    ``stream: false``."""
    pieces: list[str] = []
    got_content = False
    finish_reason: str | None = None
    usage: Any = None
    model: str | None = None
    for payload in _sse_data(text):
        if payload.strip() == "[DONE]":
            break
        try:
            chunk = json.loads(payload)
        except ValueError:
            raise ModelUnavailable(f"stream chunk is not JSON: {_snippet(payload)}") from None
        if not isinstance(chunk, dict):
            raise ModelUnavailable(f"stream chunk is not an object: {_snippet(payload)}")
        if chunk.get("error") is not None:
            raise ModelUnavailable(f"stream error: {_error_detail(chunk)}")
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
        finish_reason = _str_or_none(choice.get("finish_reason")) or finish_reason
    if not got_content:
        raise ModelUnavailable(f"no content in streamed reply (finish_reason={finish_reason})")
    prompt_tokens, completion_tokens = _usage(usage)
    return ModelReply(
        text="".join(pieces),
        model=model or default_model,
        response_format=response_format,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        finish_reason=finish_reason,
    )


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
