"""Decisions: role-checked, compare-and-set (double clicks and races apply once), threaded under the card."""

from __future__ import annotations

import asyncio
import copy

from services.actions import Outcome
from services.sources.alertmanager import parse_alertmanager
from tests.harness import APPROVER, APPROVER2, OPERATOR, STRANGER, VIEWER, fixture
from tests.service.conftest import World


async def open_incident(world: World) -> int:
    result = await world.incidents.ingest(parse_alertmanager(fixture("01-firing-one-alert.json")))
    await world.settle()
    return result.incidents_opened[0]


async def test_approve_by_approver_changes_state_card_and_threads_reply(world: World) -> None:
    incident_id = await open_incident(world)
    card_id = world.gateway.cards()[0].message_id
    result = await world.approvals.decide(incident_id=incident_id, actor=world.actor(APPROVER, "@alice"), approve=True)
    assert result.outcome is Outcome.APPROVED
    await world.settle()
    card = world.gateway.cards()[-1]
    assert card.edited and card.message_id == card_id
    assert card.card is not None and card.card.proposal is not None
    assert card.card.proposal.state == "approved" and card.card.proposal.decided_by == "@alice"
    [reply] = world.gateway.messages("decision")
    assert reply.reply_to == card_id and reply.context["by"] == "@alice" and reply.context["approved"] is True
    body = await world.queries.api_incident(incident_id)
    assert body["acknowledged_at"] is not None
    assert body["decision"]["state"] == "approved" and body["decision"]["decided_by"] == f"tg:{APPROVER}"


async def test_decide_refuses_users_without_approver_role_and_records_attempt(world: World) -> None:
    incident_id = await open_incident(world)
    for user in (OPERATOR, VIEWER, STRANGER):
        result = await world.approvals.decide(incident_id=incident_id, actor=world.actor(user), approve=True)
        assert result.outcome is Outcome.NOT_ALLOWED and result.needed_role == "approver"
    body = await world.queries.api_incident(incident_id)
    refused = [e for e in body["timeline"] if e["kind"] == "decision_refused"]
    assert [e["actor"] for e in refused] == [f"tg:{OPERATOR}", f"tg:{VIEWER}", f"tg:{STRANGER}"]
    assert body["decision"]["state"] == "pending"


async def test_second_decision_changes_nothing(world: World) -> None:
    incident_id = await open_incident(world)
    first = await world.approvals.decide(incident_id=incident_id, actor=world.actor(APPROVER, "@alice"), approve=True)
    again = await world.approvals.decide(incident_id=incident_id, actor=world.actor(APPROVER, "@alice"), approve=True)
    reject = await world.approvals.decide(incident_id=incident_id, actor=world.actor(APPROVER2, "@bob"), approve=False)
    assert first.outcome is Outcome.APPROVED
    assert again.outcome is Outcome.ALREADY_DECIDED and again.state == "approved" and again.by == "@alice"
    assert reject.outcome is Outcome.ALREADY_DECIDED
    await world.settle()
    assert len(world.gateway.messages("decision")) == 1


async def test_racing_decisions_apply_exactly_once(world: World) -> None:
    incident_id = await open_incident(world)
    results = await asyncio.gather(
        *(
            world.approvals.decide(incident_id=incident_id, actor=world.actor(uid), approve=uid == APPROVER)
            for uid in (APPROVER, APPROVER2, APPROVER, APPROVER2, APPROVER)
        )
    )
    winners = [r for r in results if r.outcome in (Outcome.APPROVED, Outcome.REJECTED)]
    assert len(winners) == 1
    assert all(r.outcome is Outcome.ALREADY_DECIDED for r in results if r not in winners)
    body = await world.queries.api_incident(incident_id)
    assert sum(1 for e in body["timeline"] if e["kind"] in ("approved", "rejected")) == 1


async def test_reject_records_reason_on_card(world: World) -> None:
    incident_id = await open_incident(world)
    result = await world.approvals.decide(
        incident_id=incident_id, actor=world.actor(APPROVER, "@alice"), approve=False, reason="  disk is being migrated  "
    )
    assert result.outcome is Outcome.REJECTED
    card = await world.queries.card(incident_id)
    assert card.proposal is not None and card.proposal.decision_reason == "disk is being migrated"
    assert [a.value for a in card.actions] == ["details", "history", "silence"]  # firing still


async def test_late_click_on_resolved_incident_is_polite_noop(world: World) -> None:
    incident_id = await open_incident(world)
    resolved = copy.deepcopy(fixture("01-firing-one-alert.json"))
    resolved["alerts"][0]["status"] = "resolved"
    await world.incidents.ingest(parse_alertmanager(resolved))
    result = await world.approvals.decide(incident_id=incident_id, actor=world.actor(APPROVER), approve=True)
    assert result.outcome is Outcome.INCIDENT_RESOLVED
    assert (await world.queries.api_incident(incident_id))["decision"]["state"] == "expired"


async def test_reanalyse_supersedes_pending_proposal_and_needs_operator(world: World) -> None:
    incident_id = await open_incident(world)
    refused = await world.analysis.reanalyse(incident_id=incident_id, actor=world.actor(VIEWER))
    assert refused.outcome is Outcome.NOT_ALLOWED and refused.needed_role == "operator"
    result = await world.analysis.reanalyse(incident_id=incident_id, actor=world.actor(OPERATOR))
    assert result.outcome is Outcome.REANALYSING
    busy = await world.analysis.reanalyse(incident_id=incident_id, actor=world.actor(OPERATOR))
    assert busy.outcome is Outcome.ANALYSIS_RUNNING
    await world.settle()
    body = await world.queries.api_incident(incident_id)
    assert body["decision"]["state"] == "pending" and body["analysing"] is False
    proposed = [e for e in body["timeline"] if e["kind"] == "proposed"]
    assert len(proposed) == 2 and proposed[1]["actor"] == f"tg:{OPERATOR}"
    await world.approvals.decide(incident_id=incident_id, actor=world.actor(APPROVER), approve=True)
    late = await world.analysis.reanalyse(incident_id=incident_id, actor=world.actor(OPERATOR))
    assert late.outcome is Outcome.NOT_REANALYSABLE and late.state == "approved"
