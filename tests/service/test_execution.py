"""Execution: approved proposals run once through the fake kubectl (a real process on PATH), with retries
for transient errors only, verification and rollback, a complete audit, and learning from the outcome."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from bot.render import Renderer
from services.actions import Outcome
from services.ai import AIAdvisor
from services.execution import ExecutionConfig, ExecutionService, revisions_in, verify_targets
from services.executors import DryRunExecutor, SubprocessExecutor
from services.failures import FailureNotifier, parse_notify_targets
from services.learning import LearningService
from services.manual import ManualProposals
from services.notify import Wakeup
from services.playbooks import parse_playbooks
from services.policy import RemediationPolicy
from services.ports import Executor
from services.roles import parse_roles
from services.safety import NamespacePolicy, parse_command
from services.sources.alertmanager import parse_alertmanager
from storage.tables import ExecutionState, OutboxState
from tests.fakes.kubectl import FakeKubectl
from tests.fakes.model import FakeModel
from tests.harness import APPROVER, APPROVER2, OPERATOR, ROLES
from tests.service.conftest import POLICY, World
from tests.service.helpers import alert_payload, open_incident

RESTART = "kubectl -n prod rollout restart deployment/api"  # the rules' proposal for the crash-looping api
CONFIG = ExecutionConfig(timeout_seconds=20, max_retries=2, retry_delay_seconds=30, verify_timeout_seconds=5)


@pytest.fixture
def kubectl(tmp_path: Path) -> FakeKubectl:
    return FakeKubectl(tmp_path / "kubectl").install()


class Sleeps(list[float]):
    """Records the waits between retries instead of waiting."""

    async def __call__(self, seconds: float) -> None:
        self.append(seconds)


def build(
    world: World,
    executor: Executor,
    *,
    policy: RemediationPolicy = POLICY,
    notify: str = "",
    sleeps: Sleeps | None = None,
    owner: str | None = None,
) -> ExecutionService:
    learning = LearningService(world.knowledge)
    failures = FailureNotifier(
        world.db, world.notifier, None, world.clock, targets=parse_notify_targets(notify), channels=["telegram"]
    )
    return ExecutionService(
        world.db, executor, policy, world.incidents, learning, failures, world.notifier, world.clock, Wakeup(),
        config=CONFIG, owner=owner, sleep=sleeps if sleeps is not None else Sleeps(),
    )


def real(kubectl: FakeKubectl) -> SubprocessExecutor:
    return SubprocessExecutor(kubectl=str(kubectl.path), kubeconfig="/etc/alertpilot/kubeconfig", context="prod-eu")


async def approved(world: World, command: str | None = None) -> int:
    """An incident of the crash-looping api whose proposal (the rules', or ``command`` by /run) is approved."""
    incident_id = await open_incident(world)
    if command is not None:
        manual = ManualProposals(world.db, POLICY, world.notifier, parse_roles(ROLES), world.clock)
        result = await manual.run(actor=world.actor(OPERATOR, "@olga"), command=command, incident_id=incident_id)
        assert result.outcome is Outcome.PROPOSED, result
    result = await world.approvals.decide(incident_id=incident_id, actor=world.actor(APPROVER, "@alice"), approve=True)
    assert result.outcome is Outcome.APPROVED, result
    return incident_id


def thread(world: World, event: str | None = None) -> list[dict[str, Any]]:
    return [m.context for m in world.gateway.messages("execution") if event is None or m.context["event"] == event]


def runs(kubectl: FakeKubectl, words: str) -> list[list[str]]:
    return [c for c in kubectl.calls if words in " ".join(c)]


async def test_execute_runs_rehearsal_command_and_verification_with_a_complete_audit(
    world: World, kubectl: FakeKubectl
) -> None:
    incident_id = await approved(world)
    service = build(world, real(kubectl))
    assert await service.run_pending() == 1
    await world.settle()

    flags = ["--kubeconfig=/etc/alertpilot/kubeconfig", "--context=prod-eu"]
    assert kubectl.calls == [
        [*flags, "-n", "prod", "get", "deployment/api"],  # kubectl has no dry run for a restart: a get rehearses it
        [*flags, "-n", "prod", "rollout", "restart", "deployment/api"],
        [*flags, "-n", "prod", "rollout", "status", "deployment/api", "--timeout=5s"],
    ]
    body = await world.queries.api_incident(incident_id)
    assert body["decision"]["state"] == "succeeded" and body["remediated_at"] is not None
    [execution] = body["executions"]
    assert execution["state"] == "succeeded" and execution["executor"] == "kubectl" and not execution["dry_run"]
    assert execution["approvers"] == ["@alice"] and execution["requested_by"] == "rules"
    assert execution["commands"] == [RESTART]
    assert [(a["step"], a["attempt"], a["result"], a["exit_code"]) for a in execution["attempts"]] == [
        ("dry_run", 1, "ok", 0), ("run", 1, "ok", 0), ("verify", 1, "ok", 0)
    ]
    main = execution["attempts"][1]
    assert main["argv"] == [str(kubectl.path), *flags, "-n", "prod", "rollout", "restart", "deployment/api"]
    assert "restarted" in main["stdout"] and main["dry_run"] is False
    assert main["started_at"] <= main["finished_at"] and main["duration_ms"] >= 0
    # threaded: started, the step with "verifying", and the outcome; the card says remediated
    assert [c["event"] for c in thread(world)] == ["started", "step_done", "finished"]
    assert thread(world, "step_done")[0]["verifying"] is True
    finished = thread(world, "finished")[0]
    assert finished["state"] == "succeeded" and finished["firing"] is True
    card = world.gateway.cards()[-1].card
    assert card is not None and card.proposal is not None and card.proposal.state == "succeeded"
    assert card.proposal.execution is not None and card.proposal.execution.state == "succeeded"


async def test_double_click_and_two_runners_execute_once(world: World, kubectl: FakeKubectl) -> None:
    incident_id = await approved(world)
    again = await world.approvals.decide(incident_id=incident_id, actor=world.actor(APPROVER, "@alice"), approve=True)
    assert again.outcome is Outcome.ALREADY_DECIDED
    first, second = build(world, real(kubectl), owner="replica-a"), build(world, real(kubectl), owner="replica-b")
    proposal_id = (await world.queries.api_incident(incident_id))["decision"]["id"]
    ran = await asyncio.gather(first.execute(proposal_id), second.execute(proposal_id), first.run_pending())
    assert sorted(ran) == [0, False, True]
    assert len(runs(kubectl, "rollout restart")) == 1
    assert len((await world.queries.api_incident(incident_id))["executions"]) == 1


async def test_transient_errors_are_retried_and_each_retry_is_threaded(world: World, kubectl: FakeKubectl) -> None:
    kubectl.on("rollout restart", transient=2)
    await approved(world)
    sleeps = Sleeps()
    await build(world, real(kubectl), sleeps=sleeps).run_pending()
    await world.settle()
    assert len(runs(kubectl, "rollout restart")) == 3 and sleeps == [30, 30]
    retries = thread(world, "retry")
    assert [(r["attempt"], r["retries"], r["reason"]) for r in retries] == [(1, 2, "connection refused"), (2, 2, "connection refused")]
    [finished] = thread(world, "finished")
    assert finished["state"] == "succeeded" and finished["attempts"] == 5  # rehearsal, 3 runs, verification
    assert world.gateway.messages("failure_analysis") == []


async def test_permanent_error_is_not_retried_and_fails_with_one_failure_analysis(
    world: World, kubectl: FakeKubectl
) -> None:
    kubectl.on("rollout restart", fail='Error from server (NotFound): deployments.apps "api" not found')
    incident_id = await approved(world)
    sleeps = Sleeps()
    await build(world, real(kubectl), sleeps=sleeps).run_pending()
    await world.settle()
    assert len(runs(kubectl, "rollout restart")) == 1 and sleeps == []
    assert runs(kubectl, "rollout status") == []  # nothing to verify after a failure
    body = await world.queries.api_incident(incident_id)
    assert body["decision"]["state"] == "failed" and body["remediated_at"] is None
    [execution] = body["executions"]
    assert execution["attempts"][-1]["result"] == "permanent" and execution["attempts"][-1]["reason"] == "not found"
    assert "not found" in execution["error"]
    [finished] = thread(world, "finished")
    assert finished["state"] == "failed" and finished["reason"] == "not found"
    [analysis] = world.gateway.messages("failure_analysis")
    assert analysis.reply_to is not None and analysis.context["reason"] == "not found"  # under the card
    card = world.gateway.cards()[-1].card
    assert card is not None and "reanalyse" in card.actions and "approve" not in card.actions
    # learned: a knowledge entry of the human path's failure
    [entry] = await world.knowledge.search("api rollout restart failed")
    assert {"human_approved", "failure"} <= set(entry.tags)


async def test_transient_errors_until_the_last_retry_send_the_failure_analysis_once(
    world: World, kubectl: FakeKubectl
) -> None:
    kubectl.on("rollout restart", transient=10)
    incident_id = await approved(world)
    sleeps = Sleeps()
    notify = "tg:111,tg:-100,tg:-200,wecom:zhangsan"
    service = build(world, real(kubectl), sleeps=sleeps, notify=notify)
    await service.run_pending()
    await world.settle()
    assert len(runs(kubectl, "rollout restart")) == 3 and len(thread(world, "retry")) == 2
    sent = world.gateway.messages("failure_analysis")
    # the card chat (under the card), another group, and a direct message; WeCom is not configured here
    assert sorted((m.chat_id, m.reply_to is not None) for m in sent) == [("-100", True), ("-200", False), ("111", False)]
    assert all(m.context["mentions"] == (["111"] if m.chat_id.startswith("-") else []) for m in sent)
    # once per execution: asking again (another replica, a retry) queues nothing new
    execution_id = (await world.queries.api_incident(incident_id))["executions"][0]["id"]
    again = FailureNotifier(world.db, world.notifier, None, world.clock, targets=parse_notify_targets(notify),
                            channels=["telegram"])
    assert await again.notify(incident_id, execution_id) == 0


async def test_a_failing_notify_target_does_not_stop_the_others(world: World, kubectl: FakeKubectl) -> None:
    kubectl.on("rollout restart", fail="error: forbidden")
    await approved(world)
    service = build(world, real(kubectl), notify="tg:-200,tg:111")
    original = world.notifier.answer

    async def broken_for_the_group(tx: Any, target: Any, *args: Any, **kwargs: Any) -> bool:
        if target.chat_id == "-200":
            raise RuntimeError("boom")
        return await original(tx, target, *args, **kwargs)

    world.notifier.answer = broken_for_the_group  # type: ignore[method-assign]
    await service.run_pending()
    await world.settle()
    assert [m.chat_id for m in world.gateway.messages("failure_analysis")] == ["111"]


async def test_failed_rehearsal_stops_before_the_command(world: World, kubectl: FakeKubectl) -> None:
    kubectl.on("--dry-run=server", fail='Error from server (Forbidden): deployments.apps "api" is forbidden')
    incident_id = await approved(world, "kubectl -n prod scale deployment/api --replicas=5")
    await build(world, real(kubectl)).run_pending()
    await world.settle()
    assert runs(kubectl, "--replicas=5 --dry-run=server") and [c for c in runs(kubectl, "scale") if "--dry-run=server" not in c] == []
    body = await world.queries.api_incident(incident_id)
    assert body["decision"]["state"] == "failed" and body["executions"][0]["error"].startswith("dry run failed")
    assert body["executions"][0]["replicas_before"] == 3  # read before the scale, for its rollback
    [rehearsal] = thread(world, "rehearsal_failed")
    assert rehearsal["reason"] == "forbidden"


async def test_failed_verification_rolls_back_when_history_allows(world: World, kubectl: FakeKubectl) -> None:
    kubectl.on("rollout status", fail='error: deployment "api" exceeded its progress deadline')
    incident_id = await approved(world)
    await build(world, real(kubectl)).run_pending()
    await world.settle()
    assert len(runs(kubectl, "rollout status")) == 1  # a rollout that does not converge is not retried
    assert runs(kubectl, "rollout history deployment/api") and len(runs(kubectl, "rollout undo deployment/api")) == 1
    body = await world.queries.api_incident(incident_id)
    assert body["decision"]["state"] == "rolled_back"
    execution = body["executions"][0]
    assert execution["rollback"].startswith("rolled back with kubectl -n prod rollout undo deployment/api")
    assert [a["step"] for a in execution["attempts"]] == ["dry_run", "run", "verify", "history", "rollback"]
    assert [c["event"] for c in thread(world)] == ["started", "step_done", "rolling_back", "finished"]
    assert len(world.gateway.messages("failure_analysis")) == 1


async def test_failed_verification_without_history_says_why_it_did_not_roll_back(
    world: World, kubectl: FakeKubectl
) -> None:
    kubectl.on("rollout status", fail="error: timed out waiting for the condition").on("rollout history", revisions=1)
    incident_id = await approved(world)
    await build(world, real(kubectl)).run_pending()
    await world.settle()
    assert len(runs(kubectl, "rollout status")) == 1 and runs(kubectl, "rollout undo") == []
    body = await world.queries.api_incident(incident_id)
    assert body["decision"]["state"] == "failed"
    assert "shows 1 revision" in body["executions"][0]["rollback"]
    [skipped] = thread(world, "rollback_skipped")
    assert "rolling back needs at least 2" in skipped["note"]


async def test_dry_run_executor_records_what_would_run_and_learns_nothing(world: World, kubectl: FakeKubectl) -> None:
    incident_id = await approved(world)
    await build(world, DryRunExecutor()).run_pending()
    await world.settle()
    assert kubectl.calls == []
    body = await world.queries.api_incident(incident_id)
    [execution] = body["executions"]
    assert execution["dry_run"] and execution["state"] == "succeeded" and body["remediated_at"] is None
    assert [(a["step"], a["dry_run"]) for a in execution["attempts"]] == [("dry_run", True), ("run", True), ("verify", True)]
    assert execution["attempts"][1]["argv"] == ["kubectl", "-n", "prod", "rollout", "restart", "deployment/api"]
    assert all(c["dry_run"] for c in thread(world))
    assert await world.knowledge.search("rollout restart") == []


async def test_running_execution_of_a_dead_process_is_interrupted_and_never_rerun(
    world: World, kubectl: FakeKubectl
) -> None:
    kubectl.on("rollout restart", hang=True)
    incident_id = await approved(world)
    service = build(world, real(kubectl))
    task = asyncio.create_task(service.run_pending())
    for _ in range(400):
        if runs(kubectl, "rollout restart"):
            break
        await asyncio.sleep(0.025)
    task.cancel()  # the process dies mid-command (the executor kills the command with it)
    with pytest.raises(asyncio.CancelledError):
        await task
    restarted = build(world, real(kubectl))
    assert await restarted.interrupt_running() == 1
    assert await restarted.run_pending() == 0
    await world.settle()
    body = await world.queries.api_incident(incident_id)
    assert body["decision"]["state"] == "interrupted" and body["executions"][0]["state"] == "interrupted"
    assert [c["event"] for c in thread(world)][-1] == "interrupted"
    assert len(runs(kubectl, "rollout restart")) == 1


async def test_stale_lease_of_another_runner_is_interrupted(world: World, kubectl: FakeKubectl) -> None:
    kubectl.on("rollout restart", hang=True)
    await approved(world)
    task = asyncio.create_task(build(world, real(kubectl), owner="dead").run_pending())
    for _ in range(400):
        if runs(kubectl, "rollout restart"):
            break
        await asyncio.sleep(0.025)
    other = build(world, real(kubectl), owner="alive")
    assert await other.interrupt_stale() == 0  # the lease is fresh
    world.clock.advance(seconds=CONFIG.stale_after.total_seconds() + 1)
    assert await other.interrupt_stale() == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_incident_resolved_before_the_start_is_not_run(world: World, kubectl: FakeKubectl) -> None:
    incident_id = await approved(world)
    payload = alert_payload()
    resolved = copy.deepcopy(payload)
    resolved["status"] = "resolved"
    for alert in resolved["alerts"]:
        alert["status"] = "resolved"
        alert["endsAt"] = alert["startsAt"]
    await world.incidents.ingest(parse_alertmanager(resolved))
    assert await build(world, real(kubectl)).run_pending() == 0
    await world.settle()
    assert kubectl.calls == []
    body = await world.queries.api_incident(incident_id)
    assert body["status"] == "resolved" and body["decision"]["state"] == "expired" and body["executions"] == []
    assert [c["event"] for c in thread(world)] == ["skipped"]


async def test_a_command_the_policy_blocks_now_is_not_run(world: World, kubectl: FakeKubectl) -> None:
    await approved(world)
    helm_only = RemediationPolicy(namespaces=NamespacePolicy(), allowed_tools=frozenset({"helm"}), auto_enabled=False,
                                  min_confidence=0.65)
    await build(world, real(kubectl), policy=helm_only).run_pending()
    await world.settle()
    assert kubectl.calls == []
    [finished] = thread(world, "finished")
    assert finished["state"] == "failed" and finished["reason"] == "blocked"
    assert "blocked by the policy" in finished["error"]


async def test_success_then_resolution_learns_a_playbook_that_answers_the_next_incident(
    world: World, kubectl: FakeKubectl
) -> None:
    first = await approved(world)
    await build(world, real(kubectl)).run_pending()
    await resolve(world)
    [playbook] = await world.playbooks.listing()
    assert playbook["source"] == "learned" and (playbook["executions"], playbook["successes"]) == (1, 1)
    body = await world.queries.api_incident(first)
    assert "playbook_learned" in [e["kind"] for e in body["timeline"]]
    # the same alert again: the learned playbook answers
    second = await open_incident(world)
    proposal = (await world.queries.api_incident(second))["decision"]
    assert proposal["source"] == "playbook" and proposal["playbook"] == playbook["name"]
    assert proposal["command"] == RESTART
    # it fails this time: its success rate drops (1 of 2) and it no longer matches
    kubectl.on("rollout restart", fail="error: forbidden")
    result = await world.approvals.decide(incident_id=second, actor=world.actor(APPROVER2, "@bob"), approve=True)
    assert result.outcome is Outcome.APPROVED
    await build(world, real(kubectl)).run_pending()
    [playbook] = await world.playbooks.listing()
    assert (playbook["executions"], playbook["successes"]) == (2, 1)
    entries = await world.knowledge.search("rollout restart")
    assert sorted(tuple(sorted({"success", "failure"} & set(e.tags))) for e in entries) == [("failure",), ("success",)]


async def resolve(world: World) -> None:
    resolved = alert_payload()
    resolved["status"] = "resolved"
    for alert in resolved["alerts"]:
        alert["status"] = "resolved"
        alert["endsAt"] = alert["startsAt"]
    await world.incidents.ingest(parse_alertmanager(resolved))
    await world.settle()


async def test_a_manual_incident_resolves_when_its_command_succeeds(world: World, kubectl: FakeKubectl) -> None:
    manual = ManualProposals(world.db, POLICY, world.notifier, parse_roles(ROLES), world.clock)
    result = await manual.run(actor=world.actor(OPERATOR, "@olga"), command=RESTART, incident_id=None)
    incident_id = int(result.ref.removeprefix("INC-"))
    await world.approvals.decide(incident_id=incident_id, actor=world.actor(APPROVER, "@alice"), approve=True)
    await build(world, real(kubectl)).run_pending()
    body = await world.queries.api_incident(incident_id)
    assert body["status"] == "resolved" and body["executions"][0]["requested_by"] == f"tg:{OPERATOR}"
    assert await world.playbooks.listing() == []  # a person's one-off command is not a playbook


async def test_outbox_rows_of_an_execution_are_all_delivered(world: World, kubectl: FakeKubectl) -> None:
    await approved(world)
    await build(world, real(kubectl)).run_pending()
    await world.settle()
    async with world.db.read() as tx:
        rows = await tx.outbox.of_incident(1)
    assert rows and all(r.state in (OutboxState.SENT, OutboxState.COALESCED) for r in rows)


def test_revisions_in_counts_history_rows() -> None:
    history = "deployment.apps/api\nREVISION  CHANGE-CAUSE\n1         <none>\n2         kubectl set image\n"
    assert revisions_in(history) == 2
    assert revisions_in("") == 0
    assert revisions_in("error: no rollout history found") == 0


@pytest.mark.parametrize(
    ("command", "targets"),
    [
        (RESTART, ["deployment/api"]),
        ("kubectl -n prod set image deployment/api api=img:2", ["deployment/api"]),
        ("kubectl -n prod rollout restart deployment/api statefulset/db", ["deployment/api", "statefulset/db"]),
        ("kubectl -n prod rollout restart deployment -l app=api", []),  # by selector: no named target
        ("kubectl -n prod scale deployment/api --replicas=3", []),  # not a rollout
        ("kubectl -n prod delete pod api-1", []),
    ],
)
def test_verify_targets(command: str, targets: Sequence[str]) -> None:
    assert verify_targets(parse_command(command)) == list(targets)


def test_stale_after_outlasts_an_attempt_and_the_retry_wait() -> None:
    config = ExecutionConfig(timeout_seconds=120, retry_delay_seconds=30, verify_timeout_seconds=300)
    assert config.stale_after.total_seconds() > 330 + 30
    assert ExecutionState.INTERRUPTED.value == "interrupted"


ANNOTATE_PLAYBOOK = """
playbooks:
  - name: mark-api
    description: Mark the api for the controller to recycle it
    symptoms:
      alertnames: [KubePodCrashLooping]
    steps:
      - name: annotate
        command: kubectl -n {namespace} annotate deployment/{service} alertpilot/recycle=requested --overwrite
"""


async def test_auto_tier_runs_without_approval_and_says_auto_remediated(world: World, kubectl: FakeKubectl) -> None:
    auto = RemediationPolicy(namespaces=NamespacePolicy(), allowed_tools=frozenset({"kubectl"}), auto_enabled=True,
                             min_confidence=0.65)
    await world.rebuild(model=None, policy=auto)
    await world.playbooks.sync(parse_playbooks(ANNOTATE_PLAYBOOK, "test.yaml"))
    [listed] = await world.playbooks.listing()
    async with world.db.write() as tx:  # a playbook with a record (3 of 3) is trusted
        await tx.playbooks.count_run(listed["id"], world.clock(), executions=3, successes=3)
    incident_id = await open_incident(world)
    proposal = (await world.queries.api_incident(incident_id))["decision"]
    assert proposal["source"] == "playbook" and proposal["tier"] == "auto" and proposal["state"] == "approved"
    await build(world, real(kubectl), policy=auto).run_pending()
    await world.settle()
    assert runs(kubectl, "annotate deployment/api alertpilot/recycle=requested --overwrite")
    body = await world.queries.api_incident(incident_id)
    assert body["decision"]["state"] == "succeeded" and body["executions"][0]["auto"] is True
    [started] = thread(world, "started")
    [finished] = thread(world, "finished")
    assert started["auto"] is True and finished["auto"] is True and finished["state"] == "succeeded"
    card = world.gateway.cards()[-1].card
    assert card is not None and card.proposal is not None and card.proposal.execution is not None
    assert card.proposal.execution.auto
    [entry] = await world.knowledge.search("annotate")
    assert {"auto_executed", "success"} <= set(entry.tags)
    [playbook] = await world.playbooks.listing()
    assert playbook["executions"] == 4  # the run counts; its success counts once the incident resolves
    await resolve(world)
    [playbook] = await world.playbooks.listing()
    assert (playbook["executions"], playbook["successes"]) == (4, 4)


async def test_failure_analysis_comes_from_the_model_when_one_is_configured(
    world: World, kubectl: FakeKubectl
) -> None:
    kubectl.on("rollout restart", fail='Error from server (Forbidden): deployments.apps "api" is forbidden')
    await approved(world)
    model = FakeModel("Summary: the restart was refused.\nLikely cause: RBAC.\nNext steps: kubectl auth can-i")
    advisor = AIAdvisor(model, Renderer(ZoneInfo("UTC")), world.metrics)
    failures = FailureNotifier(world.db, world.notifier, advisor, world.clock, targets=[], channels=["telegram"])
    service = ExecutionService(
        world.db, real(kubectl), POLICY, world.incidents, LearningService(world.knowledge), failures, world.notifier,
        world.clock, Wakeup(), config=CONFIG, sleep=Sleeps(),
    )
    await service.run_pending()
    await world.settle()
    [message] = world.gateway.messages("failure_analysis")
    assert message.context["analysis"].startswith("Summary: the restart was refused")
    assert message.context["model"] == "fake-model" and message.context["reason"] == "forbidden"
    [call] = model.calls
    prompt = call.messages[-1]["content"]
    assert "kubectl -n prod rollout restart deployment/api" in prompt and "is forbidden" in prompt
