"""Approval reminders: a proposal left waiting past ``after`` gets one threaded reminder that @mentions the
people who may approve it; after a second interval, one escalation to the report chats. Each happens once,
whoever runs the job, and never for a decided proposal or a resolved or silenced incident."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.actions import Outcome
from services.reminders import ReminderService
from services.roles import parse_roles
from storage.db import Database
from tests.harness import APPROVER, OPERATOR
from tests.service.conftest import CARD_CHAT, World
from tests.service.helpers import REPORT_CHAT, Said, am_payload, ingest, messages_of, scheduled

NOW = datetime(2026, 11, 24, 2, 0, tzinfo=UTC)
AFTER = timedelta(minutes=15)


async def waiting(world: World, alertname: str = "KubePodCrashLooping", service: str = "api") -> int:
    """A firing incident whose proposal (the rules') waits for approval since NOW; its card is out."""
    world.clock.now = NOW
    [incident_id] = (await ingest(world, am_payload(alertname, service=service, starts_at=NOW))).incidents_opened
    await world.analysis.run_pending()
    await world.settle()
    return incident_id


def at(world: World, delta: timedelta) -> None:
    world.clock.now = NOW + delta


def card_message_id(world: World, incident_id: int) -> str:
    return next(c.message_id for c in world.gateway.cards(edited=False) if c.card and c.card.incident_id == incident_id)


async def reminder_rows(world: World) -> list[Any]:
    return await messages_of(world.db, "reminder")


async def test_reminder_once_after_the_interval_threaded_and_mentioning_the_approvers(world: World) -> None:
    sch = scheduled(world, remind_after=AFTER)
    incident_id = await waiting(world)

    at(world, AFTER - timedelta(seconds=1))
    assert await sch.reminders.remind_due() == (0, 0)
    at(world, AFTER + timedelta(seconds=1))
    assert await sch.reminders.remind_due() == (1, 0)
    world.clock.advance(minutes=1)
    assert await sch.reminders.remind_due() == (0, 0)  # the next tick: already reminded

    [row] = await reminder_rows(world)
    assert (row.chat_id, row.incident_id, row.reply_to_card) == (CARD_CHAT.chat_id, incident_id, True)
    context = row.context
    assert context["mentions"] == {"telegram": ["111", "444"], "wecom": []}  # the approvers of ROLES
    assert (context["ref"], context["waiting_minutes"], context["signed"], context["required"]) == (
        f"INC-{incident_id}", 15, 0, 1
    )
    assert context["command"] == "kubectl -n prod rollout restart deployment/api"
    assert "escalation" not in context
    await world.settle()
    [sent] = world.gateway.messages("reminder")
    assert sent.reply_to == card_message_id(world, incident_id)  # under the card
    async with world.db.read() as tx:
        proposal = await tx.proposals.current(incident_id)
        events = [e.kind for e in await tx.timeline.of_incident(incident_id)]
    assert proposal is not None and proposal.reminded_at == NOW + AFTER + timedelta(seconds=1)
    assert events.count("reminded") == 1


async def test_escalation_once_after_a_second_interval_to_the_report_chats(world: World) -> None:
    sch = scheduled(world, remind_after=AFTER, targets=(REPORT_CHAT,))
    incident_id = await waiting(world)
    at(world, AFTER)
    assert await sch.reminders.remind_due() == (0, 0)  # not past it yet
    at(world, AFTER + timedelta(minutes=1))
    assert await sch.reminders.remind_due() == (1, 0)

    at(world, 2 * AFTER)
    assert await sch.reminders.remind_due() == (0, 0)  # a second interval since the reminder has not passed
    at(world, 2 * AFTER + timedelta(minutes=2))
    assert await sch.reminders.remind_due() == (0, 1)
    for later in (3 * AFTER, timedelta(hours=5)):
        at(world, later)
        assert await sch.reminders.remind_due() == (0, 0)

    reminder, escalation = await reminder_rows(world)
    assert (reminder.chat_id, reminder.reply_to_card) == (CARD_CHAT.chat_id, True)
    assert (escalation.chat_id, escalation.incident_id, escalation.reply_to_card) == (REPORT_CHAT.chat_id, incident_id,
                                                                                      False)
    assert escalation.context["escalation"] is True and escalation.context["waiting_minutes"] == 32
    assert escalation.context["mentions"] == {"telegram": ["111", "444"], "wecom": []}
    async with world.db.read() as tx:
        events = [e.kind for e in await tx.timeline.of_incident(incident_id)]
    assert (events.count("reminded"), events.count("escalated")) == (1, 1)


async def test_escalation_to_a_card_chat_is_threaded_under_the_card(world: World) -> None:
    sch = scheduled(world, remind_after=AFTER)  # report targets: the card chat and another chat
    incident_id = await waiting(world)
    at(world, AFTER + timedelta(minutes=1))
    await sch.reminders.remind_due()
    at(world, 2 * AFTER + timedelta(minutes=2))
    assert await sch.reminders.remind_due() == (0, 1)

    await world.settle()
    card = card_message_id(world, incident_id)
    sent = [(m.chat_id, m.reply_to, m.context.get("escalation", False)) for m in world.gateway.messages("reminder")]
    assert sorted(sent, key=str) == sorted([("-100", card, False), ("-100", card, True), ("-200", None, True)], key=str)


async def test_no_reminder_for_a_decided_proposal(world: World) -> None:
    sch = scheduled(world, remind_after=AFTER)
    approved = await waiting(world, "KubePodCrashLooping", "api")
    rejected = await waiting(world, "HighLatency", "web")
    at(world, timedelta(minutes=5))
    for incident_id, approve in ((approved, True), (rejected, False)):
        result = await world.approvals.decide(incident_id=incident_id, actor=world.actor(APPROVER), approve=approve)
        assert result.outcome in (Outcome.APPROVED, Outcome.REJECTED)

    for minutes in (16, 40, 120):
        at(world, timedelta(minutes=minutes))
        assert await sch.reminders.remind_due() == (0, 0)
    assert await reminder_rows(world) == []


async def test_no_escalation_once_the_proposal_is_decided_after_the_reminder(world: World) -> None:
    sch = scheduled(world, remind_after=AFTER)
    incident_id = await waiting(world)
    at(world, AFTER + timedelta(minutes=1))
    assert await sch.reminders.remind_due() == (1, 0)
    at(world, AFTER + timedelta(minutes=5))
    assert (await world.approvals.decide(incident_id=incident_id, actor=world.actor(APPROVER), approve=True)).ok
    at(world, 3 * AFTER)
    assert await sch.reminders.remind_due() == (0, 0)
    assert len(await reminder_rows(world)) == 1


async def test_no_reminder_for_a_resolved_incident(world: World) -> None:
    sch = scheduled(world, remind_after=AFTER)
    incident_id = await waiting(world)
    at(world, timedelta(minutes=10))
    resolved = am_payload("KubePodCrashLooping", service="api", status="resolved", starts_at=NOW, ends_at=world.clock())
    assert (await ingest(world, resolved)).incidents_resolved == [incident_id]
    for minutes in (16, 40):
        at(world, timedelta(minutes=minutes))
        assert await sch.reminders.remind_due() == (0, 0)
    assert await reminder_rows(world) == []


async def test_no_reminder_for_a_silenced_incident(world: World) -> None:
    sch = scheduled(world, remind_after=AFTER)
    incident_id = await waiting(world)  # it has its card and a pending proposal …
    at(world, timedelta(minutes=5))
    result = await sch.silences.silence_incident(incident_id=incident_id, actor=world.actor(OPERATOR))
    assert result.outcome is Outcome.SILENCED  # … and is then silenced
    world.clock.now = NOW
    await sch.silences.create(world.actor(OPERATOR), "web 2h", Said())
    muted_from_start = await waiting(world, "HighLatency", "web")
    for minutes in (16, 40):
        at(world, timedelta(minutes=minutes))
        assert await sch.reminders.remind_due() == (0, 0)
    assert await reminder_rows(world) == []
    async with world.db.read() as tx:
        assert await tx.proposals.current(muted_from_start) is None  # a silenced incident is not analysed


async def test_reminder_mentions_only_approvers_of_the_namespace(world: World) -> None:
    roles = parse_roles("tg:111=approver@staging,tg:444=approver,wecom:alice=admin,wecom:bob=operator,tg:222=operator")
    reminders = ReminderService(world.db, world.notifier, roles, world.clock, after=AFTER, escalate_to=[])
    await waiting(world)  # in prod
    at(world, AFTER + timedelta(minutes=1))
    assert await reminders.remind_due() == (1, 0)
    [row] = await reminder_rows(world)
    assert row.context["mentions"] == {"telegram": ["444"], "wecom": ["alice"]}


@pytest.mark.parametrize("rounds", [1, 3])
async def test_two_replicas_remind_and_escalate_once(world: World, rounds: int) -> None:
    other_db = Database(world.db.url)
    try:
        a = scheduled(world, owner="replica-a", remind_after=AFTER)
        b = scheduled(world, owner="replica-b", db=other_db, remind_after=AFTER)
        first = await waiting(world)
        second = await waiting(world, "HighLatency", "web")
        totals = [0, 0]
        for delta in (AFTER + timedelta(minutes=1), 2 * AFTER + timedelta(minutes=2)):
            at(world, delta)
            for _ in range(rounds):
                for reminded, escalated in await asyncio.gather(a.reminders.remind_due(), b.reminders.remind_due()):
                    totals[0] += reminded
                    totals[1] += escalated
        assert totals == [2, 2]
        rows = await reminder_rows(world)
        assert sorted((r.incident_id, r.chat_id, bool(r.context.get("escalation"))) for r in rows) == sorted([
            (first, "-100", False), (second, "-100", False),
            (first, "-100", True), (first, "-200", True), (second, "-100", True), (second, "-200", True),
        ])
    finally:
        await other_db.dispose()
