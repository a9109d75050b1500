"""Approve or reject an incident's current proposal: role-checked, compare-and-set, threaded under the card."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import structlog

from services.actions import ActionResult, Actor, Outcome
from services.errors import IncidentNotFound
from services.incidents import incident_ref
from services.notify import Notifier
from services.phrases import phrase
from services.roles import ALL_NAMESPACES, Role, RoleMap
from services.storm import FOLDED_REF, UNFOLDED_REF
from storage.clock import Clock
from storage.db import Database
from storage.repos import Tx
from storage.tables import Approval, Incident, IncidentStatus, Proposal, ProposalState

log = structlog.get_logger(__name__)

DEFAULT_TTL = timedelta(minutes=60)
DECIDED = frozenset({Outcome.APPROVED, Outcome.REJECTED, Outcome.PARTIAL_APPROVAL})  # a signature or a decision


def action_namespace(incident: Incident, proposal: Proposal | None) -> str | None:
    """The namespace an action on this incident touches, for namespace-limited roles: the command's own
    (ALL_NAMESPACES for kubectl -A), else the incident's."""
    spec = (proposal.spec if proposal is not None else None) or {}
    if spec.get("all_namespaces"):
        return ALL_NAMESPACES
    return spec.get("namespace") or incident.namespace or None


class ApprovalService:
    def __init__(
        self, db: Database, notifier: Notifier, roles: RoleMap, clock: Clock, *, ttl: timedelta = DEFAULT_TTL
    ) -> None:
        self._db, self._notify, self._roles, self._now = db, notifier, roles, clock
        self.ttl = ttl

    async def run_expiry(self, every_seconds: float = 30.0) -> None:
        """The expiry worker: proposals not decided within the TTL expire (compare-and-set, so a decision
        racing the expiry wins or loses cleanly, and replicas expire each proposal once)."""
        while True:
            try:
                await self.expire_due()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("expiry_loop_error")
            await asyncio.sleep(every_seconds)

    async def expire_due(self) -> int:
        now = self._now()
        minutes = int(self.ttl.total_seconds() // 60)
        expired = 0
        async with self._db.write() as tx:
            for proposal in await tx.proposals.pending_created_before(now - self.ttl):
                assert proposal.id is not None
                if not await tx.proposals.transition(
                    proposal.id, [ProposalState.PENDING], ProposalState.EXPIRED,
                    decided_at=now, decision_reason=phrase("not decided within %(minutes)s min", minutes=str(minutes)),
                ):
                    continue
                ref = incident_ref(proposal.incident_id)
                await tx.timeline.add(
                    incident_id=proposal.incident_id, at=now, kind="expired", proposal_id=proposal.id, minutes=minutes,
                )
                await self._notify.card(tx, proposal.incident_id, now)
                await self._notify.thread(
                    tx, proposal.incident_id, "expired", {"ref": ref, "minutes": minutes, "command": proposal.command[:300]},
                    now, dedup_key=f"expired:{proposal.id}",
                )
                expired += 1
        if expired:
            self._notify.wake()
            log.info("proposals_expired", count=expired, ttl_minutes=minutes)
        return expired

    async def decide(self, *, incident_id: int, actor: Actor, approve: bool, reason: str = "") -> ActionResult:
        ref = incident_ref(incident_id)
        now = self._now()
        verb = "approve" if approve else "reject"
        async with self._db.write() as tx:
            incident = await tx.incidents.get(incident_id)
            if incident is None:
                raise IncidentNotFound(ref)
            # folded into a storm digest in this chat: whoever acts there sees its card and thread again (a
            # refusal too); a WeCom callback's chat is the app's, so a decision also unfolds it everywhere (below)
            await tx.refs.rename_marker(actor.target.channel, actor.target.chat_id, incident_id, FOLDED_REF, UNFOLDED_REF)
            proposal = await tx.proposals.current(incident_id)
            namespace = action_namespace(incident, proposal)
            if not self._roles.allows(actor.id, Role.APPROVER, namespace=namespace, route=incident.route):
                await tx.timeline.add(
                    incident_id=incident_id, at=now, kind="decision_refused", actor=actor.id, action=verb, name=actor.name
                )
                scoped = self._roles.role_of(actor.id) >= Role.APPROVER  # the role is there, the namespace is not
                result = ActionResult(
                    Outcome.NOT_ALLOWED, ref, needed_role=Role.APPROVER.name.lower(),
                    namespace=namespace if scoped else None,
                )
            elif incident.status == IncidentStatus.RESOLVED:
                result = ActionResult(Outcome.INCIDENT_RESOLVED, ref)
            elif proposal is None:
                result = ActionResult(Outcome.NO_PROPOSAL, ref)
            elif approve:
                result = await self._approve(tx, proposal, actor, reason, now)
            else:
                result = await self._apply(tx, proposal, actor, reason, now, approve=False)
            if result.outcome in DECIDED:  # a decision matters to every chat: none keeps the incident folded
                await tx.refs.rename_markers(incident_id, FOLDED_REF, UNFOLDED_REF)
        self._notify.wake()
        log.info("decision", incident_id=incident_id, actor=actor.id, action=verb, outcome=result.outcome)
        return result

    async def _approve(self, tx: Tx, proposal: Proposal, actor: Actor, reason: str, now: datetime) -> ActionResult:
        """An approval: never of a blocked command, never by its proposer; the two-approver tier needs two
        different approvers (each signature is a unique row; the proposal row is locked while counting)."""
        assert proposal.id is not None
        ref = incident_ref(proposal.incident_id)
        if proposal.state == ProposalState.BLOCKED:
            return ActionResult(Outcome.BLOCKED, ref, state=proposal.blocked_reason)
        if proposal.proposed_by is not None and proposal.proposed_by == actor.id:
            await tx.timeline.add(
                incident_id=proposal.incident_id, at=now, kind="decision_refused", actor=actor.id, action="approve",
                name=actor.name, reason="proposer",
            )
            return ActionResult(Outcome.SELF_APPROVAL, ref)
        if not await tx.proposals.lock_pending(proposal.id):
            await tx.session.refresh(proposal)
            return ActionResult(Outcome.ALREADY_DECIDED, ref, state=proposal.state, by=proposal.decided_by_name)
        required = max(1, proposal.required_approvals or 1)
        if not await tx.approvals.add(
            Approval(proposal_id=proposal.id, incident_id=proposal.incident_id, actor=actor.id, name=actor.name, at=now)
        ):
            count = len(await tx.approvals.of_proposal(proposal.id))
            return ActionResult(Outcome.ALREADY_SIGNED, ref, count=count, required=required)
        count = len(await tx.approvals.of_proposal(proposal.id))
        if count >= required:
            return await self._apply(tx, proposal, actor, reason, now, approve=True)
        await tx.incidents.acknowledge(proposal.incident_id, now)
        await tx.timeline.add(
            incident_id=proposal.incident_id, at=now, kind="approval_signed", actor=actor.id, name=actor.name,
            proposal_id=proposal.id, count=count, required=required,
        )
        await self._notify.card(tx, proposal.incident_id, now)
        await self._notify.thread(
            tx, proposal.incident_id, "decision",
            {"ref": ref, "approved": True, "by": actor.name, "at": now.isoformat(), "reason": "",
             "count": count, "required": required},
            now, dedup_key=f"signed:{proposal.id}:{actor.id}",
        )
        return ActionResult(Outcome.PARTIAL_APPROVAL, ref, count=count, required=required)

    async def _apply(
        self, tx: Tx, proposal: Proposal, actor: Actor, reason: str, now: datetime, *, approve: bool
    ) -> ActionResult:
        """The decision itself: one compare-and-set from pending, a timeline event, the card and a thread."""
        assert proposal.id is not None
        ref = incident_ref(proposal.incident_id)
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
            return ActionResult(Outcome.ALREADY_DECIDED, ref, state=proposal.state, by=proposal.decided_by_name)
        await tx.incidents.acknowledge(proposal.incident_id, now)
        await tx.timeline.add(
            incident_id=proposal.incident_id, at=now, kind=new_state.value, actor=actor.id, name=actor.name,
            proposal_id=proposal.id, reason=reason.strip()[:500],
        )
        await self._notify.card(tx, proposal.incident_id, now)
        required = max(1, proposal.required_approvals or 1)
        await self._notify.thread(
            tx,
            proposal.incident_id,
            "decision",
            {"ref": ref, "approved": approve, "by": actor.name, "at": now.isoformat(), "reason": reason.strip()[:300],
             "count": required if approve else 0, "required": required},
            now,
            dedup_key=f"decision:{proposal.id}",
        )
        return ActionResult(Outcome.APPROVED if approve else Outcome.REJECTED, ref)
