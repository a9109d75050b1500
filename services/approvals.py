"""Approve or reject an incident's current proposal: role-checked, compare-and-set, threaded under the card."""

from __future__ import annotations

import structlog

from services.actions import ActionResult, Actor, Outcome
from services.errors import IncidentNotFound
from services.incidents import incident_ref
from services.notify import Notifier
from services.roles import Role, RoleMap
from storage.clock import Clock
from storage.db import Database
from storage.tables import IncidentStatus, ProposalState

log = structlog.get_logger(__name__)


class ApprovalService:
    def __init__(self, db: Database, notifier: Notifier, roles: RoleMap, clock: Clock) -> None:
        self._db, self._notify, self._roles, self._now = db, notifier, roles, clock

    async def decide(self, *, incident_id: int, actor: Actor, approve: bool, reason: str = "") -> ActionResult:
        ref = incident_ref(incident_id)
        now = self._now()
        verb = "approve" if approve else "reject"
        async with self._db.write() as tx:
            incident = await tx.incidents.get(incident_id)
            if incident is None:
                raise IncidentNotFound(ref)
            if not self._roles.allows(actor.id, Role.APPROVER):
                await tx.timeline.add(
                    incident_id=incident_id, at=now, kind="decision_refused", actor=actor.id, action=verb, name=actor.name
                )
                result = ActionResult(Outcome.NOT_ALLOWED, ref, needed_role=Role.APPROVER.name.lower())
            elif incident.status == IncidentStatus.RESOLVED:
                result = ActionResult(Outcome.INCIDENT_RESOLVED, ref)
            elif (proposal := await tx.proposals.current(incident_id)) is None:
                result = ActionResult(Outcome.NO_PROPOSAL, ref)
            else:
                assert proposal.id is not None
                new_state = ProposalState.APPROVED if approve else ProposalState.REJECTED
                applied = await tx.proposals.transition(
                    proposal.id,
                    [ProposalState.PENDING],
                    new_state,
                    decided_by=actor.id,
                    decided_by_name=actor.name,
                    decided_at=now,
                    decision_reason=reason.strip()[:500] or None,
                )
                if not applied:
                    await tx.session.refresh(proposal)
                    result = ActionResult(Outcome.ALREADY_DECIDED, ref, state=proposal.state, by=proposal.decided_by_name)
                else:
                    await tx.incidents.acknowledge(incident_id, now)
                    await tx.timeline.add(
                        incident_id=incident_id, at=now, kind=new_state.value, actor=actor.id, name=actor.name,
                        proposal_id=proposal.id, reason=reason.strip()[:500],
                    )
                    await self._notify.card(tx, incident_id, now)
                    await self._notify.thread(
                        tx,
                        incident_id,
                        "decision",
                        {"ref": ref, "approved": approve, "by": actor.name, "at": now.isoformat(), "reason": reason.strip()[:300]},
                        now,
                        dedup_key=f"decision:{proposal.id}",
                    )
                    result = ActionResult(Outcome.APPROVED if approve else Outcome.REJECTED, ref)
        self._notify.wake()
        log.info("decision", incident_id=incident_id, actor=actor.id, action=verb, outcome=result.outcome)
        return result
