"""FakeOpenAI's tool scripting and its OpenAI-like checks of tool conversations, over raw HTTP."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.fakes.openai import FakeOpenAI, Reply, tool_call

TOOL = {"type": "function", "function": {"name": "kubectl_logs", "parameters": {"type": "object"}}}
USER = {"role": "user", "content": "why is api down?"}


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI() as server:
        yield server


@pytest.fixture
async def http(fake: FakeOpenAI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=fake.base_url, trust_env=False) as client:
        yield client


async def _post(http: httpx.AsyncClient, messages: list[dict[str, Any]], **extra: Any) -> httpx.Response:
    return await http.post("chat/completions", json={"model": "m", "messages": messages, **extra})


def _assistant(*ids: str) -> dict[str, Any]:
    calls = [{"id": i, "type": "function", "function": {"name": "kubectl_logs", "arguments": "{}"}} for i in ids]
    return {"role": "assistant", "content": None, "tool_calls": calls}


async def test_fake_openai_tool_calls_envelope(fake: FakeOpenAI, http: httpx.AsyncClient) -> None:
    fake.reply_tool_calls(tool_call("kubectl_logs", {"pod": "a"}, id="c1"), tool_call("kubectl_logs", "{bad"))

    envelope = (await _post(http, [USER], tools=[TOOL])).json()

    choice = envelope["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    first, second = choice["message"]["tool_calls"]
    assert first == {"id": "c1", "type": "function", "function": {"name": "kubectl_logs", "arguments": '{"pod": "a"}'}}
    assert second["id"] == "call_fake_1" and second["function"]["arguments"] == "{bad"
    assert fake.offered_tools() == ["kubectl_logs"]


async def test_fake_openai_streams_tool_call_fragments_by_index(fake: FakeOpenAI, http: httpx.AsyncClient) -> None:
    fake.reply_tool_calls(
        tool_call("kubectl_logs", {"pod": "a"}, id="c1"),
        tool_call("kubectl_logs", {"pod": "b"}, id="c2"),
        stream=True,
        chunks=2,
        interleave=True,
    )

    text = (await _post(http, [USER], tools=[TOOL])).text

    deltas = [
        d
        for line in text.split("\n\n")
        if line.startswith("data: {")
        for choice in json.loads(line[6:])["choices"]
        for d in choice["delta"].get("tool_calls", [])
    ]
    assert [d["index"] for d in deltas] == [0, 1, 0, 1, 0, 1]
    assert deltas[0] == {
        "index": 0,
        "id": "c1",
        "type": "function",
        "function": {"name": "kubectl_logs", "arguments": ""},
    }
    assert "".join(d["function"]["arguments"] for d in deltas if d["index"] == 1) == '{"pod": "b"}'
    assert text.rstrip().endswith("data: [DONE]")


async def test_fake_openai_records_tool_results(fake: FakeOpenAI, http: httpx.AsyncClient) -> None:
    messages = [USER, _assistant("c1", "c2"), {"role": "tool", "tool_call_id": "c1", "content": "out 1"}]
    messages.append({"role": "tool", "tool_call_id": "c2", "content": "out 2"})

    response = await _post(http, messages, tools=[TOOL])

    assert response.status_code == 200
    assert fake.tool_results() == {"c1": "out 1", "c2": "out 2"}


@pytest.mark.parametrize(
    ("messages", "match"),
    [
        ([USER, {"role": "tool", "tool_call_id": "nope", "content": "x"}], "must be a response to a preceeding"),
        ([USER, _assistant("c1", "c2"), {"role": "tool", "tool_call_id": "c1", "content": "x"}], "'c2'"),
        ([USER, _assistant("c1"), USER], "did not have response messages"),
        ([USER, _assistant("c1"), {"role": "tool", "tool_call_id": "c1", "content": None}], "expected a string"),
    ],
)
async def test_fake_openai_rejects_broken_tool_conversations(
    fake: FakeOpenAI, http: httpx.AsyncClient, messages: list[dict[str, Any]], match: str
) -> None:
    fake.reply_text("never sent")

    response = await _post(http, messages, tools=[TOOL])

    assert response.status_code == 400
    assert match in response.json()["error"]["message"]
    assert fake.calls[-1].answer == "bad_request"
    assert fake.pending() == 1  # the script was not consumed


@pytest.mark.parametrize("tools", [[], [{"type": "function"}], [{"type": "function", "function": {"name": ""}}]])
async def test_fake_openai_rejects_malformed_tools(fake: FakeOpenAI, http: httpx.AsyncClient, tools: list[Any]) -> None:
    response = await _post(http, [USER], tools=tools)

    assert response.status_code == 400


async def test_fake_openai_tool_checks_can_be_turned_off(fake: FakeOpenAI, http: httpx.AsyncClient) -> None:
    fake.check_tool_messages = False

    response = await _post(http, [USER, {"role": "tool", "tool_call_id": "nope", "content": "x"}])

    assert response.status_code == 200


async def test_fake_openai_reject_tools_only_touches_requests_with_tools(
    fake: FakeOpenAI, http: httpx.AsyncClient
) -> None:
    fake.reject_tools()
    fake.reply_text("plain")

    refused = await _post(http, [USER], tools=[TOOL])
    plain = await _post(http, [USER])

    assert refused.status_code == 400
    assert refused.json()["error"]["message"].endswith("does not support tools")
    assert plain.json()["choices"][0]["message"]["content"] == "plain"


async def test_fake_openai_default_callable_can_drive_a_tool_loop(fake: FakeOpenAI, http: httpx.AsyncClient) -> None:
    def answer(body: dict[str, Any]) -> Reply:
        if any(m.get("role") == "tool" for m in body["messages"]):
            return Reply.text("final")
        return Reply.with_tool_calls(tool_call("kubectl_logs", {"pod": "a"}, id="c1"))

    fake.default = answer

    first = (await _post(http, [USER], tools=[TOOL])).json()["choices"][0]["message"]
    follow_up = [USER, first, {"role": "tool", "tool_call_id": "c1", "content": "logs"}]
    second = (await _post(http, follow_up, tools=[TOOL])).json()["choices"][0]["message"]

    assert first["tool_calls"][0]["id"] == "c1"
    assert second["content"] == "final"
