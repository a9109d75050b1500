"""Silences: ``/silence`` (parsed, answered, role-checked), the card's 🔕 button, ``/silences``, ``/unsilence``,
and the expiry job. A silenced incident is stored and counted but gets no card; when its silence ends, the
incidents that still fire get their analysis and card. Time is the injected clock."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.actions import Outcome
from services.errors import IncidentNotFound
from services.ports import ChatTarget
from storage.db import Database
from storage.tables import OutboxKind
from tests.harness import APPROVER, OPERATOR, STRANGER, VIEWER
from tests.service.conftest import CARD_CHAT, World
from tests.service.helpers import Said, am_payload, ingest, messages_of, outbox_all, scheduled

NOW = datetime(2026, 11, 24, 2, 0, tzinfo=UTC)
DM = ChatTarget("telegram", "4242")


async def cards_of(world: World, incident_id: int) -> list[Any]:
    async with world.db.read() as tx:
        return [r for r in await tx.outbox.of_incident(incident_id) if r.kind == OutboxKind.CARD]


async def incident(world: World, incident_id: int) -> Any:
    async with world.db.read() as tx:
        found = await tx.incidents.get(incident_id)
    assert found is not None
    return found


async def firing(world: World, alertname: str = "DiskFull", service: str = "db", **kw: Any) -> int:
    result = await ingest(world, am_payload(alertname, service=service, starts_at=world.clock(), **kw))
    [incident_id] = result.incidents_opened
    return incident_id


@pytest.fixture(autouse=True)
def _clock(world: World) -> None:
    world.clock.now = NOW


# --- /silence ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "code", "echo"),
    [
        ("", "usage", ""),
        ("checkout", "no_duration", ""),
        ("2h maintenance", "no_matcher", ""),
        ("checkout 0m", "duration_range", "0m"),
        ("checkout 31d", "duration_range", "31d"),
        ("checkout 2x", "bad_matcher", "2x"),  # a second bare word is not a second service
        ("bad-label=x 1h", "bad_matcher", "bad-label=x"),
        ("namespace= 1h", "bad_matcher", "namespace="),
    ],
)
async def test_silence_command_errors_are_answered(world: World, text: str, code: str, echo: str) -> None:
    sch = scheduled(world)
    said = Said()
    await sch.silences.create(world.actor(OPERATOR), text, said)
    assert said == [("silence", {"event": "error", "code": code, "text": echo})]
    async with world.db.read() as tx:
        assert await tx.silences.active(NOW) == []


@pytest.mark.parametrize("user", [VIEWER, STRANGER])
async def test_silence_command_needs_an_operator(world: World, user: int) -> None:
    sch = scheduled(world)
    said = Said()
    await sch.silences.create(world.actor(user), "db 2h", said)
    [(template, context)] = said
    assert template == "action_result" and context["outcome"] == "not_allowed" and context["needed_role"] == "operator"
    async with world.db.read() as tx:
        assert await tx.silences.active(NOW) == []


async def test_silence_mutes_new_matching_incidents_which_are_stored_and_counted_without_a_card(world: World) -> None:
    sch = scheduled(world)
    said = Said()
    await sch.silences.create(world.actor(OPERATOR, "@olga"), "db namespace=prod 2h   disk migration", said)
    [(template, created)] = said
    assert template == "silence" and created["event"] == "created" and created["muted"] == []
    view = created["silence"]
    assert view["matchers"] == [["namespace", "prod"], ["service", "db"]]
    assert (view["reason"], view["by"], view["ends_at"]) == ("disk migration", "@olga", (NOW + timedelta(hours=2)).isoformat())

    muted_id = await firing(world, "DiskFull", "db", fingerprints=("1", "2"))
    other_ns = await firing(world, "DiskFull", "db", namespace="staging")  # namespace=prod does not match
    other_service = await firing(world, "HighLatency", "api")
    world.clock.advance(minutes=1)
    await ingest(world, am_payload("DiskFull", service="db", fingerprints=("1", "2", "3"), starts_at=NOW))  # grows
    await world.settle()

    found = await incident(world, muted_id)
    assert found.muted is True and found.silence_id == view["id"] and found.needs_analysis is False
    assert await cards_of(world, muted_id) == []  # neither when it opened nor when it grew
    async with world.db.read() as tx:
        assert len(await tx.alerts.of_incident(muted_id)) == 3  # every alert is stored
        assert await tx.proposals.current(muted_id) is None  # and nothing was analysed
    carded = {c.card.incident_id for c in world.gateway.cards() if c.card is not None}
    assert carded == {other_ns, other_service}

    said = Said()
    await sch.silences.list(world.actor(VIEWER), said)
    [(template, listing)] = said
    assert template == "silences" and listing["more"] == 0
    [item] = listing["silences"]
    assert (item["id"], item["incidents"], item["alerts"]) == (view["id"], 1, 3)
    async with world.db.read() as tx:
        figures = await sch.reports.figures(tx, NOW - timedelta(hours=1), NOW + timedelta(hours=1))
    assert (figures["incidents"], figures["silenced_incidents"], figures["alerts"], figures["silenced_alerts"]) == (
        3, 1, 5, 3
    )


async def test_silence_mutes_the_matching_incidents_that_already_fire(world: World) -> None:
    sch = scheduled(world)
    db_id = await firing(world, "DiskFull", "db")
    api_id = await firing(world, "HighLatency", "api")
    await world.settle()
    before = len(await cards_of(world, db_id))

    said = Said()
    await sch.silences.create(world.actor(OPERATOR), "alertname=DiskFull 30m", said)

    assert said[0][1]["muted"] == [f"INC-{db_id}"]
    assert (await incident(world, db_id)).muted is True and not (await incident(world, api_id)).muted
    assert len(await cards_of(world, db_id)) == before + 1  # re-rendered once: its 🔕 button goes away
    async with world.db.read() as tx:
        events = [e.kind for e in await tx.timeline.of_incident(db_id)]
    assert "silenced" in events


async def test_resolution_of_a_muted_incident_posts_nothing(world: World) -> None:
    sch = scheduled(world)
    await sch.silences.create(world.actor(OPERATOR), "db 2h", Said())
    incident_id = await firing(world)
    world.clock.advance(minutes=30)
    result = await ingest(world, am_payload("DiskFull", service="db", status="resolved", starts_at=NOW,
                                            ends_at=world.clock()))
    assert result.incidents_resolved == [incident_id]
    await world.settle()

    async with world.db.read() as tx:
        assert await tx.outbox.of_incident(incident_id) == []  # no card, no "resolved" reply
        assert await tx.postmortems.of_incident(incident_id) is None
    assert world.gateway.sent == []


async def test_resolution_of_an_incident_silenced_after_its_card_was_shown_updates_the_card(world: World) -> None:
    sch = scheduled(world)
    incident_id = await firing(world)
    await world.analysis.run_pending()
    await world.settle()
    assert (await sch.silences.silence_incident(incident_id=incident_id, actor=world.actor(OPERATOR))).ok
    await world.settle()
    world.clock.advance(minutes=30)
    await ingest(world, am_payload("DiskFull", service="db", status="resolved", starts_at=NOW, ends_at=world.clock()))
    await world.settle()

    last = world.gateway.cards()[-1]
    assert last.card is not None and last.card.status == "resolved"


# --- the 🔕 button -----------------------------------------------------------------------------------------


async def test_silence_button_silences_the_service_for_an_hour(world: World) -> None:
    sch = scheduled(world)
    incident_id = await firing(world, "DiskFull", "db")
    await world.settle()

    result = await sch.silences.silence_incident(incident_id=incident_id, actor=world.actor(OPERATOR, "@olga"))

    assert result.outcome is Outcome.SILENCED and result.ref == f"INC-{incident_id}" and result.count == 60
    async with world.db.read() as tx:
        silence = await tx.silences.get(int(result.state or 0))
    assert silence is not None
    assert silence.matchers == {"service": "db", "namespace": "prod"}
    assert (silence.ends_at, silence.created_by, silence.reason) == (NOW + timedelta(hours=1), f"tg:{OPERATOR}",
                                                                     f"🔕 on INC-{incident_id}")
    assert (silence.channel, silence.chat_id) == (CARD_CHAT.channel, CARD_CHAT.chat_id)
    found = await incident(world, incident_id)
    assert found.muted is True and found.silence_id == silence.id
    # the next incident of that service in that namespace opens muted too
    world.clock.advance(minutes=10)
    later = await firing(world, "HighLatency", "db")
    assert (await incident(world, later)).muted is True

    again = await sch.silences.silence_incident(incident_id=incident_id, actor=world.actor(APPROVER))
    assert again.outcome is Outcome.ALREADY_SILENCED and again.state == str(silence.id)
    async with world.db.read() as tx:
        assert len(await tx.silences.active(world.clock())) == 1


async def test_silence_button_without_a_service_silences_the_alertname(world: World) -> None:
    sch = scheduled(world)
    payload = am_payload("NodeDown", service="x", starts_at=NOW)
    for alert in payload["alerts"]:
        del alert["labels"]["service"], alert["labels"]["namespace"]
    payload["commonLabels"] = {"alertname": "NodeDown", "severity": "critical"}
    [incident_id] = (await ingest(world, payload)).incidents_opened

    result = await sch.silences.silence_incident(incident_id=incident_id, actor=world.actor(OPERATOR))

    async with world.db.read() as tx:
        silence = await tx.silences.get(int(result.state or 0))
    assert silence is not None and silence.matchers == {"alertname": "NodeDown"}


@pytest.mark.parametrize("user", [VIEWER, STRANGER])
async def test_silence_button_is_not_allowed_for_viewers(world: World, user: int) -> None:
    sch = scheduled(world)
    incident_id = await firing(world)
    result = await sch.silences.silence_incident(incident_id=incident_id, actor=world.actor(user))
    assert result.outcome is Outcome.NOT_ALLOWED and result.needed_role == "operator"
    assert not (await incident(world, incident_id)).muted
    async with world.db.read() as tx:
        assert await tx.silences.active(NOW) == []


async def test_silence_button_on_a_resolved_or_unknown_incident(world: World) -> None:
    sch = scheduled(world)
    incident_id = await firing(world)
    await ingest(world, am_payload("DiskFull", service="db", status="resolved", starts_at=NOW, ends_at=NOW))
    result = await sch.silences.silence_incident(incident_id=incident_id, actor=world.actor(OPERATOR))
    assert result.outcome is Outcome.INCIDENT_RESOLVED
    with pytest.raises(IncidentNotFound):
        await sch.silences.silence_incident(incident_id=999, actor=world.actor(OPERATOR))
    async with world.db.read() as tx:
        assert await tx.silences.active(NOW) == []


# --- /silences and /unsilence --------------------------------------------------------------------------------


async def test_silences_lists_the_active_ones_soonest_ending_first(world: World) -> None:
    sch = scheduled(world)
    for text in ("api 3h", "db 1h", "web 2h"):
        await sch.silences.create(world.actor(OPERATOR, "@olga"), text, Said())
        world.clock.advance(minutes=1)
    said = Said()
    await sch.silences.remove(world.actor(OPERATOR), "3", said)  # web: removed
    world.clock.now = NOW + timedelta(hours=1, minutes=30)  # db: over

    said = Said()
    await sch.silences.list(world.actor(VIEWER, chat=DM), said)

    [(template, context)] = said
    assert template == "silences" and context["more"] == 0
    assert [(s["id"], s["matchers"], s["by"]) for s in context["silences"]] == [(1, [["service", "api"]], "@olga")]


async def test_silences_list_is_refused_to_an_unmapped_actor_outside_the_card_chat(world: World) -> None:
    sch = scheduled(world)
    said = Said()
    await sch.silences.list(world.actor(STRANGER, chat=DM), said)
    [(template, context)] = said
    assert template == "action_result" and context["outcome"] == "not_allowed" and context["needed_role"] == "viewer"


async def test_unsilence_ends_the_silence_and_its_firing_incidents_get_their_cards(world: World) -> None:
    sch = scheduled(world)
    await sch.silences.create(world.actor(OPERATOR, "@olga", chat=DM), "db 2h", Said())  # set from a DM
    incident_id = await firing(world)
    await world.settle()
    assert await cards_of(world, incident_id) == []

    world.clock.advance(minutes=20)
    said = Said()
    await sch.silences.remove(world.actor(APPROVER, "@alice"), "#1", said)

    [(template, context)] = said
    assert template == "silence"
    assert (context["event"], context["by"], context["unmuted"]) == ("removed", "@alice", [f"INC-{incident_id}"])
    found = await incident(world, incident_id)
    assert found.muted is False and found.needs_analysis is True  # it was never analysed: it is now
    async with world.db.read() as tx:
        assert await tx.silences.active(world.clock()) == []
    # whoever set it learns it is gone, in the chat they set it from
    [told] = await messages_of(world.db, "silence")
    assert (told.chat_id, told.context["event"]) == (DM.chat_id, "removed")
    await world.settle()
    [card] = [c for c in world.gateway.cards() if c.card is not None and c.card.incident_id == incident_id]
    assert card.card is not None and card.card.proposal is not None  # analysed, then shown

    said = Said()
    await sch.silences.remove(world.actor(OPERATOR), "1", said)  # already gone
    assert said == [("silence", {"event": "error", "code": "not_active", "text": "1"})]


@pytest.mark.parametrize(("text", "code"), [("", "bad_id"), ("abc", "bad_id"), ("1234567890123", "bad_id"),
                                            ("42", "not_active")])
async def test_unsilence_errors_are_answered(world: World, text: str, code: str) -> None:
    sch = scheduled(world)
    said = Said()
    await sch.silences.remove(world.actor(OPERATOR), text, said)
    [(template, context)] = said
    assert template == "silence" and context["event"] == "error" and context["code"] == code


async def test_unsilence_needs_an_operator(world: World) -> None:
    sch = scheduled(world)
    await sch.silences.create(world.actor(OPERATOR), "db 2h", Said())
    said = Said()
    await sch.silences.remove(world.actor(VIEWER), "1", said)
    assert said[0][0] == "action_result" and said[0][1]["outcome"] == "not_allowed"
    async with world.db.read() as tx:
        assert len(await tx.silences.active(NOW)) == 1


# --- expiry --------------------------------------------------------------------------------------------------


async def test_expired_silence_is_announced_once_and_its_firing_incidents_are_unmuted(world: World) -> None:
    sch = scheduled(world)
    await sch.silences.create(world.actor(OPERATOR, "@olga", chat=DM), "db 1h", Said())
    still_firing = await firing(world, "DiskFull", "db")
    gone = await firing(world, "HighLatency", "db")
    world.clock.advance(minutes=10)
    await ingest(world, am_payload("HighLatency", service="db", status="resolved", starts_at=NOW, ends_at=world.clock()))
    world.clock.advance(minutes=49)
    assert await sch.silences.expire_due() == 0  # a minute to go
    world.clock.advance(minutes=1)

    assert await sch.silences.expire_due() == 1
    assert await sch.silences.expire_due() == 0  # the next tick: already announced

    expired = await messages_of(world.db, "silence")
    assert sorted(r.chat_id for r in expired) == sorted([CARD_CHAT.chat_id, DM.chat_id])  # card chats and its origin
    assert all(r.context["event"] == "expired" and r.context["unmuted"] == [f"INC-{still_firing}"] for r in expired)
    found = await incident(world, still_firing)
    assert found.muted is False and found.needs_analysis is True
    assert (await incident(world, gone)).muted is True  # resolved meanwhile: nobody is told about it
    await world.settle()
    shown = {c.card.incident_id for c in world.gateway.cards() if c.card is not None}
    assert shown == {still_firing}
    assert sorted(m.chat_id for m in world.gateway.messages("silence")) == ["-100", "4242"]
    async with world.db.read() as tx:
        assert (await tx.proposals.current(still_firing)) is not None
        assert await tx.outbox.of_incident(gone) == []


async def test_expiry_by_two_replicas_announces_once(world: World) -> None:
    other_db = Database(world.db.url)
    try:
        a, b = scheduled(world, owner="replica-a"), scheduled(world, owner="replica-b", db=other_db)
        for text in ("db 1h", "api 1h", "web 2h"):
            await a.silences.create(world.actor(OPERATOR), text, Said())
        world.clock.advance(hours=1)

        ended = await asyncio.gather(a.silences.expire_due(), b.silences.expire_due())
        ended += await asyncio.gather(b.silences.expire_due(), a.silences.expire_due())

        assert sum(ended) == 2
        rows = [r for r in await outbox_all(world.db) if r.template == "silence"]
        assert sorted(r.context["silence"]["matchers"][0][1] for r in rows) == ["api", "db"]
    finally:
        await other_db.dispose()


async def test_incident_stays_muted_while_another_matching_silence_lasts(world: World) -> None:
    sch = scheduled(world)
    await sch.silences.create(world.actor(OPERATOR), "db 1h", Said())
    await sch.silences.create(world.actor(OPERATOR), "namespace=prod 1d maintenance", Said())
    incident_id = await firing(world)  # both match; it opens under the one that ends first
    assert (await incident(world, incident_id)).silence_id == 1
    world.clock.advance(hours=1)

    assert await sch.silences.expire_due() == 1

    found = await incident(world, incident_id)
    assert found.muted is True and found.silence_id == 2  # the day-long silence still covers it
    [expired] = await messages_of(world.db, "silence")
    assert expired.context["unmuted"] == []
    assert await cards_of(world, incident_id) == []
    said = Said()
    await sch.silences.list(world.actor(VIEWER), said)
    assert [(s["id"], s["incidents"]) for s in said[0][1]["silences"]] == [(2, 1)]
    world.clock.advance(hours=23)
    assert await sch.silences.expire_due() == 1  # and when that one ends, it gets its card
    assert (await incident(world, incident_id)).muted is False
    assert len(await cards_of(world, incident_id)) == 1
