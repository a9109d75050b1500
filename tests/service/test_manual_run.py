"""/run: a person's command goes through the same policy, replaces the undecided proposal or gets its own
card, and its proposer can never approve it."""

from __future__ import annotations

from services.actions import Outcome
from services.manual import MAX_COMMAND, ManualProposals
from services.roles import parse_roles
from tests.harness import APPROVER, APPROVER2, OPERATOR, ROLES, VIEWER
from tests.service.conftest import POLICY, World
from tests.service.helpers import open_incident


def manual(world: World) -> ManualProposals:
    return ManualProposals(world.db, POLICY, world.notifier, parse_roles(ROLES), world.clock)


async def test_run_replaces_the_proposal_threads_a_note_and_the_proposer_cannot_approve(world: World) -> None:
    incident_id = await open_incident(world)
    command = "kubectl -n prod scale deployment/api --replicas=5"
    result = await manual(world).run(actor=world.actor(APPROVER, "@alice"), command=command, incident_id=incident_id)
    assert result.outcome is Outcome.PROPOSED and result.state == "one_approver"
    decision = (await world.queries.api_incident(incident_id))["decision"]
    assert decision["source"] == "human" and decision["command"] == command
    assert decision["proposed_by"] == f"tg:{APPROVER}" and decision["spec"]["target_state"] == {"replicas": 5}
    await world.settle()
    [note] = world.gateway.messages("run_proposed")
    assert note.context["by"] == "@alice" and note.reply_to == world.gateway.cards()[0].message_id

    own = await world.approvals.decide(incident_id=incident_id, actor=world.actor(APPROVER, "@alice"), approve=True)
    assert own.outcome is Outcome.SELF_APPROVAL
    other = await world.approvals.decide(incident_id=incident_id, actor=world.actor(APPROVER2, "@bob"), approve=True)
    assert other.outcome is Outcome.APPROVED
    again = await manual(world).run(actor=world.actor(OPERATOR), command="kubectl -n prod get pods", incident_id=incident_id)
    assert again.outcome is Outcome.NOT_REANALYSABLE and again.state == "approved"


async def test_run_without_an_incident_opens_its_own_card(world: World) -> None:
    result = await manual(world).run(actor=world.actor(OPERATOR, "@olga"), command="kubectl -n dev rollout restart deploy/web",
                                     incident_id=None)
    assert result.outcome is Outcome.PROPOSED and result.ref == "INC-1"
    await world.settle()
    [card] = world.gateway.cards()
    assert card.card is not None and card.card.proposal is not None
    assert card.card.proposal.command == "kubectl -n dev rollout restart deploy/web"
    body = await world.queries.api_incident(1)
    assert body["source"] == "manual" and body["namespace"] == "dev" and body["decision"]["state"] == "pending"


async def test_run_is_scored_like_any_proposal_and_checked_for_role_and_input(world: World) -> None:
    incident_id = await open_incident(world)
    blocked = await manual(world).run(actor=world.actor(OPERATOR), command="kubectl delete ns prod", incident_id=incident_id)
    assert blocked.outcome is Outcome.PROPOSED and blocked.state == "blocked"
    assert (await world.queries.api_incident(incident_id))["decision"]["state"] == "blocked"
    viewer = await manual(world).run(actor=world.actor(VIEWER), command="kubectl -n prod get pods", incident_id=incident_id)
    assert viewer.outcome is Outcome.NOT_ALLOWED and viewer.needed_role == "operator"
    for bad in ("", "   ", "kubectl get pods " + "x" * MAX_COMMAND):
        result = await manual(world).run(actor=world.actor(OPERATOR), command=bad, incident_id=incident_id)
        assert result.outcome is Outcome.BAD_COMMAND
