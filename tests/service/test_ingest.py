"""Grouping, de-duplication and resolution, fed with the real Alertmanager captures."""

from __future__ import annotations

import copy

from services.sources.alertmanager import parse_alertmanager
from tests.harness import fixture
from tests.service.conftest import World


def batch(name: str, **changes: object) -> object:
    payload = copy.deepcopy(fixture(name))
    payload.update(changes)
    return parse_alertmanager(payload)


async def test_ingest_real_sequence_opens_one_incident_and_resolves_it(world: World) -> None:
    first = await world.incidents.ingest(batch("01-firing-one-alert.json"))
    assert first.incidents_opened == [1] and first.new_alerts == 1
    second = await world.incidents.ingest(batch("02-firing-two-alerts.json"))
    assert second.incidents_opened == [] and second.new_alerts == 1 and second.repeats == 1
    third = await world.incidents.ingest(batch("03-firing-one-resolved.json"))
    assert third.resolved_alerts == 1 and third.incidents_resolved == []
    fourth = await world.incidents.ingest(batch("04-resolved.json"))
    assert fourth.incidents_resolved == [1]

    body = await world.queries.api_incident(1)
    assert body["status"] == "resolved" and body["resolved_at"] is not None
    assert sorted(a["fingerprint"] for a in body["alerts"]) == ["228efb633186ea1c", "b05e07d6656f414d"]
    assert all(a["status"] == "resolved" for a in body["alerts"])
    kinds = [e["kind"] for e in body["timeline"]]
    assert kinds[0] == "opened" and "resolved" in kinds


async def test_ingest_repeat_of_firing_alert_counts_and_sends_no_new_card(world: World) -> None:
    await world.incidents.ingest(batch("01-firing-one-alert.json"))
    await world.settle()
    assert len(world.gateway.cards(edited=False)) == 1
    sent_before = len(world.gateway.sent)
    for _ in range(3):
        result = await world.incidents.ingest(batch("01-firing-one-alert.json"))
        assert result.repeats == 1 and result.new_alerts == 0 and result.incidents_opened == []
    await world.settle()
    assert len(world.gateway.sent) == sent_before  # no new card, no edit for a pure repeat
    alerts = await world.queries.api_alerts(fingerprint="b05e07d6656f414d", status=None, limit=10, offset=0)
    assert alerts["total"] == 1 and alerts["items"][0]["repeat_count"] == 3
    card = await world.queries.card(1)
    assert card.repeat_count == 3


async def test_ingest_groups_by_group_key_and_receiver(world: World) -> None:
    await world.incidents.ingest(batch("01-firing-one-alert.json"))
    payload = copy.deepcopy(fixture("01-firing-one-alert.json"))
    payload["groupKey"] = '{}:{alertname="Other"}'
    payload["alerts"][0]["fingerprint"] = "0000000000000001"
    other_group = await world.incidents.ingest(parse_alertmanager(payload))
    # the same alert to another receiver (a second webhook) is that receiver's incident
    other_receiver = await world.incidents.ingest(batch("01-firing-one-alert.json", receiver="team-b"))
    # a new alert of the first group joins its open incident
    joined = await world.incidents.ingest(batch("02-firing-two-alerts.json"))
    assert other_group.incidents_opened == [2]
    assert other_receiver.incidents_opened == [3]
    assert joined.incidents_opened == [] and joined.incident_ids == [1]
    stats = await world.queries.api_stats()
    assert stats["incidents"]["total"] == 3 and stats["alerts"] == 4


async def test_ingest_firing_after_resolution_opens_new_incident(world: World) -> None:
    await world.incidents.ingest(batch("01-firing-one-alert.json"))
    resolved = copy.deepcopy(fixture("01-firing-one-alert.json"))
    resolved["status"] = "resolved"
    resolved["alerts"][0]["status"] = "resolved"
    resolved["alerts"][0]["endsAt"] = "2026-11-24T05:10:00Z"
    assert (await world.incidents.ingest(parse_alertmanager(resolved))).incidents_resolved == [1]
    # a repeated resolution is a repeat, not a new alert and not a new incident
    again = await world.incidents.ingest(parse_alertmanager(resolved))
    assert again.repeats == 1 and again.new_alerts == 0
    refire = copy.deepcopy(fixture("01-firing-one-alert.json"))
    refire["alerts"][0]["startsAt"] = "2026-11-24T06:00:00Z"
    result = await world.incidents.ingest(parse_alertmanager(refire))
    assert result.incidents_opened == [2]
    page = await world.queries.api_alerts(fingerprint="b05e07d6656f414d", status=None, limit=10, offset=0)
    assert [a["incident_id"] for a in page["items"]] == [1, 2]


async def test_ingest_resolution_of_unseen_alert_is_recorded_without_incident(world: World) -> None:
    result = await world.incidents.ingest(batch("04-resolved.json"))
    assert result.accepted == 1 and result.incidents_opened == []
    page = await world.queries.api_alerts(fingerprint="228efb633186ea1c", status="resolved", limit=10, offset=0)
    assert page["total"] == 1 and page["items"][0]["incident_id"] is None
    assert (await world.queries.api_stats())["incidents"]["total"] == 0


async def test_ingest_resolution_sends_threaded_reply_and_final_card(world: World) -> None:
    await world.incidents.ingest(batch("01-firing-one-alert.json"))
    await world.settle()
    card_id = world.gateway.cards()[0].message_id
    world.clock.advance(minutes=12)
    resolved = copy.deepcopy(fixture("01-firing-one-alert.json"))
    resolved["alerts"][0]["status"] = "resolved"
    await world.incidents.ingest(parse_alertmanager(resolved))
    await world.settle()
    [reply] = world.gateway.messages("resolved")
    assert reply.reply_to == card_id and reply.context["minutes"] >= 12
    final = world.gateway.cards()[-1]
    assert final.edited and final.message_id == card_id
    assert final.card is not None and final.card.status == "resolved"
    assert [a.value for a in final.card.actions] == ["details", "history"]
    # the pending proposal expired with the incident: nobody can approve a resolved incident
    assert final.card.proposal is not None and final.card.proposal.state == "expired"


async def test_ingest_partial_resolution_updates_the_card(world: World) -> None:
    await world.incidents.ingest(batch("02-firing-two-alerts.json"))
    await world.settle()
    edits_before = len(world.gateway.cards(edited=True))
    await world.incidents.ingest(batch("03-firing-one-resolved.json"))
    await world.settle()
    edits = world.gateway.cards(edited=True)
    assert len(edits) == edits_before + 1
    assert edits[-1].card is not None and edits[-1].card.firing_count == 1 and edits[-1].card.alert_count == 2


async def test_ingest_same_alert_twice_in_one_payload_is_one_alert_and_one_repeat(world: World) -> None:
    payload = copy.deepcopy(fixture("01-firing-one-alert.json"))
    payload["alerts"] = payload["alerts"] * 3
    result = await world.incidents.ingest(parse_alertmanager(payload))
    assert (result.new_alerts, result.repeats) == (1, 2)
    again = await world.incidents.ingest(parse_alertmanager(payload))
    assert (again.new_alerts, again.repeats) == (0, 3)
    page = await world.queries.api_alerts(fingerprint="b05e07d6656f414d", status=None, limit=10, offset=0)
    assert page["total"] == 1 and page["items"][0]["repeat_count"] == 5


async def test_ingest_large_payload_is_stored_whole(world: World) -> None:
    payload = copy.deepcopy(fixture("01-firing-one-alert.json"))
    template = payload["alerts"][0]
    payload["alerts"] = [
        {**template, "labels": {**template["labels"], "instance": f"db-{n}"}, "fingerprint": f"fp{n:05d}"} for n in range(2000)
    ]
    result = await world.incidents.ingest(parse_alertmanager(payload))
    assert result.new_alerts == 2000 and result.incidents_opened == [1]
    assert (await world.queries.api_stats())["alerts"] == 2000
    assert (await world.queries.card(1)).alert_count == 2000
