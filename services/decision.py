"""The decision engine (DESIGN §1.3): playbook → AI model → rules, the first useful answer wins, all of it
within the decision SLA.

- A **playbook** answers when its symptoms match (similarity ≥ 0.85, success rate ≥ 0.80 once it has
  executions). A re-analyse skips it: the user asked for a fresh opinion.
- The **AI model** gets the alert, similar past incidents and the top 3 knowledge-base hits (found
  under their own 5 s budget). Errors, timeouts and unusable output fall through to the rules.
- The **rules** always answer.

For severities in ``consensus_severities`` with a panel configured (services/consensus.py), every panel
member analyses the incident in parallel within the same SLA instead; the largest group of proposals with
the same remediation wins, and the record of every vote goes with it (the policy raises the tier on
dissent). Members that have not answered by the SLA are cancelled and count as not agreeing.

Past the SLA the rules' proposal is used and the AI call goes on in the background: its answer is
recorded as a ``late`` decision row (and on the timeline) but does not replace the proposal on the card.
After ``BREAKER_FAILURES`` failures in a row the model is not asked for ``BREAKER_SECONDS``, so a dead
model does not cost every incident the full SLA.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog

from services.ai import AIAdvisor, AIAnswer
from services.consensus import PanelMember, Vote, tally
from services.errors import ModelError
from services.knowledge import KnowledgeService
from services.metrics import Metrics
from services.phrases import N_, phrase
from services.playbooks import PlaybookService
from services.ports import IncidentFacts, ProposalDraft
from services.rules import propose as rules_propose
from services.views import to_context
from storage.clock import Clock
from storage.db import Database
from storage.tables import Decision, DecisionOutcome

log = structlog.get_logger(__name__)

KB_BUDGET_SECONDS = 5.0
KB_HITS = 3
BREAKER_FAILURES = 3
BREAKER_SECONDS = 60.0


class FallbackReason:
    """Why the rules answered. Only the last four are failures of a configured model (the card says so)."""

    NO_MODEL = "no_model"
    TIMEOUT = "timeout"  # the SLA passed (or the model's own request timed out)
    UNAVAILABLE = "unavailable"  # HTTP error, connection refused or reset
    INVALID_OUTPUT = "invalid_output"  # not the JSON asked for, even after the repair attempt
    CIRCUIT_OPEN = "circuit_open"  # the model failed repeatedly just now: not asked


# A consensus member's failure as Details shows it: "<reason>: <error>", one phrase per reason (the error is a
# phrase too when alertpilot wrote it).
_VOTE_ERRORS = {
    FallbackReason.TIMEOUT: N_("timeout: %(error)s"),
    FallbackReason.UNAVAILABLE: N_("unavailable: %(error)s"),
    FallbackReason.INVALID_OUTPUT: N_("invalid_output: %(error)s"),
}


def vote_error(reason: str, error: str) -> str:
    """``"<reason>: <error>"``, a phrase for the known reasons."""
    return phrase(_VOTE_ERRORS[reason], error=error) if reason in _VOTE_ERRORS else f"{reason}: {error}"


def _sla_missed(seconds: float) -> str:
    return phrase("no answer within the %(seconds)s s decision SLA", seconds=f"{seconds:g}")


@dataclass
class DecisionResult:
    draft: ProposalDraft
    fallback_reason: str | None
    latency_ms: int
    records: list[Decision] = field(default_factory=list)  # decision rows to store (failed attempts, the used one)


class DecisionService:
    def __init__(
        self,
        db: Database,
        playbooks: PlaybookService,
        knowledge: KnowledgeService,
        advisor: AIAdvisor | None,
        metrics: Metrics,
        clock: Clock,
        *,
        sla_seconds: float,
        kb_budget_seconds: float = KB_BUDGET_SECONDS,
        panel: Sequence[tuple[PanelMember, AIAdvisor]] = (),
        consensus_severities: frozenset[str] = frozenset(),
        allowed_tools: frozenset[str] = frozenset({"kubectl"}),
    ) -> None:
        """``panel``: the analyses of a consensus, asked instead of ``advisor`` for an incident whose severity
        is in ``consensus_severities`` (compared case-insensitively); ``allowed_tools`` parses their commands."""
        self._panel = tuple(panel)
        self._consensus_severities = frozenset(s.lower() for s in consensus_severities)
        self._allowed_tools = allowed_tools
        self._db, self._playbooks, self._knowledge, self._advisor = db, playbooks, knowledge, advisor
        self._metrics, self._now = metrics, clock
        self.sla_seconds = sla_seconds
        self._kb_budget = kb_budget_seconds
        self._late: set[asyncio.Task[None]] = set()
        self._failures = 0
        self._open_until = 0.0

    @property
    def model_name(self) -> str | None:
        return None if self._advisor is None else self._advisor.model_name

    async def decide(
        self, facts: IncidentFacts, *, fresh: bool, history: list[dict[str, Any]]
    ) -> DecisionResult:
        started = time.monotonic()
        deadline = started + self.sla_seconds
        records: list[Decision] = []
        if not fresh:
            draft = await self._playbook(facts, deadline)
            if draft is not None:
                return self._result(facts, draft, None, started, records, fresh)
        if self._advisor is None:
            return self._result(facts, rules_propose(facts), FallbackReason.NO_MODEL, started, records, fresh)
        if time.monotonic() < self._open_until:
            records.append(self._failed(facts, FallbackReason.CIRCUIT_OPEN, "skipped: the model failed repeatedly", 0, fresh))
            return self._result(facts, rules_propose(facts), FallbackReason.CIRCUIT_OPEN, started, records, fresh)

        knowledge = await self._knowledge_hits(facts, deadline)
        if self._panel and facts.severity.lower() in self._consensus_severities:
            return await self._consensus(facts, knowledge, history, fresh, started, deadline, records)
        ask_started = time.monotonic()
        task = asyncio.create_task(self._advisor.propose(facts, knowledge=knowledge, history=history))
        done, _ = await asyncio.wait({task}, timeout=max(0.0, deadline - time.monotonic()))
        if not done:
            self._follow_late(facts, task, ask_started, fresh)
            records.append(
                self._failed(facts, FallbackReason.TIMEOUT, _sla_missed(self.sla_seconds), _ms(ask_started), fresh)
            )
            self._note_failure()
            return self._result(facts, rules_propose(facts), FallbackReason.TIMEOUT, started, records, fresh)
        try:
            answer = task.result()
        except ModelError as exc:
            self._note_failure()
            records.append(self._failed(facts, exc.reason, str(exc), _ms(ask_started), fresh))
            log.warning("ai_decision_failed", incident_id=facts.incident_id, reason=exc.reason, error=str(exc)[:300])
            return self._result(facts, rules_propose(facts), exc.reason, started, records, fresh)
        self._failures = 0
        assert answer.draft is not None
        return self._result(facts, answer.draft, None, started, records, fresh, answer=answer)

    async def _consensus(
        self, facts: IncidentFacts, knowledge: list[dict[str, Any]], history: list[dict[str, Any]], fresh: bool,
        started: float, deadline: float, records: list[Decision],
    ) -> DecisionResult:
        """Every panel member analyses in parallel until the SLA; the votes are tallied (services/consensus.py).
        No answer at all: the rules, with the members' common failure reason (``unavailable`` when they failed
        for different reasons). Each member's answer or failure is a decision row."""
        ask_started = time.monotonic()
        tasks = [
            (member, asyncio.create_task(advisor.propose(facts, knowledge=knowledge, history=history),
                                         name=f"consensus-{facts.incident_id}-{member.label}"))
            for member, advisor in self._panel
        ]
        _, pending = await asyncio.wait([t for _, t in tasks], timeout=max(0.0, deadline - time.monotonic()))
        for task in pending:  # no late answers here: a vote after the SLA would not change the card
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        votes: list[Vote] = []
        answers: dict[PanelMember, AIAnswer] = {}
        reasons: list[str] = []
        for member, task in tasks:
            if task in pending:
                error, reason = _sla_missed(self.sla_seconds), FallbackReason.TIMEOUT
            elif isinstance(task.exception(), ModelError):
                exc = task.exception()
                assert isinstance(exc, ModelError)
                error, reason = str(exc), exc.reason
            elif task.exception() is not None:
                log.error("consensus_member_failed", incident_id=facts.incident_id, member=member.label,
                          error=repr(task.exception()))
                error, reason = phrase("internal error"), FallbackReason.INVALID_OUTPUT
            else:
                answers[member] = task.result()
                votes.append(Vote(member, draft=task.result().draft))
                continue
            votes.append(Vote(member, error=vote_error(reason, error)[:300]))
            reasons.append(reason)
            records.append(self._failed(facts, reason, f"{member.label}: {error}", _ms(ask_started), fresh, model=member.model))
        consensus = tally(votes, allowed_tools=self._allowed_tools)
        if consensus is None:
            self._metrics.inc("alertpilot_ai_consensus_total", agreement="none")
            self._note_failure()
            reason = reasons[0] if len(set(reasons)) == 1 else FallbackReason.UNAVAILABLE
            log.warning("consensus_failed", incident_id=facts.incident_id, reasons=reasons)
            return self._result(facts, rules_propose(facts), reason, started, records, fresh)
        self._failures = 0
        self._metrics.inc("alertpilot_ai_consensus_total", agreement="full" if consensus.full else "partial")
        lead = consensus.agreeing[0].member
        for member, answer in answers.items():
            if member != lead:
                records.append(self._answered(facts, answer, DecisionOutcome.VOTE, fresh))
        log.info("consensus", incident_id=facts.incident_id, agree=consensus.agree, of=consensus.of,
                 dissent=[v.member.label for v in consensus.dissenting], silent=[v.member.label for v in consensus.silent])
        return self._result(facts, consensus.chosen, None, started, records, fresh, answer=answers[lead])

    async def _playbook(self, facts: IncidentFacts, deadline: float) -> ProposalDraft | None:
        try:
            async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                return await self._playbooks.match(facts)
        except TimeoutError:
            log.warning("playbook_match_timeout", incident_id=facts.incident_id)
        except Exception:
            log.exception("playbook_match_failed", incident_id=facts.incident_id)
        return None

    async def _knowledge_hits(self, facts: IncidentFacts, deadline: float) -> list[dict[str, Any]]:
        budget = min(self._kb_budget, max(0.0, deadline - time.monotonic()))
        summary = facts.annotations.get("summary") or facts.annotations.get("description", "")
        try:
            async with asyncio.timeout(budget):
                hits = await self._knowledge.for_incident(
                    alertname=facts.alertname, service=facts.service, summary=summary, limit=KB_HITS
                )
        except TimeoutError:
            log.warning("knowledge_search_timeout", incident_id=facts.incident_id, budget_seconds=budget)
            return []
        except Exception:
            log.exception("knowledge_search_failed", incident_id=facts.incident_id)
            return []
        return [to_context(hit) for hit in hits]

    def _result(
        self,
        facts: IncidentFacts,
        draft: ProposalDraft,
        reason: str | None,
        started: float,
        records: list[Decision],
        fresh: bool,
        *,
        answer: AIAnswer | None = None,
    ) -> DecisionResult:
        if draft.source != "ai" and draft.confidence is not None:  # only the model claims a confidence
            draft = ProposalDraft(**{**draft.__dict__, "confidence": None})
        latency_ms = _ms(started)
        records.append(
            Decision(
                incident_id=facts.incident_id,
                source=draft.source,
                model=draft.model,
                outcome=DecisionOutcome.USED,
                fallback_reason=reason,
                latency_ms=answer.latency_ms if answer else latency_ms,
                prompt_tokens=answer.prompt_tokens if answer else None,
                completion_tokens=answer.completion_tokens if answer else None,
                response_format=answer.response_format if answer else None,
                repaired=answer.repaired if answer else False,
                proposal=_proposal_json(draft),
                fresh=fresh,
                created_at=self._now(),
            )
        )
        self._metrics.inc("alertpilot_decisions_total", source=draft.source, fallback_reason=reason or "none")
        self._metrics.observe("alertpilot_decision_latency_seconds", time.monotonic() - started, source=draft.source)
        log.info("decided", incident_id=facts.incident_id, source=draft.source, fallback_reason=reason, latency_ms=latency_ms)
        return DecisionResult(draft=draft, fallback_reason=reason, latency_ms=latency_ms, records=records)

    def _failed(
        self, facts: IncidentFacts, reason: str, error: str, latency_ms: int, fresh: bool, *, model: str | None = None
    ) -> Decision:
        return Decision(
            incident_id=facts.incident_id,
            source="ai",
            model=model or self.model_name,
            outcome=DecisionOutcome.FAILED,
            fallback_reason=reason,
            latency_ms=latency_ms,
            error=error[:1000],
            fresh=fresh,
            created_at=self._now(),
        )

    def _answered(
        self, facts: IncidentFacts, answer: AIAnswer, outcome: str, fresh: bool, *, latency_ms: int | None = None
    ) -> Decision:
        """A model's answer kept for the record without becoming the proposal (a late answer, a consensus vote)."""
        assert answer.draft is not None
        return Decision(
            incident_id=facts.incident_id, source="ai", model=answer.model, outcome=outcome,
            latency_ms=answer.latency_ms if latency_ms is None else latency_ms, prompt_tokens=answer.prompt_tokens,
            completion_tokens=answer.completion_tokens, response_format=answer.response_format,
            repaired=answer.repaired, proposal=_proposal_json(answer.draft), fresh=fresh, created_at=self._now(),
        )

    def _note_failure(self) -> None:
        self._failures += 1
        if self._failures >= BREAKER_FAILURES:
            self._open_until = time.monotonic() + BREAKER_SECONDS
            log.warning("ai_circuit_open", failures=self._failures, seconds=BREAKER_SECONDS)

    # --- late answers ---------------------------------------------------------------------------

    def _follow_late(self, facts: IncidentFacts, task: asyncio.Task[AIAnswer], started: float, fresh: bool) -> None:
        late = asyncio.create_task(self._record_late(facts, task, started, fresh), name=f"ai-late-{facts.incident_id}")
        self._late.add(late)
        late.add_done_callback(self._late.discard)

    async def _record_late(self, facts: IncidentFacts, task: asyncio.Task[AIAnswer], started: float, fresh: bool) -> None:
        """Keep the model's answer that came after the SLA: a decision row and a timeline event, no card flip."""
        try:
            answer = await task
        except ModelError as exc:
            log.info("ai_late_failure", incident_id=facts.incident_id, reason=exc.reason)
            return
        self._failures = 0
        assert answer.draft is not None
        now = self._now()
        try:
            async with self._db.write() as tx:
                await tx.decisions.add(self._answered(facts, answer, DecisionOutcome.LATE, fresh, latency_ms=_ms(started)))
                await tx.timeline.add(
                    incident_id=facts.incident_id, at=now, kind="ai_late_answer", model=answer.model,
                    command=answer.draft.command, latency_ms=_ms(started),
                )
        except Exception:
            log.exception("ai_late_answer_not_stored", incident_id=facts.incident_id)
            return
        self._metrics.inc("alertpilot_ai_late_answers_total")
        log.info("ai_late_answer", incident_id=facts.incident_id, latency_ms=_ms(started))

    async def wait_late(self) -> None:
        """Wait for late AI answers in flight (tests and orderly shutdown)."""
        while self._late:
            await asyncio.gather(*self._late, return_exceptions=True)

    async def aclose(self) -> None:
        for task in list(self._late):
            task.cancel()
        with contextlib.suppress(Exception):
            await asyncio.gather(*self._late, return_exceptions=True)


def _proposal_json(draft: ProposalDraft) -> dict[str, Any]:
    return {
        "root_cause": draft.root_cause,
        "command": draft.command,
        "risk": draft.risk,
        "confidence": draft.confidence,
        "reasoning": draft.reasoning,
        "category": draft.category,
        "playbook": draft.playbook_name,
        "steps": list(draft.steps),
        **({"evidence": list(draft.evidence)} if draft.evidence else {}),
        **({"consensus": draft.consensus} if draft.consensus else {}),
    }


def _ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)
