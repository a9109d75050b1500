"""Analysis: turn an incident into a proposal through the decision engine, durably.

``needs_analysis`` on the incident is the to-do. The worker claims an incident (compare-and-set, so one
process does it), asks the decision engine, and stores the decision rows and the proposal, clears the
to-do and queues the card edit in one transaction. A crash in between leaves the to-do set, and the claim
expires, so it is done again. Several incidents are analysed at once (a slow model must not make the
second incident of a storm wait for the first one's SLA).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import timedelta

import structlog

from services.actions import ActionResult, Actor, Outcome
from services.decision import DecisionResult, DecisionService
from services.errors import IncidentNotFound
from services.incidents import incident_ref
from services.notify import Notifier, Wakeup
from services.phrases import N_
from services.policy import RemediationPolicy, assessment_fields
from services.ports import IncidentFacts
from services.queries import IncidentQueries
from services.reviews import GitOpsReviews
from services.roles import Role, RoleMap
from services.rules import propose as rules_propose
from services.safety import Tier
from services.views import REPLACEABLE, clip
from storage.clock import Clock
from storage.db import Database
from storage.tables import Decision, DecisionOutcome, IncidentStatus, Proposal, ProposalState

log = structlog.get_logger(__name__)

CLAIM_MARGIN = timedelta(seconds=60)  # a claim outlives the decision SLA by this much before others may retry
CONCURRENCY = 8
FACT_ALERTS = 20  # the alerts an analysis shows the engine (the first ones; an incident may have thousands)
# Undecided, or finished without fixing it (failed, rolled back, interrupted): a fresh opinion may replace it.
REANALYSABLE = (ProposalState.PENDING, *REPLACEABLE)
# A trusted proposal scored ≤ 10 with auto-remediation on is approved by alertpilot itself.
AUTO_DECISION = {
    "decided_by": "alertpilot",
    "decided_by_name": N_("alertpilot (auto)"),
    "decision_reason": N_("auto-remediation: low blast radius, trusted proposal"),
}
SHUTDOWN_GRACE_SECONDS = 1.0


class AnalysisService:
    def __init__(
        self,
        db: Database,
        decisions: DecisionService,
        policy: RemediationPolicy,
        queries: IncidentQueries,
        notifier: Notifier,
        roles: RoleMap,
        clock: Clock,
        wakeup: Wakeup,
        *,
        owner: str | None = None,
        poll_seconds: float = 2.0,
        reviews: GitOpsReviews | None = None,
    ) -> None:
        self._reviews = reviews
        self._db, self._decisions, self._policy, self._queries = db, decisions, policy, queries
        self._notify, self._roles, self._now = notifier, roles, clock
        self._claim_ttl = timedelta(seconds=decisions.sla_seconds) + CLAIM_MARGIN
        self._wakeup = wakeup
        self._listener = wakeup.listener()
        self._owner = owner or f"analysis-{uuid.uuid4().hex[:8]}"
        self._poll = poll_seconds
        self._in_flight: dict[int, asyncio.Task[bool]] = {}
        self._draining = False

    def wake(self) -> None:
        self._wakeup.set()

    async def run(self) -> None:
        """The worker loop: keep up to CONCURRENCY analyses in flight, starting the next waiting incident as
        soon as one finishes (a slow model's batch does not hold back incidents that arrive meanwhile)."""
        try:
            while True:
                try:
                    await self._start_waiting()
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("analysis_loop_error")
                await self._listener.wait(self._poll)
        finally:
            # Shutting down: analyses that are storing their result get a moment to commit; the rest (waiting
            # on a model) are cancelled, and their claims expire or are released at the next start.
            in_flight = list(self._in_flight.values())
            if in_flight:
                _, unfinished = await asyncio.wait(in_flight, timeout=SHUTDOWN_GRACE_SECONDS)
                for task in unfinished:
                    task.cancel()
                await asyncio.gather(*in_flight, return_exceptions=True)

    async def drain(self, timeout: float) -> None:
        """Shutting down (SIGTERM): start nothing new and give the analyses in progress ``timeout`` seconds to
        finish; what is left when run() is cancelled is redone by the next start or another replica."""
        self._draining = True
        if self._in_flight:
            log.info("analysis_draining", in_flight=len(self._in_flight))
            await asyncio.wait(list(self._in_flight.values()), timeout=timeout)

    async def _start_waiting(self) -> None:
        free = CONCURRENCY - len(self._in_flight)
        if free <= 0 or self._draining:
            return
        async with self._db.read() as tx:
            waiting = await tx.incidents.awaiting_analysis(
                self._now() - self._claim_ttl, limit=CONCURRENCY + len(self._in_flight)
            )
        for incident_id in [i for i in waiting if i not in self._in_flight][:free]:
            task = asyncio.create_task(self.analyse(incident_id), name=f"analyse-{incident_id}")
            self._in_flight[incident_id] = task
            task.add_done_callback(lambda done, i=incident_id: self._finished(i, done))

    def _finished(self, incident_id: int, task: asyncio.Task[bool]) -> None:
        self._in_flight.pop(incident_id, None)
        if not task.cancelled() and task.exception() is not None:
            log.error("analysis_failed", incident_id=incident_id, error=repr(task.exception()))
        self.wake()  # a slot is free: look for the next waiting incident

    async def release_own_claims(self) -> None:
        """At start-up of a single-process deployment: analyses a killed process had claimed go again."""
        async with self._db.write() as tx:
            await tx.incidents.release_analysis_claims()

    async def run_pending(self) -> int:
        """Analyse everything waiting now and return how many were done (tests and tools; the worker loop
        is ``run``)."""
        done = 0
        while True:
            now = self._now()
            async with self._db.read() as tx:
                waiting = await tx.incidents.awaiting_analysis(now - self._claim_ttl, limit=CONCURRENCY)
            if not waiting:
                return done
            results = await asyncio.gather(*(self.analyse(i) for i in waiting), return_exceptions=True)
            for incident_id, result in zip(waiting, results, strict=True):
                if isinstance(result, BaseException):
                    if isinstance(result, asyncio.CancelledError):
                        raise result
                    log.error("analysis_failed", incident_id=incident_id, error=repr(result))
                elif result:
                    done += 1
            if not any(r is True for r in results):
                return done  # nothing could be claimed (another worker has them): do not spin

    async def analyse(self, incident_id: int) -> bool:
        now = self._now()
        async with self._db.write(small=True) as tx:  # a storm analyses thousands of these: see Database.write
            if not await tx.incidents.claim_analysis(incident_id, self._owner, now, now - self._claim_ttl):
                return False
            incident = await tx.incidents.get(incident_id)
            assert incident is not None
            alerts = await tx.alerts.of_incident(incident_id, limit=FACT_ALERTS)
            history = await self._queries.history(tx, incident)
        first = alerts[0] if alerts else None
        facts = IncidentFacts(
            incident_id=incident_id,
            alertname=incident.alertname,
            severity=incident.severity,
            service=incident.service,
            namespace=incident.namespace,
            labels=dict(incident.common_labels) or (dict(first.labels) if first else {}),
            annotations=dict(first.annotations) if first else {},
            alerts=[{"labels": a.labels, "annotations": a.annotations, "status": a.status} for a in alerts],
        )
        # A re-analyse (requested by someone) asks for a fresh opinion: the playbook is skipped.
        requested_by = incident.analysis_requested_by
        started = time.monotonic()
        try:
            result = await self._decisions.decide(facts, fresh=requested_by is not None, history=history)
        except Exception as exc:
            # The engine promises an answer; if it breaks that promise, the rules answer.
            log.exception("decision_engine_failed", incident_id=incident_id)
            draft = rules_propose(facts)
            record = Decision(incident_id=incident_id, source="rules", outcome=DecisionOutcome.USED,
                              fallback_reason="engine_error", error=repr(exc)[:1000], created_at=self._now())
            result = DecisionResult(draft, "engine_error", int((time.monotonic() - started) * 1000), [record])
        await self._store(incident_id, result, requested_by=requested_by)
        return True

    async def _store(self, incident_id: int, result: DecisionResult, requested_by: str | None) -> None:
        now, draft = self._now(), result.draft
        async with self._db.write(small=True) as tx:
            if not await tx.incidents.finish_analysis(incident_id, self._owner):
                log.warning("analysis_claim_lost", incident_id=incident_id)
                return
            incident = await tx.incidents.get(incident_id)
            assert incident is not None
            used: Decision | None = None
            for record in result.records:
                await tx.decisions.add(record)
                if record.outcome == DecisionOutcome.USED:
                    used = record
            previous = await tx.proposals.current(incident_id) or await tx.proposals.previous(incident_id)
            playbook = None if draft.playbook_id is None else await tx.playbooks.get(draft.playbook_id)
            assessment = self._policy.assess(
                draft,
                playbook_runs=playbook.executions if playbook else 0,
                playbook_successes=playbook.successes if playbook else 0,
            )
            state, auto = initial_state(incident.status == IncidentStatus.FIRING, assessment.tier)
            proposal = await tx.proposals.add_current(
                Proposal(
                    incident_id=incident_id,
                    state=state,
                    **assessment_fields(assessment),
                    **(AUTO_DECISION | {"decided_at": now} if auto else {}),
                    source=draft.source,
                    model=draft.model,
                    category=draft.category,
                    root_cause=draft.root_cause,
                    command=draft.command,
                    risk=draft.risk,
                    reasoning=draft.reasoning,
                    confidence=draft.confidence if draft.source == "ai" else None,
                    latency_ms=result.latency_ms,
                    requested_by=requested_by,
                    created_at=now,
                    decision_id=None if used is None else used.id,
                    fallback_reason=result.fallback_reason,
                    playbook_id=draft.playbook_id,
                    playbook_name=draft.playbook_name,
                    steps=list(draft.steps) or None,
                    tool_calls=len(draft.evidence) or None,
                    consensus=self._policy.vote_tiers(draft, assessment),
                )
            )
            await tx.timeline.add(
                incident_id=incident_id, at=now, kind="proposed", actor=requested_by,
                proposal_id=proposal.id, source=draft.source, model=draft.model, command=draft.command,
                latency_ms=result.latency_ms, fallback_reason=result.fallback_reason,
                blast_score=assessment.score.value, tier=assessment.tier.value,
            )
            if auto:
                await tx.timeline.add(
                    incident_id=incident_id, at=now, kind="approved", actor=AUTO_DECISION["decided_by"],
                    name=AUTO_DECISION["decided_by_name"], proposal_id=proposal.id, reason=AUTO_DECISION["decision_reason"],
                )
            await tx.outbox.expedite_cards(incident_id, now)
            await self._notify.card(tx, incident_id, now)
            if requested_by is not None and previous is not None:
                await self._notify.thread(
                    tx, incident_id, "reanalysed",
                    {"ref": incident_ref(incident_id), "old": clip(previous.command, 300), "new": clip(draft.command, 300),
                     "source": draft.source, "model": draft.model, "fallback_reason": result.fallback_reason},
                    now,
                )
        self._notify.wake(decided=auto)  # auto-approved: the execution worker starts it
        if self._reviews is not None and state is ProposalState.PENDING and assessment.tier is Tier.TWO:
            self._reviews.request(incident_id, proposal.id or 0)
        log.info("proposal_stored", incident_id=incident_id, source=draft.source, latency_ms=result.latency_ms)

    async def reanalyse(self, *, incident_id: int, actor: Actor) -> ActionResult:
        ref = incident_ref(incident_id)
        now = self._now()
        async with self._db.write() as tx:
            incident = await tx.incidents.get(incident_id)
            if incident is None:
                raise IncidentNotFound(ref)
            proposal = await tx.proposals.current(incident_id)
            if not self._roles.allows(actor.id, Role.OPERATOR, namespace=incident.namespace or None, route=incident.route):
                await tx.timeline.add(incident_id=incident_id, at=now, kind="reanalyse_refused", actor=actor.id, name=actor.name)
                result = ActionResult(Outcome.NOT_ALLOWED, ref, needed_role=Role.OPERATOR.name.lower())
            elif incident.status == IncidentStatus.RESOLVED:
                result = ActionResult(Outcome.INCIDENT_RESOLVED, ref)
            elif incident.needs_analysis:
                result = ActionResult(Outcome.ANALYSIS_RUNNING, ref)
            elif proposal is not None and proposal.state not in REANALYSABLE:
                result = ActionResult(Outcome.NOT_REANALYSABLE, ref, state=proposal.state, by=proposal.decided_by_name)
            elif proposal is not None and not await tx.proposals.transition(
                proposal.id or 0, list(REANALYSABLE), ProposalState.SUPERSEDED
            ):
                await tx.session.refresh(proposal)
                result = ActionResult(Outcome.NOT_REANALYSABLE, ref, state=proposal.state, by=proposal.decided_by_name)
            elif not await tx.incidents.request_analysis(incident_id, actor.id):
                result = ActionResult(Outcome.ANALYSIS_RUNNING, ref)
            else:
                await tx.timeline.add(incident_id=incident_id, at=now, kind="reanalyse_requested", actor=actor.id, name=actor.name)
                await self._notify.card(tx, incident_id, now)
                result = ActionResult(Outcome.REANALYSING, ref)
        if result.outcome is Outcome.REANALYSING:
            self.wake()
            self._notify.wake()
        log.info("reanalyse", incident_id=incident_id, actor=actor.id, outcome=result.outcome)
        return result


def initial_state(firing: bool, tier: Tier) -> tuple[ProposalState, bool]:
    """A new proposal's state from its tier: (state, approved automatically)."""
    if not firing:
        return ProposalState.EXPIRED, False
    if tier is Tier.BLOCKED:
        return ProposalState.BLOCKED, False
    if tier is Tier.AUTO:
        return ProposalState.APPROVED, True
    return ProposalState.PENDING, False
