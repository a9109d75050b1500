"""OpenAICompatibleModel against FakeOpenAI over loopback."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from structlog.testing import capture_logs

from services.errors import ModelError, ModelTimeout, ModelUnavailable, ToolsUnsupported
from services.llm import (
    MAX_BODY_BYTES,
    MAX_TOOL_ARGUMENT_CHARS,
    MAX_TOOL_CALLS,
    OpenAICompatibleModel,
)
from services.ports import ChatModel, ToolChatModel
from tests.fakes.openai import VALID_PROPOSAL, FakeOpenAI, Reply, tool_call

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"root_cause": {"type": "string"}, "action": {"type": "string"}},
    "required": ["root_cause", "action"],
    "additionalProperties": False,
}
MESSAGES = [
    {"role": "system", "content": "You are an SRE. Answer in JSON."},
    {"role": "user", "content": "KubePodCrashLooping in prod/api"},
]

MakeModel = Callable[..., OpenAICompatibleModel]


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI() as server:
        yield server


@pytest.fixture
async def client(fake: FakeOpenAI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=fake.base_url, trust_env=False) as http:
        yield http


@pytest.fixture
def make_model(client: httpx.AsyncClient) -> MakeModel:
    def make(*, api_key: str | None = None, timeout: float = 2.0, model: str = "qwen2.5:7b") -> OpenAICompatibleModel:
        return OpenAICompatibleModel(client, model=model, api_key=api_key, timeout=timeout)

    return make


# --- success paths -------------------------------------------------------------------------------


async def test_llm_client_json_schema_reply_with_usage(fake: FakeOpenAI, make_model: MakeModel) -> None:
    fake.reply_json({"root_cause": "oom", "action": "kubectl -n prod rollout restart deployment/api"})
    model = make_model()

    reply = await model.complete(MESSAGES, json_schema=SCHEMA, max_tokens=300)

    assert json.loads(reply.text) == {"root_cause": "oom", "action": "kubectl -n prod rollout restart deployment/api"}
    assert reply.response_format == "json_schema"
    assert reply.model == "qwen2.5:7b"
    assert (reply.prompt_tokens, reply.completion_tokens) == (120, 40)
    assert reply.finish_reason == "stop"
    body = fake.requests[-1]
    assert body["model"] == "qwen2.5:7b"
    assert body["messages"] == MESSAGES
    assert body["max_tokens"] == 300
    assert body["temperature"] == 0
    assert body["stream"] is False
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "answer", "schema": SCHEMA, "strict": True},
    }


async def test_llm_client_satisfies_chat_model_port(make_model: MakeModel) -> None:
    model: ChatModel = make_model(model="llama3")
    assert model.name == "llama3"


async def test_llm_client_text_mode_sends_no_response_format(fake: FakeOpenAI, make_model: MakeModel) -> None:
    fake.reply_text("The api pods are crash-looping.")

    reply = await make_model().complete(MESSAGES)

    assert reply.text == "The api pods are crash-looping."
    assert reply.response_format == "text"
    assert "response_format" not in fake.requests[-1]
    assert fake.requests[-1]["max_tokens"] == 800


async def test_llm_client_returns_invalid_json_content_as_text(fake: FakeOpenAI, make_model: MakeModel) -> None:
    fake.reply_text('{"root_cause": "oom", "act', finish_reason="length")

    reply = await make_model().complete(MESSAGES, json_schema=SCHEMA)

    assert reply.text == '{"root_cause": "oom", "act'
    assert reply.finish_reason == "length"


async def test_llm_client_default_answer_is_a_valid_proposal(fake: FakeOpenAI, make_model: MakeModel) -> None:
    reply = await make_model().complete(MESSAGES, json_schema=SCHEMA)

    assert json.loads(reply.text) == VALID_PROPOSAL


async def test_llm_client_model_name_and_usage_are_optional(fake: FakeOpenAI, make_model: MakeModel) -> None:
    envelope = {
        "choices": [{"message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": "12", "completion_tokens": True},
    }
    fake.reply_raw(json.dumps(envelope))

    reply = await make_model(model="configured").complete(MESSAGES)

    assert reply.text == "ok"
    assert reply.model == "configured"
    assert (reply.prompt_tokens, reply.completion_tokens) == (None, None)


async def test_llm_client_reports_the_served_model(fake: FakeOpenAI, make_model: MakeModel) -> None:
    envelope = {"model": "qwen2.5:7b-instruct-q4", "choices": [{"message": {"content": "ok"}}]}
    fake.reply_raw(json.dumps(envelope))

    reply = await make_model().complete(MESSAGES)

    assert reply.model == "qwen2.5:7b-instruct-q4"
    assert reply.finish_reason is None


# --- structured-output fallback ------------------------------------------------------------------


async def test_llm_client_falls_back_to_json_object_and_remembers(fake: FakeOpenAI, make_model: MakeModel) -> None:
    fake.reject_formats({"json_schema"})
    model = make_model()

    first = await model.complete(MESSAGES, json_schema=SCHEMA)
    second = await model.complete(MESSAGES, json_schema=SCHEMA)

    assert first.response_format == second.response_format == "json_object"
    assert fake.response_formats() == ["json_schema", "json_object", "json_object"]
    assert model.structured_format == "json_object"


async def test_llm_client_falls_back_to_prompt_and_remembers(fake: FakeOpenAI, make_model: MakeModel) -> None:
    fake.reject_formats({"json_schema", "json_object"})
    model = make_model()

    first = await model.complete(MESSAGES, json_schema=SCHEMA)
    second = await model.complete(MESSAGES, json_schema=SCHEMA)

    assert json.loads(first.text) == VALID_PROPOSAL
    assert first.response_format == second.response_format == "prompt"
    assert fake.response_formats() == ["json_schema", "json_object", None, None]


async def test_llm_client_falls_back_on_422(fake: FakeOpenAI, make_model: MakeModel) -> None:
    fake.reply(Reply.http_status(422, {"detail": "response_format: extra fields not permitted"}))

    reply = await make_model().complete(MESSAGES, json_schema=SCHEMA)

    assert reply.response_format == "json_object"
    assert fake.response_formats() == ["json_schema", "json_object"]


async def test_llm_client_prompt_mode_400_is_unavailable(fake: FakeOpenAI, make_model: MakeModel) -> None:
    fake.reply_status(400, {"error": {"message": "context length exceeded"}}, times=3)
    model = make_model()

    with pytest.raises(ModelUnavailable, match=r"HTTP 400.*context length exceeded"):
        await model.complete(MESSAGES, json_schema=SCHEMA)

    assert fake.response_formats() == ["json_schema", "json_object", None]
    assert model.structured_format == "json_schema"  # nothing worked, so nothing is remembered


async def test_llm_client_text_mode_400_does_not_fall_back(fake: FakeOpenAI, make_model: MakeModel) -> None:
    fake.reply_status(400, "bad request")

    with pytest.raises(ModelUnavailable, match="HTTP 400"):
        await make_model().complete(MESSAGES)

    assert len(fake.requests) == 1


# --- HTTP and transport failures -----------------------------------------------------------------


async def test_llm_client_http_500_is_unavailable_with_status(fake: FakeOpenAI, make_model: MakeModel) -> None:
    fake.reply_status(500, "boom")

    with pytest.raises(ModelUnavailable, match=r"HTTP 500 .*boom") as caught:
        await make_model().complete(MESSAGES, json_schema=SCHEMA)

    assert caught.value.reason == "unavailable"
    assert len(fake.requests) == 1  # no retry, no format fallback on 5xx


async def test_llm_client_http_401_is_unavailable(fake: FakeOpenAI, make_model: MakeModel) -> None:
    fake.reply_status(401, {"error": {"message": "Incorrect API key provided"}})

    with pytest.raises(ModelUnavailable, match=r"HTTP 401 .*Incorrect API key"):
        await make_model(api_key="sk-wrong").complete(MESSAGES, json_schema=SCHEMA)

    assert len(fake.requests) == 1


@pytest.mark.parametrize("status", [403, 404, 429, 502, 503])
async def test_llm_client_error_statuses_are_unavailable(fake: FakeOpenAI, make_model: MakeModel, status: int) -> None:
    fake.reply_status(status, "nope")

    with pytest.raises(ModelUnavailable, match=f"HTTP {status}"):
        await make_model().complete(MESSAGES, json_schema=SCHEMA)


async def test_llm_client_error_body_is_cut_to_200_chars(fake: FakeOpenAI, make_model: MakeModel) -> None:
    fake.reply_status(500, "x" * 5000)

    with pytest.raises(ModelUnavailable) as caught:
        await make_model().complete(MESSAGES)

    assert "x" * 200 in str(caught.value)
    assert "x" * 201 not in str(caught.value)


async def test_llm_client_connection_reset_is_unavailable(fake: FakeOpenAI, make_model: MakeModel) -> None:
    fake.reply_reset()

    with pytest.raises(ModelUnavailable, match="connection to qwen2.5:7b failed"):
        await make_model().complete(MESSAGES, json_schema=SCHEMA)

    assert len(fake.requests) == 1


async def test_llm_client_connection_refused_is_unavailable() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}/v1", trust_env=False) as http:
        model = OpenAICompatibleModel(http, model="m", api_key=None, timeout=2)

        with pytest.raises(ModelUnavailable, match="ConnectError"):
            await model.complete(MESSAGES)


async def test_llm_client_hang_times_out_within_timeout(fake: FakeOpenAI, make_model: MakeModel) -> None:
    fake.reply_hang()
    model = make_model(timeout=0.5)
    loop = asyncio.get_running_loop()
    started = loop.time()

    with pytest.raises(ModelTimeout) as caught:
        await model.complete(MESSAGES, json_schema=SCHEMA)

    assert 0.45 <= loop.time() - started < 3  # the deadline holds (generous bound: CI machines are busy)
    assert caught.value.reason == "timeout"


async def test_llm_client_deadline_covers_format_fallbacks(fake: FakeOpenAI, make_model: MakeModel) -> None:
    fake.reply(Reply.http_status(400, "no json_schema"), Reply.hang())
    loop = asyncio.get_running_loop()
    started = loop.time()

    with pytest.raises(ModelTimeout):
        await make_model(timeout=0.5).complete(MESSAGES, json_schema=SCHEMA)

    assert loop.time() - started < 3  # one deadline for both attempts, not 0.5 s each (bound generous for CI)
    assert fake.response_formats() == ["json_schema", "json_object"]


async def test_llm_client_slow_reply_within_timeout_succeeds(fake: FakeOpenAI, make_model: MakeModel) -> None:
    fake.reply_slow(0.2, {"root_cause": "slow disk"})

    reply = await make_model(timeout=1.0).complete(MESSAGES, json_schema=SCHEMA)

    assert json.loads(reply.text) == {"root_cause": "slow disk"}


async def test_llm_client_slow_reply_past_timeout_times_out(fake: FakeOpenAI, make_model: MakeModel) -> None:
    fake.reply_slow(0.6, {"root_cause": "too late"})

    with pytest.raises(ModelTimeout):
        await make_model(timeout=0.3).complete(MESSAGES)


# --- odd envelopes -------------------------------------------------------------------------------


async def test_llm_client_assembles_sse_stream(fake: FakeOpenAI, make_model: MakeModel) -> None:
    fake.reply_stream(VALID_PROPOSAL, chunks=5)

    reply = await make_model().complete(MESSAGES, json_schema=SCHEMA)

    assert json.loads(reply.text) == VALID_PROPOSAL
    assert reply.finish_reason == "stop"
    assert (reply.prompt_tokens, reply.completion_tokens) == (120, 40)
    assert reply.response_format == "json_schema"
    assert fake.calls[-1].answer == "stream"


async def test_llm_client_sse_stream_without_usage(fake: FakeOpenAI, make_model: MakeModel) -> None:
    fake.reply_stream("plain prose answer", chunks=3, finish_reason="length", usage=False)

    reply = await make_model().complete(MESSAGES)

    assert reply.text == "plain prose answer"
    assert reply.finish_reason == "length"
    assert reply.prompt_tokens is None


async def test_llm_client_sse_with_bad_chunk_is_unavailable(fake: FakeOpenAI, make_model: MakeModel) -> None:
    body = 'data: {"choices": [{"delta": {"content": "hi"}}]}\n\ndata: {oops\n\n'
    fake.reply_raw(body, content_type="text/event-stream")

    with pytest.raises(ModelUnavailable, match="stream chunk is not JSON"):
        await make_model().complete(MESSAGES)


async def test_llm_client_sse_without_content_is_unavailable(fake: FakeOpenAI, make_model: MakeModel) -> None:
    body = 'data: {"choices": [{"delta": {"role": "assistant"}}]}\n\ndata: [DONE]\n\n'
    fake.reply_raw(body, content_type="text/event-stream")

    with pytest.raises(ModelUnavailable, match="no content"):
        await make_model().complete(MESSAGES)


async def test_llm_client_non_json_envelope_is_unavailable(fake: FakeOpenAI, make_model: MakeModel) -> None:
    fake.reply_raw("<html><body>502 Bad Gateway</body></html>", content_type="text/html")

    with pytest.raises(ModelUnavailable, match=r"not JSON \(text/html.*Bad Gateway"):
        await make_model().complete(MESSAGES, json_schema=SCHEMA)


@pytest.mark.parametrize(
    "envelope",
    [
        {"choices": [{"message": {"role": "assistant"}, "finish_reason": "length"}]},
        {"choices": [{"message": {"role": "assistant", "content": None}}]},
        {"choices": [{"finish_reason": "stop"}]},
    ],
)
async def test_llm_client_missing_content_is_unavailable(
    fake: FakeOpenAI, make_model: MakeModel, envelope: dict[str, Any]
) -> None:
    fake.reply_raw(json.dumps(envelope))

    with pytest.raises(ModelUnavailable, match="no content"):
        await make_model().complete(MESSAGES, json_schema=SCHEMA)


@pytest.mark.parametrize("envelope", [{"choices": []}, {"error": {"message": "model not loaded"}}, [1, 2]])
async def test_llm_client_missing_choices_is_unavailable(
    fake: FakeOpenAI, make_model: MakeModel, envelope: Any
) -> None:
    fake.reply_raw(json.dumps(envelope))

    with pytest.raises(ModelUnavailable):
        await make_model().complete(MESSAGES)


async def test_llm_client_body_over_1mib_is_unavailable(fake: FakeOpenAI, make_model: MakeModel) -> None:
    fake.reply_text("x" * MAX_BODY_BYTES)

    with pytest.raises(ModelUnavailable, match=r"HTTP 200 .*over the 1048576-byte limit"):
        await make_model().complete(MESSAGES)


async def test_llm_client_streamed_body_over_1mib_is_unavailable(fake: FakeOpenAI, make_model: MakeModel) -> None:
    fake.reply_stream("y" * MAX_BODY_BYTES, chunks=64)  # chunked: no Content-Length to check up front

    with pytest.raises(ModelUnavailable, match="limit"):
        await make_model().complete(MESSAGES)


# --- request shape -------------------------------------------------------------------------------


async def test_llm_client_sends_bearer_only_with_api_key(fake: FakeOpenAI, make_model: MakeModel) -> None:
    await make_model(api_key="sk-test-123").complete(MESSAGES)
    await make_model(api_key=None).complete(MESSAGES)

    with_key, without_key = fake.calls
    assert with_key.headers["Authorization"] == "Bearer sk-test-123"
    assert "Authorization" not in without_key.headers


@pytest.mark.parametrize("suffix", ["/v1", "/v1/"])
async def test_llm_client_joins_path_onto_v1_base_url(fake: FakeOpenAI, suffix: str) -> None:
    base = fake.base_url.removesuffix("/v1") + suffix
    async with httpx.AsyncClient(base_url=base, trust_env=False) as http:
        await OpenAICompatibleModel(http, model="m", api_key=None, timeout=2).complete(MESSAGES)

    assert [(call.method, call.path) for call in fake.calls] == [("POST", "/v1/chat/completions")]


async def test_llm_client_logs_one_line_without_secrets(fake: FakeOpenAI, make_model: MakeModel) -> None:
    with capture_logs() as logs:
        await make_model(api_key="sk-secret-key").complete(MESSAGES, json_schema=SCHEMA)

    [line] = [entry for entry in logs if entry["event"] == "ai_request"]
    assert line["status"] == 200
    assert line["response_format"] == "json_schema"
    assert (line["prompt_tokens"], line["completion_tokens"]) == (120, 40)
    assert isinstance(line["latency_ms"], int)
    assert "sk-secret-key" not in repr(logs)
    assert "KubePodCrashLooping" not in repr(logs)


async def test_llm_client_logs_failures(fake: FakeOpenAI, make_model: MakeModel) -> None:
    fake.reply_status(503, "loading model")

    with capture_logs() as logs, pytest.raises(ModelUnavailable):
        await make_model().complete(MESSAGES)

    [line] = [entry for entry in logs if entry["event"] == "ai_request"]
    assert line["log_level"] == "warning"
    assert (line["status"], line["error"]) == (503, "unavailable")


async def test_llm_client_rejects_non_positive_timeout(client: httpx.AsyncClient) -> None:
    with pytest.raises(ValueError):
        OpenAICompatibleModel(client, model="m", api_key=None, timeout=0)


# --- the fake itself -----------------------------------------------------------------------------


async def test_fake_openai_stop_returns_promptly_while_a_request_hangs() -> None:
    fake = await FakeOpenAI().start()
    fake.reply_hang()
    async with httpx.AsyncClient(base_url=fake.base_url, trust_env=False) as http:
        pending = asyncio.create_task(http.post("chat/completions", json={"model": "m", "messages": []}))
        await fake.wait_for_requests(1, timeout=2)
        loop = asyncio.get_running_loop()
        started = loop.time()

        await fake.stop()

        assert loop.time() - started < 3  # not held until the hang ends
        with pytest.raises(httpx.TransportError):
            await pending


async def test_fake_openai_default_may_be_a_callable(fake: FakeOpenAI, make_model: MakeModel) -> None:
    fake.default = lambda body: {"echo": body["messages"][-1]["content"]}
    fake.reply_text("scripted first")
    model = make_model()

    first = await model.complete(MESSAGES)
    second = await model.complete(MESSAGES)

    assert first.text == "scripted first"
    assert json.loads(second.text) == {"echo": "KubePodCrashLooping in prod/api"}
    assert fake.pending() == 0


async def test_fake_openai_unknown_path_is_404(fake: FakeOpenAI, client: httpx.AsyncClient) -> None:
    response = await client.post("completions", json={})

    assert response.status_code == 404
    assert fake.requests == []
    assert fake.calls[-1].answer == "not_found"


# --- tools (OpenAI tools / tool_calls) -----------------------------------------------------------


def _tool(tool_name: str, **properties: Any) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {
            "name": tool_name,
            "description": f"read-only {tool_name}",
            "parameters": {"type": "object", "properties": properties, "required": list(properties)},
        },
    }


TOOLS = [
    _tool("kubectl_logs", namespace={"type": "string"}, pod={"type": "string"}),
    _tool("kubectl_describe", namespace={"type": "string"}, kind={"type": "string"}, name={"type": "string"}),
]
LOGS_ARGS = {"namespace": "prod", "pod": "api-7d9f-1"}


async def test_llm_client_tool_loop_round_trip(fake: FakeOpenAI, make_model: MakeModel) -> None:
    fake.reply_tool_calls(tool_call("kubectl_logs", LOGS_ARGS, id="call_1"))
    fake.reply_text("The api pods OOM after the rollout.")
    model: ToolChatModel = make_model()
    messages: list[dict[str, Any]] = list(MESSAGES)

    first = await model.complete_with_tools(messages, TOOLS, max_tokens=400)

    assert first.response_format == "tools"
    assert first.finish_reason == "tool_calls"
    assert first.text == ""
    [call] = first.tool_calls
    assert (call.id, call.name, call.arguments, call.ok) == ("call_1", "kubectl_logs", LOGS_ARGS, True)
    assert (first.prompt_tokens, first.completion_tokens, first.model) == (120, 40, "qwen2.5:7b")
    sent = fake.requests[-1]
    assert sent["tools"] == TOOLS and sent["tool_choice"] == "auto" and sent["max_tokens"] == 400
    assert "response_format" not in sent

    messages.append(first.assistant_message())
    messages.append(call.result_message("OOMKilled at 14:03"))
    final = await model.complete_with_tools(messages, TOOLS)

    assert final.text == "The api pods OOM after the rollout."
    assert final.tool_calls == () and final.finish_reason == "stop"
    assert fake.tool_results() == {"call_1": "OOMKilled at 14:03"}
    assistant = fake.requests[-1]["messages"][-2]
    assert assistant == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "kubectl_logs", "arguments": json.dumps(LOGS_ARGS)},
            }
        ],
    }
    assert model.supports_tools is True


async def test_llm_client_complete_is_unchanged_by_tools(fake: FakeOpenAI, make_model: MakeModel) -> None:
    await make_model().complete(MESSAGES, json_schema=SCHEMA)

    assert "tools" not in fake.requests[-1] and "tool_choice" not in fake.requests[-1]


async def test_llm_client_empty_tools_asks_for_a_final_answer(fake: FakeOpenAI, make_model: MakeModel) -> None:
    fake.reply_text("final")

    reply = await make_model().complete_with_tools(MESSAGES, [], tool_choice="none")

    assert reply.text == "final"
    assert "tools" not in fake.requests[-1] and "tool_choice" not in fake.requests[-1]


async def test_llm_client_tool_choice_is_passed(fake: FakeOpenAI, make_model: MakeModel) -> None:
    choice = {"type": "function", "function": {"name": "kubectl_logs"}}
    fake.reply_tool_calls(tool_call("kubectl_logs", LOGS_ARGS))

    reply = await make_model().complete_with_tools(MESSAGES, TOOLS, tool_choice=choice)

    assert fake.requests[-1]["tool_choice"] == choice
    assert reply.tool_calls[0].id.startswith("call_fake_")


async def test_llm_client_parallel_tool_calls_keep_order(fake: FakeOpenAI, make_model: MakeModel) -> None:
    describe = {"namespace": "prod", "kind": "deployment", "name": "api"}
    fake.reply_tool_calls(
        tool_call("kubectl_logs", LOGS_ARGS), tool_call("kubectl_describe", describe), content="Let me look."
    )

    reply = await make_model().complete_with_tools(MESSAGES, TOOLS)

    assert [(c.name, c.arguments) for c in reply.tool_calls] == [
        ("kubectl_logs", LOGS_ARGS),
        ("kubectl_describe", describe),
    ]
    assert reply.text == "Let me look."
    assert reply.assistant_message()["content"] == "Let me look."
    assert len({c.id for c in reply.tool_calls}) == 2


@pytest.mark.parametrize(
    ("arguments", "error"),
    [
        ('{"namespace": "prod", "pod": ', "not valid JSON"),
        ("[1, 2]", "must be a JSON object, not list"),
        ('"prod"', "must be a JSON object, not str"),
        ("namespace=prod", "not valid JSON"),
    ],
)
async def test_llm_client_malformed_tool_arguments_are_an_error_on_the_call(
    fake: FakeOpenAI, make_model: MakeModel, arguments: str, error: str
) -> None:
    fake.reply_tool_calls(
        tool_call("kubectl_logs", arguments, id="bad"), tool_call("kubectl_logs", LOGS_ARGS, id="good")
    )

    reply = await make_model().complete_with_tools(MESSAGES, TOOLS)

    bad, good = reply.tool_calls
    assert not bad.ok and error in (bad.error or "")
    assert bad.arguments == {} and bad.raw_arguments == arguments
    assert good.ok and good.arguments == LOGS_ARGS
    # echoed with "{}" so a strict server accepts the history; the error goes back as the tool result
    assert reply.assistant_message()["tool_calls"][0]["function"]["arguments"] == "{}"


async def test_llm_client_malformed_call_can_be_answered_and_the_loop_goes_on(
    fake: FakeOpenAI, make_model: MakeModel
) -> None:
    fake.reply_tool_calls(tool_call("kubectl_logs", "{oops", id="c1"))
    fake.reply_text("done")
    model = make_model()
    messages: list[dict[str, Any]] = list(MESSAGES)

    reply = await model.complete_with_tools(messages, TOOLS)
    [call] = reply.tool_calls
    messages += [reply.assistant_message(), call.result_message(f"error: {call.error}")]
    final = await model.complete_with_tools(messages, TOOLS)

    assert final.text == "done"
    assert fake.tool_results()["c1"].startswith("error: arguments are not valid JSON")


async def test_llm_client_empty_arguments_mean_no_arguments(fake: FakeOpenAI, make_model: MakeModel) -> None:
    fake.reply_tool_calls(tool_call("kubectl_logs", ""))

    [call] = (await make_model().complete_with_tools(MESSAGES, TOOLS)).tool_calls

    assert call.ok and call.arguments == {}


@pytest.mark.parametrize("name", ["kubectl_delete", "kubectl_scale"])
async def test_llm_client_tool_not_offered_is_an_error_on_the_call(
    fake: FakeOpenAI, make_model: MakeModel, name: str
) -> None:
    fake.reply_tool_calls(tool_call(name, {"namespace": "prod", "name": "api"}))

    [call] = (await make_model().complete_with_tools(MESSAGES, TOOLS)).tool_calls

    assert not call.ok
    assert call.error == f"unknown tool {name!r}; the tools are: kubectl_describe, kubectl_logs"
    assert call.arguments == {}


async def test_llm_client_odd_tool_call_shapes(fake: FakeOpenAI, make_model: MakeModel) -> None:
    calls = [
        {"type": "function", "function": {"name": "kubectl_logs", "arguments": LOGS_ARGS}},  # object, no id
        {"id": "x2", "type": "retrieval", "function": {"name": "kubectl_logs", "arguments": "{}"}},
        {"id": "x3", "type": "function", "function": {"arguments": "{}"}},
        {"id": "x4", "type": "function", "function": {"name": "rm -rf /", "arguments": "{}"}},
        "not a call",
    ]
    envelope = {
        "choices": [
            {"message": {"role": "assistant", "content": None, "tool_calls": calls}, "finish_reason": "tool_calls"}
        ]
    }
    fake.reply_raw(json.dumps(envelope))

    reply = await make_model().complete_with_tools(MESSAGES, TOOLS)

    first, wrong_type, nameless, bad_name = reply.tool_calls
    assert first.ok and first.id == "call_0" and first.arguments == LOGS_ARGS
    assert "is not 'function'" in (wrong_type.error or "")
    assert nameless.error == "the tool call names no function"
    assert "not a valid function name" in (bad_name.error or "")
    assert reply.prompt_tokens is None


async def test_llm_client_caps_tool_calls_per_reply(fake: FakeOpenAI, make_model: MakeModel) -> None:
    fake.reply_tool_calls(*[tool_call("kubectl_logs", {"pod": f"p{i}"}) for i in range(MAX_TOOL_CALLS + 3)])

    reply = await make_model().complete_with_tools(MESSAGES, TOOLS)

    assert len(reply.tool_calls) == MAX_TOOL_CALLS
    assert reply.dropped_tool_calls == 3
    assert [c.arguments["pod"] for c in reply.tool_calls] == [f"p{i}" for i in range(MAX_TOOL_CALLS)]
    assert len(reply.assistant_message()["tool_calls"]) == MAX_TOOL_CALLS


async def test_llm_client_caps_tool_argument_size(fake: FakeOpenAI, make_model: MakeModel) -> None:
    fake.reply_tool_calls(tool_call("kubectl_logs", {"pod": "x" * MAX_TOOL_ARGUMENT_CHARS}))

    [call] = (await make_model().complete_with_tools(MESSAGES, TOOLS)).tool_calls

    assert call.error == f"arguments are over {MAX_TOOL_ARGUMENT_CHARS} characters"
    assert len(call.raw_arguments) == MAX_TOOL_ARGUMENT_CHARS


async def test_llm_client_reply_without_content_or_calls_is_unavailable(
    fake: FakeOpenAI, make_model: MakeModel
) -> None:
    fake.reply_raw(json.dumps({"choices": [{"message": {"role": "assistant"}, "finish_reason": "length"}]}))

    with pytest.raises(ModelUnavailable, match="no content and no tool calls"):
        await make_model().complete_with_tools(MESSAGES, TOOLS)


async def test_llm_client_complete_ignores_tool_calls_without_content(fake: FakeOpenAI, make_model: MakeModel) -> None:
    fake.reply_tool_calls(tool_call("kubectl_logs", LOGS_ARGS))

    with pytest.raises(ModelUnavailable, match="no content"):
        await make_model().complete(MESSAGES)


@pytest.mark.parametrize("interleave", [False, True])
async def test_llm_client_assembles_streamed_tool_call_deltas(
    fake: FakeOpenAI, make_model: MakeModel, interleave: bool
) -> None:
    describe = {"namespace": "prod", "kind": "deployment", "name": "api"}
    fake.reply_tool_calls(
        tool_call("kubectl_logs", LOGS_ARGS, id="s1"),
        tool_call("kubectl_describe", describe, id="s2"),
        stream=True,
        chunks=5,
        interleave=interleave,
    )

    reply = await make_model().complete_with_tools(MESSAGES, TOOLS)

    assert fake.calls[-1].answer == "stream"
    assert [(c.id, c.name, c.arguments) for c in reply.tool_calls] == [
        ("s1", "kubectl_logs", LOGS_ARGS),
        ("s2", "kubectl_describe", describe),
    ]
    assert reply.finish_reason == "tool_calls"
    assert (reply.prompt_tokens, reply.completion_tokens) == (120, 40)


async def test_llm_client_streamed_garbage_arguments_are_an_error(fake: FakeOpenAI, make_model: MakeModel) -> None:
    fake.reply_tool_calls(tool_call("kubectl_logs", '{"pod": "api", "names', id="g"), stream=True, chunks=4)

    [call] = (await make_model().complete_with_tools(MESSAGES, TOOLS)).tool_calls

    assert (call.id, call.name) == ("g", "kubectl_logs")
    assert "not valid JSON" in (call.error or "")


async def test_llm_client_streamed_final_answer_with_tools(fake: FakeOpenAI, make_model: MakeModel) -> None:
    fake.reply_stream("all good", chunks=3)

    reply = await make_model().complete_with_tools(MESSAGES, TOOLS)

    assert reply.text == "all good" and reply.tool_calls == ()


async def test_llm_client_stream_deltas_without_index_and_with_repeated_name(
    fake: FakeOpenAI, make_model: MakeModel
) -> None:
    def event(delta: dict[str, Any], finish: str | None = None) -> str:
        return "data: " + json.dumps({"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}) + "\n\n"

    body = (
        event({"role": "assistant"})
        + event({"tool_calls": [{"index": 0, "id": "a", "function": {"name": "kubectl_logs", "arguments": '{"pod"'}}]})
        + event({"tool_calls": [{"index": 0, "id": "a", "function": {"name": "kubectl_logs", "arguments": ': "x"}'}}]})
        + event({"tool_calls": [{"id": "b", "function": {"name": "kubectl_logs", "arguments": '{"pod":'}}]})
        + event({"tool_calls": [{"function": {"arguments": ' "y"}'}}]})
        + event({"tool_calls": [{"id": "c", "function": {"name": "kubectl_logs", "arguments": {"pod": "z"}}}]})
        + event({}, "tool_calls")
        + "data: [DONE]\n\n"
    )
    fake.reply_raw(body, content_type="text/event-stream")

    calls = (await make_model().complete_with_tools(MESSAGES, TOOLS)).tool_calls

    # a repeated name is not doubled; without index a new id starts a call and no id continues the last one;
    # arguments sent whole as an object are accepted
    assert [(c.id, c.name, c.arguments) for c in calls] == [
        ("a", "kubectl_logs", {"pod": "x"}),
        ("b", "kubectl_logs", {"pod": "y"}),
        ("c", "kubectl_logs", {"pod": "z"}),
    ]


@pytest.mark.parametrize(
    "body",
    [
        {"error": {"message": "registry.ollama.ai/library/gemma:2b does not support tools"}},
        {"object": "error", "message": '"auto" tool choice requires --enable-auto-tool-choice and --tool-call-parser'},
        {"error": {"code": 500, "message": "tools param requires --jinja flag"}},
        {"detail": [{"type": "extra_forbidden", "loc": ["body", "tools"], "msg": "Extra inputs are not permitted"}]},
    ],
)
async def test_llm_client_tools_unsupported(fake: FakeOpenAI, make_model: MakeModel, body: dict[str, Any]) -> None:
    fake.reply_status(400, body)
    model = make_model()

    with capture_logs() as logs, pytest.raises(ToolsUnsupported) as caught:
        await model.complete_with_tools(MESSAGES, TOOLS)

    assert isinstance(caught.value, ModelError) and caught.value.reason == "tools_unsupported"
    assert model.supports_tools is False
    [line] = [entry for entry in logs if entry["event"] == "ai_request"]
    assert line["error"] == "tools_unsupported"


async def test_llm_client_tools_unsupported_is_remembered(fake: FakeOpenAI, make_model: MakeModel) -> None:
    fake.reject_tools()
    model = make_model()
    with pytest.raises(ToolsUnsupported, match="does not support tools"):
        await model.complete_with_tools(MESSAGES, TOOLS)

    with pytest.raises(ToolsUnsupported, match="remembered"):
        await model.complete_with_tools(MESSAGES, TOOLS)

    assert len(fake.requests) == 1
    assert fake.calls[-1].answer == "rejected_tools"
    assert (await model.complete(MESSAGES)).text  # the single-shot path still works
    assert (await model.complete_with_tools(MESSAGES, [])).text  # and so does a turn without tools


async def test_llm_client_bad_tool_conversation_is_not_tools_unsupported(
    fake: FakeOpenAI, make_model: MakeModel
) -> None:
    fake.reply_tool_calls(tool_call("kubectl_logs", LOGS_ARGS, id="c1"))
    model = make_model()
    reply = await model.complete_with_tools(MESSAGES, TOOLS)

    with pytest.raises(ModelUnavailable) as caught:  # the tool result is missing: the caller's bug
        await model.complete_with_tools([*MESSAGES, reply.assistant_message()], TOOLS)

    assert caught.value.reason == "unavailable"
    assert "HTTP 400" in str(caught.value) and "tool_call_id" in str(caught.value)
    assert model.supports_tools is True


async def test_llm_client_other_errors_with_tools_are_unavailable(fake: FakeOpenAI, make_model: MakeModel) -> None:
    fake.reply_status(503, "loading model")
    model = make_model()

    with pytest.raises(ModelUnavailable, match="HTTP 503") as caught:
        await model.complete_with_tools(MESSAGES, TOOLS)

    assert not isinstance(caught.value, ToolsUnsupported)
    assert model.supports_tools is None


async def test_llm_client_tools_timeout(fake: FakeOpenAI, make_model: MakeModel) -> None:
    fake.reply_hang()

    with pytest.raises(ModelTimeout):
        await make_model(timeout=0.3).complete_with_tools(MESSAGES, TOOLS)


async def test_llm_client_tools_connection_reset(fake: FakeOpenAI, make_model: MakeModel) -> None:
    fake.reply_reset()

    with pytest.raises(ModelUnavailable, match="connection"):
        await make_model().complete_with_tools(MESSAGES, TOOLS)


@pytest.mark.parametrize(
    "tools",
    [
        [{"type": "retrieval"}],
        [{"type": "function", "function": {"name": "has space"}}],
        [{"type": "function", "function": {"name": "t", "parameters": "x"}}],
        [_tool("kubectl_logs"), _tool("kubectl_logs")],
    ],
)
async def test_llm_client_malformed_tool_definitions_raise_value_error(
    fake: FakeOpenAI, make_model: MakeModel, tools: list[dict[str, Any]]
) -> None:
    with pytest.raises(ValueError):
        await make_model().complete_with_tools(MESSAGES, tools)

    assert fake.requests == []


async def test_llm_client_tools_log_line(fake: FakeOpenAI, make_model: MakeModel) -> None:
    fake.reply_tool_calls(tool_call("kubectl_logs", LOGS_ARGS), tool_call("kubectl_logs", "{bad"))

    with capture_logs() as logs:
        await make_model(api_key="sk-secret").complete_with_tools(MESSAGES, TOOLS)

    [line] = [entry for entry in logs if entry["event"] == "ai_request"]
    assert line["tool_calls"] == ["kubectl_logs", "kubectl_logs"]
    assert (line["bad_tool_calls"], line["dropped_tool_calls"], line["tools"]) == (1, 0, 2)
    assert (line["prompt_tokens"], line["completion_tokens"]) == (120, 40)
    assert "sk-secret" not in repr(logs) and "api-7d9f-1" not in repr(logs)
