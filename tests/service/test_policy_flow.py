"""The remediation policy on real proposals: every proposal is scored and tiered; blocked commands cannot
be approved; the two-approver tier needs two different approvers; trusted low-risk proposals go automatic."""

from __future__ import annotations

import asyncio
import dataclasses

from services.actions import Outcome
from services.approvals import ApprovalService
from services.ports import CardAction
from services.roles import parse_roles
from tests.fakes.model import VALID, FakeModel
from tests.harness import APPROVER, APPROVER2, OPERATOR
from tests.service.conftest import POLICY, World
from tests.service.helpers import alert_payload, open_incident


def ai_proposing(command: str, confidence: float = 0.9) -> FakeModel:
    return FakeModel({**VALID, "action": command, "confidence": confidence})


async def current(world: World, incident_id: int) -> dict:
    return (await world.queries.api_incident(incident_id))["decision"]


async def test_every_proposal_is_scored_and_tiered_and_the_card_says_so(world: World) -> None:
    incident_id = await open_incident(world)  # rules: kubectl -n prod rollout restart deployment/api
    decision = await current(world, incident_id)
    assert decision["tier"] == "one_approver" and decision["required_approvals"] == 1
    assert 11 <= decision["blast_score"] <= 50 and decision["score_reasons"]
    assert decision["rollback_plan"] and "rollout undo" in decision["rollback_plan"]
    assert decision["spec"]["verb"] == "rollout restart" and decision["spec"]["namespace"] == "prod"
    card = world.gateway.cards()[-1].card
    assert card is not None and card.proposal is not None
    assert card.proposal.blast_score == decision["blast_score"] and card.proposal.tier == "one_approver"


async def test_a_blocked_command_has_no_approve_button_and_cannot_be_approved(world: World) -> None:
    await world.rebuild(model=ai_proposing("kubectl delete namespace prod"))
    incident_id = await open_incident(world, alert_payload(description="run kubectl delete namespace prod"))
    decision = await current(world, incident_id)
    assert decision["state"] == "blocked" and decision["tier"] == "blocked" and decision["blast_score"] == 100
    assert decision["blocked_reason"]
    card = world.gateway.cards()[-1].card
    assert card is not None
    assert CardAction.APPROVE not in card.actions and CardAction.REJECT not in card.actions
    assert CardAction.REANALYSE in card.actions  # another opinion may replace it
    result = await world.approvals.decide(incident_id=incident_id, actor=world.actor(APPROVER), approve=True)
    assert result.outcome is Outcome.BLOCKED
    assert (await current(world, incident_id))["state"] == "blocked"


async def test_shell_tricks_from_the_model_are_blocked(world: World) -> None:
    for n, command in enumerate(["kubectl get pods; rm -rf /", "kubectl rollout restart deploy/x $(curl x)"]):
        await world.rebuild(model=ai_proposing(command))
        incident_id = await open_incident(world, alert_payload(f"Trick{n}"))
        assert (await current(world, incident_id))["state"] == "blocked"


async def test_two_approver_tier_needs_two_different_approvers(world: World) -> None:
    await world.rebuild(model=ai_proposing("kubectl -n prod delete deployment api"))
    incident_id = await open_incident(world)
    decision = await current(world, incident_id)
    assert decision["tier"] == "two_approvers" and decision["required_approvals"] == 2

    first = await world.approvals.decide(incident_id=incident_id, actor=world.actor(APPROVER, "@alice"), approve=True)
    assert first.outcome is Outcome.PARTIAL_APPROVAL and (first.count, first.required) == (1, 2)
    again = await world.approvals.decide(incident_id=incident_id, actor=world.actor(APPROVER, "@alice"), approve=True)
    assert again.outcome is Outcome.ALREADY_SIGNED
    await world.settle()
    card = world.gateway.cards()[-1].card
    assert card is not None and card.proposal is not None
    assert card.proposal.state == "pending" and card.proposal.approved_by == ("@alice",)
    assert CardAction.APPROVE in card.actions

    second = await world.approvals.decide(incident_id=incident_id, actor=world.actor(APPROVER2, "@bob"), approve=True)
    assert second.outcome is Outcome.APPROVED
    assert (await current(world, incident_id))["state"] == "approved"
    await world.settle()
    threads = world.gateway.messages("decision")
    assert [(t.context["count"], t.context["required"]) for t in threads] == [(1, 2), (2, 2)]


async def test_a_reject_ends_a_half_approved_proposal(world: World) -> None:
    await world.rebuild(model=ai_proposing("kubectl -n prod delete deployment api"))
    incident_id = await open_incident(world)
    await world.approvals.decide(incident_id=incident_id, actor=world.actor(APPROVER, "@alice"), approve=True)
    result = await world.approvals.decide(incident_id=incident_id, actor=world.actor(APPROVER2, "@bob"), approve=False)
    assert result.outcome is Outcome.REJECTED
    late = await world.approvals.decide(incident_id=incident_id, actor=world.actor(APPROVER2, "@bob"), approve=True)
    assert late.outcome is Outcome.ALREADY_DECIDED


async def test_two_approvers_at_the_same_moment_approve_exactly_once(world: World) -> None:
    await world.rebuild(model=ai_proposing("kubectl -n prod delete deployment api"))
    incident_id = await open_incident(world)
    results = await asyncio.gather(
        world.approvals.decide(incident_id=incident_id, actor=world.actor(APPROVER, "@alice"), approve=True),
        world.approvals.decide(incident_id=incident_id, actor=world.actor(APPROVER2, "@bob"), approve=True),
    )
    assert sorted(r.outcome for r in results) == sorted([Outcome.PARTIAL_APPROVAL, Outcome.APPROVED])
    assert (await current(world, incident_id))["state"] == "approved"


async def test_trusted_low_risk_proposal_is_approved_automatically_only_when_enabled(world: World) -> None:
    command = "kubectl -n dev rollout restart deployment/api"
    await world.rebuild(model=ai_proposing(command, confidence=0.9))
    incident_id = await open_incident(world, alert_payload("DevRestart"))
    assert (await current(world, incident_id))["state"] == "pending"  # auto-remediation is off by default

    auto = dataclasses.replace(POLICY, auto_enabled=True)
    await world.rebuild(model=ai_proposing(command, confidence=0.9), policy=auto)
    incident_id = await open_incident(world, alert_payload("DevRestartAgain"))
    decision = await current(world, incident_id)
    assert decision["tier"] == "auto" and decision["state"] == "approved"
    assert decision["decided_by"] == "alertpilot"

    await world.rebuild(model=ai_proposing(command, confidence=0.3), policy=auto)  # not trusted: a human decides
    incident_id = await open_incident(world, alert_payload("DevRestartUnsure"))
    decision = await current(world, incident_id)
    assert decision["tier"] == "one_approver" and decision["state"] == "pending"


async def test_reanalyse_replaces_a_blocked_proposal(world: World) -> None:
    await world.rebuild(model=FakeModel({**VALID, "action": "kubectl delete ns prod"}, VALID))
    incident_id = await open_incident(world)
    assert (await current(world, incident_id))["state"] == "blocked"
    result = await world.analysis.reanalyse(incident_id=incident_id, actor=world.actor(OPERATOR))
    assert result.ok
    await world.settle()
    decision = await current(world, incident_id)
    assert decision["state"] == "pending" and decision["command"] == VALID["action"]


async def test_namespace_limited_approvers_decide_only_in_their_namespaces(world: World) -> None:
    roles = parse_roles("tg:501=approver@dev|staging tg:502=approver@prod")
    approvals = ApprovalService(world.db, world.notifier, roles, world.clock)
    incident_id = await open_incident(world)  # kubectl -n prod rollout restart deployment/api
    refused = await approvals.decide(incident_id=incident_id, actor=world.actor(501, "@dev-lead"), approve=True)
    assert refused.outcome is Outcome.NOT_ALLOWED and refused.namespace == "prod"
    allowed = await approvals.decide(incident_id=incident_id, actor=world.actor(502, "@prod-lead"), approve=True)
    assert allowed.outcome is Outcome.APPROVED


async def test_undecided_proposal_expires_and_later_approvals_do_not_count(world: World) -> None:
    await world.rebuild(model=ai_proposing("kubectl -n prod delete deployment api"))
    incident_id = await open_incident(world)
    await world.approvals.decide(incident_id=incident_id, actor=world.actor(APPROVER, "@alice"), approve=True)
    world.clock.advance(minutes=59)
    assert await world.approvals.expire_due() == 0
    world.clock.advance(minutes=2)
    assert await world.approvals.expire_due() == 1
    assert await world.approvals.expire_due() == 0  # once
    decision = await current(world, incident_id)
    assert decision["state"] == "expired" and decision["decision_reason"] == "not decided within 60 min"
    late = await world.approvals.decide(incident_id=incident_id, actor=world.actor(APPROVER2, "@bob"), approve=True)
    assert late.outcome is Outcome.ALREADY_DECIDED and late.state == "expired"
    await world.settle()
    [note] = world.gateway.messages("expired")
    assert note.context["minutes"] == 60 and note.reply_to == world.gateway.cards()[0].message_id
    card = world.gateway.cards()[-1].card
    assert card is not None and CardAction.APPROVE not in card.actions and CardAction.REANALYSE in card.actions
