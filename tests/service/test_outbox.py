"""The outbox sender: order, coalescing, pacing, retries, failures, and cards deleted in the chat."""

from __future__ import annotations

from services.errors import PermanentDeliveryError, RateLimited, TransientDeliveryError
from services.ports import ChatTarget
from services.sources.alertmanager import parse_alertmanager
from tests.harness import APPROVER, fixture
from tests.service.conftest import World


async def new_incident(world: World) -> int:
    result = await world.incidents.ingest(parse_alertmanager(fixture("01-firing-one-alert.json")))
    return result.incidents_opened[0]


async def outbox_rows(world: World, incident_id: int) -> list:
    async with world.db.read() as tx:
        return await tx.outbox.of_incident(incident_id)


async def test_outbox_first_card_waits_for_proposal_then_goes_as_one_message(world: World) -> None:
    incident_id = await new_incident(world)
    await world.sender.pump()
    assert world.gateway.sent == []  # within the grace, no proposal yet: nothing sent
    await world.analysis.run_pending()
    await world.sender.pump()
    [card] = world.gateway.sent
    assert card.kind == "card" and not card.edited
    assert card.card is not None and card.card.proposal is not None  # one message, with the proposal
    states = [r.state for r in await outbox_rows(world, incident_id)]
    assert states == ["sent", "coalesced"]


async def test_outbox_reply_never_overtakes_card(world: World) -> None:
    incident_id = await new_incident(world)
    await world.analysis.run_pending()
    await world.approvals.decide(incident_id=incident_id, actor=world.actor(APPROVER), approve=True)
    await world.settle()
    kinds = [(s.kind, s.edited) for s in world.gateway.sent]
    assert kinds[0] == ("card", False)
    reply = world.gateway.messages("decision")[0]
    assert reply.reply_to == world.gateway.sent[0].message_id


async def test_outbox_429_waits_retry_after_then_delivers(world: World) -> None:
    incident_id = await new_incident(world)
    await world.analysis.run_pending()
    world.gateway.failures.append(RateLimited(7))
    await world.sender.pump()
    [row, _] = await outbox_rows(world, incident_id)
    assert row.state == "pending" and row.last_error and "429" in row.last_error
    assert (row.not_before - world.clock()).total_seconds() == 7
    world.mono[0] += 3
    world.clock.advance(seconds=3)
    await world.sender.pump()
    assert world.gateway.sent == []  # still inside retry_after
    world.mono[0] += 5
    world.clock.advance(seconds=5)
    await world.sender.pump()
    assert len(world.gateway.cards()) == 1


async def test_outbox_transient_errors_back_off_and_never_lose_the_message(world: World) -> None:
    incident_id = await new_incident(world)
    await world.analysis.run_pending()
    world.gateway.failures.extend(TransientDeliveryError("502 Bad Gateway") for _ in range(6))
    delays = []
    for _ in range(6):
        await world.sender.pump()
        row = (await outbox_rows(world, incident_id))[0]
        delays.append(round((row.not_before - world.clock()).total_seconds()))
        world.clock.advance(seconds=delays[-1])
        world.mono[0] += 10
    assert delays == [1, 2, 4, 8, 16, 32]
    await world.sender.pump()
    assert len(world.gateway.cards()) == 1
    assert (await outbox_rows(world, incident_id))[0].state == "sent"


async def test_outbox_permanent_error_is_recorded_as_failed(world: World) -> None:
    incident_id = await new_incident(world)
    await world.analysis.run_pending()
    world.gateway.failures.append(PermanentDeliveryError("Bad Request: chat not found"))
    await world.sender.pump()
    row = (await outbox_rows(world, incident_id))[0]
    assert row.state == "failed" and row.last_error == "Bad Request: chat not found"
    stats = await world.queries.api_stats()
    assert stats["outbox"]["failed"] == 1


async def test_outbox_deleted_card_is_sent_again_and_ref_repointed(world: World) -> None:
    incident_id = await new_incident(world)
    await world.settle()
    old = world.gateway.cards()[0].message_id
    world.gateway.gone.add(old)
    await world.approvals.decide(incident_id=incident_id, actor=world.actor(APPROVER), approve=True)
    await world.settle()
    new_card = world.gateway.cards()[-1]
    assert not new_card.edited and new_card.message_id != old
    reply = world.gateway.messages("decision")[0]
    assert reply.reply_to == new_card.message_id
    body = await world.queries.api_incident(incident_id)
    assert body["messages"] == [{"channel": "telegram", "chat_id": "-100", "message_id": new_card.message_id, "kind": "card"}]


async def test_outbox_paces_one_message_per_second_per_chat(world: World) -> None:
    incident_id = await new_incident(world)
    await world.analysis.run_pending()
    for _ in range(3):
        await world.chat.say(world.actor(APPROVER).target, "help")
    await world.sender.pump()
    assert len(world.gateway.sent) == 1  # the chat's budget for this second is spent
    world.mono[0] += 1.0
    await world.sender.pump()
    assert len(world.gateway.sent) == 2
    assert incident_id == 1


async def test_outbox_claimed_row_is_not_sent_twice_by_two_senders(world: World) -> None:
    await new_incident(world)
    await world.analysis.run_pending()
    async with world.db.read() as tx:
        row = (await tx.outbox.due_heads("telegram", world.clock(), world.clock(), skip_chats=[], limit=10))[0]
    async with world.db.write() as tx:
        assert await tx.outbox.claim(row.id, "other-replica", world.clock(), world.clock())
    await world.sender.pump()
    assert world.gateway.sent == []


async def test_outbox_paced_group_backlog_does_not_starve_other_chats(world: World) -> None:
    for n in range(30):  # 30 new incidents: the group may take 20 a minute
        payload = fixture("01-firing-one-alert.json")
        payload["groupKey"] = f"group-{n}"
        payload["alerts"][0]["fingerprint"] = f"fp-{n}"
        await world.incidents.ingest(parse_alertmanager(payload))
    await world.analysis.run_pending()
    for _ in range(25):  # a minute of sender passes, one message per second allowed in the group
        await world.sender.pump()
        world.mono[0] += 1.0
    assert len(world.gateway.sent) == 20  # the group's budget for the minute (a storm: its digest and 19 cards)
    private = world.actor(APPROVER, chat=ChatTarget("telegram", "4242")).target
    await world.chat.say(private, "help")
    wait = await world.sender.pump()
    assert [m.chat_id for m in world.gateway.messages("help")] == ["4242"]
    assert 0 < wait <= 60  # and the sender knows when the group may go again


async def test_outbox_sender_does_not_spin_on_a_head_that_is_not_due(world: World) -> None:
    incident_id = await new_incident(world)  # its first card waits out the grace period
    await world.chat.say(world.actor(APPROVER).target, "help")  # an unrelated answer, due now
    wait = await world.sender.pump()
    assert len(world.gateway.messages("help")) == 1
    assert wait >= 0.9  # not a busy loop: nothing is due until the chat may send again or the grace ends
    rows = await outbox_rows(world, incident_id)
    assert [r.state for r in rows] == ["pending"]
