"""Ingest: alerts become incidents. De-duplicate by fingerprint, group by (receiver, groupKey) while the
incident is open, resolve the incident when its last alert resolves. Batches that arrive together are written
together (services/groupcommit.py: one transaction for a group of concurrent webhook requests, applied in
arrival order as if one after the other); ``ingest`` returns once its batch is committed, so the 2xx that
follows means every alert of the batch is stored."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import structlog

from services.groupcommit import GroupCommit
from services.ingest_model import AlertBatch, IncomingAlert, IngestResult
from services.matchers import first_match
from services.metrics import Metrics
from services.notify import Notifier, Wakeup
from services.routing import Route, route_for, stored_chats
from storage.clock import Clock
from storage.db import Database
from storage.errors import WriteConflict
from storage.repos import LiveAlert, Tx
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
# The most alerts written in one transaction by the group commit (a larger batch is a group of its own), so a
# group holds SQLite's single writer for milliseconds, not seconds.
MAX_GROUP_ALERTS = 1000


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
class _Group:
    """What the batches of one transaction share, read once for all of them and kept current as they apply."""

    active: dict[str, Alert | LiveAlert] = field(default_factory=dict)  # live alerts (stored or new), by active key
    live: list[LiveAlert] = field(default_factory=list)  # the stored ones, read at the start: their changes go in SQL
    open: dict[str, Incident | None] = field(default_factory=dict)  # open incident by open key (None: none)
    bumps: dict[int, int] = field(default_factory=dict)  # stored alert id → repeats to add
    silences: list[Silence] | None = None  # active silences, read once when an incident opens
    ahead: dict[str, Incident] = field(default_factory=dict)  # inserted ahead, not yet claimed by its batch
    chat_now: bool = False  # a card or thread message was queued that is due now (else only first cards, later)

    def forget(self, incident_id: int) -> None:
        """The incident resolved: its alerts and its open key are free for a new incident."""
        self.active = {k: a for k, a in self.active.items() if a.incident_id != incident_id}
        self.open = {k: i for k, i in self.open.items() if i is None or i.id != incident_id}


@dataclass
class _Changes:
    """One batch's effect (its IngestResult)."""

    new_alerts: int = 0
    repeats: int = 0
    resolved_alerts: int = 0
    opened: list[int] = field(default_factory=list)
    grown: set[int] = field(default_factory=set)  # open incidents whose set of firing alerts changed
    resolving: set[int] = field(default_factory=set)  # incidents where an alert resolved
    touched: set[int] = field(default_factory=set)
    group: Incident | None = None  # the batch's open incident, once looked up or opened


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
        self.committer: GroupCommit[AlertBatch, IngestResult] = GroupCommit(
            self._write_group, weight=lambda batch: max(1, len(batch.alerts)), max_weight=MAX_GROUP_ALERTS, name="ingest"
        )

    async def ingest(self, batch: AlertBatch) -> IngestResult:
        """Store the batch; returns once it is committed (with whatever other batches arrived meanwhile)."""
        return await self.committer.submit(batch)

    async def _write_group(self, batches: list[AlertBatch]) -> list[IngestResult]:
        for attempt in range(1, WRITE_ATTEMPTS + 1):
            try:
                group = _Group()
                # small: bounded (MAX_GROUP_ALERTS, IN_CHUNK lookups); urgent: every request of the group waits
                async with self._db.write(small=True, urgent=True) as tx:
                    results = await self._apply_all(tx, batches, self._now(), group)
                break
            except WriteConflict:
                # Another replica opened the same group's incident or alert first: re-read and apply again.
                if attempt == WRITE_ATTEMPTS:
                    raise
                log.info("ingest_conflict_retry", attempt=attempt, group_keys=[b.group_key for b in batches][:10])
        analyse = False
        for batch, result in zip(batches, results, strict=True):
            self._metrics.inc("alertpilot_alerts_received_total", result.accepted, kind=batch.source)
            self._metrics.inc("alertpilot_alerts_deduplicated_total", result.repeats, kind=batch.source)
            analyse = analyse or bool(result.incidents_opened)
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
        if group.chat_now:
            self._notify.wake(decided=False)
        elif analyse:  # only first cards were queued (pure repeats queue nothing): due when their grace ends
            self._notify.wake(after=FIRST_CARD_GRACE, decided=False)
        if analyse:
            self._analysis_wakeup.set()
        return results

    async def _apply_all(self, tx: Tx, batches: list[AlertBatch], now: datetime, group: _Group) -> list[IngestResult]:
        """Apply the batches in order in one transaction, as if each had been written after the one before
        (``group``: new, filled in here)."""
        # One query for every alert of the group that is already live, one for the open incidents of the
        # groups with an alert we have not seen; new rows are flushed together.
        keys = [self._alert_key(b, a) for b in batches for a in b.alerts]
        found = await tx.alerts.find_live_many(keys)
        group.active, group.live = dict(found), list(found.values())
        unseen = {self._open_key(b) for b in batches for a in b.alerts if self._alert_key(b, a) not in group.active}
        if unseen:
            found = await tx.incidents.find_open_many(sorted(unseen))
            group.open = {key: found.get(key) for key in unseen}
        if all(a.status == AlertStatus.FIRING for b in batches for a in b.alerts):
            await self._open_ahead(tx, batches, now, group)
        results = [await self._apply(tx, batch, now, group) for batch in batches]
        await tx.alerts.write_live(group.live)
        await tx.alerts.bump_repeats(group.bumps, now)
        return results

    async def _find_open(self, tx: Tx, open_key: str, group: _Group) -> Incident | None:
        if open_key not in group.open:
            group.open[open_key] = await tx.incidents.find_open(open_key)
        return group.open[open_key]

    async def _apply(self, tx: Tx, batch: AlertBatch, now: datetime, group: _Group) -> IngestResult:
        changes = _Changes()
        for alert in batch.alerts:
            if alert.status == AlertStatus.FIRING:
                await self._firing(tx, batch, alert, now, changes, group)
            else:
                await self._resolved(tx, batch, alert, now, changes, group)

        resolved_incidents: list[int] = []
        if changes.resolving:  # what follows reads the alerts' state in SQL
            await tx.alerts.write_live(group.live)
        for incident_id in sorted(changes.resolving):
            if await tx.alerts.count_firing(incident_id) == 0:
                if await self.resolve(tx, incident_id, now):
                    resolved_incidents.append(incident_id)
                    group.forget(incident_id)
                    group.chat_now = True
            else:
                changes.grown.add(incident_id)  # fewer alerts firing: the card shows it
        for incident_id in sorted(changes.grown - set(changes.opened) - set(resolved_incidents)):
            grown = await tx.incidents.get(incident_id)  # usually in the session already (no query)
            assert grown is not None
            grown.updated_at = now  # written with the group's other changes
            if not grown.muted:
                await self._notify.card(tx, incident_id, now, incident=grown)
                group.chat_now = True
        for incident_id in changes.opened:
            incident = await tx.incidents.get(incident_id)
            assert incident is not None
            await tx.timeline.add(incident_id=incident_id, at=now, kind="opened", source=batch.source,
                                  silence_id=incident.silence_id)
            if not incident.muted:  # a silenced incident is stored and counted, with no card
                await self._notify.card(tx, incident_id, now, not_before=now + FIRST_CARD_GRACE, incident=incident)
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
    def _repeat(alert: Alert | LiveAlert, now: datetime, changes: _Changes, group: _Group) -> None:
        """Count a re-notification: in SQL for stored rows (concurrent writers add up; the same statement
        sets last_seen), in memory for new ones."""
        if alert.id is None:
            alert.repeat_count += 1
            alert.last_seen = now
        else:
            group.bumps[alert.id] = group.bumps.get(alert.id, 0) + 1
        changes.repeats += 1

    async def _firing(
        self, tx: Tx, batch: AlertBatch, alert: IncomingAlert, now: datetime, changes: _Changes, group: _Group
    ) -> None:
        active = group.active.get(self._alert_key(batch, alert))
        if active is not None:
            if active.status == AlertStatus.RESOLVED:  # fired again while its incident is still open
                active.status = AlertStatus.FIRING
                active.ends_at = None
                active.starts_at = alert.starts_at
                changes.grown.add(active.incident_id or 0)
            self._repeat(active, now, changes, group)
            if active.labels != alert.labels:
                active.labels = alert.labels
            if active.annotations != alert.annotations:
                active.annotations = alert.annotations
            changes.touched.add(active.incident_id or 0)
            return
        incident = await self._open_incident(tx, batch, alert, now, changes, group)
        if alert.starts_at and incident.started_at and now - MAX_AGE <= alert.starts_at < incident.started_at:
            incident.started_at = alert.starts_at
        row = self._new_alert(batch, alert, incident.id, now, active=True)
        tx.alerts.stage(row)
        group.active[self._alert_key(batch, alert)] = row
        changes.new_alerts += 1
        changes.touched.add(incident.id or 0)
        if incident.id not in changes.opened:
            changes.grown.add(incident.id or 0)

    async def _resolved(
        self, tx: Tx, batch: AlertBatch, alert: IncomingAlert, now: datetime, changes: _Changes, group: _Group
    ) -> None:
        active = group.active.get(self._alert_key(batch, alert))
        if active is not None:
            if active.status == AlertStatus.FIRING:
                active.status = AlertStatus.RESOLVED
                active.ends_at = alert.ends_at or now
                active.last_seen = now
                changes.resolved_alerts += 1
                changes.resolving.add(active.incident_id or 0)
            else:
                self._repeat(active, now, changes, group)
            changes.touched.add(active.incident_id or 0)
            return
        latest = await tx.alerts.find_latest(batch.receiver, alert.fingerprint)
        if latest is not None and latest.status == AlertStatus.RESOLVED and latest.starts_at == alert.starts_at:
            self._repeat(latest, now, changes, group)  # a re-notification of a resolution we already have
            return
        # A resolution for an alert we never saw fire (we were down, or it fired before we existed):
        # record it; attach it to its group's open incident if there is one, but open none.
        incident = changes.group or await self._find_open(tx, self._open_key(batch), group)
        row = self._new_alert(batch, alert, incident.id if incident else None, now, active=incident is not None)
        tx.alerts.stage(row)
        if incident is not None:
            group.active[self._alert_key(batch, alert)] = row
            changes.touched.add(incident.id or 0)
        changes.new_alerts += 1
        changes.resolved_alerts += 1

    async def _open_incident(
        self, tx: Tx, batch: AlertBatch, alert: IncomingAlert, now: datetime, changes: _Changes, group: _Group
    ) -> Incident:
        if changes.group is not None:
            return changes.group
        open_key = self._open_key(batch)
        incident = await self._find_open(tx, open_key, group)
        if incident is None:
            incident = await tx.incidents.add(self._new_incident(batch, alert, now))
            await self._silence(tx, incident, now, group)
            group.open[open_key] = incident
        elif group.ahead.pop(open_key, None) is not incident:  # opened earlier: this batch joins it
            changes.group = incident
            return incident
        assert incident.id is not None
        changes.opened.append(incident.id)
        changes.group = incident
        return incident

    async def _open_ahead(self, tx: Tx, batches: list[AlertBatch], now: datetime, group: _Group) -> None:
        """Insert, in one statement, the incidents this group of firing-only batches opens (they are the same
        as one by one: nothing resolves, so an alert not live yet is new and its group opens once); each is
        the first of its batches to look for it."""
        seen = set(group.active)
        opening: dict[str, Incident] = {}
        for batch in batches:
            open_key = self._open_key(batch)
            for alert in batch.alerts:
                key = self._alert_key(batch, alert)
                if key in seen:
                    continue
                seen.add(key)
                if group.open.get(open_key) is None and open_key not in opening:
                    opening[open_key] = self._new_incident(batch, alert, now)
        if len(opening) < 2:
            return  # nothing to share: the incident is inserted where it is needed
        await tx.incidents.add_all(list(opening.values()))
        for open_key, incident in opening.items():
            await self._silence(tx, incident, now, group)
            group.open[open_key] = group.ahead[open_key] = incident

    def _new_incident(self, batch: AlertBatch, alert: IncomingAlert, now: datetime) -> Incident:
        """The incident ``alert`` (the batch's first alert that is new) opens for its group."""
        labels = batch.common_labels or alert.labels
        annotations = batch.common_annotations or alert.annotations
        route = None if batch.chats else route_for(self._routes, {**alert.labels, **labels})
        return Incident(
            status=IncidentStatus.FIRING,
            source=batch.source,
            receiver=batch.receiver,
            group_key=batch.group_key,
            open_key=self._open_key(batch),
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

    @staticmethod
    async def _silence(tx: Tx, incident: Incident, now: datetime, group: _Group) -> None:
        """A new incident an active silence matches: no card and no analysis while the silence lasts (it is
        analysed when it ends)."""
        if group.silences is None:
            group.silences = await tx.silences.active(now)
        silence = first_match(group.silences, incident)
        if silence is not None:
            incident.muted, incident.silence_id, incident.needs_analysis = True, silence.id, False

    async def resolve(self, tx: Tx, incident_id: int, now: datetime) -> bool:
        """Resolve a firing incident in the caller's transaction (all its alerts resolved, or its manual
        command succeeded): pending proposals expire, a remediation that worked is learned from, the card
        and thread say so. False when it was not firing."""
        incident = await tx.incidents.get(incident_id)
        assert incident is not None
        started = incident.started_at or incident.created_at
        # Alertmanager's endsAt says when it ended; our receipt time bounds it (clock skew, late delivery).
        resolved_at = _clamp(await tx.alerts.last_end(incident_id) or now, started, now)
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
            targets=self._notify.targets_for(incident),
            dedup_key=f"resolved:{incident_id}",
        )
        await self._notify.card(tx, incident_id, now, incident=incident)
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
