"""Reminders: a proposal that has waited ALERTPILOT_APPROVAL_REMINDER_MINUTES for approval gets one threaded
reminder under its card that @mentions the people who may approve it; after a second interval, one
escalation message goes to the report chats. Each happens once (compare-and-set on the proposal), and
never for a silenced incident or a proposal that was decided meanwhile.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import structlog

from services.approvals import action_namespace
from services.incidents import incident_ref
from services.notify import Notifier
from services.ports import ChatTarget
from services.roles import Role, RoleMap
from services.views import clip, started_of
from storage.clock import Clock
from storage.db import Database
from storage.repos import Tx
from storage.tables import Incident, Proposal

log = structlog.get_logger(__name__)

MENTIONS_MAX = 10
PLATFORMS = {"tg": "telegram", "wecom": "wecom"}


def approver_mentions(roles: RoleMap, namespace: str | None, route: str | None = None) -> dict[str, list[str]]:
    """The ids to @mention per channel: ``{"telegram": ["111"], "wecom": ["alice"]}``."""
    found: dict[str, list[str]] = {"telegram": [], "wecom": []}
    for actor in roles.holders(Role.APPROVER, namespace=namespace, route=route):
        platform, _, ident = actor.partition(":")
        if platform in PLATFORMS and len(found[PLATFORMS[platform]]) < MENTIONS_MAX:
            found[PLATFORMS[platform]].append(ident)
    return found


class ReminderService:
    def __init__(
        self,
        db: Database,
        notifier: Notifier,
        roles: RoleMap,
        clock: Clock,
        *,
        after: timedelta,
        escalate_to: Sequence[ChatTarget],
    ) -> None:
        self._db, self._notify, self._roles, self._now = db, notifier, roles, clock
        self.after, self.escalate_to = after, tuple(escalate_to)

    async def remind_due(self) -> tuple[int, int]:
        """Send the reminders and escalations that are due now; (reminded, escalated)."""
        now = self._now()
        reminded = escalated = 0
        async with self._db.write() as tx:
            for proposal in await tx.proposals.awaiting_reminder(now - self.after):
                assert proposal.id is not None
                if await tx.proposals.mark_reminded(proposal.id, now):
                    await self._remind(tx, proposal, now)
                    reminded += 1
            for proposal in await tx.proposals.awaiting_reminder(now - 2 * self.after, reminded_before=now - self.after):
                assert proposal.id is not None
                if await tx.proposals.mark_reminded(proposal.id, now, escalated=True):
                    await self._escalate(tx, proposal, now)
                    escalated += 1
        if reminded or escalated:
            self._notify.wake()
            log.info("approval_reminders", reminded=reminded, escalated=escalated)
        return reminded, escalated

    async def _context(self, tx: Tx, proposal: Proposal, now: datetime) -> tuple[Incident, dict[str, Any]]:
        incident = await tx.incidents.get(proposal.incident_id)
        assert incident is not None
        signed = await tx.approvals.of_proposal(proposal.id or 0)
        return incident, {
            "ref": incident_ref(proposal.incident_id),
            "title": clip(incident.alertname or incident.title, 120),
            "service": clip(incident.service, 80),
            "namespace": clip(incident.namespace, 80),
            "severity": clip(incident.severity, 20),
            "command": clip(proposal.command, 300),
            "blast_score": proposal.blast_score,
            "required": max(1, proposal.required_approvals or 1),
            "signed": len(signed),
            "waiting_minutes": max(0, round((now - proposal.created_at).total_seconds() / 60)),
            "firing_minutes": max(0, round((now - started_of(incident)).total_seconds() / 60)),
            "mentions": approver_mentions(self._roles, action_namespace(incident, proposal), incident.route),
        }

    async def _remind(self, tx: Tx, proposal: Proposal, now: datetime) -> None:
        incident, context = await self._context(tx, proposal, now)
        await tx.timeline.add(incident_id=incident.id, at=now, kind="reminded", proposal_id=proposal.id)
        await self._notify.thread(tx, proposal.incident_id, "reminder", context, now, dedup_key=f"reminder:{proposal.id}")

    async def _escalate(self, tx: Tx, proposal: Proposal, now: datetime) -> None:
        incident, context = await self._context(tx, proposal, now)
        await tx.timeline.add(incident_id=incident.id, at=now, kind="escalated", proposal_id=proposal.id)
        context = {**context, "escalation": True}
        cards = await self._notify.targets_of(tx, proposal.incident_id)
        for target in self.escalate_to:
            key = f"escalation:{proposal.id}:{target.channel}:{target.chat_id}"
            if target in cards:
                await self._notify.thread(tx, proposal.incident_id, "reminder", context, now, targets=[target], dedup_key=key)
            else:
                await self._notify.answer(tx, target, "reminder", context, now, incident_id=proposal.incident_id,
                                          dedup_key=key)
