"""Alert storms (issue 9) through the outbox: more new incidents than a group's budget for a minute become one
digest and cards for the most severe; nothing is lost, and folded incidents stay folded in that chat."""

from __future__ import annotations

from typing import Any

import pytest

from services import outbox
from services.ports import ChatTarget
from services.sources.alertmanager import parse_alertmanager
from services.storm import FOLDED_ERROR
from tests.harness import APPROVER, fixture
from tests.service.conftest import CARD_CHAT, World

SEVERITIES = ("critical", "warning", "info", "error")  # incident n gets SEVERITIES[n % 4]


def storm_payload(n: int, *, resolved: bool = False) -> dict[str, Any]:
    payload = fixture("01-firing-one-alert.json")
    severity = SEVERITIES[n % 4]
    labels = {"alertname": f"Storm{n % 3}", "instance": f"host-{n}", "service": f"svc{n % 5}", "severity": severity}
    payload["groupKey"] = f"storm-{n}"
    payload["groupLabels"] = {"alertname": labels["alertname"]}
    payload["commonLabels"] = labels
    alert = payload["alerts"][0]
    alert["labels"] = labels
    alert["fingerprint"] = f"fp-storm-{n}"
    if resolved:
        payload["status"] = alert["status"] = "resolved"
        alert["endsAt"] = "2026-11-24T05:16:48Z"
    return payload


async def open_incidents(world: World, numbers: range) -> list[int]:
    ids = []
    for n in numbers:
        ids += (await world.incidents.ingest(parse_alertmanager(storm_payload(n)))).incidents_opened
    await world.analysis.run_pending()
    return ids


async def pump_for(world: World, seconds: int) -> list[tuple[float, str]]:
    """One sender pass a second for ``seconds``; (monotonic time, what) of each message sent to the card chat."""
    sent: list[tuple[float, str]] = []
    for _ in range(seconds):
        before = len(world.gateway.sent)
        await world.sender.pump()
        for s in world.gateway.sent[before:]:
            if s.chat_id == CARD_CHAT.chat_id:
                sent.append((world.mono[0], s.template or s.kind))
        world.mono[0] += 1.0
        world.clock.advance(seconds=1)
    return sent


async def states(world: World, incident_id: int) -> list[str]:
    async with world.db.read() as tx:
        return [r.state for r in await tx.outbox.of_incident(incident_id) if r.chat_id == CARD_CHAT.chat_id]


async def test_storm_40_incidents_one_digest_then_cards_for_the_most_severe(world: World) -> None:
    ids = await open_incidents(world, range(40))
    assert len(ids) == 40
    sent = await pump_for(world, 60)

    assert len(sent) <= 20  # the group's budget for the minute
    assert sent[0][1] == "storm_digest"  # the digest first
    assert [what for _, what in sent].count("storm_digest") == 1
    cards = world.gateway.cards()
    assert len(cards) == 19 and len(sent) == 20
    [digest] = world.gateway.messages("storm_digest")
    assert digest.context["count"] == 40 and digest.context["kept"] == 19 and digest.context["folded"] == 21
    assert {s["severity"]: s["count"] for s in digest.context["by_severity"]} == {
        "critical": 10, "error": 10, "warning": 10, "info": 10}
    assert len(digest.context["top_alerts"]) == 3 and len(digest.context["top_services"]) == 3
    # the most severe get cards: every critical, then the oldest errors
    carded = {c.card.incident_id for c in cards if c.card is not None}
    critical = {ids[n] for n in range(40) if SEVERITIES[n % 4] == "critical"}
    errors = [ids[n] for n in range(40) if SEVERITIES[n % 4] == "error"]
    assert carded == critical | set(errors[:9])
    folded = [i for i in ids if i not in carded]
    assert sorted(f"INC-{i}" for i in folded) == sorted(digest.context["refs"])
    for incident_id in folded:
        assert (await states(world, incident_id))[0] == "folded"
    async with world.db.read() as tx:
        row = (await tx.outbox.of_incident(folded[0]))[0]
        assert row.last_error == FOLDED_ERROR
        assert await tx.refs.card("telegram", CARD_CHAT.chat_id, folded[0]) is None
        kinds = await tx.refs.kinds_in("telegram", folded)
    assert all(kinds[(CARD_CHAT.chat_id, i)] == {"folded"} for i in folded)
    # nothing lost: every incident is open and listed
    items, total = await world.queries.open_incidents(limit=50)
    assert total == 40 and {i["ref"] if isinstance(i, dict) else i.ref for i in items} == {f"INC-{i}" for i in ids}


async def test_storm_folded_incident_stays_folded_in_the_chat(world: World) -> None:
    ids = await open_incidents(world, range(40))
    await pump_for(world, 61)
    carded = {c.card.incident_id for c in world.gateway.cards() if c.card is not None}
    folded = [i for i in ids if i not in carded]
    kept = sorted(carded)[0]
    before = len(world.gateway.sent)
    # later rows of a folded incident (card edits, the "resolved" thread) are folded; a kept one's still go
    for n in (ids.index(folded[0]), ids.index(folded[1]), ids.index(kept)):
        await world.incidents.ingest(parse_alertmanager(storm_payload(n, resolved=True)))
    await pump_for(world, 30)
    later = world.gateway.sent[before:]
    assert later, "the kept incident's resolution is sent"
    touched = {s.card.incident_id for s in later if s.card is not None}
    assert folded[0] not in touched and folded[1] not in touched
    assert all(s.reply_to is not None for s in later if s.kind == "message")  # threads of kept cards only
    for incident_id in folded[:2]:
        assert set((await states(world, incident_id))[1:]) == {"folded"}
        assert "pending" not in await states(world, incident_id)
    assert world.gateway.messages("storm_digest").__len__() == 1  # no new digest for them


async def test_storm_status_answers_for_a_folded_incident(world: World) -> None:
    ids = await open_incidents(world, range(40))
    await pump_for(world, 61)
    carded = {c.card.incident_id for c in world.gateway.cards() if c.card is not None}
    folded = next(i for i in ids if i not in carded)
    await world.chat.status(world.actor(APPROVER), folded, reply_to="7")
    await pump_for(world, 5)
    [status] = world.gateway.messages("status")
    assert status.context["card"]["ref"] == f"INC-{folded}"


async def test_storm_deciding_on_a_folded_incident_brings_its_card_and_thread_back_in_that_chat(world: World) -> None:
    ids = await open_incidents(world, range(40))
    await pump_for(world, 61)
    carded = {c.card.incident_id for c in world.gateway.cards() if c.card is not None}
    folded = next(i for i in ids if i not in carded)
    result = await world.approvals.decide(incident_id=folded, actor=world.actor(APPROVER, "@alice"), approve=True)
    assert result.ok
    before = len(world.gateway.sent)
    await pump_for(world, 10)
    later = world.gateway.sent[before:]
    [card] = [s for s in later if s.card is not None and s.card.incident_id == folded]  # a card now, once
    replies = [s for s in later if s.kind == "message" and s.template == "decision"]
    assert replies and all(s.reply_to is not None for s in replies)  # "Approved by @alice", under that card
    async with world.db.read() as tx:
        assert await tx.refs.card("telegram", CARD_CHAT.chat_id, folded) is not None
        assert (await tx.refs.kinds_in("telegram", [folded]))[(CARD_CHAT.chat_id, folded)] == {"unfolded", "card"}
    assert len(world.gateway.messages("storm_digest")) == 1


async def test_storm_second_wave_gets_its_own_digest_and_keeps_the_kept_cards(world: World) -> None:
    await open_incidents(world, range(40))
    await pump_for(world, 3)  # the digest and two kept cards went; 17 kept cards wait their turn
    assert len(world.gateway.messages("storm_digest")) == 1
    await open_incidents(world, range(40, 48))  # 8 more while the kept cards wait: no room left for them
    await pump_for(world, 130)
    digests = world.gateway.messages("storm_digest")
    assert [d.context["count"] for d in digests] == [40, 8]
    assert digests[1].context["kept"] == 0
    assert len(world.gateway.cards()) == 19  # the first storm's kept cards all went; none was folded later
    async with world.db.read() as tx:
        counts = await tx.outbox.counts()
    assert counts.get("pending", 0) == 0 and counts.get("failed", 0) == 0


async def test_storm_larger_than_a_batch_still_makes_one_digest(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(outbox, "BATCH", 25)  # the sender sees 25 heads at a time: the storm comes in two waves
    await open_incidents(world, range(40))
    sent = await pump_for(world, 60)
    assert len(sent) == 20
    [digest] = world.gateway.messages("storm_digest")
    assert digest.context["count"] == 40 and digest.context["kept"] == 19 and digest.context["folded"] == 21


async def test_storm_calm_chat_sends_every_card_as_before(world: World) -> None:
    ids = await open_incidents(world, range(12))
    sent = await pump_for(world, 20)
    assert [what for _, what in sent] == ["card"] * 12
    assert {c.card.incident_id for c in world.gateway.cards() if c.card is not None} == set(ids)
    assert world.gateway.messages("storm_digest") == []
    async with world.db.read() as tx:
        assert "folded" not in await tx.outbox.counts()


async def test_storm_few_new_cards_never_storm_even_without_room(world: World) -> None:
    ids = await open_incidents(world, range(24))  # a storm: digest + 19 cards in the first minute
    await pump_for(world, 61)
    more = await open_incidents(world, range(24, 24 + 4))  # fewer than STORM_MIN: they wait, and go as cards
    await pump_for(world, 60)
    carded = {c.card.incident_id for c in world.gateway.cards() if c.card is not None}
    assert set(more) <= carded
    assert len(world.gateway.messages("storm_digest")) == 1
    assert len(ids) == 24


async def test_storm_a_decision_from_another_chat_unfolds_the_incident_where_it_was_folded(world: World) -> None:
    """A WeCom callback (or any other chat) is not where the card lives: the decision still brings the folded
    incident's card back in the chat that folded it."""
    ids = await open_incidents(world, range(40))
    await pump_for(world, 61)
    carded = {c.card.incident_id for c in world.gateway.cards() if c.card is not None}
    folded = next(i for i in ids if i not in carded)
    elsewhere = world.actor(APPROVER, "@alice", chat=ChatTarget("wecom", "callback-app"))
    result = await world.approvals.decide(incident_id=folded, actor=elsewhere, approve=False, reason="not now")
    assert result.ok
    before = len(world.gateway.sent)
    await pump_for(world, 10)
    later = world.gateway.sent[before:]
    assert [s.card.incident_id for s in later if s.card is not None] == [folded]
    async with world.db.read() as tx:
        assert (await tx.refs.kinds_in("telegram", [folded]))[(CARD_CHAT.chat_id, folded)] == {"unfolded", "card"}
