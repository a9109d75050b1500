"""Reports: the KPI figures on a day of fixture data, the daily report at 08:00 Asia/Taipei (the clock in UTC),
exactly once under database leases whatever replicas, retries and restarts do, the weekly digest's trends,
and ``/report`` on demand. Time is the injected clock; nothing sleeps."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from services.actions import Outcome
from services.analysis import AUTO_DECISION
from services.leases import LeaseLost
from services.ports import ChatTarget
from services.reports import ReportService
from services.schedule import ReportKind
from storage.db import Database
from storage.tables import Execution, ExecutionState, Lease, Playbook, Proposal, ProposalState
from tests.harness import APPROVER, APPROVER2, OPERATOR, STRANGER, VIEWER
from tests.service.conftest import CARD_CHAT, World
from tests.service.helpers import (
    REPORT_CHAT,
    Said,
    Scheduled,
    am_payload,
    ingest,
    messages_of,
    scheduled,
)

DAY_START = datetime(2026, 11, 22, 16, 0, tzinfo=UTC)  # 2026-11-23 00:00 in Taipei
T0 = datetime(2026, 11, 23, 1, 0, tzinfo=UTC)  # 09:00 in Taipei, on the day the report covers
REPORT_AT = datetime(2026, 11, 24, 0, 0, 30, tzinfo=UTC)  # 08:00:30 on 2026-11-24 in Taipei
DAILY_LEASE = "report:daily:2026-11-24"
TARGETS = (CARD_CHAT, REPORT_CHAT, ChatTarget("wecom", "ops-robot"))


def at(world: World, when: datetime) -> None:
    world.clock.now = when


async def analysed(world: World, payload: dict[str, Any]) -> int:
    """Ingest a new incident and let the rules propose (at the clock's time)."""
    result = await ingest(world, payload)
    [incident_id] = result.incidents_opened
    await world.analysis.run_pending()
    return incident_id


async def add_run(
    world: World, incident_id: int, *, auto: bool, state: ExecutionState, finished_at: datetime, dry_run: bool = False
) -> None:
    """A finished remediation of the incident (a proposal of its own, not current and of no category, so that
    only the execution figures see it)."""
    async with world.db.write() as tx:
        tx.session.add(
            proposal := Proposal(
                incident_id=incident_id, is_current=False, state=ProposalState.SUCCEEDED, command="kubectl -n prod get pods",
                created_at=finished_at - timedelta(minutes=2),
            )
        )
        await tx.session.flush()
        assert proposal.id is not None
        await tx.executions.add(
            Execution(
                proposal_id=proposal.id, incident_id=incident_id, state=state, executor="kubectl", dry_run=dry_run,
                auto=auto, approvers=[] if auto else ["@alice"], commands=[proposal.command], owner="test",
                heartbeat_at=finished_at, started_at=finished_at - timedelta(minutes=1), finished_at=finished_at,
                attempts=1,
            )
        )


async def a_day(world: World, sch: Scheduled) -> dict[str, int]:
    """2026-11-23 in Taipei, with something just before and just after it. What the report must show:

    alerts 7 (DiskFull ×2 grouped into one incident and re-notified twice; one each of HighLatency,
    PodCrashLooping, HighErrorRate, CPUThrottling, and BackupLate under a silence), incidents 6 (1 silenced),
    resolved 2 (DiskFull after 30 min, approved; PodCrashLooping by itself after 5 min), human decisions:
    DiskFull approved after 10 min, HighErrorRate after 30 min, HighLatency rejected after 20 min (CPUThrottling
    approved by the policy: not a human approval); remediations: 2 auto succeeded, 1 auto failed, 1 approved
    succeeded, 1 dry run; knowledge 2; playbooks: 2 enabled (1 used), 1 disabled."""
    ids: dict[str, int] = {}
    at(world, DAY_START - timedelta(minutes=30))  # 23:30 the day before: not in the report
    ids["before"] = await analysed(world, am_payload("OldAlert", service="old", starts_at=world.clock()))

    at(world, T0)
    disk = am_payload("DiskFull", service="db", fingerprints=("1", "2"), starts_at=T0)
    ids["disk"] = await analysed(world, disk)
    world.clock.advance(minutes=1)
    await ingest(world, disk)  # Alertmanager re-notifies both: two repeats
    at(world, T0 + timedelta(minutes=10))
    result = await world.approvals.decide(incident_id=ids["disk"], actor=world.actor(APPROVER, "@alice"), approve=True)
    assert result.outcome is Outcome.APPROVED, result
    await add_run(world, ids["disk"], auto=False, state=ExecutionState.SUCCEEDED, finished_at=T0 + timedelta(minutes=12))
    at(world, T0 + timedelta(minutes=30))
    resolved = am_payload("DiskFull", service="db", fingerprints=("1", "2"), status="resolved", starts_at=T0,
                          ends_at=T0 + timedelta(minutes=30))
    assert (await ingest(world, resolved)).incidents_resolved == [ids["disk"]]

    at(world, T0 + timedelta(hours=1))
    ids["latency"] = await analysed(world, am_payload("HighLatency", service="api", starts_at=world.clock()))
    world.clock.advance(minutes=20)
    result = await world.approvals.decide(incident_id=ids["latency"], actor=world.actor(APPROVER, "@alice"), approve=False)
    assert result.outcome is Outcome.REJECTED, result

    at(world, T0 + timedelta(hours=2))
    crash = am_payload("PodCrashLooping", service="web", starts_at=world.clock())
    ids["crash"] = await analysed(world, crash)
    world.clock.advance(minutes=5)
    resolved = am_payload("PodCrashLooping", service="web", status="resolved", starts_at=T0 + timedelta(hours=2),
                          ends_at=world.clock())
    assert (await ingest(world, resolved)).incidents_resolved == [ids["crash"]]

    at(world, T0 + timedelta(hours=3))
    ids["errors"] = await analysed(world, am_payload("HighErrorRate", service="checkout", starts_at=world.clock()))
    world.clock.advance(minutes=30)
    result = await world.approvals.decide(incident_id=ids["errors"], actor=world.actor(APPROVER2, "@bob"), approve=True)
    assert result.outcome is Outcome.APPROVED, result

    at(world, T0 + timedelta(hours=4))
    ids["cpu"] = await analysed(world, am_payload("CPUThrottling", service="batch", starts_at=world.clock()))
    async with world.db.write() as tx:  # approved by the policy, as the analysis does for the auto tier
        proposal = await tx.proposals.current(ids["cpu"])
        assert proposal is not None and proposal.id is not None
        assert await tx.proposals.transition(proposal.id, [ProposalState.PENDING], ProposalState.APPROVED,
                                             **AUTO_DECISION, decided_at=world.clock())
    for minutes, state in ((10, ExecutionState.SUCCEEDED), (20, ExecutionState.SUCCEEDED), (30, ExecutionState.ROLLED_BACK)):
        await add_run(world, ids["cpu"], auto=True, state=state, finished_at=T0 + timedelta(hours=4, minutes=minutes))
    await add_run(world, ids["cpu"], auto=False, state=ExecutionState.SUCCEEDED, dry_run=True,
                  finished_at=T0 + timedelta(hours=4, minutes=40))

    at(world, T0 + timedelta(hours=5))
    said = Said()
    await sch.silences.create(world.actor(OPERATOR, "@olga"), "quiet 2h backup window", said)
    assert said[0][1]["event"] == "created", said
    world.clock.advance(minutes=1)
    [ids["silenced"]] = (await ingest(world, am_payload("BackupLate", service="quiet", starts_at=world.clock()))).incidents_opened

    at(world, T0 + timedelta(hours=6))
    for title in ("disk cleanup on db", "checkout rollback"):
        await world.knowledge.add(title=title, body="what we learned", created_by="tg:111")
    async with world.db.write() as tx:
        for name, enabled, executions in (("used", True, 3), ("unused", True, 0), ("off", False, 5)):
            await tx.playbooks.add(Playbook(name=name, enabled=enabled, executions=executions, successes=executions,
                                            created_at=world.clock(), updated_at=world.clock()))

    at(world, DAY_START + timedelta(days=1, minutes=30))  # 00:30 the day after: not in the report
    ids["after"] = await analysed(world, am_payload("NextDay", service="next", starts_at=world.clock()))
    result = await world.approvals.decide(incident_id=ids["after"], actor=world.actor(APPROVER, "@alice"), approve=True)
    assert result.outcome is Outcome.APPROVED, result
    await add_run(world, ids["after"], auto=False, state=ExecutionState.FAILED, finished_at=world.clock())
    await world.knowledge.add(title="next day", body="not in the report", created_by="tg:111")
    return ids


async def figures_of(world: World, sch: Scheduled, start: datetime, end: datetime) -> dict[str, Any]:
    async with world.db.read() as tx:
        return await sch.reports.figures(tx, start, end)


# --- figures -------------------------------------------------------------------------------------------


def seconds(value: float) -> Any:
    """SQLite subtracts julianday() values: exact to well under a millisecond, not to the last bit."""
    return pytest.approx(value, abs=1e-3)


async def test_report_figures_of_a_day_are_exact(world: World) -> None:
    sch = scheduled(world, targets=TARGETS)
    await a_day(world, sch)

    figures = await figures_of(world, sch, DAY_START, DAY_START + timedelta(days=1))

    assert figures == {
        "alerts": 7, "repeats": 2, "grouped": 1, "silenced_alerts": 1,
        "incidents": 6, "silenced_incidents": 1, "resolved_of_opened": 2, "acknowledged": 3,
        "mtta_seconds": seconds((10 + 20 + 30) * 60 / 3),  # DiskFull, HighLatency, HighErrorRate
        "resolved": 2, "auto_resolved": 1,  # PodCrashLooping went away by itself
        "mttr_seconds": seconds((30 + 5) * 60 / 2),
        "human_approved": 2, "rejected": 1, "expired": 0,  # CPUThrottling's approval was the policy's
        "approval_p50_seconds": seconds((10 + 30) * 60 / 2),  # the median of two is their mean
        "auto_succeeded": 2, "auto_failed": 1, "approved_succeeded": 1, "approved_failed": 0, "dry_runs": 1,
        "auto_rate": pytest.approx(200 / 3), "remediations": 4, "success_rate": 75.0,
        "noisiest": [  # alerts plus their repeats, then by name; PodCrashLooping is sixth
            {"alertname": "DiskFull", "alerts": 2, "notifications": 4},
            {"alertname": "BackupLate", "alerts": 1, "notifications": 1},
            {"alertname": "CPUThrottling", "alerts": 1, "notifications": 1},
            {"alertname": "HighErrorRate", "alerts": 1, "notifications": 1},
            {"alertname": "HighLatency", "alerts": 1, "notifications": 1},
        ],
        "categories": [  # the rules' categories; the silenced BackupLate was never analysed
            {"category": "crash", "incidents": 1},
            {"category": "error_rate", "incidents": 1},
            {"category": "latency", "incidents": 1},
            {"category": "resource_exhaustion", "incidents": 1},
            {"category": "storage", "incidents": 1},
        ],
        "knowledge": 2,
        # "used" and "unused", and the one learned when DiskFull resolved after its restart succeeded
        "active_playbooks": 3, "used_playbooks": 2,
        "grade": "good", "grade_rate": 75.0, "grade_basis": "remediation",
    }
    async with world.db.read() as tx:
        learned = [p for p in await tx.playbooks.enabled() if p.source == "learned"]
    assert len(learned) == 1 and learned[0].executions == 1


async def test_report_figures_are_zeros_and_dashes_when_nothing_happened(world: World) -> None:
    sch = scheduled(world)
    at(world, T0)
    await analysed(world, am_payload("DiskFull", service="db", starts_at=T0))  # on the day after the period

    figures = await figures_of(world, sch, DAY_START - timedelta(days=1), DAY_START)

    assert figures == {
        "alerts": 0, "repeats": 0, "grouped": 0, "silenced_alerts": 0,
        "incidents": 0, "silenced_incidents": 0, "resolved_of_opened": 0, "acknowledged": 0, "mtta_seconds": None,
        "resolved": 0, "auto_resolved": 0, "mttr_seconds": None,
        "human_approved": 0, "rejected": 0, "expired": 0, "approval_p50_seconds": None,
        "auto_succeeded": 0, "auto_failed": 0, "approved_succeeded": 0, "approved_failed": 0, "dry_runs": 0,
        "auto_rate": None, "remediations": 0, "success_rate": None,
        "noisiest": [], "categories": [], "knowledge": 0, "active_playbooks": 0, "used_playbooks": 0,
        "grade": "quiet", "grade_rate": None, "grade_basis": "none",
    }


async def test_report_grade_without_remediations_is_the_resolution_rate(world: World) -> None:
    sch = scheduled(world)
    at(world, T0)
    for n, service in enumerate(("a", "b", "c", "d")):
        await ingest(world, am_payload("DiskFull", service=service, starts_at=T0))
        if n == 0:
            world.clock.advance(minutes=3)
            await ingest(world, am_payload("DiskFull", service=service, status="resolved", starts_at=T0,
                                           ends_at=world.clock()))

    figures = await figures_of(world, sch, DAY_START, DAY_START + timedelta(days=1))

    assert (figures["incidents"], figures["resolved_of_opened"], figures["remediations"]) == (4, 1, 0)
    assert (figures["grade"], figures["grade_rate"], figures["grade_basis"]) == ("attention", 25.0, "resolution")


# --- the daily report: when, to whom, exactly once ----------------------------------------------------------


async def report_rows(db: Database) -> list[Any]:
    return await messages_of(db, "report")


async def test_daily_report_at_0800_taipei_goes_to_every_target_for_the_previous_local_day(world: World) -> None:
    sch = scheduled(world, targets=TARGETS)
    await a_day(world, sch)
    at(world, REPORT_AT - timedelta(hours=1))  # silences set last night: two end today (Taipei)
    said = Said()
    for text in ("cache 12h", "search 2d", "mail 6h", "queue 30m"):
        await sch.silences.create(world.actor(OPERATOR, "@olga"), text, said)
    mail = said[2][1]["silence"]["id"]
    await sch.silences.remove(world.actor(OPERATOR, "@olga"), str(mail), said)  # removed: not ending any more
    at(world, REPORT_AT)

    assert await sch.reports.send_due(ReportKind.DAILY) is True

    rows = await report_rows(world.db)
    assert [(r.channel, r.chat_id) for r in rows] == [(t.channel, t.chat_id) for t in TARGETS]
    assert [r.dedup_key for r in rows] == [f"{DAILY_LEASE}:{t.channel}:{t.chat_id}" for t in TARGETS]
    assert all(r.state == "pending" and r.incident_id is None and r.not_before == REPORT_AT for r in rows)
    context = rows[0].context
    assert all(r.context == context for r in rows)
    assert {k: context[k] for k in ("kind", "first_day", "last_day", "start", "end", "timezone")} == {
        "kind": "daily", "first_day": "2026-11-23", "last_day": "2026-11-23",
        "start": "2026-11-22T16:00:00+00:00", "end": "2026-11-23T16:00:00+00:00", "timezone": "Asia/Taipei",
    }
    assert "previous" not in context and "trends" not in context
    figures = context["figures"]
    assert (figures["alerts"], figures["incidents"], figures["human_approved"], figures["grade"]) == (7, 6, 2, "good")
    # still active and ending before midnight in Taipei (2026-11-24 16:00 UTC), soonest first
    assert [(s["matchers"], s["ends_at"]) for s in context["silences_ending"]] == [
        ("service=cache", "2026-11-24T11:00:30+00:00"),
    ]
    async with world.db.read() as tx:
        lease = await tx.leases.get(DAILY_LEASE)
    assert lease is not None and lease.owner == "replica-a" and lease.done_at == REPORT_AT

    for _ in range(5):  # the sender delivers the telegram rows (the card chat is paced: a day of cards is ahead)
        await world.settle()
    assert sorted(m.chat_id for m in world.gateway.messages("report")) == ["-100", "-200"]


async def test_daily_report_lists_the_silences_that_end_today(world: World) -> None:
    sch = scheduled(world)
    at(world, REPORT_AT - timedelta(minutes=30))
    said = Said()
    for text in ("cache 12h", "search 2d", "queue 20m", "db 15h59m"):
        await sch.silences.create(world.actor(OPERATOR, "@olga"), text, said)
    at(world, REPORT_AT)

    assert await sch.reports.send_due(ReportKind.DAILY)

    [row, _] = await report_rows(world.db)
    # queue ended before the report; search ends in two days; db ends at 23:59 Taipei, cache at 19:30
    assert [s["matchers"] for s in row.context["silences_ending"]] == ["service=cache", "service=db"]


async def test_daily_report_send_due_twice_sends_once(world: World) -> None:
    sch = scheduled(world)
    at(world, REPORT_AT)

    assert await sch.reports.send_due(ReportKind.DAILY) is True
    assert await sch.reports.send_due(ReportKind.DAILY) is False
    world.clock.advance(hours=3)  # the catch-up job runs every few minutes all day
    assert await sch.reports.send_due(ReportKind.DAILY) is False

    assert len(await report_rows(world.db)) == 2


async def test_daily_report_two_replicas_send_it_exactly_once(world: World) -> None:
    other_db = Database(world.db.url)  # another replica: its own engine and connections, the same database
    try:
        replicas = [scheduled(world, owner="replica-a"), scheduled(world, owner="replica-b", db=other_db)]
        at(world, REPORT_AT)

        first = await asyncio.gather(*(r.reports.send_due(ReportKind.DAILY) for r in replicas))
        again = await asyncio.gather(*(r.reports.send_due(ReportKind.DAILY) for r in reversed(replicas)))

        assert sorted(first) == [False, True] and again == [False, False]
        rows = await report_rows(world.db)
        assert sorted((r.channel, r.chat_id) for r in rows) == [("telegram", "-100"), ("telegram", "-200")]
        async with world.db.read() as tx:
            lease = await tx.leases.get(DAILY_LEASE)
        assert lease is not None and lease.done_at is not None
        assert lease.owner == ["replica-a", "replica-b"][first.index(True)]
    finally:
        await other_db.dispose()


@pytest.mark.parametrize(
    ("late", "sent"),
    [
        (timedelta(0), True),
        (timedelta(hours=2), True),  # alertpilot was down at 08:00: the catch-up sends it at 10:00
        (timedelta(hours=5, minutes=59), True),
        (timedelta(hours=6, minutes=1), False),  # past the 6 h grace: the next one comes tomorrow
        (timedelta(hours=23, minutes=59), False),
    ],
)
async def test_daily_report_missed_is_caught_up_within_the_grace_window(
    world: World, late: timedelta, sent: bool
) -> None:
    sch = scheduled(world, grace=timedelta(hours=6))
    at(world, REPORT_AT - timedelta(seconds=30) + late)

    assert await sch.reports.send_due(ReportKind.DAILY) is sent

    rows = await report_rows(world.db)
    assert len(rows) == (2 if sent else 0)
    async with world.db.read() as tx:
        lease = await tx.leases.get(DAILY_LEASE)
    assert (lease is not None) is sent  # too late: not even taken
    if sent:
        assert rows[0].context["first_day"] == "2026-11-23"


async def test_daily_report_with_no_grace_is_still_sent_a_little_late(world: World) -> None:
    sch = scheduled(world, grace=timedelta(0))
    at(world, REPORT_AT + timedelta(minutes=4))  # a slow tick is the scheduled run, not a catch-up
    assert await sch.reports.send_due(ReportKind.DAILY) is True
    world.clock.now = REPORT_AT + timedelta(days=1, minutes=6)
    assert await sch.reports.send_due(ReportKind.DAILY) is False


async def test_daily_report_before_0800_is_yesterdays_occurrence(world: World) -> None:
    sch = scheduled(world, grace=timedelta(hours=24))
    at(world, REPORT_AT - timedelta(minutes=1))  # 07:59:30 in Taipei: today's is not due yet
    assert await sch.reports.send_due(ReportKind.DAILY) is True
    [row, _] = await report_rows(world.db)
    assert row.dedup_key.startswith("report:daily:2026-11-23:") and row.context["first_day"] == "2026-11-22"
    world.clock.advance(minutes=1)
    assert await sch.reports.send_due(ReportKind.DAILY) is True  # and at 08:00:30, today's
    assert [r.context["first_day"] for r in await report_rows(world.db)] == ["2026-11-22"] * 2 + ["2026-11-23"] * 2


async def test_daily_report_lease_of_a_dead_owner_is_taken_over(world: World) -> None:
    sch = scheduled(world)
    at(world, REPORT_AT)
    async with world.db.write() as tx:  # a replica took it and died before it committed the report
        tx.session.add(Lease(name=DAILY_LEASE, owner="dead-replica", acquired_at=REPORT_AT - timedelta(minutes=6),
                             expires_at=REPORT_AT - timedelta(minutes=1)))

    assert await sch.reports.send_due(ReportKind.DAILY) is True

    assert len(await report_rows(world.db)) == 2
    async with world.db.read() as tx:
        lease = await tx.leases.get(DAILY_LEASE)
    assert lease is not None and lease.owner == "replica-a" and lease.done_at == REPORT_AT


async def test_daily_report_lease_of_a_live_owner_is_left_alone_until_it_expires(world: World) -> None:
    sch = scheduled(world)
    at(world, REPORT_AT)
    async with world.db.write() as tx:
        tx.session.add(Lease(name=DAILY_LEASE, owner="busy-replica", acquired_at=REPORT_AT,
                             expires_at=REPORT_AT + timedelta(minutes=5)))

    assert await sch.reports.send_due(ReportKind.DAILY) is False
    assert await report_rows(world.db) == []
    world.clock.advance(minutes=5)  # it never completed: its lease ran out
    assert await sch.reports.send_due(ReportKind.DAILY) is True
    assert len(await report_rows(world.db)) == 2


class FailingNotifier:
    """The world's notifier, except that the ``fail_at``-th ``answer`` raises (a crash mid-transaction)."""

    def __init__(self, notifier: Any, fail_at: int) -> None:
        self._inner, self._fail_at, self.calls = notifier, fail_at, 0
        self.card_targets = notifier.card_targets

    def wake(self) -> None:
        self._inner.wake()

    async def answer(self, *args: Any, **kwargs: Any) -> bool:
        self.calls += 1
        if self.calls == self._fail_at:
            raise RuntimeError("connection reset while queueing")
        return await self._inner.answer(*args, **kwargs)


async def test_daily_report_failure_before_commit_releases_the_lease_and_the_next_try_sends(world: World) -> None:
    flaky = FailingNotifier(world.notifier, fail_at=2)  # the first target's row is queued, then it crashes
    sch = scheduled(world, notifier=flaky)  # type: ignore[arg-type]
    at(world, REPORT_AT)

    with pytest.raises(RuntimeError, match="connection reset"):
        await sch.reports.send_due(ReportKind.DAILY)

    assert await report_rows(world.db) == []  # the row queued before the crash was rolled back with the lease
    async with world.db.read() as tx:
        lease = await tx.leases.get(DAILY_LEASE)
    assert lease is not None and lease.done_at is None and lease.expires_at == REPORT_AT  # released at once
    other = scheduled(world, owner="replica-b")  # the next tick, here or on another replica
    assert await other.reports.send_due(ReportKind.DAILY) is True
    assert len(await report_rows(world.db)) == 2


async def test_lease_expired_and_taken_over_cannot_complete(world: World) -> None:
    a, b = scheduled(world, owner="replica-a"), scheduled(world, owner="replica-b")
    at(world, REPORT_AT)
    assert await a.leases.acquire("job:x", timedelta(minutes=5))
    assert not await b.leases.acquire("job:x", timedelta(minutes=5))
    assert await a.leases.acquire("job:x", timedelta(minutes=5))  # renewing one's own lease
    world.clock.advance(minutes=5)  # a stalled past its lease
    assert await b.leases.acquire("job:x", timedelta(minutes=5))

    with pytest.raises(LeaseLost):
        async with world.db.write() as tx:
            await a.leases.complete(tx, "job:x")
    async with world.db.write() as tx:
        await b.leases.complete(tx, "job:x")
    assert await a.leases.is_done("job:x") and await b.leases.is_done("job:x")
    world.clock.advance(hours=1)
    assert not await a.leases.acquire("job:x", timedelta(minutes=5))  # done for good


async def test_periodic_turn_is_held_by_one_replica_and_released_afterwards(world: World) -> None:
    a, b = scheduled(world, owner="replica-a"), scheduled(world, owner="replica-b")
    async with (
        a.leases.turn("job:silence_expiry", timedelta(minutes=2)) as held_a,
        b.leases.turn("job:silence_expiry", timedelta(minutes=2)) as held_b,
    ):
        assert (held_a, held_b) == (True, False)
    async with b.leases.turn("job:silence_expiry", timedelta(minutes=2)) as held_b:
        assert held_b  # a released it without waiting for it to expire
    assert not await a.leases.is_done("job:silence_expiry")


# --- the weekly digest -----------------------------------------------------------------------------------

MONDAY_REPORT = datetime(2026, 11, 30, 0, 0, 30, tzinfo=UTC)  # Monday 08:00:30 in Taipei


async def test_weekly_digest_on_monday_compares_last_week_with_the_week_before(world: World) -> None:
    sch = scheduled(world)
    # the week before (2026-11-16 … 22 in Taipei): two incidents, one resolved by itself
    for day, service in ((18, "a"), (20, "b")):
        at(world, datetime(2026, 11, day, 2, 0, tzinfo=UTC))
        await ingest(world, am_payload("DiskFull", service=service, starts_at=world.clock()))
    world.clock.advance(minutes=10)
    await ingest(world, am_payload("DiskFull", service="b", status="resolved", starts_at=world.clock()
                                   - timedelta(minutes=10), ends_at=world.clock()))
    # last week (2026-11-23 … 29): three incidents, each resolved by itself
    for day, service in ((24, "c"), (25, "d"), (29, "e")):
        at(world, datetime(2026, 11, day, 2, 0, tzinfo=UTC))
        await ingest(world, am_payload("HighLatency", service=service, starts_at=world.clock()))
        world.clock.advance(minutes=20)
        await ingest(world, am_payload("HighLatency", service=service, status="resolved",
                                       starts_at=world.clock() - timedelta(minutes=20), ends_at=world.clock()))
    at(world, MONDAY_REPORT)

    assert await sch.reports.send_due(ReportKind.WEEKLY) is True
    assert await sch.reports.send_due(ReportKind.WEEKLY) is False

    rows = await report_rows(world.db)
    assert [r.dedup_key for r in rows] == [
        "report:weekly:2026-11-30:telegram:-100", "report:weekly:2026-11-30:telegram:-200"
    ]
    context = rows[0].context
    assert (context["kind"], context["first_day"], context["last_day"]) == ("weekly", "2026-11-23", "2026-11-29")
    assert (context["start"], context["end"]) == ("2026-11-22T16:00:00+00:00", "2026-11-29T16:00:00+00:00")
    figures, previous, trends = context["figures"], context["previous"], context["trends"]
    assert (figures["incidents"], figures["auto_resolved"], figures["mttr_seconds"]) == (3, 3, seconds(1200))
    assert (previous["incidents"], previous["auto_resolved"], previous["mttr_seconds"]) == (2, 1, seconds(600))
    assert trends["incidents"] == {"arrow": "↑", "good": False, "delta": 50}  # more incidents is worse
    assert trends["alerts"] == {"arrow": "↑", "good": False, "delta": 50}
    assert trends["auto_resolved"] == {"arrow": "↑", "good": True, "delta": 200}
    assert trends["mttr_seconds"]["arrow"] == "↑" and trends["mttr_seconds"]["good"] is False
    assert trends["success_rate"] == {"arrow": "→", "good": None, "delta": None}  # nothing remediated either week
    assert trends["knowledge"] == {"arrow": "→", "good": None, "delta": None}
    assert set(trends) == {
        "alerts", "incidents", "repeats", "human_approved", "rejected", "auto_resolved", "remediations",
        "success_rate", "mtta_seconds", "mttr_seconds", "approval_p50_seconds", "knowledge",
    }
    # and the daily report of that Monday is its own occurrence
    assert await sch.reports.send_due(ReportKind.DAILY) is True
    assert len(await report_rows(world.db)) == 4


async def test_weekly_digest_is_not_sent_on_other_days(world: World) -> None:
    sch = scheduled(world)
    at(world, REPORT_AT)  # Tuesday 08:00:30 in Taipei: Monday's digest is a day old, past the grace
    assert await sch.reports.send_due(ReportKind.WEEKLY) is False
    at(world, MONDAY_REPORT - timedelta(minutes=1))  # Monday 07:59:30: not yet
    assert await sch.reports.send_due(ReportKind.WEEKLY) is False
    assert await report_rows(world.db) == []


# --- /report on demand -------------------------------------------------------------------------------------

DM = ChatTarget("telegram", "4242")


async def test_report_on_demand_today_yesterday_and_7d(world: World) -> None:
    sch = scheduled(world)
    await a_day(world, sch)
    at(world, datetime(2026, 11, 23, 12, 0, tzinfo=UTC))  # 20:00 on the day, in Taipei
    said = Said()
    viewer = world.actor(VIEWER, "@vera", chat=DM)

    for argument in ("", "today", "yesterday", "7d", " Week "):
        await sch.reports.on_demand(viewer, argument, said)

    assert [template for template, _ in said] == ["report"] * 5
    kinds = [(c["kind"], c["first_day"], c["last_day"], c["end"], c["figures"]["alerts"]) for _, c in said]
    assert kinds == [
        ("today", "2026-11-23", "2026-11-23", "2026-11-23T12:00:00+00:00", 7),
        ("today", "2026-11-23", "2026-11-23", "2026-11-23T12:00:00+00:00", 7),
        ("yesterday", "2026-11-22", "2026-11-22", "2026-11-22T16:00:00+00:00", 1),  # OldAlert at 23:30
        ("7d", "2026-11-16", "2026-11-23", "2026-11-23T12:00:00+00:00", 8),
        ("7d", "2026-11-16", "2026-11-23", "2026-11-23T12:00:00+00:00", 8),
    ]
    assert said[0][1]["start"] == "2026-11-22T16:00:00+00:00"  # since local midnight
    assert await report_rows(world.db) == []  # answered through the sink, nothing scheduled


@pytest.mark.parametrize("argument", ["month", "30d", "yesterday please", "weekly", "daily"])
async def test_report_on_demand_bad_argument_is_a_usage_error(world: World, argument: str) -> None:
    sch = scheduled(world)
    said = Said()
    await sch.reports.on_demand(world.actor(VIEWER, chat=DM), argument, said)
    assert said == [("error", {"code": "usage", "command": "report"})]


async def test_report_on_demand_refuses_an_unmapped_actor_outside_the_card_chat(world: World) -> None:
    sch = scheduled(world)
    said = Said()
    await sch.reports.on_demand(world.actor(STRANGER, chat=DM), "today", said)
    [(template, context)] = said
    assert template == "action_result"
    assert context["outcome"] == "not_allowed" and context["needed_role"] == "viewer"
    await sch.reports.on_demand(world.actor(STRANGER), "today", said)  # in the card chat everyone sees the cards
    assert said[-1][0] == "report"


async def test_daily_report_silences_ending_today_follow_local_midnight_across_a_dst_change(world: World) -> None:
    """Europe/Berlin leaves summer time on 2026-10-25: that day has 25 hours, and ends at 23:00 UTC."""
    sch = scheduled(world)
    berlin = ReportService(world.db, world.notifier, world.chat, sch.leases, world.clock,
                           tz=ZoneInfo("Europe/Berlin"), at=time(8, 0), targets=[CARD_CHAT], grace=timedelta(hours=6))
    at(world, datetime(2026, 10, 25, 6, 0, tzinfo=UTC))  # 07:00 CET
    said = Said()
    await sch.silences.create(world.actor(OPERATOR), "cache 16h30m", said)  # ends 22:30 UTC: 23:30 local, today
    await sch.silences.create(world.actor(OPERATOR), "search 17h30m", said)  # ends 23:30 UTC: tomorrow
    at(world, datetime(2026, 10, 25, 7, 0, 30, tzinfo=UTC))  # 08:00:30 CET

    assert await berlin.send_due(ReportKind.DAILY) is True

    [row] = await report_rows(world.db)
    assert row.dedup_key == "report:daily:2026-10-25:telegram:-100"
    assert (row.context["start"], row.context["end"]) == ("2026-10-23T22:00:00+00:00", "2026-10-24T22:00:00+00:00")
    assert [s["matchers"] for s in row.context["silences_ending"]] == ["service=cache"]
