"""/run <command> [INC-12]: a person proposes a command. It goes through the same remediation policy as
any proposal (parsed, scored, tiered), replaces the incident's undecided proposal (with a threaded note)
or opens its own incident and card, and records its proposer, who can then never approve it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import structlog

from services.actions import ActionResult, Actor, Outcome
from services.analysis import REANALYSABLE, initial_state
from services.errors import IncidentNotFound
from services.incidents import incident_ref
from services.notify import Notifier
from services.phrases import phrase
from services.policy import RemediationPolicy, assessment_fields
from services.ports import ProposalDraft
from services.reviews import GitOpsReviews
from services.roles import ALL_NAMESPACES, Role, RoleMap
from services.safety import Tier
from services.views import clip
from storage.clock import Clock
from storage.db import Database
from storage.repos import Tx
from storage.tables import Incident, IncidentStatus, Proposal, ProposalState

log = structlog.get_logger(__name__)

MAX_COMMAND = 500


class ManualProposals:
    def __init__(
        self, db: Database, policy: RemediationPolicy, notifier: Notifier, roles: RoleMap, clock: Clock,
        *, reviews: GitOpsReviews | None = None,
    ) -> None:
        self._db, self._policy, self._notify, self._roles, self._now = db, policy, notifier, roles, clock
        self._reviews = reviews

    async def run(self, *, actor: Actor, command: str, incident_id: int | None) -> ActionResult:
        command = command.strip()
        ref = incident_ref(incident_id) if incident_id is not None else ""
        if not command or len(command) > MAX_COMMAND:
            return ActionResult(Outcome.BAD_COMMAND, ref, count=MAX_COMMAND)
        draft = ProposalDraft(
            source="human", root_cause=phrase("proposed by %(name)s", name=actor.name), command=command, risk="",
            reasoning="", category="manual",
        )
        assessment = self._policy.assess(draft)
        spec = assessment.spec.to_json() if assessment.spec is not None else {}
        now = self._now()
        async with self._db.write() as tx:
            incident = None if incident_id is None else await tx.incidents.get(incident_id)
            if incident_id is not None and incident is None:
                raise IncidentNotFound(ref)
            namespace = (ALL_NAMESPACES if spec.get("all_namespaces") else spec.get("namespace")) or (
                incident.namespace if incident is not None else None
            ) or None
            route = incident.route if incident is not None else None
            if not self._roles.allows(actor.id, Role.OPERATOR, namespace=namespace, route=route):
                if incident is not None:
                    await tx.timeline.add(incident_id=incident.id, at=now, kind="run_refused", actor=actor.id,
                                          name=actor.name, command=clip(command, 300))
                return ActionResult(Outcome.NOT_ALLOWED, ref, needed_role=Role.OPERATOR.name.lower(),
                                    namespace=namespace if self._roles.role_of(actor.id) >= Role.OPERATOR else None)
            if incident is None:
                incident = await self._open_manual_incident(tx, actor, spec, now)
            else:
                refusal = await self._replace_current(tx, incident, ref)
                if refusal is not None:
                    return refusal
            assert incident.id is not None
            ref = incident_ref(incident.id)
            state, _ = initial_state(True, assessment.tier)
            if state is ProposalState.APPROVED:  # a person's proposal is never trusted for auto-remediation
                state = ProposalState.PENDING
            proposal = await tx.proposals.add_current(
                Proposal(
                    incident_id=incident.id, state=state, source="human", category="manual",
                    root_cause=draft.root_cause, command=command, risk="", reasoning="", requested_by=actor.id,
                    proposed_by=actor.id, created_at=now, **assessment_fields(assessment),
                )
            )
            await tx.timeline.add(
                incident_id=incident.id, at=now, kind="run_proposed", actor=actor.id, name=actor.name,
                proposal_id=proposal.id, command=clip(command, 300), blast_score=assessment.score.value,
                tier=assessment.tier.value,
            )
            await self._notify.card(tx, incident.id, now)
            if incident_id is not None:
                await self._notify.thread(
                    tx, incident.id, "run_proposed",
                    {"ref": ref, "by": actor.name, "command": clip(command, 300), "blast_score": assessment.score.value,
                     "tier": assessment.tier.value},
                    now,
                )
        self._notify.wake()
        if self._reviews is not None and state is ProposalState.PENDING and assessment.tier is Tier.TWO:
            self._reviews.request(incident.id, proposal.id or 0)
        log.info("run_proposed", incident_id=incident.id, actor=actor.id, tier=assessment.tier.value)
        return ActionResult(Outcome.PROPOSED, ref, state=assessment.tier.value, count=assessment.score.value)

    async def _replace_current(self, tx: Tx, incident: Incident, ref: str) -> ActionResult | None:
        """Supersede the incident's undecided proposal; the reason it cannot be replaced otherwise."""
        assert incident.id is not None
        if incident.status == IncidentStatus.RESOLVED:
            return ActionResult(Outcome.INCIDENT_RESOLVED, ref)
        if incident.needs_analysis:
            return ActionResult(Outcome.ANALYSIS_RUNNING, ref)
        current = await tx.proposals.current(incident.id)
        if current is not None and not await tx.proposals.transition(
            current.id or 0, list(REANALYSABLE), ProposalState.SUPERSEDED
        ):
            await tx.session.refresh(current)
            return ActionResult(Outcome.NOT_REANALYSABLE, ref, state=current.state, by=current.decided_by_name)
        return None

    async def _open_manual_incident(self, tx: Tx, actor: Actor, spec: dict[str, Any], now: datetime) -> Incident:
        """A standalone /run gets its own incident (and so its own card), opened by the person."""
        target = spec.get("name") or spec.get("kind") or "command"
        return await tx.incidents.add(
            Incident(
                source="manual", alertname="ManualRun", title=clip(f"/run by {actor.name}", 200), severity="info",
                service=clip(str(target), 80), namespace=clip(str(spec.get("namespace") or ""), 80),
                created_at=now, started_at=now, updated_at=now, acknowledged_at=now, needs_analysis=False,
            )
        )

