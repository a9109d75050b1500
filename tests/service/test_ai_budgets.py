"""services/ai.py budgets per analysis (issue 12): AIAdvisor's tool loop against the fake OpenAI-compatible
server, with a real Toolbox (a knowledge-search tool over a fake knowledge base). When the token, time or
tool-call budget runs out the model is told to answer now and offered no tools; one that keeps calling tools
is cut off (its best answer so far, else InvalidModelOutput); and an invalid answer on a spent token budget
gets no repair request."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from bot.render import Renderer
from services.ai import AIAdvisor, AIAnswer, Budget
from services.errors import InvalidModelOutput
from services.investigation import Toolbox
from services.knowledge import KnowledgeHit
from services.llm import OpenAICompatibleModel
from services.metrics import Metrics
from services.policy import RemediationPolicy
from services.ports import IncidentFacts
from services.safety import NamespacePolicy
from tests.fakes.openai import VALID_PROPOSAL, FakeOpenAI, Reply, tool_call

POLICY = RemediationPolicy(
    namespaces=NamespacePolicy(), allowed_tools=frozenset({"kubectl"}), auto_enabled=False, min_confidence=0.65
)
FACTS = IncidentFacts(
    incident_id=7, alertname="KubePodCrashLooping", severity="critical", service="api", namespace="prod",
    labels={"alertname": "KubePodCrashLooping", "namespace": "prod"}, annotations={"summary": "api crash-looping"},
)
SEARCH = tool_call("knowledge_search", {"query": "api crash loop"})
ANSWER = {**VALID_PROPOSAL, "action": "kubectl -n prod rollout undo deployment/api", "confidence": 0.77}
BEST = {**VALID_PROPOSAL, "action": "kubectl -n prod rollout restart deployment/web", "confidence": 0.6}
ANSWER_NOW = "No tools are offered any more"
PER_REPLY = 700  # fake.usage below: 600 prompt + 100 completion tokens per request


class FakeKnowledge:
    def __init__(self) -> None:
        self.queries: list[str] = []

    async def search(self, query: str, *, limit: int = 5) -> list[KnowledgeHit]:
        self.queries.append(query)
        return [KnowledgeHit(id=3, title="api OOM after rollout", snippet="roll back the api deployment",
                             tags=("oom",), category="runbook", services=("api",), source="note", incident_ref=None,
                             created_at=datetime(2024, 5, 1, tzinfo=UTC))]


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI() as server:
        server.usage = {"prompt_tokens": 600, "completion_tokens": 100}
        yield server


@pytest.fixture
async def client(fake: FakeOpenAI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=fake.base_url, trust_env=False) as http:
        yield http


@pytest.fixture
def knowledge() -> FakeKnowledge:
    return FakeKnowledge()


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
def make_advisor(client: httpx.AsyncClient, knowledge: FakeKnowledge, metrics: Metrics) -> Any:
    def make(*, budget: Budget | None = None, max_tool_calls: int = 6, tools: bool = True) -> AIAdvisor:
        model = OpenAICompatibleModel(client, model="fake-model", api_key=None, timeout=5)
        toolbox = Toolbox(policy=POLICY, knowledge=knowledge) if tools else None
        return AIAdvisor(model, Renderer(ZoneInfo("UTC")), metrics, toolbox=toolbox, max_tool_calls=max_tool_calls,
                         budget=budget)

    return make


async def propose(advisor: AIAdvisor) -> AIAnswer:
    return await advisor.propose(FACTS, knowledge=[], history=[])


def calls_tools_when_offered(body: dict[str, Any]) -> Reply:
    """A model that investigates as long as it may: a tool call whenever tools are offered, else the answer."""
    return Reply.with_tool_calls(SEARCH) if body.get("tools") else Reply.json(ANSWER)


def last_message(fake: FakeOpenAI, index: int) -> dict[str, Any]:
    return fake.requests[index]["messages"][-1]


def cutoffs(metrics: Metrics) -> dict[str, float]:
    budgets = ("tokens", "seconds", "tool_calls")
    return {b: metrics.value("alertpilot_ai_budget_cutoffs_total", budget=b) for b in budgets}


# --- the token budget ------------------------------------------------------------------------------------


async def test_the_token_budget_ends_the_investigation_and_the_answer_becomes_the_draft(
    fake: FakeOpenAI, make_advisor: Any, knowledge: FakeKnowledge, metrics: Metrics
) -> None:
    fake.default = calls_tools_when_offered
    answer = await propose(make_advisor(budget=Budget(tokens=1000)))

    assert len(fake.requests) == 3
    assert fake.offered_tools(0) == ["knowledge_search"]
    assert fake.offered_tools(1) == ["knowledge_search"]  # 700 of 1000 tokens spent: still investigating
    assert fake.offered_tools(2) == []  # 1400 spent: told to answer, no tools
    told = last_message(fake, 2)
    assert told["role"] == "user" and ANSWER_NOW in told["content"] and "token budget" in told["content"]
    assert all(ANSWER_NOW not in str(m.get("content")) for m in fake.requests[1]["messages"])
    assert len(fake.tool_results(2)) == 2  # both tool results went back before the answer was asked for
    assert len(knowledge.queries) == 2

    assert cutoffs(metrics) == {"tokens": 1, "seconds": 0, "tool_calls": 0}
    assert answer.draft is not None
    assert answer.draft.command == ANSWER["action"] and answer.draft.confidence == 0.77
    assert [e["tool"] for e in answer.draft.evidence] == ["knowledge_search", "knowledge_search"]
    assert answer.prompt_tokens == 1800 and answer.completion_tokens == 300  # all three requests
    assert answer.repaired is False
    assert metrics.value("alertpilot_ai_analysis_tokens") == 1
    assert "alertpilot_ai_analysis_tokens_sum 2100" in metrics.render()
    assert metrics.value("alertpilot_ai_requests_total", purpose="propose", outcome="ok") == 1


async def test_without_a_token_budget_the_tool_call_budget_ends_the_investigation(
    fake: FakeOpenAI, make_advisor: Any, metrics: Metrics
) -> None:
    fake.default = calls_tools_when_offered
    answer = await propose(make_advisor(budget=Budget(), max_tool_calls=3))
    assert [bool(fake.offered_tools(i)) for i in range(len(fake.requests))] == [True, True, True, False]
    assert "all the tool calls you may make" in last_message(fake, 3)["content"]
    assert cutoffs(metrics) == {"tokens": 0, "seconds": 0, "tool_calls": 1}
    assert answer.draft is not None and len(answer.draft.evidence) == 3


async def test_a_token_budget_the_analysis_stays_within_cuts_nothing(
    fake: FakeOpenAI, make_advisor: Any, metrics: Metrics
) -> None:
    fake.reply_tool_calls(SEARCH)
    fake.reply_json(ANSWER)
    answer = await propose(make_advisor(budget=Budget(tokens=100_000)))
    assert len(fake.requests) == 2 and fake.offered_tools(1) == ["knowledge_search"]
    assert cutoffs(metrics) == {"tokens": 0, "seconds": 0, "tool_calls": 0}
    assert answer.draft is not None and answer.draft.command == ANSWER["action"]


# --- the time budget -------------------------------------------------------------------------------------


async def test_the_time_budget_ends_the_investigation(fake: FakeOpenAI, make_advisor: Any, metrics: Metrics) -> None:
    fake.reply(replace(Reply.with_tool_calls(SEARCH), delay=0.3))  # the first turn alone uses the 0.2 s
    fake.default = calls_tools_when_offered
    answer = await propose(make_advisor(budget=Budget(tokens=None, seconds=0.2)))
    assert len(fake.requests) == 2
    assert fake.offered_tools(0) == ["knowledge_search"] and fake.offered_tools(1) == []
    told = last_message(fake, 1)
    assert ANSWER_NOW in told["content"] and "time budget" in told["content"]
    assert cutoffs(metrics) == {"tokens": 0, "seconds": 1, "tool_calls": 0}
    assert answer.draft is not None and answer.draft.command == ANSWER["action"]
    assert len(answer.draft.evidence) == 1  # the call made before the cut is kept as evidence


# --- a runaway model -------------------------------------------------------------------------------------


async def test_a_runaway_model_gets_its_best_answer_so_far(
    fake: FakeOpenAI, make_advisor: Any, metrics: Metrics
) -> None:
    fake.reply_tool_calls(SEARCH, content=json.dumps(BEST))  # a usable proposal written beside a tool call
    fake.default = Reply.with_tool_calls(SEARCH)  # then tool calls only, also when no tools are offered
    answer = await propose(make_advisor(budget=Budget(tokens=1000)))

    assert len(fake.requests) == 3 and fake.offered_tools(2) == []  # told to answer, and called tools anyway
    assert cutoffs(metrics) == {"tokens": 1, "seconds": 0, "tool_calls": 0}
    assert answer.draft is not None
    assert answer.draft.command == BEST["action"] and answer.draft.confidence == 0.6
    assert answer.draft.root_cause == BEST["root_cause"]
    assert answer.repaired is False
    assert answer.prompt_tokens == 1800  # the runaway turn is spent too
    assert metrics.value("alertpilot_ai_requests_total", purpose="propose", outcome="ok") == 1
    assert metrics.value("alertpilot_ai_requests_total", purpose="propose", outcome="invalid_output") == 0


async def test_the_latest_usable_answer_is_the_best_so_far(fake: FakeOpenAI, make_advisor: Any) -> None:
    fake.reply_tool_calls(SEARCH, content=json.dumps(BEST))
    fake.reply_tool_calls(SEARCH, content=json.dumps(ANSWER))
    fake.default = Reply.with_tool_calls(SEARCH)
    answer = await propose(make_advisor(budget=Budget(tokens=1000)))
    assert answer.draft is not None and answer.draft.command == ANSWER["action"]


async def test_a_runaway_model_without_a_usable_answer_is_invalid_output(
    fake: FakeOpenAI, make_advisor: Any, metrics: Metrics
) -> None:
    fake.reply_tool_calls(SEARCH, content="Let me look at the knowledge base first.")  # not a proposal
    fake.reply_tool_calls(SEARCH, content='{"root_cause": "half an answer"')  # not a valid one either
    fake.default = Reply.with_tool_calls(SEARCH)
    with pytest.raises(InvalidModelOutput, match="still calling tools after the tokens budget ran out"):
        await propose(make_advisor(budget=Budget(tokens=1000)))
    assert len(fake.requests) == 3  # no repair request for a runaway
    assert cutoffs(metrics)["tokens"] == 1
    assert metrics.value("alertpilot_ai_requests_total", purpose="propose", outcome="invalid_output") == 1
    assert metrics.value("alertpilot_ai_analysis_tokens") == 1  # a runaway's spending is on /metrics too


async def test_a_runaway_after_the_tool_call_budget_is_invalid_output(fake: FakeOpenAI, make_advisor: Any) -> None:
    fake.default = Reply.with_tool_calls(SEARCH)
    with pytest.raises(InvalidModelOutput, match="tool_calls budget"):
        await propose(make_advisor(budget=Budget(), max_tool_calls=2))
    assert len(fake.requests) == 3 and fake.offered_tools(2) == []


# --- tool-call metrics -----------------------------------------------------------------------------------


async def test_tool_calls_are_counted_by_tool_and_outcome(
    fake: FakeOpenAI, make_advisor: Any, knowledge: FakeKnowledge, metrics: Metrics
) -> None:
    fake.reply_tool_calls(
        SEARCH,
        tool_call("kubectl_delete", {"namespace": "prod", "kind": "pod", "name": "api-0"}),  # not offered
        tool_call("knowledge_search", '{"query": '),  # garbage arguments
    )
    fake.reply_json(ANSWER)
    answer = await propose(make_advisor())

    tool_calls = {
        (tool, outcome): metrics.value("alertpilot_ai_tool_calls_total", tool=tool, outcome=outcome)
        for tool in ("knowledge_search", "other", "kubectl_delete") for outcome in ("ok", "refused", "failed")
    }
    assert {k: v for k, v in tool_calls.items() if v} == {
        ("knowledge_search", "ok"): 1, ("other", "refused"): 1, ("knowledge_search", "refused"): 1,
    }
    assert len(knowledge.queries) == 1  # only the good call ran
    assert metrics.value("alertpilot_ai_tool_seconds", tool="knowledge_search") == 1  # refused calls have no duration
    results = list(fake.tool_results(1).values())
    assert len(results) == 3 and str(results[1]).startswith("refused") and str(results[2]).startswith("refused")
    assert answer.draft is not None
    assert [(e["tool"], e["ok"]) for e in answer.draft.evidence] == [
        ("knowledge_search", True), ("kubectl_delete", False), ("knowledge_search", False)
    ]


async def test_calls_over_the_tool_call_budget_are_counted_and_not_run(
    fake: FakeOpenAI, make_advisor: Any, knowledge: FakeKnowledge, metrics: Metrics
) -> None:
    fake.reply_tool_calls(SEARCH, tool_call("knowledge_search", {"query": "second"}))
    fake.reply_json(ANSWER)
    answer = await propose(make_advisor(max_tool_calls=1))
    assert knowledge.queries == ["api crash loop"]
    assert metrics.value("alertpilot_ai_tool_calls_total", tool="knowledge_search", outcome="ok") == 1
    assert metrics.value("alertpilot_ai_tool_calls_total", tool="knowledge_search", outcome="over_budget") == 1
    assert cutoffs(metrics)["tool_calls"] == 1
    assert answer.draft is not None and answer.draft.evidence[1]["refused"] == "tool-call budget used up"


async def test_tokens_per_analysis_are_observed_once_per_analysis(
    fake: FakeOpenAI, make_advisor: Any, metrics: Metrics
) -> None:
    advisor = make_advisor()
    fake.reply_tool_calls(SEARCH)
    fake.reply_json(ANSWER)
    await propose(advisor)
    assert metrics.value("alertpilot_ai_analysis_tokens") == 1
    assert "alertpilot_ai_analysis_tokens_sum 1400" in metrics.render()
    fake.reply_json(ANSWER)  # the second analysis answers at once
    await propose(advisor)
    assert metrics.value("alertpilot_ai_analysis_tokens") == 2
    assert "alertpilot_ai_analysis_tokens_sum 2100" in metrics.render()
    assert metrics.value("alertpilot_ai_tokens_total", kind="prompt") == 1800  # per request, as before


async def test_a_repair_is_part_of_the_analysis_tokens(fake: FakeOpenAI, make_advisor: Any, metrics: Metrics) -> None:
    fake.reply_text("I think you should restart it")
    fake.reply_json(ANSWER)
    answer = await propose(make_advisor(budget=Budget(tokens=5000)))
    assert answer.repaired is True and len(fake.requests) == 2
    assert answer.prompt_tokens == 1200 and answer.completion_tokens == 200
    assert metrics.value("alertpilot_ai_analysis_tokens") == 1
    assert "alertpilot_ai_analysis_tokens_sum 1400" in metrics.render()


# --- no repair on a spent token budget -------------------------------------------------------------------


async def test_no_repair_when_the_token_budget_is_spent(fake: FakeOpenAI, make_advisor: Any, metrics: Metrics) -> None:
    fake.reply_text("I think you should restart it")
    fake.default = ANSWER  # a repair request would get a valid answer
    with pytest.raises(InvalidModelOutput, match=r"token budget \(500\) is spent"):
        await propose(make_advisor(budget=Budget(tokens=500)))
    assert len(fake.requests) == 1  # no repair request
    assert metrics.value("alertpilot_ai_requests_total", purpose="propose", outcome="invalid_output") == 1
    assert metrics.value("alertpilot_ai_analysis_tokens") == 1


async def test_no_repair_when_the_investigation_spent_the_token_budget(fake: FakeOpenAI, make_advisor: Any) -> None:
    fake.reply_tool_calls(SEARCH)
    fake.reply_tool_calls(SEARCH)
    fake.reply_text("```json\nnot json\n```")  # the answer after "answer now" is unusable
    fake.default = ANSWER
    with pytest.raises(InvalidModelOutput, match="token budget"):
        await propose(make_advisor(budget=Budget(tokens=1000)))
    assert len(fake.requests) == 3 and fake.pending() == 0


async def test_no_repair_on_a_spent_budget_without_tools_either(fake: FakeOpenAI, make_advisor: Any) -> None:
    fake.reply_text("not json")
    fake.default = ANSWER
    with pytest.raises(InvalidModelOutput, match="token budget"):
        await propose(make_advisor(budget=Budget(tokens=700), tools=False))
    assert len(fake.requests) == 1 and fake.requests[0]["response_format"]["type"] == "json_schema"


async def test_a_spent_time_budget_still_gets_the_repair(fake: FakeOpenAI, make_advisor: Any) -> None:
    fake.reply(Reply.slow(0.2, "not json"))
    fake.reply_json(ANSWER)
    answer = await propose(make_advisor(budget=Budget(seconds=0.1), tools=False))
    assert answer.repaired is True and len(fake.requests) == 2
    assert answer.draft is not None and answer.draft.command == ANSWER["action"]
