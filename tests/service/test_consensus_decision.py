"""DecisionService with a consensus panel (issue 12): for a consensus severity every panel member analyses in
parallel within the decision SLA, the votes are tallied, each analysis is a decision row; a member past the
SLA is cancelled and counts as not agreeing; no answer at all gives the rules. Other severities ask the main
model only. Also the settings behind it (ALERTPILOT_CONSENSUS_MODELS, the per-analysis budget)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from bot.render import Renderer
from bot.settings import Settings, SettingsError, load_settings
from services.ai import AIAdvisor
from services.consensus import PanelMember
from services.decision import BREAKER_FAILURES, DecisionResult, DecisionService, FallbackReason
from services.errors import ModelUnavailable
from services.knowledge import KnowledgeService
from services.metrics import Metrics
from services.playbooks import PlaybookService
from services.ports import IncidentFacts, ModelReply
from services.roles import parse_roles
from storage.db import Database
from storage.tables import DecisionOutcome, Incident
from tests.fakes.chat import FakeClock
from tests.fakes.model import VALID, FakeModel
from tests.harness import ROLES, eventually

RESTART = "kubectl -n prod rollout restart deployment/api"
RESTART_AGAIN = "kubectl rollout restart deploy api --namespace=prod"
SCALE_TO_ZERO = "kubectl -n prod scale deployment/api --replicas=0"
SEVERITIES = frozenset({"critical", "P0", "P1"})
AI = {"ai_base_url": "http://127.0.0.1:9/v1", "ai_model": "main"}


def proposal(command: str, **overrides: Any) -> dict[str, Any]:
    return {**VALID, "action": command, **overrides}


def facts(severity: str = "critical", incident_id: int = 1) -> IncidentFacts:
    return IncidentFacts(
        incident_id=incident_id, alertname="KubePodCrashLooping", severity=severity, service="api", namespace="prod",
        labels={"alertname": "KubePodCrashLooping", "severity": severity}, annotations={"summary": "api crash-looping"},
    )


class HangingModel:
    """A model that never answers; records that it was asked and that its request was cancelled."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.asked = 0
        self.cancelled = False

    async def complete(
        self, messages: list[dict[str, str]], *, json_schema: dict[str, Any] | None = None, max_tokens: int = 800
    ) -> ModelReply:
        self.asked += 1
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        raise AssertionError("unreachable")


@dataclass
class Env:
    db: Database
    clock: FakeClock
    knowledge: KnowledgeService
    playbooks: PlaybookService
    metrics: Metrics
    services: list[DecisionService]

    def decisions(
        self, main: Any, panel: Sequence[Any], *, sla_seconds: float = 10.0,
        severities: frozenset[str] = SEVERITIES,
    ) -> DecisionService:
        """A decision engine with ``main`` as the model and one panel member per model in ``panel``."""
        renderer = Renderer(ZoneInfo("UTC"))
        members = [(PanelMember(m.name), AIAdvisor(m, renderer, self.metrics)) for m in panel]
        service = DecisionService(
            self.db, self.playbooks, self.knowledge, AIAdvisor(main, renderer, self.metrics), self.metrics, self.clock,
            sla_seconds=sla_seconds, panel=members, consensus_severities=severities,
            allowed_tools=frozenset({"kubectl"}),
        )
        self.services.append(service)
        return service


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    db = Database(f"sqlite+aiosqlite:///{tmp_path}/consensus.db")
    await db.create_schema()
    clock = FakeClock()
    knowledge = KnowledgeService(db, clock, parse_roles(ROLES))
    environment = Env(db, clock, knowledge, PlaybookService(db, clock), Metrics(), [])
    try:
        yield environment
    finally:
        for service in environment.services:
            await service.aclose()
        await db.dispose()


def models(*scripts: Any, gate: asyncio.Event | None = None) -> list[FakeModel]:
    return [FakeModel(script, name=f"model-{'abcdefg'[i]}", gate=gate) for i, script in enumerate(scripts)]


async def decide_within(service: DecisionService, incident: IncidentFacts, guard: float = 5.0) -> DecisionResult:
    """``decide`` with a guard: a decision that waits for a hanging member fails the test instead of hanging it."""
    async with asyncio.timeout(guard):
        return await service.decide(incident, fresh=True, history=[])


def consensus_tasks() -> list[asyncio.Task[Any]]:
    return [t for t in asyncio.all_tasks() if t.get_name().startswith("consensus-") and not t.done()]


# --- agreement ----------------------------------------------------------------------------------------


async def test_three_agree_the_record_says_3_of_3_and_every_analysis_is_a_row(env: Env) -> None:
    main = FakeModel(name="main")
    panel = models(proposal(RESTART, confidence=0.9), proposal(RESTART_AGAIN, confidence=0.7), proposal(RESTART))
    result = await env.decisions(main, panel).decide(facts(), fresh=False, history=[])

    assert result.fallback_reason is None
    draft = result.draft
    assert draft.source == "ai" and draft.model == "model-a" and draft.command == RESTART
    assert draft.confidence == 0.7  # the lowest of the agreeing analyses
    assert draft.consensus is not None
    assert draft.consensus["agree"] == 3 and draft.consensus["of"] == 3
    assert [(v["member"], v["agrees"]) for v in draft.consensus["votes"]] == [
        ("model-a", True), ("model-b", True), ("model-c", True)]
    assert [len(m.calls) for m in panel] == [1, 1, 1] and main.calls == []  # the panel, not the main model

    assert [r.outcome for r in result.records] == [DecisionOutcome.VOTE, DecisionOutcome.VOTE, DecisionOutcome.USED]
    vote_b, vote_c, used = result.records
    assert (vote_b.model, vote_c.model, used.model) == ("model-b", "model-c", "model-a")
    assert vote_b.proposal is not None and vote_b.proposal["command"] == RESTART_AGAIN
    assert vote_c.proposal is not None and "consensus" not in vote_c.proposal  # a vote is its own analysis
    assert used.proposal is not None and used.proposal["consensus"]["agree"] == 3
    assert used.prompt_tokens == 100 and used.completion_tokens == 30  # the lead analysis's own tokens
    assert all(r.source == "ai" and r.incident_id == 1 for r in result.records)

    assert env.metrics.value("alertpilot_ai_consensus_total", agreement="full") == 1
    assert env.metrics.value("alertpilot_ai_consensus_total", agreement="partial") == 0
    assert env.metrics.value("alertpilot_ai_requests_total", purpose="propose", outcome="ok") == 3
    assert env.metrics.value("alertpilot_decisions_total", source="ai", fallback_reason="none") == 1


async def test_two_of_three_keeps_the_dissent_in_the_record(env: Env) -> None:
    panel = models(proposal(SCALE_TO_ZERO, confidence=0.95), proposal(RESTART, confidence=0.8), proposal(RESTART_AGAIN))
    result = await env.decisions(FakeModel(name="main"), panel).decide(facts(), fresh=True, history=[])

    draft = result.draft
    assert draft.command == RESTART and draft.model == "model-b"  # the larger group, led by its first member
    assert draft.confidence == 0.8
    assert draft.consensus is not None and (draft.consensus["agree"], draft.consensus["of"]) == (2, 3)
    dissent = draft.consensus["votes"][0]
    assert dissent["member"] == "model-a" and dissent["agrees"] is False and dissent["command"] == SCALE_TO_ZERO
    assert dissent["confidence"] == 0.95
    assert [r.outcome for r in result.records] == [DecisionOutcome.VOTE, DecisionOutcome.VOTE, DecisionOutcome.USED]
    assert [r.model for r in result.records] == ["model-a", "model-c", "model-b"]
    assert all(r.fresh for r in result.records)
    assert env.metrics.value("alertpilot_ai_consensus_total", agreement="partial") == 1
    assert env.metrics.value("alertpilot_ai_consensus_total", agreement="full") == 0


async def test_the_panel_is_asked_in_parallel(env: Env) -> None:
    gate = asyncio.Event()
    panel = models(proposal(RESTART), proposal(RESTART), proposal(RESTART), gate=gate)
    deciding = asyncio.create_task(env.decisions(FakeModel(name="main"), panel).decide(facts(), fresh=True, history=[]))
    await eventually(lambda: all(len(m.calls) == 1 for m in panel))  # all three asked before any answered
    gate.set()
    result = await deciding
    assert result.draft.consensus is not None and result.draft.consensus["agree"] == 3


async def test_the_vote_rows_can_be_stored(env: Env) -> None:
    async with env.db.write() as tx:
        incident = await tx.incidents.add(Incident(alertname="KubePodCrashLooping", service="api",
                                                   created_at=env.clock(), updated_at=env.clock()))
    assert incident.id is not None
    panel = models(proposal(RESTART), proposal(SCALE_TO_ZERO), proposal(RESTART))
    result = await env.decisions(FakeModel(name="main"), panel).decide(facts(incident_id=incident.id), fresh=True,
                                                                       history=[])
    async with env.db.write() as tx:
        for record in result.records:
            await tx.decisions.add(record)
    async with env.db.read() as tx:
        rows = await tx.decisions.of_incident(incident.id)
    assert [(r.outcome, r.model) for r in rows] == [("vote", "model-b"), ("vote", "model-c"), ("used", "model-a")]
    assert rows[2].proposal is not None and rows[2].proposal["consensus"]["votes"][1]["command"] == SCALE_TO_ZERO


# --- members that do not answer -----------------------------------------------------------------------


async def test_a_member_past_the_sla_is_cancelled_and_counts_as_not_agreeing(env: Env) -> None:
    hanging = HangingModel("model-c")
    panel = [*models(proposal(RESTART), proposal(RESTART)), hanging]
    result = await decide_within(env.decisions(FakeModel(name="main"), panel, sla_seconds=0.3), facts())

    assert hanging.asked == 1 and hanging.cancelled  # asked, then cancelled at the SLA
    assert consensus_tasks() == []  # nothing left running
    assert result.fallback_reason is None and result.draft.command == RESTART
    record = result.draft.consensus
    assert record is not None and (record["agree"], record["of"]) == (2, 3)
    silent = record["votes"][2]
    assert silent["member"] == "model-c" and silent["agrees"] is False and "command" not in silent
    assert silent["error"].startswith("timeout:") and "0.3 s decision SLA" in silent["error"]

    failed, vote, used = result.records
    assert failed.outcome == DecisionOutcome.FAILED and failed.model == "model-c"
    assert failed.fallback_reason == FallbackReason.TIMEOUT
    assert failed.error is not None and "model-c" in failed.error and "SLA" in failed.error
    assert (vote.outcome, vote.model) == (DecisionOutcome.VOTE, "model-b")
    assert (used.outcome, used.model) == (DecisionOutcome.USED, "model-a")
    assert env.metrics.value("alertpilot_ai_consensus_total", agreement="partial") == 1
    assert env.metrics.value("alertpilot_ai_requests_total", purpose="propose", outcome="timeout") == 1
    await asyncio.sleep(0)  # no late answer is followed for a consensus vote
    assert env.metrics.value("alertpilot_ai_late_answers_total") == 0


async def test_a_failing_member_is_a_failed_row_with_its_reason(env: Env) -> None:
    panel = models(ModelUnavailable("HTTP 500 from model-a: boom"), proposal(RESTART), proposal(RESTART))
    result = await env.decisions(FakeModel(name="main"), panel).decide(facts(), fresh=True, history=[])
    assert result.draft.model == "model-b" and result.fallback_reason is None
    record = result.draft.consensus
    assert record is not None and record["votes"][0]["error"] == "unavailable: HTTP 500 from model-a: boom"
    failed = result.records[0]
    assert failed.outcome == DecisionOutcome.FAILED and failed.fallback_reason == "unavailable"
    assert failed.error == "model-a: HTTP 500 from model-a: boom"


async def test_when_every_member_fails_the_rules_answer(env: Env) -> None:
    error = ModelUnavailable("connection refused")
    main = FakeModel(name="main")
    panel = models(error, error, error)
    result = await env.decisions(main, panel).decide(facts(), fresh=True, history=[])

    assert result.draft.source == "rules" and result.draft.consensus is None and result.draft.confidence is None
    assert result.fallback_reason == FallbackReason.UNAVAILABLE
    assert [r.outcome for r in result.records] == [DecisionOutcome.FAILED] * 3 + [DecisionOutcome.USED]
    assert [r.model for r in result.records[:3]] == ["model-a", "model-b", "model-c"]
    assert result.records[-1].source == "rules" and result.records[-1].fallback_reason == "unavailable"
    assert main.calls == []  # the main model is not asked instead
    assert env.metrics.value("alertpilot_ai_consensus_total", agreement="none") == 1
    assert env.metrics.value("alertpilot_decisions_total", source="rules", fallback_reason="unavailable") == 1


async def test_when_every_member_times_out_the_reason_is_timeout(env: Env) -> None:
    panel = [HangingModel("model-a"), HangingModel("model-b")]
    result = await decide_within(env.decisions(FakeModel(name="main"), panel, sla_seconds=0.2), facts())
    assert result.draft.source == "rules" and result.fallback_reason == FallbackReason.TIMEOUT
    assert all(m.cancelled for m in panel) and consensus_tasks() == []
    assert [r.fallback_reason for r in result.records] == ["timeout", "timeout", "timeout"]


async def test_members_failing_for_different_reasons_give_the_rules(env: Env) -> None:
    panel = [*models(ModelUnavailable("HTTP 502"), "not json"), HangingModel("model-c")]
    panel[1].script.append("still not json")  # the repair attempt fails too: invalid output
    result = await decide_within(env.decisions(FakeModel(name="main"), panel, sla_seconds=0.3), facts())
    assert result.draft.source == "rules"
    assert [r.fallback_reason for r in result.records[:3]] == ["unavailable", "invalid_output", "timeout"]
    assert result.fallback_reason == FallbackReason.UNAVAILABLE  # mixed reasons are reported as unavailable
    assert env.metrics.value("alertpilot_ai_consensus_total", agreement="none") == 1


async def test_failed_consensuses_open_the_breaker(env: Env) -> None:
    error = ModelUnavailable("connection refused")
    panel = [FakeModel(*[error] * BREAKER_FAILURES, name=f"model-{n}") for n in "abc"]
    service = env.decisions(FakeModel(name="main"), panel)
    for n in range(BREAKER_FAILURES):
        result = await service.decide(facts(incident_id=n + 1), fresh=True, history=[])
        assert result.fallback_reason == FallbackReason.UNAVAILABLE
    result = await service.decide(facts(incident_id=99), fresh=True, history=[])
    assert result.fallback_reason == FallbackReason.CIRCUIT_OPEN and result.draft.source == "rules"
    assert [len(m.calls) for m in panel] == [BREAKER_FAILURES] * 3  # the panel was not asked again


# --- which incidents get a consensus --------------------------------------------------------------------


async def test_another_severity_asks_only_the_main_model(env: Env) -> None:
    main = FakeModel(proposal(SCALE_TO_ZERO), name="main")
    panel = models(proposal(RESTART), proposal(RESTART), proposal(RESTART))
    result = await env.decisions(main, panel).decide(facts("warning"), fresh=True, history=[])
    assert len(main.calls) == 1 and [len(m.calls) for m in panel] == [0, 0, 0]
    assert result.draft.command == SCALE_TO_ZERO and result.draft.model == "main"
    assert result.draft.consensus is None
    assert [r.outcome for r in result.records] == [DecisionOutcome.USED]
    agreements = ("full", "partial", "none")
    assert sum(env.metrics.value("alertpilot_ai_consensus_total", agreement=a) for a in agreements) == 0


@pytest.mark.parametrize(("configured", "severity"), [("P1", "p1"), ("p1", "P1"), ("Critical", "CRITICAL")])
async def test_severities_match_case_insensitively(env: Env, configured: str, severity: str) -> None:
    main = FakeModel(name="main")
    panel = models(proposal(RESTART), proposal(RESTART))
    result = await env.decisions(main, panel, severities=frozenset({configured})).decide(
        facts(severity), fresh=True, history=[])
    assert [len(m.calls) for m in panel] == [1, 1] and main.calls == []
    assert result.draft.consensus is not None and result.draft.consensus["of"] == 2


async def test_without_a_panel_a_critical_incident_gets_one_analysis(env: Env) -> None:
    main = FakeModel(proposal(RESTART), name="main")
    result = await env.decisions(main, []).decide(facts("critical"), fresh=True, history=[])
    assert len(main.calls) == 1 and result.draft.consensus is None and result.draft.model == "main"


# --- settings -------------------------------------------------------------------------------------------


def test_consensus_models_need_the_ai_model() -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(_env_file=None, consensus_models="a,b")
    assert "ALERTPILOT_CONSENSUS_MODELS needs the AI model" in str(caught.value)
    with pytest.raises(ValidationError, match="ALERTPILOT_CONSENSUS_MODELS"):
        Settings(_env_file=None, consensus_models="a,b")  # type: ignore[call-arg]


def test_consensus_models_with_the_ai_model_give_the_panel() -> None:
    settings = load_settings(_env_file=None, consensus_models="a*2,b@http://127.0.0.1:9/v1/", **AI)
    assert settings.consensus_panel == (PanelMember("a", None, 1), PanelMember("a", None, 2),
                                        PanelMember("b", "http://127.0.0.1:9/v1"))
    assert load_settings(_env_file=None, **AI).consensus_panel == ()  # no panel by default


@pytest.mark.parametrize(
    ("value", "message"),
    [("a", "at least two"), ("a,a", "listed twice"), ("a b,c", "not a model entry"), ("a*9", "between 1 and 7")],
)
def test_a_bad_panel_names_the_variable(value: str, message: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(_env_file=None, consensus_models=value, **AI)
    assert "ALERTPILOT_CONSENSUS_MODELS:" in str(caught.value) and message in str(caught.value)


def test_a_bad_panel_in_the_environment_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALERTPILOT_AI_BASE_URL", AI["ai_base_url"])
    monkeypatch.setenv("ALERTPILOT_AI_MODEL", AI["ai_model"])
    monkeypatch.setenv("ALERTPILOT_CONSENSUS_MODELS", "m*0,n")
    with pytest.raises(SettingsError, match="ALERTPILOT_CONSENSUS_MODELS:"):
        load_settings(_env_file=None)


def test_consensus_severities_are_compared_lower_case_and_checked() -> None:
    assert load_settings(_env_file=None).consensus_severity_set == frozenset({"critical", "p0", "p1"})
    assert load_settings(_env_file=None, consensus_severities=" Sev1 ,P2").consensus_severity_set == {"sev1", "p2"}
    with pytest.raises(SettingsError, match="ALERTPILOT_CONSENSUS_SEVERITIES"):
        load_settings(_env_file=None, consensus_severities="critical,not a severity")


def test_the_analysis_budget_is_never_longer_than_the_sla() -> None:
    default = load_settings(_env_file=None).ai_budget
    assert (default.tokens, default.seconds) == (20000, 20.0)
    short_sla = load_settings(_env_file=None, ai_time_budget_seconds=20, decision_sla_seconds=5).ai_budget
    assert short_sla.seconds == 5
    short_budget = load_settings(_env_file=None, ai_time_budget_seconds=3, decision_sla_seconds=30).ai_budget
    assert short_budget.seconds == 3


def test_a_zero_token_budget_is_no_token_limit() -> None:
    budget = load_settings(_env_file=None, ai_token_budget=0).ai_budget
    assert budget.tokens is None and budget.seconds == 20.0
    with pytest.raises(SettingsError, match="ALERTPILOT_AI_TOKEN_BUDGET"):
        load_settings(_env_file=None, ai_token_budget=-1)
    with pytest.raises(SettingsError, match="ALERTPILOT_AI_TIME_BUDGET_SECONDS"):
        load_settings(_env_file=None, ai_time_budget_seconds=0)
