"""End to end: the AI model investigates with read-only tools before it proposes. The fake model asks for
`kubectl logs`, gets the fake kubectl's output back in its next request, then answers; the evidence is on the
card and in the decision's audit. A mutating "tool" is refused and nothing runs. Prometheus is a fake too."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.e2e.conftest import start
from tests.e2e.test_ai_flow import proposal_cards
from tests.e2e.test_telegram_flow import button, cards
from tests.fakes.botapi import FakeBotAPI
from tests.fakes.kubectl import FakeKubectl
from tests.fakes.openai import VALID_PROPOSAL, FakeOpenAI, Reply, tool_call
from tests.fakes.prometheus import FakePrometheus
from tests.harness import CHAT_ID, VIEWER, eventually, fixture


@pytest.fixture
def kubectl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeKubectl:
    fake = FakeKubectl(tmp_path / "kubectl").install()
    monkeypatch.setenv("PATH", f"{fake.bin_dir}{os.pathsep}{os.environ['PATH']}")
    return fake


async def test_model_reads_logs_then_proposes_with_evidence_on_the_card(
    tmp_path: Path, bot_api: FakeBotAPI, model: FakeOpenAI, kubectl: FakeKubectl
) -> None:
    kubectl.on("logs", stdout="2026-11-24T05:06:40Z ERROR no space left on device: /var/lib/postgresql/data\n")
    model.reply_tool_calls(tool_call("kubectl_logs", {"namespace": "prod", "pod": "db-0", "tail": 50}))
    model.reply(Reply.json(VALID_PROPOSAL))
    app = await start(tmp_path, bot_api, model, executor="kubectl")
    try:
        await app.post_alerts(fixture("01-firing-one-alert.json"))
        [card] = await eventually(lambda: proposal_cards(bot_api))
        assert "investigated: 1 tool call" in card["text"] and "AI fake-model" in card["text"]
        assert "kubectl_logs" in model.offered_tools(0)
        results = model.tool_results(1)  # the second request carries the tool's output back to the model
        assert any("no space left on device" in str(content) for content in results.values())
        assert kubectl.calls == [["logs", "pod/db-0", "--namespace=prod", "--tail=50", "--request-timeout=15s"]]
        decision = (await app.get("/api/incidents/INC-1")).json()["decisions"][0]
        [evidence] = decision["proposal"]["evidence"]
        assert evidence["tool"] == "kubectl_logs" and evidence["ok"] and "no space left" in evidence["excerpt"]
        # 🔍 Details lists each call under the card: tool, arguments, excerpt, duration
        [sent] = cards(bot_api)
        bot_api.inject_callback(CHAT_ID, VIEWER, sent["message_id"], button(sent, "🔍"))
        [listed] = await bot_api.wait_for("sendMessage", predicate=lambda r: "investigation" in r.params["text"])
        text = listed.params["text"]
        assert "kubectl_logs" in text and "pod=db-0" in text and "no space left on device" in text and " s" in text
    finally:
        await app.stop()


async def test_a_mutating_tool_call_is_refused_and_nothing_runs(
    tmp_path: Path, bot_api: FakeBotAPI, model: FakeOpenAI, kubectl: FakeKubectl
) -> None:
    model.reply_tool_calls(tool_call("kubectl_delete", {"namespace": "prod", "kind": "pod", "name": "db-0"}),
                           tool_call("kubectl_get", {"namespace": "prod", "kind": "pods", "name": "db-0; kubectl delete"}))
    model.reply(Reply.json(VALID_PROPOSAL))
    app = await start(tmp_path, bot_api, model, executor="kubectl")
    try:
        await app.post_alerts(fixture("01-firing-one-alert.json"))
        await eventually(lambda: proposal_cards(bot_api))
        results = model.tool_results(1)
        assert len(results) == 2 and all(str(r).startswith("refused") for r in results.values())
        assert kubectl.calls == []  # nothing ran
    finally:
        await app.stop()


async def test_promql_tool_against_a_fake_prometheus(tmp_path: Path, bot_api: FakeBotAPI, model: FakeOpenAI) -> None:
    async with FakePrometheus() as prometheus:
        prometheus.on('node_filesystem_avail_bytes{instance="db-1"}', vector=[({"instance": "db-1"}, 1024.0)])
        model.reply_tool_calls(tool_call("prometheus_query", {"query": 'node_filesystem_avail_bytes{instance="db-1"}'}))
        model.reply(Reply.json(VALID_PROPOSAL))
        app = await start(tmp_path, bot_api, model, prometheus_url=prometheus.base_url)
        try:
            await app.post_alerts(fixture("01-firing-one-alert.json"))
            [card] = await eventually(lambda: proposal_cards(bot_api))
            assert "investigated: 1 tool call" in card["text"]
            assert "kubectl_logs" not in model.offered_tools(0)  # no cluster configured: not offered
            assert any("1024" in str(r) for r in model.tool_results(1).values())
            assert prometheus.requests
        finally:
            await app.stop()


async def test_a_runaway_model_is_cut_off_and_the_rules_answer(
    tmp_path: Path, bot_api: FakeBotAPI, model: FakeOpenAI, kubectl: FakeKubectl
) -> None:
    """A model that keeps calling tools gets at most ALERTPILOT_AI_MAX_TOOL_CALLS of them run, then no more
    tools are offered; if it still will not answer, the rules do."""
    model.default = Reply.with_tool_calls(tool_call("kubectl_get", {"namespace": "prod", "kind": "pods"}))
    app = await start(tmp_path, bot_api, model, executor="kubectl", ai_max_tool_calls=2)
    try:
        await app.post_alerts(fixture("01-firing-one-alert.json"))
        [card] = await eventually(lambda: proposal_cards(bot_api))
        assert "— rules" in card["text"] and "AI gave no usable answer" in card["text"]
        assert len(kubectl.calls) == 2  # the budget, not one more
        assert model.offered_tools(-1) == []  # the last turns offered no tools
    finally:
        await app.stop()


async def test_a_server_without_tools_gets_the_single_shot_prompt(
    tmp_path: Path, bot_api: FakeBotAPI, model: FakeOpenAI, kubectl: FakeKubectl
) -> None:
    model.reject_tools()
    app = await start(tmp_path, bot_api, model, executor="kubectl")
    try:
        await app.post_alerts(fixture("01-firing-one-alert.json"))
        [card] = await eventually(lambda: proposal_cards(bot_api))
        assert "AI fake-model" in card["text"] and "investigated" not in card["text"]
        assert model.requests[-1]["response_format"]["type"] == "json_schema" and kubectl.calls == []
    finally:
        await app.stop()
