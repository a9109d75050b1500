"""Incidents and wiring for the service tests: a crash-looping api in prod by default; the scheduled services."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select

from services.ai import AIAdvisor
from services.chat import ChatService
from services.incidents import IncidentService
from services.ingest_model import IngestResult
from services.learning import LearningService
from services.leases import JobLeases
from services.notify import Notifier, Wakeup
from services.ports import ChatTarget
from services.postmortems import PostmortemService
from services.queries import IncidentQueries
from services.reminders import ReminderService
from services.reports import ReportService
from services.roles import parse_roles
from services.silences import SilenceService
from services.sources.alertmanager import parse_alertmanager
from storage.db import Database
from storage.tables import Outbox, OutboxKind
from tests.harness import ROLES, fixture
from tests.service.conftest import CARD_CHAT, World

PLAYBOOK_YAML = """
playbooks:
  - name: disk-cleanup
    description: Restart the writer so it releases deleted log files
    root_cause: "{service} filled its disk with logs"
    symptoms:
      alertnames: [DiskFull]
    steps:
      - name: restart
        command: kubectl -n {namespace} rollout restart deployment/{service}
      - name: wait
        command: kubectl -n {namespace} rollout status deployment/{service}
"""


def alert_payload(alertname: str = "KubePodCrashLooping", **annotations: str) -> dict[str, Any]:
    """Fixture 01 renamed to ``alertname`` (own fingerprint and group: its own incident) on api in prod."""
    payload = copy.deepcopy(fixture("01-firing-one-alert.json"))
    for alert in payload["alerts"]:
        alert["labels"]["alertname"] = alertname
        alert["labels"].update(namespace="prod", deployment="api", service="api")
        alert["annotations"].update(annotations)
        alert["fingerprint"] = f"{alertname.lower()}{alert['fingerprint']}"[:16]
    payload["commonLabels"].update(alertname=alertname, namespace="prod", deployment="api", service="api")
    payload["groupKey"] = f"{{}}:{{alertname=\"{alertname}\"}}"
    return payload


async def open_incident(world: World, payload: dict[str, Any] | None = None) -> int:
    result = await world.incidents.ingest(parse_alertmanager(payload or alert_payload()))
    await world.settle()
    return result.incidents_opened[0]


# --- scheduled work (reports, silences, reminders, postmortems) -------------------------------------------

REPORT_CHAT = ChatTarget("telegram", "-200")  # a report chat that is not a card chat
TAIPEI = ZoneInfo("Asia/Taipei")


def rfc3339(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def am_payload(
    alertname: str,
    *,
    service: str = "api",
    namespace: str = "prod",
    fingerprints: Sequence[str] = ("1",),
    status: str = "firing",
    starts_at: datetime,
    ends_at: datetime | None = None,
    summary: str | None = None,
    severity: str = "critical",
) -> dict[str, Any]:
    """An Alertmanager v4 body of one group (``alertname`` on ``service`` in ``namespace``): one alert per
    fingerprint, all with the same status and times. Group key and fingerprints are derived from the names: the
    same arguments are the same alerts (a repeat, or their resolution)."""
    labels = {"alertname": alertname, "service": service, "namespace": namespace, "severity": severity}
    annotations = {"summary": summary or f"{alertname} on {service}"}
    alerts = [
        {
            "status": status,
            "labels": {**labels, "instance": f"{service}-{fp}"},
            "annotations": annotations,
            "startsAt": rfc3339(starts_at),
            "endsAt": rfc3339(ends_at) if ends_at is not None else "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus.example/graph",
            "fingerprint": f"{alertname}-{service}-{namespace}-{fp}".lower()[:64],
        }
        for fp in fingerprints
    ]
    return {
        "receiver": "webhook",
        "status": status,
        "alerts": alerts,
        "groupLabels": {"alertname": alertname, "service": service},
        "commonLabels": labels,
        "commonAnnotations": annotations,
        "externalURL": "http://127.0.0.1:9093",
        "version": "4",
        "groupKey": f'{{}}:{{alertname="{alertname}",namespace="{namespace}",service="{service}"}}',
        "truncatedAlerts": 0,
    }


async def ingest(world: World, payload: dict[str, Any]) -> IngestResult:
    return await world.incidents.ingest(parse_alertmanager(payload))


@dataclass
class Scheduled:
    """The scheduled-work services of one replica (its own lease owner), on ``db``."""

    db: Database
    leases: JobLeases
    reports: ReportService
    silences: SilenceService
    reminders: ReminderService
    postmortems: PostmortemService


def scheduled(
    world: World,
    *,
    owner: str = "replica-a",
    db: Database | None = None,
    targets: Sequence[ChatTarget] = (CARD_CHAT, REPORT_CHAT),
    grace: timedelta = timedelta(hours=6),
    remind_after: timedelta = timedelta(minutes=15),
    advisor: AIAdvisor | None = None,
    notifier: Notifier | None = None,
) -> Scheduled:
    """Wired as bot/app.py wires them: report targets get reports, escalations and postmortems."""
    db = db or world.db
    notifier = notifier or world.notifier
    queries = IncidentQueries(db)
    roles = parse_roles(ROLES)
    chat = ChatService(db, queries, notifier, roles, world.clock)
    leases = JobLeases(db, world.clock, owner)
    return Scheduled(
        db=db,
        leases=leases,
        reports=ReportService(
            db, notifier, chat, leases, world.clock, tz=TAIPEI, at=time(8, 0), targets=targets, grace=grace
        ),
        silences=SilenceService(db, notifier, chat, roles, world.clock, Wakeup()),
        reminders=ReminderService(db, notifier, roles, world.clock, after=remind_after, escalate_to=targets),
        postmortems=PostmortemService(db, queries, notifier, chat, advisor, world.clock, targets=targets, owner=owner),
    )


def with_postmortems(world: World, after: timedelta = timedelta(minutes=10)) -> None:
    """Give the world an IncidentService that queues a postmortem for incidents lasting ``after`` or more."""
    world.incidents = IncidentService(
        world.db, world.notifier, world.clock, Wakeup(), LearningService(world.knowledge), postmortem_after=after
    )


class Said(list[tuple[str, dict[str, Any]]]):
    """A Reply that collects (template, context) instead of queueing a message."""

    async def __call__(self, template: str, context: dict[str, Any]) -> None:
        self.append((template, context))


async def outbox_all(db: Database) -> list[Outbox]:
    async with db.read() as tx:
        rows = await tx.session.execute(select(Outbox).order_by(Outbox.id))  # type: ignore[arg-type]
        return list(rows.scalars())


async def messages_of(db: Database, template: str) -> list[Outbox]:
    return [r for r in await outbox_all(db) if r.kind == OutboxKind.MESSAGE and r.template == template]
