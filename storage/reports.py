"""The KPI report's figures: SQL aggregates over indexed time columns (alert.first_seen, incident.created_at,
incident.resolved_at, proposal.decided_at, proposal.created_at, execution.finished_at,
knowledgeentry.created_at, silence.ends_at). Nothing here loads rows to count them in Python: a day of a
million-alert database is a handful of range scans."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.tables import (
    Alert,
    Execution,
    ExecutionState,
    Incident,
    IncidentStatus,
    KnowledgeEntry,
    Playbook,
    Proposal,
    ProposalState,
    Silence,
)

# A proposal that a person approved has left these states behind: approved, then executing and its outcomes.
APPROVED_OR_LATER = (
    ProposalState.APPROVED,
    ProposalState.EXECUTING,
    ProposalState.SUCCEEDED,
    ProposalState.FAILED,
    ProposalState.ROLLED_BACK,
    ProposalState.INTERRUPTED,
)
FAILED_RUNS = (ExecutionState.FAILED, ExecutionState.ROLLED_BACK, ExecutionState.INTERRUPTED)
TOP = 5


class ReportRepo:
    def __init__(self, session: AsyncSession) -> None:
        self._s = session

    def _seconds(self, later: Any, earlier: Any) -> ColumnElement[Any]:
        """``later - earlier`` in seconds, in SQL (SQLite keeps datetimes as text: julianday)."""
        if self._s.get_bind().dialect.name == "sqlite":
            return (func.julianday(later) - func.julianday(earlier)) * 86400.0
        return func.extract("epoch", later - earlier)

    async def alerts(self, start: datetime, end: datetime) -> dict[str, int]:
        """Alerts first seen in [start, end): how many, their repeats (re-notifications folded into them), how
        many joined an incident another alert had opened, and how many arrived for a silenced incident."""
        in_period = and_(Alert.first_seen >= start, Alert.first_seen < end)  # type: ignore[operator]
        row = (
            await self._s.execute(
                select(
                    func.count(Alert.id),
                    func.coalesce(func.sum(Alert.repeat_count), 0),
                    func.count(Alert.incident_id),
                    func.count(func.distinct(Alert.incident_id)),
                ).where(in_period)
            )
        ).one()
        silenced = (
            await self._s.execute(
                select(func.count(Alert.id))
                .join(Incident, Incident.id == Alert.incident_id)
                .where(in_period, Incident.silence_id.is_not(None))  # type: ignore[union-attr]
            )
        ).scalar_one()
        return {
            "alerts": int(row[0]),
            "repeats": int(row[1]),
            "grouped": int(row[2]) - int(row[3]),
            "silenced_alerts": int(silenced),
        }

    async def noisiest(self, start: datetime, end: datetime, limit: int = TOP) -> list[dict[str, Any]]:
        """The alert names that notified most in the period (alerts plus their repeats)."""
        notifications = func.count(Alert.id) + func.coalesce(func.sum(Alert.repeat_count), 0)
        rows = await self._s.execute(
            select(Alert.alertname, func.count(Alert.id), notifications.label("n"))
            .where(Alert.first_seen >= start, Alert.first_seen < end)  # type: ignore[operator]
            .group_by(Alert.alertname)
            .order_by(notifications.desc(), Alert.alertname)
            .limit(limit)
        )
        return [{"alertname": name or "—", "alerts": int(alerts), "notifications": int(n)} for name, alerts, n in rows.all()]

    async def incidents(self, start: datetime, end: datetime) -> dict[str, Any]:
        """Incidents opened in the period: how many, silenced, resolved since, and mean time to the first
        human action (MTTA, over those a person acted on)."""
        row = (
            await self._s.execute(
                select(
                    func.count(Incident.id),
                    func.count(Incident.silence_id),
                    func.count(Incident.id).filter(Incident.status == IncidentStatus.RESOLVED),
                    func.avg(self._seconds(Incident.acknowledged_at, Incident.created_at)).filter(
                        Incident.acknowledged_at.is_not(None)  # type: ignore[union-attr]
                    ),
                    func.count(Incident.acknowledged_at),
                ).where(Incident.created_at >= start, Incident.created_at < end)  # type: ignore[operator]
            )
        ).one()
        return {
            "incidents": int(row[0]),
            "silenced_incidents": int(row[1]),
            "resolved_of_opened": int(row[2]),
            "mtta_seconds": None if row[3] is None else float(row[3]),
            "acknowledged": int(row[4]),
        }

    async def resolutions(self, start: datetime, end: datetime) -> dict[str, Any]:
        """Incidents resolved in the period: how many, how many resolved by themselves (no person acted and
        nothing was executed), and mean time to resolve (from the first alert's start)."""
        started = func.coalesce(Incident.started_at, Incident.created_at)
        row = (
            await self._s.execute(
                select(
                    func.count(Incident.id),
                    func.count(Incident.id).filter(
                        Incident.acknowledged_at.is_(None), Incident.remediated_at.is_(None)  # type: ignore[union-attr]
                    ),
                    func.avg(self._seconds(Incident.resolved_at, started)),
                ).where(Incident.resolved_at >= start, Incident.resolved_at < end)  # type: ignore[operator]
            )
        ).one()
        return {"resolved": int(row[0]), "auto_resolved": int(row[1]), "mttr_seconds": None if row[2] is None else float(row[2])}

    async def decisions(self, start: datetime, end: datetime, *, auto_actor: str) -> dict[str, Any]:
        """Proposals decided in the period: approved by a person, rejected, expired; and the median time from
        proposal to human approval."""
        in_period = and_(Proposal.decided_at >= start, Proposal.decided_at < end)  # type: ignore[operator]
        human_approved = and_(
            Proposal.state.in_(APPROVED_OR_LATER),  # type: ignore[attr-defined]
            or_(Proposal.decided_by.is_(None), Proposal.decided_by != auto_actor),  # type: ignore[union-attr]
        )
        row = (
            await self._s.execute(
                select(
                    func.count(Proposal.id).filter(human_approved),
                    func.count(Proposal.id).filter(Proposal.state == ProposalState.REJECTED),
                    func.count(Proposal.id).filter(Proposal.state == ProposalState.EXPIRED),
                ).where(in_period)
            )
        ).one()
        latency = self._seconds(Proposal.decided_at, Proposal.created_at)
        scan = human_approved
        if self._s.get_bind().dialect.name == "sqlite":
            # SQLite has no statistics (nothing runs ANALYZE) and would take ix_proposal_state, reading every
            # approved proposal ever stored; ``state || ''`` is not indexable, so it walks the period's
            # ix_proposal_decided_at range instead.
            scan = and_(
                Proposal.state.op("||")("").in_(APPROVED_OR_LATER),  # type: ignore[attr-defined]
                or_(Proposal.decided_by.is_(None), Proposal.decided_by != auto_actor),  # type: ignore[union-attr]
            )
        p50 = await self._median(latency, and_(in_period, scan))
        return {"human_approved": int(row[0]), "rejected": int(row[1]), "expired": int(row[2]), "approval_p50_seconds": p50}

    async def _median(self, value: ColumnElement[Any], where: ColumnElement[bool]) -> float | None:
        if self._s.get_bind().dialect.name == "postgresql":
            found = (await self._s.execute(select(func.percentile_cont(0.5).within_group(value)).where(where))).scalar_one()
            return None if found is None else float(found)
        n = int((await self._s.execute(select(func.count()).select_from(Proposal).where(where))).scalar_one())
        if n == 0:
            return None
        middle = select(value.label("v")).where(where).order_by(value).offset((n - 1) // 2).limit(2 - n % 2).subquery()
        return float((await self._s.execute(select(func.avg(middle.c.v)))).scalar_one())

    async def executions(self, start: datetime, end: datetime) -> dict[str, int]:
        """Remediations that finished in the period, real ones split by path (auto / approved) and outcome;
        dry runs counted apart (they changed nothing)."""
        real = Execution.dry_run.is_(False)  # type: ignore[attr-defined]
        auto = Execution.auto.is_(True)  # type: ignore[attr-defined]
        manual = Execution.auto.is_(False)  # type: ignore[attr-defined]
        ok = Execution.state == ExecutionState.SUCCEEDED
        bad = Execution.state.in_(FAILED_RUNS)  # type: ignore[attr-defined]
        row = (
            await self._s.execute(
                select(
                    func.count(Execution.id).filter(real, auto, ok),
                    func.count(Execution.id).filter(real, auto, bad),
                    func.count(Execution.id).filter(real, manual, ok),
                    func.count(Execution.id).filter(real, manual, bad),
                    func.count(Execution.id).filter(Execution.dry_run.is_(True)),  # type: ignore[attr-defined]
                ).where(Execution.finished_at >= start, Execution.finished_at < end)  # type: ignore[operator]
            )
        ).one()
        return {
            "auto_succeeded": int(row[0]), "auto_failed": int(row[1]),
            "approved_succeeded": int(row[2]), "approved_failed": int(row[3]), "dry_runs": int(row[4]),
        }

    async def categories(self, start: datetime, end: datetime, limit: int = TOP) -> list[dict[str, Any]]:
        """What the period's incidents were about: the category of each incident's proposals, most first."""
        incidents = func.count(func.distinct(Proposal.incident_id))
        rows = await self._s.execute(
            select(Proposal.category, incidents.label("n"))
            .where(Proposal.created_at >= start, Proposal.created_at < end, Proposal.category != "")  # type: ignore[operator]
            .group_by(Proposal.category)
            .order_by(incidents.desc(), Proposal.category)
            .limit(limit)
        )
        return [{"category": category, "incidents": int(n)} for category, n in rows.all()]

    async def knowledge(self, start: datetime, end: datetime) -> int:
        return int(
            (
                await self._s.execute(
                    select(func.count(KnowledgeEntry.id)).where(
                        KnowledgeEntry.created_at >= start, KnowledgeEntry.created_at < end  # type: ignore[operator]
                    )
                )
            ).scalar_one()
        )

    async def playbooks(self) -> dict[str, int]:
        row = (
            await self._s.execute(
                select(func.count(Playbook.id), func.count(Playbook.id).filter(Playbook.executions > 0)).where(
                    Playbook.enabled.is_(True)  # type: ignore[attr-defined]
                )
            )
        ).one()
        return {"active_playbooks": int(row[0]), "used_playbooks": int(row[1])}

    async def silences_ending(self, start: datetime, end: datetime) -> list[Silence]:
        rows = await self._s.execute(
            select(Silence)
            .where(Silence.removed_at.is_(None), Silence.ends_at >= start, Silence.ends_at < end)  # type: ignore[union-attr,operator]
            .order_by(Silence.ends_at)  # type: ignore[arg-type]
            .limit(20)
        )
        return list(rows.scalars())
