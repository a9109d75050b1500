"""In-process fake of an OpenAI-compatible chat-completions server for tests.

``FakeOpenAI`` is a small aiohttp.web server on 127.0.0.1 (ephemeral port). The application reaches it exactly
as it would reach Ollama or vLLM::

    async with FakeOpenAI() as fake:
        fake.reply_json({"root_cause": "...", ...})
        async with httpx.AsyncClient(base_url=fake.base_url) as client:   # or ALERTPILOT_AI_BASE_URL
            model = OpenAICompatibleModel(client, model="m", api_key=None, timeout=2)
            reply = await model.complete([...], json_schema=SCHEMA)
        assert fake.requests[-1]["response_format"]["type"] == "json_schema"

Route: ``POST {base_url}/chat/completions`` with ``base_url`` = ``http://127.0.0.1:<port>/v1``. Anything else
answers 404 with an OpenAI-style error body, so a wrongly joined URL fails loudly.

Scripting
---------
Each request takes the next scripted ``Reply`` from a queue, or ``fake.default`` when the queue is empty.
``default`` may be a ``Reply``, a JSON-able object (answered as ``Reply.json(obj)``), or a callable taking the
request body and returning either (handy for bench tests that answer per alert). ``reply_*`` methods enqueue;
the same answers are available as ``Reply.*`` constructors to use as ``default``::

    fake.reply_json(obj)              content = json.dumps(obj)
    fake.reply_text("not json")      content = this raw text
    fake.reply_status(500, "boom")   HTTP status with that body (str as is, dict as JSON)
    fake.reply_raw(b"<html>", content_type="text/html")   an arbitrary HTTP body (not an envelope)
    fake.reply_reset()               connection closed abruptly (RST) without an answer
    fake.reply_hang()                never answers (until the server stops; then the connection is dropped)
    fake.reply_slow(seconds, obj)    answers after a delay
    fake.reply_stream(obj, chunks=4) answers text/event-stream chunks, then ``data: [DONE]``

Where a method takes ``obj`` (``reply_slow``, ``reply_stream``), a ``str`` is sent as raw content and anything
else as ``json.dumps(obj)``. ``reject_formats({"json_schema"})`` makes the fake answer 400 to every request whose
``response_format.type`` is in the set, without consuming the queue (a server without structured output).
``fake.usage`` goes into non-stream answers and the last stream chunk (``None`` leaves it out).

Tools (OpenAI ``tools`` / ``tool_calls``) — a tool loop is scripted turn by turn::

    fake.reply_tool_calls(tool_call("kubectl_logs", {"namespace": "prod", "pod": "api-1"}))   # turn 1
    fake.reply_text("final answer")                                                            # turn 2
    ...
    assert fake.tool_results()[call_id] == "<the output the client sent back>"

    tool_call(name, arguments, id=None)   one call: ``arguments`` a dict (sent as JSON) or a str sent as is
                                          (garbage such as '{"pod": ', for malformed-argument tests)
    fake.reply_tool_calls(*calls, content=None, stream=False, chunks=3, interleave=False)
                                          an assistant message with ``tool_calls`` (finish_reason "tool_calls");
                                          ``stream`` answers SSE deltas: per call a first fragment with id and
                                          name, then the arguments in ``chunks`` pieces (``interleave``
                                          alternates the calls' fragments, so only ``index`` tells them apart)
    fake.reject_tools()                   answer 400 "… does not support tools" (Ollama's words) to every
                                          request that has ``tools``, without consuming the queue

The fake checks a tool conversation the way OpenAI does and answers 400 (``Call.answer == "bad_request"``)
when a tool definition is malformed, a ``role: tool`` message answers no preceding ``tool_calls`` id, or an
assistant message's ``tool_calls`` are not all answered before the next non-tool message
(``fake.check_tool_messages = False`` turns this off).

Inspection: ``fake.requests`` (parsed JSON bodies of chat-completion requests, in order), ``fake.calls``
(every request with path, headers and what was answered), ``fake.response_formats()``,
``fake.offered_tools(i)`` (the tool names request ``i`` offered), ``fake.tool_results(i)`` (its ``role: tool``
messages as ``{tool_call_id: content}``), ``await fake.wait_for_requests(n, timeout)``.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

__all__ = ["VALID_PROPOSAL", "Call", "FakeOpenAI", "Reply", "tool_call"]

VALID_PROPOSAL: dict[str, Any] = {
    "root_cause": "The api deployment's pods are crash-looping after the last rollout.",
    "action": "kubectl -n prod rollout restart deployment/api",
    "risk": "medium",
    "confidence": 0.82,
    "reasoning": "Restarts reset the bad in-memory state; the rollout history shows no config change.",
}

from tests.fakes.loopback import LoopbackServer, reset_connection


def _as_content(obj: Any) -> str:
    return obj if isinstance(obj, str) else json.dumps(obj)


def tool_call(name: str, arguments: dict[str, Any] | str, *, id: str | None = None) -> dict[str, Any]:
    """One scripted tool call: ``arguments`` a dict (sent as its JSON) or a str sent as is (e.g. garbage)."""
    return {"id": id, "name": name, "arguments": arguments if isinstance(arguments, str) else json.dumps(arguments)}


@dataclass(frozen=True)
class Reply:
    """One scripted answer. Build it with the class methods."""

    kind: str  # content | status | raw | reset | hang | stream
    content: str | None = None
    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    delay: float = 0.0
    chunks: int = 4
    finish_reason: str | None = "stop"
    stream_usage: bool = True
    tool_calls: tuple[dict[str, Any], ...] = ()  # tool_call(...) dicts
    interleave: bool = False  # stream: alternate the calls' argument fragments

    @classmethod
    def json(cls, obj: Any, *, finish_reason: str | None = "stop") -> Reply:
        return cls("content", content=json.dumps(obj), finish_reason=finish_reason)

    @classmethod
    def text(cls, text: str, *, finish_reason: str | None = "stop") -> Reply:
        return cls("content", content=text, finish_reason=finish_reason)

    @classmethod
    def slow(cls, seconds: float, obj: Any, *, finish_reason: str | None = "stop") -> Reply:
        return cls("content", content=_as_content(obj), delay=seconds, finish_reason=finish_reason)

    @classmethod
    def with_tool_calls(
        cls,
        *calls: dict[str, Any],
        content: str | None = None,
        stream: bool = False,
        chunks: int = 3,
        interleave: bool = False,
        finish_reason: str | None = "tool_calls",
    ) -> Reply:
        return cls(
            "stream" if stream else "content",
            content=content,
            chunks=max(1, chunks),
            finish_reason=finish_reason,
            tool_calls=tuple(calls),
            interleave=interleave,
        )

    @classmethod
    def http_status(cls, status: int, body: str | dict[str, Any] = "") -> Reply:
        if isinstance(body, dict):
            return cls("raw", status=status, body=json.dumps(body).encode(), content_type="application/json")
        return cls("raw", status=status, body=body.encode(), content_type="text/plain")

    @classmethod
    def raw(cls, body: bytes | str, *, status: int = 200, content_type: str = "application/json") -> Reply:
        data = body.encode() if isinstance(body, str) else body
        return cls("raw", status=status, body=data, content_type=content_type)

    @classmethod
    def reset(cls) -> Reply:
        return cls("reset")

    @classmethod
    def hang(cls) -> Reply:
        return cls("hang")

    @classmethod
    def stream(cls, obj: Any, *, chunks: int = 4, finish_reason: str | None = "stop", usage: bool = True) -> Reply:
        return cls(
            "stream", content=_as_content(obj), chunks=max(1, chunks), finish_reason=finish_reason, stream_usage=usage
        )


@dataclass
class Call:
    """One received request and what the fake did with it."""

    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any] | None
    at: float
    answer: str = ""  # the Reply kind, "rejected_format", "not_found" or "bad_request"
    status: int | None = None


class FakeOpenAI(LoopbackServer):
    client_max_size = 64 * 1024 * 1024

    def __init__(self, *, model: str = "fake-model") -> None:
        super().__init__()
        self.model = model  # answered when a request names no model
        #: a Reply, a JSON-able object (-> Reply.json) or a callable(body) returning either
        self.default: Any = copy.deepcopy(VALID_PROPOSAL)
        self.usage: dict[str, int] | None = {"prompt_tokens": 120, "completion_tokens": 40}
        self.rejected_formats: set[str] = set()
        self.tools_rejection: str | None = None  # set by reject_tools(): the 400 message
        self.check_tool_messages = True
        self.requests: list[dict[str, Any]] = []
        self.calls: list[Call] = []

        self._queue: deque[Reply] = deque()
        self._ids = 0
        self._call_ids = 0
        self._requests_event = asyncio.Event()

    # ------------------------------------------------------------------ lifecycle
    @property
    def base_url(self) -> str:
        """The API root, as an OpenAI-compatible base URL (``…/v1``)."""
        if self.port is None:
            raise RuntimeError("FakeOpenAI is not started")
        return f"http://{self.host}:{self.port}/v1"


    # ------------------------------------------------------------------ scripting
    def reply(self, *replies: Reply, times: int = 1) -> None:
        """Enqueue scripted answers (each ``times`` times)."""
        for _ in range(times):
            self._queue.extend(replies)

    def reply_json(self, obj: Any, *, finish_reason: str | None = "stop", times: int = 1) -> None:
        self.reply(Reply.json(obj, finish_reason=finish_reason), times=times)

    def reply_text(self, text: str, *, finish_reason: str | None = "stop", times: int = 1) -> None:
        self.reply(Reply.text(text, finish_reason=finish_reason), times=times)

    def reply_status(self, status: int, body: str | dict[str, Any] = "", *, times: int = 1) -> None:
        self.reply(Reply.http_status(status, body), times=times)

    def reply_raw(
        self, body: bytes | str, *, status: int = 200, content_type: str = "application/json", times: int = 1
    ) -> None:
        self.reply(Reply.raw(body, status=status, content_type=content_type), times=times)

    def reply_reset(self, *, times: int = 1) -> None:
        self.reply(Reply.reset(), times=times)

    def reply_hang(self, *, times: int = 1) -> None:
        self.reply(Reply.hang(), times=times)

    def reply_slow(self, seconds: float, obj: Any, *, times: int = 1) -> None:
        self.reply(Reply.slow(seconds, obj), times=times)

    def reply_stream(
        self, obj: Any, chunks: int = 4, *, finish_reason: str | None = "stop", usage: bool = True, times: int = 1
    ) -> None:
        self.reply(Reply.stream(obj, chunks=chunks, finish_reason=finish_reason, usage=usage), times=times)

    def reply_tool_calls(
        self,
        *calls: dict[str, Any],
        content: str | None = None,
        stream: bool = False,
        chunks: int = 3,
        interleave: bool = False,
        finish_reason: str | None = "tool_calls",
        times: int = 1,
    ) -> None:
        """Answer with an assistant message asking for ``calls`` (build each with ``tool_call``)."""
        reply = Reply.with_tool_calls(
            *calls, content=content, stream=stream, chunks=chunks, interleave=interleave, finish_reason=finish_reason
        )
        self.reply(reply, times=times)

    def reject_tools(self, message: str | None = None) -> None:
        """Answer 400 to every request that offers ``tools`` (a server or model without tool calling)."""
        self.tools_rejection = message or f"registry.ollama.ai/library/{self.model} does not support tools"

    def reject_formats(self, formats: Iterable[str]) -> None:
        """Answer 400 to requests whose ``response_format.type`` is in ``formats`` (replaces the previous set)."""
        self.rejected_formats = set(formats)

    def pending(self) -> int:
        """Scripted answers not used yet."""
        return len(self._queue)

    # ------------------------------------------------------------------ inspection
    def response_formats(self) -> list[str | None]:
        """``response_format.type`` of each chat-completion request, ``None`` when it had none."""
        return [_format_type(body) for body in self.requests]

    def offered_tools(self, index: int = -1) -> list[str]:
        """The function names request ``index`` offered (``[]`` without tools)."""
        tools = self.requests[index].get("tools") or []
        return [t.get("function", {}).get("name") for t in tools if isinstance(t, dict)]

    def tool_results(self, index: int = -1) -> dict[str, Any]:
        """The ``role: tool`` messages of request ``index``, as ``{tool_call_id: content}``."""
        messages = self.requests[index].get("messages") or []
        return {
            m.get("tool_call_id"): m.get("content") for m in messages if isinstance(m, dict) and m.get("role") == "tool"
        }

    def clear_requests(self) -> None:
        self.requests.clear()
        self.calls.clear()

    async def wait_for_requests(self, n: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        """Wait until at least ``n`` chat-completion requests arrived; return them. AssertionError on timeout."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while len(self.requests) < n:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(
                    f"FakeOpenAI: timed out after {timeout}s waiting for {n} requests; got {len(self.requests)}"
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._requests_event.wait(), remaining)
        return list(self.requests)

    # ------------------------------------------------------------------ serving
    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        call = Call(request.method, request.path, dict(request.headers), None, time.monotonic())
        self.calls.append(call)
        if request.method != "POST" or request.path.rstrip("/") != "/v1/chat/completions":
            return self._error(call, 404, f"Invalid URL ({request.method} {request.path})", "not_found")
        try:
            body = json.loads(raw)
            if not isinstance(body, dict):
                raise TypeError("not an object")
        except (ValueError, TypeError):
            return self._error(call, 400, "We could not parse the JSON body of your request.", "bad_request")
        call.body = body
        self.requests.append(body)
        self._notify()

        fmt = _format_type(body)
        if fmt is not None and fmt in self.rejected_formats:
            return self._error(
                call, 400, f"response_format type {fmt!r} is not supported by this server", "rejected_format"
            )

        if self.tools_rejection is not None and body.get("tools"):
            return self._error(call, 400, self.tools_rejection, "rejected_tools")
        if self.check_tool_messages:
            problem = _tool_conversation_problem(body)
            if problem is not None:
                return self._error(call, 400, problem, "bad_request")

        reply = self._queue.popleft() if self._queue else self._default_reply(body)
        call.answer = reply.kind
        if reply.kind == "reset":
            return self._reset(request, call)
        if reply.kind == "hang":
            await self._stop_event.wait()
            return self._reset(request, call)
        if reply.delay > 0:
            try:
                await asyncio.wait_for(self._stop_event.wait(), reply.delay)
                return self._reset(request, call)  # stopped while waiting
            except TimeoutError:
                pass
        if reply.kind == "raw":
            call.status = reply.status
            return web.Response(status=reply.status, body=reply.body, content_type=_mime(reply.content_type))
        if reply.kind == "stream":
            return await self._stream(request, call, body, reply)
        call.status = 200
        return web.json_response(self._envelope(body, reply))

    def _default_reply(self, body: dict[str, Any]) -> Reply:
        default = self.default
        if callable(default) and not isinstance(default, Reply):
            default = default(body)
        return default if isinstance(default, Reply) else Reply.json(default)

    def _notify(self) -> None:
        self._requests_event.set()
        self._requests_event = asyncio.Event()

    def _next_id(self) -> str:
        self._ids += 1
        return f"chatcmpl-fake-{self._ids}"

    def _tool_calls(self, reply: Reply) -> list[dict[str, Any]]:
        """The reply's calls in OpenAI's shape, ids given where the script left them out."""
        out = []
        for call in reply.tool_calls:
            call_id = call.get("id")
            if call_id is None:
                self._call_ids += 1
                call_id = f"call_fake_{self._call_ids}"
            out.append(
                {"id": call_id, "type": "function", "function": {"name": call["name"], "arguments": call["arguments"]}}
            )
        return out

    def _error(self, call: Call, status: int, message: str, answer: str) -> web.Response:
        call.answer, call.status = answer, status
        error = {"message": message, "type": "invalid_request_error", "param": None, "code": None}
        return web.json_response({"error": error}, status=status)

    def _reset(self, request: web.Request, call: Call) -> web.Response:
        call.status = None
        return reset_connection(request)

    def _envelope(self, body: dict[str, Any], reply: Reply) -> dict[str, Any]:
        envelope: dict[str, Any] = {
            "id": self._next_id(),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model") or self.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": reply.content},
                    "finish_reason": reply.finish_reason,
                }
            ],
        }
        if reply.tool_calls:
            envelope["choices"][0]["message"]["tool_calls"] = self._tool_calls(reply)
        if self.usage is not None:
            envelope["usage"] = _usage(self.usage)
        return envelope

    async def _stream(self, request: web.Request, call: Call, body: dict[str, Any], reply: Reply) -> web.StreamResponse:
        call.status = 200
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await response.prepare(request)
        cid, created, model = self._next_id(), int(time.time()), body.get("model") or self.model

        def chunk(delta: dict[str, Any], finish_reason: str | None = None, **extra: Any) -> bytes:
            data = {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
                **extra,
            }
            return f"data: {json.dumps(data)}\n\n".encode()

        content = reply.content or ""
        size = -(-len(content) // reply.chunks) or 1
        await response.write(chunk({"role": "assistant", "content": ""}))
        for start in range(0, len(content), size):
            await response.write(chunk({"content": content[start : start + size]}))
        for delta in self._tool_call_deltas(reply):
            await response.write(chunk({"tool_calls": [delta]}))
        await response.write(chunk({}, reply.finish_reason))
        if reply.stream_usage and self.usage is not None:
            usage_chunk = {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [],
                "usage": _usage(self.usage),
            }
            await response.write(f"data: {json.dumps(usage_chunk)}\n\n".encode())
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    def _tool_call_deltas(self, reply: Reply) -> list[dict[str, Any]]:
        """OpenAI's streamed tool calls: per call a fragment with index, id, type and name (arguments ""), then
        its arguments in ``reply.chunks`` pieces with only index and arguments."""
        per_call: list[list[dict[str, Any]]] = []
        for index, call in enumerate(self._tool_calls(reply)):
            function = call["function"]
            first = {
                "index": index,
                "id": call["id"],
                "type": "function",
                "function": {"name": function["name"], "arguments": ""},
            }
            arguments = function["arguments"]
            size = -(-len(arguments) // reply.chunks) or 1
            rest = [
                {"index": index, "function": {"arguments": arguments[start : start + size]}}
                for start in range(0, len(arguments), size)
            ]
            per_call.append([first, *rest])
        if not reply.interleave:
            return [delta for deltas in per_call for delta in deltas]
        out: list[dict[str, Any]] = []
        for step in range(max((len(d) for d in per_call), default=0)):
            out += [deltas[step] for deltas in per_call if step < len(deltas)]
        return out


def _tool_conversation_problem(body: dict[str, Any]) -> str | None:
    """What OpenAI would answer 400 to in a request's tools and tool messages, or None."""
    tools = body.get("tools")
    if tools is not None:
        if not isinstance(tools, list) or not tools:
            return "Invalid 'tools': empty array. Expected an array with minimum length 1."
        for i, tool in enumerate(tools):
            function = tool.get("function") if isinstance(tool, dict) else None
            if not isinstance(tool, dict) or tool.get("type") != "function" or not isinstance(function, dict):
                return f"Invalid value at 'tools[{i}]': expected a function tool."
            if not isinstance(function.get("name"), str) or not function["name"]:
                return f"Missing required parameter: 'tools[{i}].function.name'."
    pending: set[str] = set()
    for i, message in enumerate(body.get("messages") or []):
        if not isinstance(message, dict):
            continue
        role = message.get("role")
        if role == "tool":
            call_id = message.get("tool_call_id")
            if call_id not in pending:
                return (
                    f"Invalid parameter: messages[{i}] with role 'tool' must be a response to a preceeding message "
                    f"with 'tool_calls' (tool_call_id {call_id!r})."
                )
            pending.discard(call_id)
            if not isinstance(message.get("content"), str | list):
                return f"Invalid type for 'messages[{i}].content': expected a string."
            continue
        if pending:
            return (
                "An assistant message with 'tool_calls' must be followed by tool messages responding to each "
                f"'tool_call_id'. The following tool_call_ids did not have response messages: {sorted(pending)}"
            )
        if role == "assistant" and message.get("tool_calls"):
            for call in message["tool_calls"]:
                function = call.get("function") if isinstance(call, dict) else None
                if not isinstance(function, dict) or not isinstance(function.get("arguments"), str):
                    return f"Invalid 'messages[{i}].tool_calls': each call needs function.arguments as a string."
                pending.add(call.get("id"))
    if pending:
        return (
            "An assistant message with 'tool_calls' must be followed by tool messages responding to each "
            f"'tool_call_id'. The following tool_call_ids did not have response messages: {sorted(pending)}"
        )
    return None


def _usage(usage: dict[str, int]) -> dict[str, int]:
    out = dict(usage)
    if "total_tokens" not in out and all(isinstance(v, int) for v in out.values()):
        out["total_tokens"] = sum(out.values())
    return out


def _format_type(body: dict[str, Any]) -> str | None:
    fmt = body.get("response_format")
    return fmt.get("type") if isinstance(fmt, dict) else None


def _mime(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip() or "application/octet-stream"
