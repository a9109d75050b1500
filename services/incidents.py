"""Ingest: alerts become incidents. De-duplicate by fingerprint, group by (receiver, groupKey) while the
incident is open, resolve the incident when its last alert resolves. One transaction per batch, so the
2xx that follows means every alert of the batch is stored."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import structlog

from services.ingest_model import AlertBatch, IncomingAlert, IngestResult
from services.matchers import first_match
from services.metrics import Metrics
from services.notify import Notifier, Wakeup
from services.routing import Route, route_for, stored_chats
from storage.clock import Clock
from storage.db import Database
from storage.errors import WriteConflict
from storage.repos import Tx
from storage.tables import Alert, AlertStatus, Incident, IncidentStatus, Silence

if TYPE_CHECKING:  # learning needs incident_ref from here; the composition root hands the service in
    from services.learning import LearningService

log = structlog.get_logger(__name__)

SERVICE_LABELS = ("service", "deployment", "statefulset", "daemonset", "app", "job")
SEVERITY_ORDER = ("critical", "page", "error", "high", "major", "warning", "medium", "info", "low", "none")
WRITE_ATTEMPTS = 4
MAX_AGE = timedelta(days=30)  # a startsAt older than this is treated as a clock problem, not history
# A new incident's card waits this long for its proposal, so a fast engine gives one message, not a
# card and an edit; the analysis makes the card due as soon as the proposal is stored.
FIRST_CARD_GRACE = timedelta(seconds=5)


def incident_ref(incident_id: int) -> str:
    return f"INC-{incident_id}"


def pick_service(labels: dict[str, str]) -> str:
    return next((labels[k] for k in SERVICE_LABELS if labels.get(k)), "")


def worst_severity(values: list[str]) -> str:
    known = [v.lower() for v in values if v]
    if not known:
        return ""
    return min(known, key=lambda v: SEVERITY_ORDER.index(v) if v in SEVERITY_ORDER else len(SEVERITY_ORDER))


@dataclass
class _Changes:
    new_alerts: int = 0
    repeats: int = 0
    resolved_alerts: int = 0
    opened: list[int] = field(default_factory=list)
    grown: set[int] = field(default_factory=set)  # open incidents whose set of firing alerts changed
    resolving: set[int] = field(default_factory=set)  # incidents where an alert resolved
    touched: set[int] = field(default_factory=set)
    active: dict[str, Alert] = field(default_factory=dict)  # live alert rows of this batch, by active key
    bumps: dict[int, int] = field(default_factory=dict)  # stored alert id → repeats to add
    group: Incident | None = None  # the batch's open incident, once looked up or opened
    silences: list[Silence] | None = None  # active silences, read once per batch when an incident opens


class IncidentService:
    def __init__(
        self,
        db: Database,
        notifier: Notifier,
        clock: Clock,
        analysis_wakeup: Wakeup,
        learning: LearningService,
        *,
        postmortem_after: timedelta | None = None,
        routes: Sequence[Route] = (),
        metrics: Metrics | None = None,
    ) -> None:
        """``postmortem_after``: an incident that lasted at least this long gets an automatic postmortem when
        it resolves (None: never). ``routes``: the chats of incidents whose source has none of its own
        (services/routing.py; no match: the default card chats). ``metrics``: where stored alerts are counted
        (alertpilot_alerts_received_total, …_deduplicated_total; None: a private, unexported one)."""
        self._routes = tuple(routes)
        self._metrics = metrics if metrics is not None else Metrics()
        self._db, self._notify, self._now, self._analysis_wakeup = db, notifier, clock, analysis_wakeup
        self._learning, self._postmortem_after = learning, postmortem_after

    async def ingest(self, batch: AlertBatch) -> IngestResult:
        for attempt in range(1, WRITE_ATTEMPTS + 1):
            try:
                async with self._db.write() as tx:
                    result = await self._apply(tx, batch, self._now())
                break
            except WriteConflict:
                # Another replica opened the same group's incident or alert first: re-read and apply again.
                if attempt == WRITE_ATTEMPTS:
                    raise
                log.info("ingest_conflict_retry", attempt=attempt, group_key=batch.group_key)
        self._metrics.inc("alertpilot_alerts_received_total", result.accepted, kind=batch.source)
        self._metrics.inc("alertpilot_alerts_deduplicated_total", result.repeats, kind=batch.source)
        if result.incidents_opened or result.incidents_resolved or result.new_alerts or result.resolved_alerts:
            self._notify.wake()  # something was queued for the chat (pure repeats queue nothing)
        if result.incidents_opened:
            self._analysis_wakeup.set()
        log.info(
            "alerts_ingested",
            source=batch.source,
            receiver=batch.receiver,
            accepted=result.accepted,
            new=result.new_alerts,
            repeats=result.repeats,
            resolved=result.resolved_alerts,
            opened=result.incidents_opened,
            resolved_incidents=result.incidents_resolved,
        )
        return result

    async def _apply(self, tx: Tx, batch: AlertBatch, now: datetime) -> IngestResult:
        changes = _Changes()
        # One query for every alert of the batch that is already live; new rows are flushed together.
        changes.active = await tx.alerts.find_active_many([self._alert_key(batch, a) for a in batch.alerts])
        for alert in batch.alerts:
            if alert.status == AlertStatus.FIRING:
                await self._firing(tx, batch, alert, now, changes)
            else:
                await self._resolved(tx, batch, alert, now, changes)
        await tx.alerts.bump_repeats(changes.bumps, now)

        resolved_incidents: list[int] = []
        for incident_id in sorted(changes.resolving):
            if await tx.alerts.count_firing(incident_id) == 0:
                if await self.resolve(tx, incident_id, now):
                    resolved_incidents.append(incident_id)
            else:
                changes.grown.add(incident_id)  # fewer alerts firing: the card shows it
        grown = sorted(changes.grown - set(changes.opened) - set(resolved_incidents))
        muted = await tx.incidents.muted_of(grown)
        for incident_id in grown:
            await tx.incidents.touch(incident_id, now)
            if incident_id not in muted:
                await self._notify.card(tx, incident_id, now)
        for incident_id in changes.opened:
            incident = await tx.incidents.get(incident_id)
            assert incident is not None
            await tx.timeline.add(incident_id=incident_id, at=now, kind="opened", source=batch.source,
                                  silence_id=incident.silence_id)
            if not incident.muted:  # a silenced incident is stored and counted, with no card
                await self._notify.card(tx, incident_id, now, not_before=now + FIRST_CARD_GRACE)
        return IngestResult(
            accepted=len(batch.alerts),
            new_alerts=changes.new_alerts,
            repeats=changes.repeats,
            resolved_alerts=changes.resolved_alerts,
            incidents_opened=changes.opened,
            incidents_resolved=resolved_incidents,
            incident_ids=sorted(changes.touched),
        )

    @staticmethod
    def _repeat(alert: Alert, changes: _Changes) -> None:
        """Count a re-notification: in SQL for stored rows (concurrent writers add up), in memory for new ones."""
        if alert.id is None:
            alert.repeat_count += 1
        else:
            changes.bumps[alert.id] = changes.bumps.get(alert.id, 0) + 1
        changes.repeats += 1

    async def _firing(self, tx: Tx, batch: AlertBatch, alert: IncomingAlert, now: datetime, changes: _Changes) -> None:
        active = changes.active.get(self._alert_key(batch, alert))
        if active is not None:
            if active.status == AlertStatus.RESOLVED:  # fired again while its incident is still open
                active.status = AlertStatus.FIRING
                active.ends_at = None
                active.starts_at = alert.starts_at
                changes.grown.add(active.incident_id or 0)
            self._repeat(active, changes)
            if active.labels != alert.labels:
                active.labels = alert.labels
            if active.annotations != alert.annotations:
                active.annotations = alert.annotations
            active.last_seen = now
            changes.touched.add(active.incident_id or 0)
            return
        incident = await self._open_incident(tx, batch, alert, now, changes)
        if alert.starts_at and incident.started_at and now - MAX_AGE <= alert.starts_at < incident.started_at:
            incident.started_at = alert.starts_at
        row = self._new_alert(batch, alert, incident.id, now, active=True)
        tx.alerts.stage(row)
        changes.active[self._alert_key(batch, alert)] = row
        changes.new_alerts += 1
        changes.touched.add(incident.id or 0)
        if incident.id not in changes.opened:
            changes.grown.add(incident.id or 0)

    async def _resolved(
        self, tx: Tx, batch: AlertBatch, alert: IncomingAlert, now: datetime, changes: _Changes
    ) -> None:
        active = changes.active.get(self._alert_key(batch, alert))
        if active is not None:
            if active.status == AlertStatus.FIRING:
                active.status = AlertStatus.RESOLVED
                active.ends_at = alert.ends_at or now
                changes.resolved_alerts += 1
                changes.resolving.add(active.incident_id or 0)
            else:
                self._repeat(active, changes)
            active.last_seen = now
            changes.touched.add(active.incident_id or 0)
            return
        latest = await tx.alerts.find_latest(batch.receiver, alert.fingerprint)
        if latest is not None and latest.status == AlertStatus.RESOLVED and latest.starts_at == alert.starts_at:
            self._repeat(latest, changes)  # a re-notification of a resolution we already have
            latest.last_seen = now
            return
        # A resolution for an alert we never saw fire (we were down, or it fired before we existed):
        # record it; attach it to its group's open incident if there is one, but open none.
        group = await tx.incidents.find_open(self._open_key(batch))
        row = self._new_alert(batch, alert, group.id if group else None, now, active=group is not None)
        tx.alerts.stage(row)
        if group is not None:
            changes.active[self._alert_key(batch, alert)] = row
            changes.touched.add(group.id or 0)
        changes.new_alerts += 1
        changes.resolved_alerts += 1

    async def _open_incident(
        self, tx: Tx, batch: AlertBatch, alert: IncomingAlert, now: datetime, changes: _Changes
    ) -> Incident:
        if changes.group is not None:
            return changes.group
        open_key = self._open_key(batch)
        existing = await tx.incidents.find_open(open_key)
        if existing is not None:
            changes.group = existing
            return existing
        labels = batch.common_labels or alert.labels
        annotations = batch.common_annotations or alert.annotations
        route = None if batch.chats else route_for(self._routes, {**alert.labels, **labels})
        incident = await tx.incidents.add(
            Incident(
                status=IncidentStatus.FIRING,
                source=batch.source,
                receiver=batch.receiver,
                group_key=batch.group_key,
                open_key=open_key,
                alertname=labels.get("alertname") or alert.alertname,
                title=annotations.get("summary") or labels.get("alertname") or alert.alertname,
                severity=worst_severity([a.labels.get("severity", "") for a in batch.alerts if a.status == "firing"]),
                service=pick_service(labels) or pick_service(alert.labels),
                namespace=labels.get("namespace") or alert.labels.get("namespace", ""),
                common_labels=dict(labels),
                chats=stored_chats(route.chats if route else batch.chats),
                route=route.name if route else (batch.route or None),
                created_at=now,
                started_at=_clamp(min((a.starts_at for a in batch.alerts if a.starts_at), default=now), now - MAX_AGE, now),
                updated_at=now,
                needs_analysis=True,
            )
        )
        assert incident.id is not None
        if changes.silences is None:
            changes.silences = await tx.silences.active(now)
        silence = first_match(changes.silences, incident)
        if silence is not None:  # no card and no analysis while the silence lasts (it is analysed when it ends)
            incident.muted, incident.silence_id, incident.needs_analysis = True, silence.id, False
        changes.opened.append(incident.id)
        changes.group = incident
        return incident

    async def resolve(self, tx: Tx, incident_id: int, now: datetime) -> bool:
        """Resolve a firing incident in the caller's transaction (all its alerts resolved, or its manual
        command succeeded): pending proposals expire, a remediation that worked is learned from, the card
        and thread say so. False when it was not firing."""
        incident = await tx.incidents.get(incident_id)
        assert incident is not None
        started = incident.started_at or incident.created_at
        # Alertmanager's endsAt says when it ended; our receipt time bounds it (clock skew, late delivery).
        ends = [a.ends_at for a in await tx.alerts.of_incident(incident_id) if a.ends_at is not None]
        resolved_at = _clamp(max(ends, default=now), started, now)
        if not await tx.incidents.resolve(incident_id, resolved_at):
            return False
        await tx.alerts.deactivate(incident_id)
        expired = await tx.proposals.expire_pending(incident_id)
        minutes = max(0, round((resolved_at - started).total_seconds() / 60))
        await tx.timeline.add(incident_id=incident_id, at=now, kind="resolved", minutes=minutes, proposal_expired=expired)
        await self._learning.on_resolved(tx, incident_id, now)
        if incident.muted and not await tx.refs.cards_of(incident_id):
            return True  # silenced from the start: nobody saw a card, so no thread and no postmortem either
        if self._postmortem_after is not None and resolved_at - started >= self._postmortem_after:
            await tx.postmortems.add_due(incident_id, now)
        await self._notify.thread(
            tx,
            incident_id,
            "resolved",
            {"ref": incident_ref(incident_id), "minutes": minutes, "at": now.isoformat()},
            now,
            dedup_key=f"resolved:{incident_id}",
        )
        await self._notify.card(tx, incident_id, now)
        return True

    @staticmethod
    def _open_key(batch: AlertBatch) -> str:
        return f"{batch.receiver}|{batch.group_key}"

    @staticmethod
    def _alert_key(batch: AlertBatch, alert: IncomingAlert) -> str:
        return f"{batch.receiver}|{alert.fingerprint}"

    @staticmethod
    def _new_alert(batch: AlertBatch, alert: IncomingAlert, incident_id: int | None, now: datetime, *, active: bool) -> Alert:
        return Alert(
            incident_id=incident_id,
            receiver=batch.receiver,
            fingerprint=alert.fingerprint,
            active_key=IncidentService._alert_key(batch, alert) if active else None,
            status=alert.status,
            alertname=alert.alertname,
            severity=alert.labels.get("severity", ""),
            labels=alert.labels,
            annotations=alert.annotations,
            starts_at=alert.starts_at,
            ends_at=alert.ends_at if alert.status == AlertStatus.RESOLVED else None,
            generator_url=alert.generator_url,
            links=dict(alert.links) or None,
            first_seen=now,
            last_seen=now,
        )


def _clamp(value: datetime, low: datetime, high: datetime) -> datetime:
    return max(low, min(value, high))
