"""Repositories: every query lives here. Services receive a ``Tx`` (one session, one transaction) and call
these; state changes are compare-and-set UPDATEs (``WHERE state = <expected>``) that report whether they
applied, so double clicks and replicas cannot apply a change twice."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import and_, bindparam, delete, func, or_, select, text, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from storage.reports import ReportRepo
from storage.tables import (
    Alert,
    AlertStatus,
    Approval,
    Decision,
    Execution,
    ExecutionAttempt,
    ExecutionState,
    Incident,
    IncidentStatus,
    KeyValue,
    KnowledgeEntry,
    Lease,
    MessageRef,
    Outbox,
    OutboxKind,
    OutboxState,
    Playbook,
    Postmortem,
    PostmortemState,
    Proposal,
    ProposalState,
    Silence,
    TelegramUpdate,
    TimelineEvent,
)

IN_CHUNK = 500  # ids per IN (...) list: well under SQLite's variable limit


class IncidentRepo:
    def __init__(self, session: AsyncSession) -> None:
        self._s = session

    async def get(self, incident_id: int) -> Incident | None:
        return await self._s.get(Incident, incident_id)

    async def find_open(self, open_key: str) -> Incident | None:
        return (await self._s.execute(select(Incident).where(Incident.open_key == open_key))).scalar_one_or_none()

    async def find_open_many(self, open_keys: Sequence[str]) -> dict[str, Incident]:
        """The open incident of each of these keys that has one, by open key."""
        return {i.open_key: i for i in await _rows_where_in(self._s, Incident, "open_key", open_keys) if i.open_key}

    async def add(self, incident: Incident) -> Incident:
        self._s.add(incident)
        await self._s.flush()
        return incident

    async def add_all(self, incidents: Sequence[Incident]) -> None:
        """Insert these new incidents together (one statement where the database returns the ids of many)."""
        self._s.add_all(incidents)
        await self._s.flush()

    async def resolve(self, incident_id: int, at: datetime) -> bool:
        result = await self._s.execute(
            update(Incident)
            .where(Incident.id == incident_id, Incident.status == IncidentStatus.FIRING)
            .values(status=IncidentStatus.RESOLVED, open_key=None, resolved_at=at, updated_at=at)
        )
        return result.rowcount == 1

    async def mark_remediated(self, incident_id: int, at: datetime) -> None:
        await self._s.execute(
            update(Incident)
            .where(Incident.id == incident_id, Incident.remediated_at.is_(None))  # type: ignore[union-attr]
            .values(remediated_at=at, updated_at=at)
        )

    async def acknowledge(self, incident_id: int, at: datetime) -> None:
        await self._s.execute(
            update(Incident)
            .where(Incident.id == incident_id, Incident.acknowledged_at.is_(None))  # type: ignore[union-attr]
            .values(acknowledged_at=at)
        )

    async def request_analysis(self, incident_id: int, by: str | None) -> bool:
        result = await self._s.execute(
            update(Incident)
            .where(
                Incident.id == incident_id,
                Incident.status == IncidentStatus.FIRING,
                Incident.needs_analysis.is_(False),  # type: ignore[attr-defined]
            )
            .values(needs_analysis=True, analysis_claimed_by=None, analysis_claimed_at=None, analysis_requested_by=by)
        )
        return result.rowcount == 1

    async def awaiting_analysis(self, stale_before: datetime, limit: int = 20) -> list[int]:
        claimable = or_(
            Incident.analysis_claimed_at.is_(None),  # type: ignore[union-attr]
            Incident.analysis_claimed_at < stale_before,  # type: ignore[operator]
        )
        rows = await self._s.execute(
            select(Incident.id).where(Incident.needs_analysis.is_(True), claimable).order_by(Incident.id).limit(limit)  # type: ignore[attr-defined]
        )
        return list(rows.scalars())

    async def claim_analysis(self, incident_id: int, owner: str, now: datetime, stale_before: datetime) -> bool:
        result = await self._s.execute(
            update(Incident)
            .where(
                Incident.id == incident_id,
                Incident.needs_analysis.is_(True),  # type: ignore[attr-defined]
                or_(Incident.analysis_claimed_at.is_(None), Incident.analysis_claimed_at < stale_before),  # type: ignore[union-attr,operator]
            )
            .values(analysis_claimed_by=owner, analysis_claimed_at=now)
        )
        return result.rowcount == 1

    async def finish_analysis(self, incident_id: int, owner: str) -> bool:
        result = await self._s.execute(
            update(Incident)
            .where(Incident.id == incident_id, Incident.analysis_claimed_by == owner, Incident.needs_analysis.is_(True))  # type: ignore[attr-defined]
            .values(needs_analysis=False, analysis_claimed_by=None, analysis_claimed_at=None)
        )
        return result.rowcount == 1

    async def release_analysis_claims(self) -> int:
        """Make analyses claimed by a process that died claimable at once (single-process start-up)."""
        result = await self._s.execute(
            update(Incident)
            .where(Incident.needs_analysis.is_(True), Incident.analysis_claimed_by.is_not(None))  # type: ignore[attr-defined,union-attr]
            .values(analysis_claimed_by=None, analysis_claimed_at=None)
        )
        return int(result.rowcount)

    async def page(self, *, status: str | None, limit: int, offset: int) -> tuple[list[Incident], int]:
        where = [] if status is None else [Incident.status == status]
        total = (await self._s.execute(select(func.count()).select_from(Incident).where(*where))).scalar_one()
        rows = await self._s.execute(
            select(Incident).where(*where).order_by(Incident.id.desc()).limit(limit).offset(offset)  # type: ignore[union-attr]
        )
        return list(rows.scalars()), int(total)

    async def similar(self, *, alertname: str, service: str, exclude_id: int, limit: int) -> list[Incident]:
        match = [Incident.alertname == alertname]
        if service:
            match.append(Incident.service == service)
        rows = await self._s.execute(
            select(Incident)
            .where(Incident.id != exclude_id, or_(*match))
            .order_by(Incident.id.desc())  # type: ignore[union-attr]
            .limit(limit)
        )
        return list(rows.scalars())

    async def created_since(self, since: datetime, *, limit: int) -> list[Incident]:
        rows = await self._s.execute(
            select(Incident).where(Incident.created_at >= since).order_by(Incident.id.desc()).limit(limit)  # type: ignore[union-attr]
        )
        return list(rows.scalars())

    async def count_by_status(self) -> dict[str, int]:
        rows = await self._s.execute(select(Incident.status, func.count()).group_by(Incident.status))
        return {status: int(n) for status, n in rows.all()}

    async def mute(self, incident_id: int, silence_id: int) -> bool:
        """Silence a firing incident (no card, no reminders while it lasts); False when it was not firing or
        already muted."""
        result = await self._s.execute(
            update(Incident)
            .where(Incident.id == incident_id, Incident.status == IncidentStatus.FIRING,
                   or_(Incident.muted.is_(None), Incident.muted.is_(False)))  # type: ignore[union-attr]
            .values(muted=True, silence_id=silence_id)
        )
        return result.rowcount == 1

    async def muted_by(self, silence_id: int) -> list[Incident]:
        rows = await self._s.execute(
            select(Incident).where(Incident.silence_id == silence_id, Incident.muted.is_(True)).order_by(Incident.id)  # type: ignore[union-attr]
        )
        return list(rows.scalars())

    async def unmute(self, incident_id: int) -> bool:
        result = await self._s.execute(
            update(Incident).where(Incident.id == incident_id, Incident.muted.is_(True)).values(muted=False)  # type: ignore[union-attr]
        )
        return result.rowcount == 1

    async def chats_of(self, incident_id: int) -> list[str] | None:
        """The incident's routed chats ("telegram:-100123"), or None for the default card chats."""
        found = (await self._s.execute(select(Incident.chats).where(Incident.id == incident_id))).scalar_one_or_none()
        return list(found) if found else None

    async def many(self, incident_ids: Iterable[int]) -> dict[int, Incident]:
        ids = list(set(incident_ids))
        if not ids:
            return {}
        rows = await self._s.execute(select(Incident).where(Incident.id.in_(ids)))  # type: ignore[union-attr]
        return {i.id: i for i in rows.scalars() if i.id is not None}

    async def firing(self, limit: int = 500) -> list[Incident]:
        rows = await self._s.execute(
            select(Incident).where(Incident.status == IncidentStatus.FIRING).order_by(Incident.id).limit(limit)  # type: ignore[arg-type]
        )
        return list(rows.scalars())


class LiveAlert:
    """A stored live alert as the ingest reads it: plain values, not an ORM object (a group of webhooks reads
    hundreds of them, and mostly only counts a repeat). Assigning a field records the change; ``AlertRepo.
    write_live`` writes the changes."""

    __slots__ = ("id", "incident_id", "status", "starts_at", "ends_at", "last_seen", "labels", "annotations", "changed")
    FIELDS = ("status", "starts_at", "ends_at", "last_seen", "labels", "annotations")  # what the ingest changes
    changed: dict[str, Any]

    def __init__(self, id: int, incident_id: int | None, status: str, starts_at: datetime | None,  # noqa: A002
                 ends_at: datetime | None, labels: dict[str, str], annotations: dict[str, str]) -> None:
        for name, value in (("id", id), ("incident_id", incident_id), ("status", status), ("starts_at", starts_at),
                            ("ends_at", ends_at), ("last_seen", None), ("labels", labels),
                            ("annotations", annotations), ("changed", {})):
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: Any) -> None:
        if name not in self.FIELDS:
            raise AttributeError(f"LiveAlert.{name} is not written by the ingest")
        object.__setattr__(self, name, value)
        self.changed[name] = value


class AlertRepo:
    def __init__(self, session: AsyncSession) -> None:
        self._s = session

    async def find_live_many(self, active_keys: Sequence[str]) -> dict[str, LiveAlert]:
        """The live row of each of these alert keys that has one, by active key, as plain values."""
        t, found = Alert.__table__, {}  # type: ignore[attr-defined]
        columns = (t.c.active_key, t.c.id, t.c.incident_id, t.c.status, t.c.starts_at, t.c.ends_at, t.c.labels,
                   t.c.annotations)
        for chunk in _in_chunks(active_keys):
            rows = await self._s.execute(select(*columns).where(t.c.active_key.in_(chunk)))
            for key, *values in rows:
                found[key] = LiveAlert(*values)
        return found

    async def write_live(self, alerts: Iterable[LiveAlert]) -> None:
        """Write what changed in these live alerts (one UPDATE per set of changed fields) and forget the changes."""
        by_fields: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for alert in alerts:
            if alert.changed:
                by_fields.setdefault(tuple(sorted(alert.changed)), []).append({"alert_id": alert.id, **alert.changed})
                alert.changed.clear()
        t = Alert.__table__  # type: ignore[attr-defined]
        for fields, params in by_fields.items():
            statement = update(t).where(t.c.id == bindparam("alert_id")).values({f: bindparam(f) for f in fields})
            await self._s.execute(statement, params)

    def stage(self, alert: Alert) -> None:
        """Add a new row; it is written with the others at the next flush (one round trip for a batch)."""
        self._s.add(alert)

    async def bump_repeats(self, bumps: dict[int, int], now: datetime) -> None:
        """repeat_count += n in SQL, so concurrent writers add up instead of overwriting each other."""
        by_amount: dict[int, list[int]] = {}
        for alert_id, amount in bumps.items():
            by_amount.setdefault(amount, []).append(alert_id)
        for amount, ids in by_amount.items():
            for chunk in _in_chunks(ids):
                await self._s.execute(
                    update(Alert)
                    .where(Alert.id.in_(chunk))  # type: ignore[union-attr]
                    .values(repeat_count=Alert.repeat_count + amount, last_seen=now)
                    .execution_options(synchronize_session=False)
                )

    async def find_latest(self, receiver: str, fingerprint: str) -> Alert | None:
        rows = await self._s.execute(
            select(Alert)
            .where(Alert.fingerprint == fingerprint, Alert.receiver == receiver)
            .order_by(Alert.id.desc())  # type: ignore[union-attr]
            .limit(1)
        )
        return rows.scalar_one_or_none()

    async def add(self, alert: Alert) -> Alert:
        self._s.add(alert)
        await self._s.flush()
        return alert

    async def of_incident(self, incident_id: int, *, limit: int | None = None) -> list[Alert]:
        """Its alerts, oldest first (the first ``limit`` of them)."""
        rows = await self._s.execute(
            select(Alert).where(Alert.incident_id == incident_id).order_by(Alert.id).limit(limit)  # type: ignore[arg-type]
        )
        return list(rows.scalars())

    async def last_end(self, incident_id: int) -> datetime | None:
        """When the incident's last alert ended (endsAt), if any has."""
        rows = await self._s.execute(select(func.max(Alert.ends_at)).where(Alert.incident_id == incident_id))
        return rows.scalar_one_or_none()

    async def count_firing(self, incident_id: int) -> int:
        rows = await self._s.execute(
            select(func.count()).select_from(Alert).where(Alert.incident_id == incident_id, Alert.status == AlertStatus.FIRING)
        )
        return int(rows.scalar_one())

    async def deactivate(self, incident_id: int) -> None:
        await self._s.execute(update(Alert).where(Alert.incident_id == incident_id).values(active_key=None))

    async def page(
        self, *, fingerprint: str | None, status: str | None, limit: int, offset: int
    ) -> tuple[list[Alert], int]:
        where = []
        if fingerprint:
            where.append(Alert.fingerprint == fingerprint)
        if status:
            where.append(Alert.status == status)
        total = (await self._s.execute(select(func.count()).select_from(Alert).where(*where))).scalar_one()
        rows = await self._s.execute(select(Alert).where(*where).order_by(Alert.id).limit(limit).offset(offset))
        return list(rows.scalars()), int(total)

    async def totals(self) -> dict[str, int]:
        row = (
            await self._s.execute(
                select(
                    func.count(),
                    func.coalesce(func.sum(Alert.repeat_count), 0),
                    func.count().filter(Alert.status == AlertStatus.FIRING),
                )
            )
        ).one()
        return {"alerts": int(row[0]), "repeats": int(row[1]), "firing": int(row[2])}


class ProposalRepo:
    def __init__(self, session: AsyncSession) -> None:
        self._s = session

    async def current(self, incident_id: int) -> Proposal | None:
        rows = await self._s.execute(
            select(Proposal)
            .where(Proposal.incident_id == incident_id, Proposal.is_current.is_(True))  # type: ignore[attr-defined]
            .order_by(Proposal.id.desc())  # type: ignore[union-attr]
            .limit(1)
        )
        return rows.scalar_one_or_none()

    async def of_incidents(self, incident_ids: Iterable[int]) -> dict[int, Proposal]:
        ids = list(incident_ids)
        if not ids:
            return {}
        rows = await self._s.execute(
            select(Proposal).where(Proposal.incident_id.in_(ids), Proposal.is_current.is_(True))  # type: ignore[attr-defined]
        )
        return {p.incident_id: p for p in rows.scalars()}

    async def add_current(self, proposal: Proposal) -> Proposal:
        await self._s.execute(
            update(Proposal).where(Proposal.incident_id == proposal.incident_id).values(is_current=False)
        )
        proposal.is_current = True
        self._s.add(proposal)
        await self._s.flush()
        return proposal

    async def transition(
        self, proposal_id: int, expected: Sequence[str], new: str, **values: Any
    ) -> bool:
        result = await self._s.execute(
            update(Proposal)
            .where(Proposal.id == proposal_id, Proposal.state.in_(list(expected)))  # type: ignore[attr-defined]
            .values(state=new, **values)
        )
        return result.rowcount == 1

    async def pending_created_before(self, cutoff: datetime, limit: int = 100) -> list[Proposal]:
        """Current pending proposals older than ``cutoff`` (their approval window has passed)."""
        rows = await self._s.execute(
            select(Proposal)
            .where(
                Proposal.state == ProposalState.PENDING,
                Proposal.is_current.is_(True),  # type: ignore[attr-defined]
                Proposal.created_at < cutoff,  # type: ignore[operator]
            )
            .order_by(Proposal.id)  # type: ignore[arg-type]
            .limit(limit)
        )
        return list(rows.scalars())

    async def approved_waiting(self, limit: int = 20) -> list[Proposal]:
        """Current approved proposals nobody has started executing (the execution worker's to-do)."""
        rows = await self._s.execute(
            select(Proposal)
            .where(Proposal.state == ProposalState.APPROVED, Proposal.is_current.is_(True))  # type: ignore[attr-defined]
            .order_by(Proposal.id)  # type: ignore[arg-type]
            .limit(limit)
        )
        return list(rows.scalars())

    async def get(self, proposal_id: int) -> Proposal | None:
        return await self._s.get(Proposal, proposal_id)

    async def set_review_url(self, proposal_id: int, url: str) -> None:
        await self._s.execute(update(Proposal).where(Proposal.id == proposal_id).values(review_url=url))

    async def lock_pending(self, proposal_id: int) -> bool:
        """Take the proposal's row lock while it is pending (a no-op UPDATE): concurrent signatures on the
        same proposal are then counted one after another, even on PostgreSQL replicas."""
        result = await self._s.execute(
            update(Proposal)
            .where(Proposal.id == proposal_id, Proposal.state == ProposalState.PENDING)
            .values(state=Proposal.state)
        )
        return result.rowcount == 1

    async def previous(self, incident_id: int) -> Proposal | None:
        """The newest proposal that is no longer current (the one a re-analyse replaced)."""
        rows = await self._s.execute(
            select(Proposal)
            .where(Proposal.incident_id == incident_id, Proposal.is_current.is_(False))  # type: ignore[attr-defined]
            .order_by(Proposal.id.desc())  # type: ignore[union-attr]
            .limit(1)
        )
        return rows.scalar_one_or_none()

    async def awaiting_reminder(self, cutoff: datetime, *, reminded_before: datetime | None = None,
                                limit: int = 100) -> list[Proposal]:
        """Current pending proposals of firing, unmuted incidents: created before ``cutoff`` and not reminded
        yet; or, with ``reminded_before``, reminded before then and not escalated yet."""
        if reminded_before is None:
            step = Proposal.reminded_at.is_(None)  # type: ignore[union-attr]
        else:
            step = and_(Proposal.reminded_at < reminded_before, Proposal.escalated_at.is_(None))  # type: ignore[operator,union-attr]
        rows = await self._s.execute(
            select(Proposal)
            .join(Incident, Incident.id == Proposal.incident_id)
            .where(
                Proposal.state == ProposalState.PENDING,
                Proposal.is_current.is_(True),  # type: ignore[attr-defined]
                Proposal.created_at < cutoff,  # type: ignore[operator]
                step,
                Incident.status == IncidentStatus.FIRING,
                or_(Incident.muted.is_(None), Incident.muted.is_(False)),  # type: ignore[union-attr]
            )
            .order_by(Proposal.id)  # type: ignore[arg-type]
            .limit(limit)
        )
        return list(rows.scalars())

    async def mark_reminded(self, proposal_id: int, at: datetime, *, escalated: bool = False) -> bool:
        """Remind (or escalate) once: compare-and-set on the column, while the proposal is still pending."""
        column = Proposal.escalated_at if escalated else Proposal.reminded_at
        result = await self._s.execute(
            update(Proposal)
            .where(Proposal.id == proposal_id, Proposal.state == ProposalState.PENDING, column.is_(None))  # type: ignore[union-attr]
            .values({column.key: at})  # type: ignore[union-attr]
        )
        return result.rowcount == 1

    async def expire_pending(self, incident_id: int) -> bool:
        result = await self._s.execute(
            update(Proposal)
            .where(Proposal.incident_id == incident_id, Proposal.state == ProposalState.PENDING)
            .values(state=ProposalState.EXPIRED)
        )
        return result.rowcount > 0


class TimelineRepo:
    def __init__(self, session: AsyncSession) -> None:
        self._s = session

    async def add(
        self, *, incident_id: int | None, at: datetime, kind: str, actor: str | None = None, **detail: Any
    ) -> None:
        self._s.add(TimelineEvent(incident_id=incident_id, at=at, kind=kind, actor=actor, detail=detail))

    async def of_incident(self, incident_id: int) -> list[TimelineEvent]:
        rows = await self._s.execute(
            select(TimelineEvent).where(TimelineEvent.incident_id == incident_id).order_by(TimelineEvent.id)
        )
        return list(rows.scalars())


class MessageRefRepo:
    def __init__(self, session: AsyncSession) -> None:
        self._s = session

    async def card(self, channel: str, chat_id: str, incident_id: int) -> MessageRef | None:
        rows = await self._s.execute(
            select(MessageRef).where(
                MessageRef.channel == channel,
                MessageRef.chat_id == chat_id,
                MessageRef.incident_id == incident_id,
                MessageRef.kind == "card",
            )
        )
        return rows.scalar_one_or_none()

    async def cards_of(self, incident_id: int) -> list[MessageRef]:
        rows = await self._s.execute(select(MessageRef).where(MessageRef.incident_id == incident_id))
        return list(rows.scalars())

    async def set_card(self, channel: str, chat_id: str, incident_id: int, message_id: str, at: datetime) -> None:
        existing = await self.card(channel, chat_id, incident_id)
        if existing is None:
            self._s.add(
                MessageRef(
                    channel=channel, chat_id=chat_id, incident_id=incident_id, message_id=message_id, kind="card", created_at=at
                )
            )
        else:
            existing.message_id = message_id
            existing.created_at = at
        await self._s.flush()


    async def kinds_in(self, channel: str, incident_ids: Iterable[int]) -> dict[tuple[str, int], set[str]]:
        """(chat, incident) → the kinds of its refs on ``channel`` ("card", "folded"…), for these incidents."""
        ids = list(set(incident_ids))
        if not ids:
            return {}
        rows = await self._s.execute(
            select(MessageRef.chat_id, MessageRef.incident_id, MessageRef.kind).where(
                MessageRef.channel == channel, MessageRef.incident_id.in_(ids)  # type: ignore[attr-defined]
            )
        )
        kinds: dict[tuple[str, int], set[str]] = {}
        for chat_id, incident_id, kind in rows.all():
            kinds.setdefault((chat_id, incident_id), set()).add(kind)
        return kinds

    async def rename_marker(self, channel: str, chat_id: str, incident_id: int, kind: str, new_kind: str) -> bool:
        """Turn a marker into another (an incident folded in a chat that someone acted on there: unfolded)."""
        result = await self._s.execute(
            update(MessageRef)
            .where(MessageRef.channel == channel, MessageRef.chat_id == chat_id, MessageRef.incident_id == incident_id,
                   MessageRef.kind == kind)
            .values(kind=new_kind)
        )
        return result.rowcount == 1

    async def rename_markers(self, incident_id: int, kind: str, new_kind: str) -> int:
        """``rename_marker`` in every chat of every channel; how many there were."""
        result = await self._s.execute(
            update(MessageRef).where(MessageRef.incident_id == incident_id, MessageRef.kind == kind).values(kind=new_kind)
        )
        return int(result.rowcount)

    async def add_marker(self, channel: str, chat_id: str, incident_id: int, kind: str, at: datetime) -> None:
        """A ref without a message (``message_id`` ""): e.g. the incident was folded into a digest there."""
        exists = await self._s.execute(
            select(MessageRef.id).where(
                MessageRef.channel == channel, MessageRef.chat_id == chat_id,
                MessageRef.incident_id == incident_id, MessageRef.kind == kind,
            )
        )
        if exists.first() is None:
            self._s.add(MessageRef(channel=channel, chat_id=chat_id, incident_id=incident_id, message_id="",
                                   kind=kind, created_at=at))
            await self._s.flush()


class OutboxRepo:
    def __init__(self, session: AsyncSession) -> None:
        self._s = session

    async def enqueue(self, row: Outbox) -> bool:
        """Add a row; False when its dedup_key was already queued (the caller's change is then a replay)."""
        if row.dedup_key is None:
            self._s.add(row)
            return True
        # One statement, the same on SQLite and PostgreSQL: the unique dedup_key decides, even between replicas.
        values = {c.key: getattr(row, c.key) for c in Outbox.__table__.columns if c.key != "id"}
        insert = sqlite_insert if self._s.get_bind().dialect.name == "sqlite" else postgresql_insert
        result = await self._s.execute(insert(Outbox).values(**values).on_conflict_do_nothing())
        return bool(result.rowcount == 1)

    def _heads(self, channel: str) -> Any:
        """The first unfinished row of each (chat, incident): only a head may go, so a reply never overtakes
        its card and per-incident order holds."""
        unfinished = Outbox.state.in_([OutboxState.PENDING, OutboxState.SENDING])  # type: ignore[attr-defined]
        return (
            select(
                Outbox.id.label("row_id"),  # type: ignore[union-attr]
                func.row_number()
                .over(partition_by=(Outbox.chat_id, Outbox.incident_id), order_by=Outbox.id)
                .label("position"),
            )
            .where(Outbox.channel == channel, unfinished)
            .subquery()
        )

    async def due_heads(
        self, channel: str, now: datetime, stale_before: datetime, *, skip_chats: Sequence[str], limit: int
    ) -> list[Outbox]:
        """Heads that are due now (or whose sender died), in chats not held back by pacing, oldest first."""
        heads = self._heads(channel)
        due = or_(
            and_(Outbox.state == OutboxState.PENDING, Outbox.not_before <= now),  # type: ignore[operator]
            and_(Outbox.state == OutboxState.SENDING, Outbox.claimed_at < stale_before),  # type: ignore[operator]
        )
        query = (
            select(Outbox)
            .join(heads, Outbox.id == heads.c.row_id)
            .where(heads.c.position == 1, due)
            .order_by(Outbox.id)
            .limit(limit)
        )
        if skip_chats:
            query = query.where(Outbox.chat_id.not_in(list(skip_chats)))  # type: ignore[attr-defined]
        return list((await self._s.execute(query)).scalars())

    async def next_head_due(self, channel: str, now: datetime) -> datetime | None:
        """When the earliest head that is not yet due becomes due."""
        heads = self._heads(channel)
        row = await self._s.execute(
            select(func.min(Outbox.not_before))
            .join(heads, Outbox.id == heads.c.row_id)
            .where(heads.c.position == 1, Outbox.state == OutboxState.PENDING, Outbox.not_before > now)  # type: ignore[operator]
        )
        return row.scalar_one_or_none()

    async def card_run_after(self, row: Outbox) -> list[int]:
        """Pending card rows of the same incident and chat that directly follow ``row`` (no message between)."""
        rows = await self._s.execute(
            select(Outbox.id, Outbox.kind)
            .where(
                Outbox.channel == row.channel,
                Outbox.chat_id == row.chat_id,
                Outbox.incident_id == row.incident_id,
                Outbox.id > row.id,  # type: ignore[operator]
                Outbox.state == OutboxState.PENDING,
            )
            .order_by(Outbox.id)
            .limit(100)
        )
        ids: list[int] = []
        for row_id, kind in rows.all():
            if kind != OutboxKind.CARD:
                break
            ids.append(row_id)
        return ids

    async def claim(self, row_id: int, owner: str, now: datetime, stale_before: datetime) -> bool:
        result = await self._s.execute(
            update(Outbox)
            .where(
                Outbox.id == row_id,
                or_(
                    Outbox.state == OutboxState.PENDING,
                    and_(Outbox.state == OutboxState.SENDING, Outbox.claimed_at < stale_before),  # type: ignore[operator]
                ),
            )
            .values(state=OutboxState.SENDING, claimed_by=owner, claimed_at=now, attempts=Outbox.attempts + 1)
        )
        return result.rowcount == 1

    async def finish(self, row_id: int, owner: str, **values: Any) -> bool:
        result = await self._s.execute(
            update(Outbox).where(Outbox.id == row_id, Outbox.claimed_by == owner, Outbox.state == OutboxState.SENDING).values(**values)
        )
        return result.rowcount == 1

    async def expedite_cards(self, incident_id: int, now: datetime) -> None:
        """Make the incident's waiting card rows due now."""
        await self._s.execute(
            update(Outbox)
            .where(
                Outbox.incident_id == incident_id,
                Outbox.kind == OutboxKind.CARD,
                Outbox.state == OutboxState.PENDING,
                Outbox.not_before > now,  # type: ignore[operator]
            )
            .values(not_before=now)
        )

    async def release_claims(self, channel: str) -> int:
        """Put rows left 'sending' by a process that died back to pending (single-process start-up)."""
        result = await self._s.execute(
            update(Outbox)
            .where(Outbox.channel == channel, Outbox.state == OutboxState.SENDING)
            .values(state=OutboxState.PENDING, claimed_by=None, claimed_at=None)
        )
        return int(result.rowcount)

    async def coalesce(self, row_ids: Sequence[int]) -> None:
        if row_ids:
            await self._s.execute(
                update(Outbox)
                .where(Outbox.id.in_(list(row_ids)), Outbox.state == OutboxState.PENDING)  # type: ignore[union-attr]
                .values(state=OutboxState.COALESCED)
            )

    async def fold(self, row_ids: Sequence[int], error: str) -> int:
        """Pending rows set 'folded' (an alert storm's digest speaks for them); how many were."""
        if not row_ids:
            return 0
        result = await self._s.execute(
            update(Outbox)
            .where(Outbox.id.in_(list(row_ids)), Outbox.state == OutboxState.PENDING)  # type: ignore[union-attr]
            .values(state=OutboxState.FOLDED, last_error=error)
        )
        return int(result.rowcount)

    async def pending_message(self, channel: str, chat_id: str, template: str) -> Outbox | None:
        """The newest message row of ``template`` to ``chat_id`` that is waiting (not claimed), if any."""
        rows = await self._s.execute(
            select(Outbox).where(
                Outbox.channel == channel, Outbox.chat_id == chat_id, Outbox.kind == OutboxKind.MESSAGE,
                Outbox.template == template, Outbox.state == OutboxState.PENDING,
            ).order_by(Outbox.id.desc()).limit(1)  # type: ignore[union-attr]
        )
        return rows.scalar_one_or_none()

    async def replace_context(self, row_id: int, context: dict[str, Any]) -> bool:
        """A waiting row's context replaced; False when it was claimed (or finished) meanwhile."""
        result = await self._s.execute(
            update(Outbox).where(Outbox.id == row_id, Outbox.state == OutboxState.PENDING).values(context=context)
        )
        return result.rowcount == 1

    async def failed_chats(self, channel: str, error_marker: str) -> set[str]:
        """Chats of ``channel`` where a message failed with ``error_marker`` in its error (a configuration
        problem found by an earlier run, shown again at start-up)."""
        rows = await self._s.execute(
            select(Outbox.chat_id).distinct().where(
                Outbox.channel == channel,
                Outbox.state == OutboxState.FAILED,
                Outbox.last_error.contains(error_marker),  # type: ignore[union-attr]
            )
        )
        return set(rows.scalars())

    async def counts(self) -> dict[str, int]:
        rows = await self._s.execute(select(Outbox.state, func.count()).group_by(Outbox.state))
        return {state: int(n) for state, n in rows.all()}

    async def pending_by_channel(self) -> dict[str, tuple[int, datetime | None]]:
        """Per channel: how many rows are not delivered yet (pending or being sent) and when the oldest of them
        was queued (/metrics)."""
        rows = await self._s.execute(
            select(Outbox.channel, func.count(), func.min(Outbox.created_at))
            .where(Outbox.state.in_([OutboxState.PENDING, OutboxState.SENDING]))  # type: ignore[attr-defined]
            .group_by(Outbox.channel)
        )
        return {channel: (int(n), oldest) for channel, n, oldest in rows.all()}

    async def of_incident(self, incident_id: int) -> list[Outbox]:
        rows = await self._s.execute(select(Outbox).where(Outbox.incident_id == incident_id).order_by(Outbox.id))
        return list(rows.scalars())


def _in_chunks(values: Iterable[Any]) -> Iterator[list[Any]]:
    """``values`` without repeats, IN_CHUNK at a time: one ``IN (...)`` list each."""
    unique = list(dict.fromkeys(values))
    for start in range(0, len(unique), IN_CHUNK):
        yield unique[start : start + IN_CHUNK]


async def _rows_where_in(session: AsyncSession, model: Any, column: str, values: Sequence[str]) -> list[Any]:
    """The rows of ``model`` whose ``column`` is one of ``values``."""
    rows = []
    for chunk in _in_chunks(values):
        rows.extend((await session.execute(select(model).where(getattr(model, column).in_(chunk)))).scalars())
    return rows


def _key_starts_with(prefix: str) -> Any:
    """keyvalue.key LIKE 'prefix%', with LIKE's wildcards in the prefix taken literally."""
    escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return KeyValue.key.like(f"{escaped}%", escape="\\")  # type: ignore[attr-defined]


class KeyValueRepo:
    def __init__(self, session: AsyncSession) -> None:
        self._s = session

    async def get(self, key: str) -> str | None:
        row = await self._s.get(KeyValue, key)
        return None if row is None else row.value

    async def with_prefix(self, prefix: str) -> dict[str, str]:
        """Every key starting with ``prefix`` and its value."""
        rows = await self._s.execute(select(KeyValue).where(_key_starts_with(prefix)))
        return {row.key: row.value for row in rows.scalars()}

    async def put(self, key: str, value: str) -> None:
        """Store value under key, replacing what was there."""
        row = await self._s.get(KeyValue, key)
        if row is None:
            try:
                async with self._s.begin_nested():
                    self._s.add(KeyValue(key=key, value=value))
                return
            except IntegrityError:  # written meanwhile by another replica: replace it
                row = await self._s.get(KeyValue, key)
                assert row is not None
        row.value = value

    async def delete_marked_before(self, prefix: str, before: datetime) -> int:
        """Forget the marks under ``prefix`` whose value starts with a timestamp (isoformat, UTC) before
        ``before``: replay marks outlive their replay window by far after a day."""
        result = await self._s.execute(
            delete(KeyValue).where(_key_starts_with(prefix), KeyValue.value < before.isoformat())  # type: ignore[arg-type]
        )
        return int(result.rowcount)

    async def put_if_absent(self, key: str, value: str) -> str:
        """Store value unless the key exists; return what is stored (the first writer wins)."""
        existing = await self.get(key)
        if existing is not None:
            return existing
        try:
            async with self._s.begin_nested():
                self._s.add(KeyValue(key=key, value=value))
        except IntegrityError:
            stored = await self.get(key)
            assert stored is not None
            return stored
        return value


class ApprovalRepo:
    def __init__(self, session: AsyncSession) -> None:
        self._s = session

    async def add(self, approval: Approval) -> bool:
        """Record a signature; False when this person had already signed (nothing changes)."""
        try:
            async with self._s.begin_nested():
                self._s.add(approval)
                await self._s.flush()
        except IntegrityError:
            return False
        return True

    async def of_proposal(self, proposal_id: int) -> list[Approval]:
        rows = await self._s.execute(select(Approval).where(Approval.proposal_id == proposal_id).order_by(Approval.id))  # type: ignore[arg-type]
        return list(rows.scalars())

    async def of_proposals(self, proposal_ids: Iterable[int]) -> dict[int, list[Approval]]:
        ids = list(proposal_ids)
        if not ids:
            return {}
        rows = await self._s.execute(select(Approval).where(Approval.proposal_id.in_(ids)).order_by(Approval.id))  # type: ignore[attr-defined,arg-type]
        found: dict[int, list[Approval]] = {}
        for approval in rows.scalars():
            found.setdefault(approval.proposal_id, []).append(approval)
        return found


class DecisionRepo:
    def __init__(self, session: AsyncSession) -> None:
        self._s = session

    async def add(self, decision: Decision) -> Decision:
        self._s.add(decision)
        await self._s.flush()
        return decision

    async def get(self, decision_id: int) -> Decision | None:
        return await self._s.get(Decision, decision_id)

    async def of_incident(self, incident_id: int) -> list[Decision]:
        rows = await self._s.execute(select(Decision).where(Decision.incident_id == incident_id).order_by(Decision.id))  # type: ignore[arg-type]
        return list(rows.scalars())


class KnowledgeRepo:
    """Knowledge entries and their full-text search: SQLite FTS5 (``knowledge_fts``, BM25 with the title
    weighted 3:1) or PostgreSQL tsvector ('simple' configuration, ts_rank). ``terms`` are plain words
    (letters and digits only, already lower-cased); each matches as a prefix, any term may match, the
    best-ranked entries come first."""

    def __init__(self, session: AsyncSession) -> None:
        self._s = session

    async def add(self, entry: KnowledgeEntry) -> KnowledgeEntry:
        self._s.add(entry)
        await self._s.flush()
        if self._dialect() == "sqlite":
            await self._s.execute(
                text("INSERT INTO knowledge_fts (rowid, title, search_text) VALUES (:id, :title, :search)"),
                {"id": entry.id, "title": entry.title, "search": entry.search_text},
            )
        return entry

    async def get(self, entry_id: int) -> KnowledgeEntry | None:
        return await self._s.get(KnowledgeEntry, entry_id)

    async def count(self) -> int:
        return int((await self._s.execute(select(func.count()).select_from(KnowledgeEntry))).scalar_one())

    async def of_incident(self, incident_id: int) -> list[KnowledgeEntry]:
        rows = await self._s.execute(
            select(KnowledgeEntry).where(KnowledgeEntry.incident_id == incident_id).order_by(KnowledgeEntry.id)  # type: ignore[arg-type]
        )
        return list(rows.scalars())

    async def search(self, terms: Sequence[str], limit: int) -> list[KnowledgeEntry]:
        words = [t for t in terms if t.isalnum()]
        if not words:
            return []
        if self._dialect() == "sqlite":
            query = " OR ".join(f'"{w}"*' for w in words)
            rows = await self._s.execute(
                text(
                    "SELECT rowid FROM knowledge_fts WHERE knowledge_fts MATCH :q "
                    "ORDER BY bm25(knowledge_fts, 3.0, 1.0), rowid DESC LIMIT :n"
                ),
                {"q": query, "n": limit},
            )
        else:
            query = " | ".join(f"{w}:*" for w in words)
            rows = await self._s.execute(
                text(
                    "SELECT id FROM knowledgeentry, to_tsquery('simple', :q) AS q "
                    "WHERE to_tsvector('simple', title || ' ' || search_text) @@ q "
                    "ORDER BY ts_rank(setweight(to_tsvector('simple', title), 'A') || "
                    "to_tsvector('simple', search_text), q) DESC, id DESC LIMIT :n"
                ),
                {"q": query, "n": limit},
            )
        ids = [int(r[0]) for r in rows]
        if not ids:
            return []
        found = await self._s.execute(select(KnowledgeEntry).where(KnowledgeEntry.id.in_(ids)))  # type: ignore[union-attr]
        by_id = {e.id: e for e in found.scalars()}
        return [by_id[i] for i in ids if i in by_id]

    def _dialect(self) -> str:
        return self._s.get_bind().dialect.name


class PlaybookRepo:
    def __init__(self, session: AsyncSession) -> None:
        self._s = session

    async def enabled(self) -> list[Playbook]:
        rows = await self._s.execute(select(Playbook).where(Playbook.enabled.is_(True)).order_by(Playbook.id))  # type: ignore[attr-defined,arg-type]
        return list(rows.scalars())

    async def all(self) -> list[Playbook]:
        rows = await self._s.execute(select(Playbook).order_by(Playbook.id))  # type: ignore[arg-type]
        return list(rows.scalars())

    async def get(self, playbook_id: int) -> Playbook | None:
        return await self._s.get(Playbook, playbook_id)

    async def by_name(self, name: str) -> Playbook | None:
        rows = await self._s.execute(select(Playbook).where(Playbook.name == name))
        return rows.scalar_one_or_none()

    async def add(self, playbook: Playbook) -> Playbook:
        self._s.add(playbook)
        await self._s.flush()
        return playbook

    async def count_run(self, playbook_id: int, at: datetime, *, executions: int = 0, successes: int = 0) -> None:
        """Add to a playbook's record in SQL (concurrent outcomes never overwrite each other)."""
        await self._s.execute(
            update(Playbook)
            .where(Playbook.id == playbook_id)
            .values(executions=Playbook.executions + executions, successes=Playbook.successes + successes, updated_at=at)
        )


class ExecutionRepo:
    def __init__(self, session: AsyncSession) -> None:
        self._s = session

    async def add(self, execution: Execution) -> Execution:
        self._s.add(execution)
        await self._s.flush()
        return execution

    async def get(self, execution_id: int) -> Execution | None:
        return await self._s.get(Execution, execution_id)

    async def of_proposal(self, proposal_id: int) -> Execution | None:
        rows = await self._s.execute(select(Execution).where(Execution.proposal_id == proposal_id))
        return rows.scalar_one_or_none()

    async def of_incident(self, incident_id: int) -> list[Execution]:
        rows = await self._s.execute(select(Execution).where(Execution.incident_id == incident_id).order_by(Execution.id))
        return list(rows.scalars())

    async def latest_of_incident(self, incident_id: int) -> Execution | None:
        rows = await self._s.execute(
            select(Execution).where(Execution.incident_id == incident_id).order_by(Execution.id.desc()).limit(1)  # type: ignore[union-attr]
        )
        return rows.scalar_one_or_none()

    async def heartbeat(self, execution_id: int, owner: str, at: datetime, *, attempts: int | None = None) -> bool:
        """Renew the runner's lease; False when the execution is no longer this runner's (it was interrupted)."""
        values: dict[str, Any] = {"heartbeat_at": at}
        if attempts is not None:
            values["attempts"] = attempts
        result = await self._s.execute(
            update(Execution)
            .where(Execution.id == execution_id, Execution.owner == owner, Execution.state == ExecutionState.RUNNING)
            .values(**values)
        )
        return result.rowcount == 1

    async def finish(self, execution_id: int, owner: str, state: str, **values: Any) -> bool:
        result = await self._s.execute(
            update(Execution)
            .where(Execution.id == execution_id, Execution.owner == owner, Execution.state == ExecutionState.RUNNING)
            .values(state=state, **values)
        )
        return result.rowcount == 1

    async def running(self, *, stale_before: datetime | None = None, limit: int = 100) -> list[Execution]:
        """Running executions (only those whose runner stopped renewing its lease, with ``stale_before``)."""
        query = select(Execution).where(Execution.state == ExecutionState.RUNNING)
        if stale_before is not None:
            query = query.where(Execution.heartbeat_at < stale_before)  # type: ignore[operator]
        rows = await self._s.execute(query.order_by(Execution.id).limit(limit))  # type: ignore[arg-type]
        return list(rows.scalars())

    async def count_running(self) -> int:
        rows = await self._s.execute(
            select(func.count()).select_from(Execution).where(Execution.state == ExecutionState.RUNNING)
        )
        return int(rows.scalar_one())

    async def interrupt(self, execution_id: int, at: datetime, error: str) -> bool:
        result = await self._s.execute(
            update(Execution)
            .where(Execution.id == execution_id, Execution.state == ExecutionState.RUNNING)
            .values(state=ExecutionState.INTERRUPTED, finished_at=at, error=error)
        )
        return result.rowcount == 1

    async def mark_credited(self, execution_id: int, at: datetime) -> bool:
        """Count an outcome for its playbook once (compare-and-set on ``credited_at``)."""
        result = await self._s.execute(
            update(Execution)
            .where(Execution.id == execution_id, Execution.credited_at.is_(None))  # type: ignore[union-attr]
            .values(credited_at=at)
        )
        return result.rowcount == 1

    async def add_attempt(self, attempt: ExecutionAttempt) -> None:
        self._s.add(attempt)
        await self._s.flush()

    async def attempts_of(self, execution_ids: Iterable[int]) -> dict[int, list[ExecutionAttempt]]:
        ids = list(execution_ids)
        found: dict[int, list[ExecutionAttempt]] = {i: [] for i in ids}
        for chunk in _in_chunks(ids):
            rows = await self._s.execute(
                select(ExecutionAttempt)
                .where(ExecutionAttempt.execution_id.in_(chunk))  # type: ignore[attr-defined]
                .order_by(ExecutionAttempt.id)  # type: ignore[arg-type]
            )
            for attempt in rows.scalars():
                found[attempt.execution_id].append(attempt)
        return found


class LeaseRepo:
    """Database leases for scheduled work: one holder at a time, taken over once expired, done for good."""

    def __init__(self, session: AsyncSession) -> None:
        self._s = session

    async def acquire(self, name: str, owner: str, now: datetime, until: datetime) -> bool:
        """Hold ``name`` until ``until``: True when it was free (new, expired, or already ours) and not done."""
        found = (await self._s.execute(select(Lease.owner).where(Lease.name == name))).first()
        if found is None:
            try:
                async with self._s.begin_nested():
                    self._s.add(Lease(name=name, owner=owner, acquired_at=now, expires_at=until))
            except IntegrityError:
                return False  # another replica inserted it first
            return True
        result = await self._s.execute(
            update(Lease)
            .where(Lease.name == name, Lease.done_at.is_(None), or_(Lease.expires_at <= now, Lease.owner == owner))  # type: ignore[union-attr,operator]
            .values(owner=owner, acquired_at=now, expires_at=until)
        )
        return result.rowcount == 1

    async def take_over(self, name: str, holder: str, owner: str, now: datetime, until: datetime) -> bool:
        """Take ``name`` from ``holder`` whether or not it expired (the caller knows the holder is gone)."""
        result = await self._s.execute(
            update(Lease)
            .where(Lease.name == name, Lease.owner == holder, Lease.done_at.is_(None))  # type: ignore[union-attr]
            .values(owner=owner, acquired_at=now, expires_at=until)
        )
        return result.rowcount == 1

    async def complete(self, name: str, owner: str, now: datetime) -> bool:
        """Mark the occurrence done, if it is still ours (False: it expired and someone else took it)."""
        result = await self._s.execute(
            update(Lease).where(Lease.name == name, Lease.owner == owner, Lease.done_at.is_(None)).values(done_at=now)  # type: ignore[union-attr]
        )
        return result.rowcount == 1

    async def release(self, name: str, owner: str, now: datetime) -> None:
        """Let anyone take it at once (the holder finished a periodic turn, or gave up)."""
        await self._s.execute(
            update(Lease).where(Lease.name == name, Lease.owner == owner, Lease.done_at.is_(None)).values(expires_at=now)  # type: ignore[union-attr]
        )

    async def get(self, name: str) -> Lease | None:
        return (await self._s.execute(select(Lease).where(Lease.name == name))).scalar_one_or_none()


class TelegramUpdateRepo:
    """The webhook's inbox: an update is stored (claimed by its receiver) before it is acknowledged."""

    def __init__(self, session: AsyncSession) -> None:
        self._s = session

    async def add(self, update_id: int, body: dict[str, Any], owner: str, now: datetime) -> bool:
        """Store and claim a new update; False when Telegram had posted it before (to any replica)."""
        try:
            async with self._s.begin_nested():
                self._s.add(TelegramUpdate(update_id=update_id, body=body, received_at=now, claimed_by=owner,
                                           claimed_at=now))
        except IntegrityError:
            return False
        return True

    async def claimable(self, stale_before: datetime, limit: int) -> list[int]:
        """Updates nobody is processing: never claimed, released, or claimed by a holder that went quiet."""
        rows = await self._s.execute(
            select(TelegramUpdate.update_id)
            .where(TelegramUpdate.done_at.is_(None),  # type: ignore[union-attr]
                   or_(TelegramUpdate.claimed_at.is_(None), TelegramUpdate.claimed_at < stale_before))  # type: ignore[union-attr,operator]
            .order_by(TelegramUpdate.update_id)  # type: ignore[arg-type]
            .limit(limit)
        )
        return list(rows.scalars())

    async def claim(self, update_id: int, owner: str, now: datetime, stale_before: datetime) -> dict[str, Any] | None:
        """Take over an unclaimed or stale update: its body, or None when someone else has it or it is done."""
        result = await self._s.execute(
            update(TelegramUpdate)
            .where(TelegramUpdate.update_id == update_id, TelegramUpdate.done_at.is_(None),  # type: ignore[union-attr]
                   or_(TelegramUpdate.claimed_at.is_(None), TelegramUpdate.claimed_at < stale_before))  # type: ignore[union-attr,operator]
            .values(claimed_by=owner, claimed_at=now)
        )
        if result.rowcount != 1:
            return None
        row = await self._s.get(TelegramUpdate, update_id)
        return None if row is None else dict(row.body)

    async def finish(self, update_id: int, owner: str, now: datetime, error: str | None = None) -> bool:
        result = await self._s.execute(
            update(TelegramUpdate)
            .where(TelegramUpdate.update_id == update_id, TelegramUpdate.claimed_by == owner,
                   TelegramUpdate.done_at.is_(None))  # type: ignore[union-attr]
            .values(done_at=now, error=error)
        )
        return result.rowcount == 1

    async def release_claims(self) -> int:
        """Unfinished updates of a process that died become claimable at once (single-process start-up)."""
        result = await self._s.execute(
            update(TelegramUpdate)
            .where(TelegramUpdate.done_at.is_(None), TelegramUpdate.claimed_by.is_not(None))  # type: ignore[union-attr]
            .values(claimed_by=None, claimed_at=None)
        )
        return int(result.rowcount)

    async def purge_done(self, before: datetime) -> int:
        result = await self._s.execute(
            delete(TelegramUpdate).where(TelegramUpdate.done_at < before)  # type: ignore[operator]
        )
        return int(result.rowcount)

    async def get(self, update_id: int) -> TelegramUpdate | None:
        return await self._s.get(TelegramUpdate, update_id)

    async def unfinished(self) -> tuple[int, datetime | None]:
        """How many stored updates are not processed yet, and when the oldest of them arrived (/metrics)."""
        row = (await self._s.execute(
            select(func.count(), func.min(TelegramUpdate.received_at)).where(TelegramUpdate.done_at.is_(None))  # type: ignore[union-attr]
        )).one()
        return int(row[0]), row[1]


class SilenceRepo:
    def __init__(self, session: AsyncSession) -> None:
        self._s = session

    async def add(self, silence: Silence) -> Silence:
        self._s.add(silence)
        await self._s.flush()
        return silence

    async def get(self, silence_id: int) -> Silence | None:
        return await self._s.get(Silence, silence_id)

    async def active(self, now: datetime, limit: int = 200) -> list[Silence]:
        rows = await self._s.execute(
            select(Silence)
            .where(Silence.removed_at.is_(None), Silence.ends_at > now)  # type: ignore[union-attr,operator]
            .order_by(Silence.ends_at, Silence.id)  # type: ignore[arg-type]
            .limit(limit)
        )
        return list(rows.scalars())

    async def ended_unnoted(self, now: datetime, limit: int = 100) -> list[Silence]:
        """Silences whose time is up and whose end has not been announced."""
        rows = await self._s.execute(
            select(Silence)
            .where(Silence.ends_at <= now, Silence.expired_noted_at.is_(None))  # type: ignore[union-attr,operator]
            .order_by(Silence.id)  # type: ignore[arg-type]
            .limit(limit)
        )
        return list(rows.scalars())

    async def note_ended(self, silence_id: int, at: datetime) -> bool:
        result = await self._s.execute(
            update(Silence).where(Silence.id == silence_id, Silence.expired_noted_at.is_(None)).values(expired_noted_at=at)  # type: ignore[union-attr]
        )
        return result.rowcount == 1

    async def remove(self, silence_id: int, by: str, at: datetime) -> bool:
        """End an active silence now (/unsilence); its end is announced by the caller, not the expiry job."""
        result = await self._s.execute(
            update(Silence)
            .where(Silence.id == silence_id, Silence.removed_at.is_(None), Silence.ends_at > at)  # type: ignore[union-attr,operator]
            .values(removed_at=at, removed_by=by, ends_at=at, expired_noted_at=at)
        )
        return result.rowcount == 1

    async def suppressed(self, silence_ids: Sequence[int]) -> dict[int, tuple[int, int]]:
        """Per silence: (incidents, alerts) it kept from the chat."""
        if not silence_ids:
            return {}
        rows = await self._s.execute(
            select(Incident.silence_id, func.count(func.distinct(Incident.id)), func.count(Alert.id))
            .select_from(Incident)
            .outerjoin(Alert, Alert.incident_id == Incident.id)
            .where(Incident.silence_id.in_(list(silence_ids)))  # type: ignore[union-attr]
            .group_by(Incident.silence_id)
        )
        return {int(sid): (int(incidents), int(alerts)) for sid, incidents, alerts in rows.all()}


class PostmortemRepo:
    def __init__(self, session: AsyncSession) -> None:
        self._s = session

    async def add_due(self, incident_id: int, now: datetime) -> bool:
        """Queue the incident's postmortem (once: unique per incident)."""
        exists = await self._s.execute(select(Postmortem.id).where(Postmortem.incident_id == incident_id))
        if exists.first() is not None:
            return False
        try:
            async with self._s.begin_nested():
                self._s.add(Postmortem(incident_id=incident_id, created_at=now))
        except IntegrityError:
            return False
        return True

    async def due(self, stale_before: datetime, limit: int = 10) -> list[Postmortem]:
        claimable = or_(Postmortem.claimed_at.is_(None), Postmortem.claimed_at < stale_before)  # type: ignore[union-attr,operator]
        rows = await self._s.execute(
            select(Postmortem).where(Postmortem.state == PostmortemState.DUE, claimable).order_by(Postmortem.id).limit(limit)  # type: ignore[arg-type]
        )
        return list(rows.scalars())

    async def claim(self, postmortem_id: int, owner: str, now: datetime, stale_before: datetime) -> bool:
        result = await self._s.execute(
            update(Postmortem)
            .where(
                Postmortem.id == postmortem_id,
                Postmortem.state == PostmortemState.DUE,
                or_(Postmortem.claimed_at.is_(None), Postmortem.claimed_at < stale_before),  # type: ignore[union-attr,operator]
            )
            .values(claimed_by=owner, claimed_at=now)
        )
        return result.rowcount == 1

    async def finish(self, postmortem_id: int, owner: str, now: datetime, model: str | None) -> bool:
        result = await self._s.execute(
            update(Postmortem)
            .where(Postmortem.id == postmortem_id, Postmortem.claimed_by == owner, Postmortem.state == PostmortemState.DUE)
            .values(state=PostmortemState.SENT, sent_at=now, model=model)
        )
        return result.rowcount == 1

    async def of_incident(self, incident_id: int) -> Postmortem | None:
        rows = await self._s.execute(select(Postmortem).where(Postmortem.incident_id == incident_id))
        return rows.scalar_one_or_none()


class Tx:
    """One session (one transaction when opened by ``Database.write``) and the repositories on it."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self.incidents = IncidentRepo(session)
        self.alerts = AlertRepo(session)
        self.proposals = ProposalRepo(session)
        self.timeline = TimelineRepo(session)
        self.refs = MessageRefRepo(session)
        self.outbox = OutboxRepo(session)
        self.kv = KeyValueRepo(session)
        self.decisions = DecisionRepo(session)
        self.approvals = ApprovalRepo(session)
        self.knowledge = KnowledgeRepo(session)
        self.playbooks = PlaybookRepo(session)
        self.executions = ExecutionRepo(session)
        self.leases = LeaseRepo(session)
        self.silences = SilenceRepo(session)
        self.telegram_updates = TelegramUpdateRepo(session)
        self.postmortems = PostmortemRepo(session)
        self.reports = ReportRepo(session)

