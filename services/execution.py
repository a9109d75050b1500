"""Execution: run approved remediations (DESIGN §1.7), once, with retries, verification and rollback.

The to-do is the proposal state ``approved``. The worker moves a proposal ``approved → executing`` by
compare-and-set — whoever wins runs it, so a double click, a replay or two replicas never run it twice —
and stores an ``Execution`` row (unique per proposal) in the same transaction. Each command of the
proposal (a playbook may have several) is parsed and assessed again just before it runs (a command the
policy blocks now is not run), then:

1. for a scale, the replica count is read first (the rollback plan scales back to it);
2. the server-side dry run (or, where kubectl has none, a ``get`` of the target) when the spec asks for
   one — a failing rehearsal stops everything;
3. the command itself;
4. for a rollout-type change, ``kubectl rollout status --timeout=…``; when that fails, the rollback
   plan runs, but only when ``rollout history`` shows at least 2 revisions (otherwise it says why not).

Every process run is an ``ExecutionAttempt`` row (argv, times, exit code, output excerpts, dry-run flag,
result): the audit. Only transient failures are retried (services/executors.classify), each retry
threaded under the card. The outcome moves the proposal to ``succeeded``, ``failed`` or ``rolled_back``,
updates the card, writes what was learned (services/learning.py), and after a final failure — never
after each attempt — sends one failure analysis (services/failures.py).

A process that dies while running leaves a ``running`` execution behind; it is marked ``interrupted``
and reported in the thread (at start-up for SQLite, after its lease goes stale with replicas), and never
re-run blindly.
"""

from __future__ import annotations

import asyncio
import re
import shlex
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import structlog

from services.analysis import AUTO_DECISION
from services.executors import Failure, FailureKind, classify
from services.failures import FailureNotifier
from services.incidents import IncidentService, incident_ref
from services.learning import LearningService
from services.metrics import Metrics
from services.notify import Notifier, Wakeup
from services.phrases import N_, phrase
from services.policy import RemediationPolicy
from services.ports import CommandResult, Executor
from services.safety import RemediationSpec, Tier
from services.views import clip, command_list
from services.views import last_line as views_last_line
from storage.clock import Clock
from storage.db import Database
from storage.tables import Execution, ExecutionAttempt, ExecutionState, IncidentStatus, ProposalState

log = structlog.get_logger(__name__)

CONCURRENCY = 4
OUTPUT_IN_CHAT = 600  # characters of a command's output threaded under the card
COMMANDS_IN_CHAT = 5  # a playbook may have 20 steps: the thread lists the first ones (the audit has all)
COMMAND_IN_CHAT = 200
ROLLOUT_VERBS = frozenset({"rollout restart", "rollout undo", "set image", "set env", "set resources", "patch"})
WORKLOAD_KINDS = frozenset({"deployment", "statefulset", "daemonset"})
_REVISION_ROW = re.compile(r"^\s*(\d+)\s")
FINAL_PROPOSAL_STATE = {
    ExecutionState.SUCCEEDED: ProposalState.SUCCEEDED,
    ExecutionState.FAILED: ProposalState.FAILED,
    ExecutionState.ROLLED_BACK: ProposalState.ROLLED_BACK,
}


@dataclass(frozen=True)
class ExecutionConfig:
    timeout_seconds: float = 120.0  # per attempt
    max_retries: int = 2  # transient failures only
    retry_delay_seconds: float = 30.0
    verify_timeout_seconds: int = 120  # kubectl rollout status --timeout

    @property
    def stale_after(self) -> timedelta:
        """How long a runner may go without renewing its lease before its execution counts as interrupted:
        longer than any attempt plus the wait before a retry."""
        longest = max(self.timeout_seconds, self.verify_timeout_seconds + 30)
        return timedelta(seconds=longest + self.retry_delay_seconds + 60)


class Interrupted(Exception):
    """The execution is no longer this runner's (it was marked interrupted): stop without touching it."""


@dataclass
class _Run:
    execution_id: int
    proposal_id: int
    incident_id: int
    ref: str
    dry_run: bool
    commands: list[str]
    attempts: int = 0  # process runs of any step (the audit's rows)
    retried: int = 0  # retries after transient failures
    replicas_before: int | None = None
    started: float = field(default_factory=time.monotonic)


@dataclass(frozen=True)
class _Result:
    state: ExecutionState
    error: str | None = None
    reason: str | None = None  # the failure's marker
    rollback: str | None = None  # what happened to the rollback plan
    step: int = 0


def revisions_in(history: str) -> int:
    """How many revisions ``kubectl rollout history`` lists (the rows that start with a number)."""
    return sum(1 for line in history.splitlines() if _REVISION_ROW.match(line))


def verify_targets(spec: RemediationSpec) -> list[str]:
    """The workloads whose rollout is checked after a rollout-type change ("deployment/api")."""
    if spec.tool != "kubectl" or spec.verb not in ROLLOUT_VERBS or spec.selector or spec.all_namespaces:
        return []
    targets = [r for r in spec.resources if "/" in r and r.split("/", 1)[0] in WORKLOAD_KINDS]
    return targets if len(targets) == len(spec.resources) else []


def last_line(result: CommandResult) -> str:
    """The line that says what went wrong: the last non-empty line of the error, stderr or stdout."""
    return clip(views_last_line(result.error, result.stderr, result.stdout), 300) or phrase(
        "exit code %(code)s", code=str(result.exit_code))


class ExecutionService:
    def __init__(
        self,
        db: Database,
        executor: Executor,
        policy: RemediationPolicy,
        incidents: IncidentService,
        learning: LearningService,
        failures: FailureNotifier,
        notifier: Notifier,
        clock: Clock,
        wakeup: Wakeup,
        *,
        config: ExecutionConfig = ExecutionConfig(),
        owner: str | None = None,
        poll_seconds: float = 2.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        metrics: Metrics | None = None,
    ) -> None:
        """``metrics``: where finished executions are counted by result (alertpilot_executions_total; None: a
        private one)."""
        self._db, self._executor, self._policy, self._incidents = db, executor, policy, incidents
        self._learning, self._failures, self._notify, self._now = learning, failures, notifier, clock
        self._metrics = metrics if metrics is not None else Metrics()
        self._listener = wakeup.listener()
        self.config = config
        self._owner = owner or f"exec-{uuid.uuid4().hex[:8]}"
        self._poll, self._sleep = poll_seconds, sleep
        self._in_flight: dict[int, asyncio.Task[bool]] = {}
        self._draining = False

    @property
    def dry_run(self) -> bool:
        return self._executor.dry_run

    # --- the worker ------------------------------------------------------------------------------------

    async def run(self) -> None:
        """Start approved proposals as they come (up to CONCURRENCY at once), and report executions whose
        runner died."""
        checked: datetime | None = None  # when stale executions were last looked for
        try:
            while True:
                try:
                    # Every wake-up looks for approved proposals; a lease goes stale with time, so stale runs are
                    # looked for once per poll interval, not at each of a storm's wake-ups.
                    now = self._now()
                    if checked is None or abs((now - checked).total_seconds()) >= self._poll:
                        checked = now
                        await self.interrupt_stale()
                    await self._start_waiting()
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("execution_loop_error")
                await self._listener.wait(self._poll)
        finally:
            # Shutting down: a running command is killed (the executor does that on cancellation) and its
            # execution stays 'running'; the next start reports it as interrupted.
            for task in self._in_flight.values():
                task.cancel()
            await asyncio.gather(*self._in_flight.values(), return_exceptions=True)

    async def drain(self, timeout: float) -> None:
        """Shutting down (SIGTERM): start nothing new and give the executions in progress ``timeout`` seconds to
        finish; what is still running when run() is cancelled is killed, and reported interrupted at the next start."""
        self._draining = True
        if self._in_flight:
            log.info("execution_draining", in_flight=len(self._in_flight))
            await asyncio.wait(list(self._in_flight.values()), timeout=timeout)

    async def _start_waiting(self) -> None:
        free = CONCURRENCY - len(self._in_flight)
        if free <= 0 or self._draining:
            return
        async with self._db.read() as tx:
            waiting = await tx.proposals.approved_waiting(limit=CONCURRENCY + len(self._in_flight))
        for proposal in [p for p in waiting if p.id not in self._in_flight][:free]:
            assert proposal.id is not None
            task = asyncio.create_task(self.execute(proposal.id), name=f"execute-{proposal.id}")
            self._in_flight[proposal.id] = task
            task.add_done_callback(lambda done, i=proposal.id: self._finished(i, done))

    def _finished(self, proposal_id: int, task: asyncio.Task[bool]) -> None:
        self._in_flight.pop(proposal_id, None)
        if not task.cancelled() and task.exception() is not None:
            log.error("execution_crashed", proposal_id=proposal_id, error=repr(task.exception()))
        self._notify.wake()  # a slot is free (the worker listens to the same wake-ups)

    async def run_pending(self) -> int:
        """Execute every approved proposal waiting now, one after another; how many ran (tests, tools)."""
        done = 0
        while True:
            async with self._db.read() as tx:
                waiting = await tx.proposals.approved_waiting(limit=CONCURRENCY)
            ran = [await self.execute(p.id or 0) for p in waiting]
            done += sum(ran)
            if not any(ran):
                return done

    async def interrupt_stale(self) -> int:
        """Executions whose runner stopped renewing its lease (it died) become interrupted."""
        return await self._interrupt(stale_before=self._now() - self.config.stale_after)

    async def interrupt_running(self) -> int:
        """At start-up of a single-process deployment: whatever was running when the process died."""
        return await self._interrupt(stale_before=None)

    async def _interrupt(self, *, stale_before: datetime | None) -> int:
        async with self._db.read() as tx:  # the common case, nothing stale, takes no write lock
            if not await tx.executions.running(stale_before=stale_before, limit=1):
                return 0
        now = self._now()
        count = 0
        interrupted: list[bool] = []
        async with self._db.write() as tx:
            for execution in await tx.executions.running(stale_before=stale_before):
                assert execution.id is not None
                error = phrase("alertpilot stopped while this was running; it was not re-run")
                if not await tx.executions.interrupt(execution.id, now, error):
                    continue
                await tx.proposals.transition(execution.proposal_id, [ProposalState.EXECUTING], ProposalState.INTERRUPTED)
                await tx.timeline.add(incident_id=execution.incident_id, at=now, kind="execution_interrupted",
                                      execution_id=execution.id, attempts=execution.attempts)
                await self._notify.card(tx, execution.incident_id, now)
                await self._notify.thread(
                    tx, execution.incident_id, "execution",
                    {"event": "interrupted", "ref": incident_ref(execution.incident_id), "dry_run": execution.dry_run,
                     **commands_context(execution.commands), "attempts": execution.attempts},
                    now, dedup_key=f"interrupted:{execution.id}",
                )
                count += 1
                interrupted.append(execution.dry_run)
        for dry_run in interrupted:  # counted once the transaction holds
            self._count(ExecutionState.INTERRUPTED, dry_run)
        if count:
            self._notify.wake()
            log.warning("executions_interrupted", count=count)
        return count

    # --- one execution -----------------------------------------------------------------------------------

    async def execute(self, proposal_id: int) -> bool:
        """Run one approved proposal to its outcome. False when it was not this runner's to run."""
        run = await self._claim(proposal_id)
        if run is None:
            return False
        log.info("execution_started", incident_id=run.incident_id, proposal_id=proposal_id, dry_run=run.dry_run)
        try:
            result = await self._perform(run)
        except Interrupted:
            log.warning("execution_taken_over", incident_id=run.incident_id, execution_id=run.execution_id)
            return True
        except Exception as exc:  # a bug here must still end the execution visibly, never leave it running
            log.exception("execution_error", incident_id=run.incident_id, execution_id=run.execution_id)
            result = _Result(ExecutionState.FAILED,
                             error=phrase("internal error: %(error)s", error=f"{type(exc).__name__}: {exc}")[:500],
                             reason=N_("internal error"))
        await self._finish(run, result)
        return True

    async def _claim(self, proposal_id: int) -> _Run | None:
        now = self._now()
        async with self._db.write() as tx:
            proposal = await tx.proposals.get(proposal_id)
            if proposal is None or proposal.state != ProposalState.APPROVED or not proposal.is_current:
                return None
            incident = await tx.incidents.get(proposal.incident_id)
            assert incident is not None and incident.id is not None
            ref = incident_ref(incident.id)
            if incident.status == IncidentStatus.RESOLVED:
                # The alerts resolved between the approval and the start: nothing to fix, nothing is run.
                if await tx.proposals.transition(proposal_id, [ProposalState.APPROVED], ProposalState.EXPIRED,
                                                  decision_reason=phrase("the incident resolved before it ran")):
                    await tx.timeline.add(incident_id=incident.id, at=now, kind="execution_skipped", proposal_id=proposal_id)
                    await self._notify.card(tx, incident.id, now)
                    await self._notify.thread(tx, incident.id, "execution",
                                              {"event": "skipped", "ref": ref, "dry_run": self._executor.dry_run}, now,
                                              dedup_key=f"skipped:{proposal_id}")
                self._notify.wake()
                return None
            if not await tx.proposals.transition(proposal_id, [ProposalState.APPROVED], ProposalState.EXECUTING):
                return None
            signatures = await tx.approvals.of_proposal(proposal_id)
            approvers = [s.name or s.actor for s in signatures] or [proposal.decided_by_name or proposal.decided_by or "?"]
            auto = proposal.decided_by == AUTO_DECISION["decided_by"]  # approved by the policy itself
            commands = [proposal.command, *(proposal.steps or [])]
            execution = await tx.executions.add(
                Execution(
                    proposal_id=proposal_id, incident_id=incident.id, state=ExecutionState.RUNNING,
                    executor=self._executor.name, dry_run=self._executor.dry_run, auto=auto,
                    requested_by=proposal.proposed_by or proposal.requested_by or proposal.source,
                    approvers=approvers, commands=commands, owner=self._owner, heartbeat_at=now, started_at=now,
                )
            )
            assert execution.id is not None
            await tx.timeline.add(
                incident_id=incident.id, at=now, kind="execution_started", execution_id=execution.id,
                proposal_id=proposal_id, dry_run=execution.dry_run, command=clip(proposal.command, 300),
            )
            await self._notify.card(tx, incident.id, now)
            await self._notify.thread(
                tx, incident.id, "execution",
                {"event": "started", "ref": ref, "dry_run": execution.dry_run, "auto": auto,
                 "approvers": [clip(a, 60) for a in approvers[:3]], **commands_context(commands)},
                now, dedup_key=f"started:{execution.id}",
            )
        self._notify.wake()
        return _Run(execution.id, proposal_id, incident.id, ref, execution.dry_run, commands)

    async def _perform(self, run: _Run) -> _Result:
        for index, command in enumerate(run.commands):
            assessment = self._policy.assess_command(command)
            if assessment.tier is Tier.BLOCKED or assessment.spec is None:
                reason = assessment.blocked_reason or assessment.error or phrase("the policy does not allow it")
                error = phrase("not run: blocked by the policy: %(reason)s", reason=reason)
                return _Result(ExecutionState.FAILED, error=error, reason=N_("blocked"), step=index)
            result = await self._step(run, index, assessment.spec)
            if result.state is not ExecutionState.SUCCEEDED:
                return result
        return _Result(ExecutionState.SUCCEEDED, step=len(run.commands) - 1)

    async def _step(self, run: _Run, index: int, spec: RemediationSpec) -> _Result:
        timeout = self.config.timeout_seconds
        if spec.rollback.kind == "scale_back" and spec.name and spec.kind:
            run.replicas_before = await self._read_replicas(run, index, spec)
        if spec.dry_run_required and spec.dry_run_argv is not None:
            rehearsal, failure = await self._attempts(run, index, "dry_run", spec.dry_run_argv, timeout)
            if failure is not None:
                await self._thread(run, {"event": "rehearsal_failed", "step": index, "reason": failure.reason,
                                         "error": last_line(rehearsal), "output": _output(rehearsal)})
                error = phrase("dry run failed: %(error)s", error=last_line(rehearsal))
                return _Result(ExecutionState.FAILED, error=error, reason=failure.reason, step=index)
        main, failure = await self._attempts(run, index, "run", spec.argv, timeout)
        if failure is not None:
            return _Result(ExecutionState.FAILED, error=last_line(main), reason=failure.reason, step=index)
        targets = verify_targets(spec)
        if targets or len(run.commands) > 1:
            await self._thread(run, {"event": "step_done", "step": index, "duration_ms": main.duration_ms,
                                     "verifying": bool(targets), "output": _output(main)})
        for target in targets:
            check, failure = await self._attempts(run, index, "verify", self._status_argv(spec, target),
                                                  self.config.verify_timeout_seconds + 30, rollout_check=True)
            if failure is not None:
                return await self._roll_back(run, index, spec, target, last_line(check), failure)
        return _Result(ExecutionState.SUCCEEDED, step=index)

    async def _read_replicas(self, run: _Run, index: int, spec: RemediationSpec) -> int | None:
        """The replica count before a scale (for scaling back); None when it cannot be read."""
        argv = ("kubectl", *_ns(spec), "get", f"{spec.kind}/{spec.name}", "-o", "jsonpath={.spec.replicas}")
        result, failure = await self._attempts(run, index, "read_replicas", argv, self.config.timeout_seconds)
        text = result.stdout.strip()
        return int(text) if failure is None and text.isdigit() else None

    def _status_argv(self, spec: RemediationSpec, target: str) -> tuple[str, ...]:
        return ("kubectl", *_ns(spec), "rollout", "status", target, f"--timeout={self.config.verify_timeout_seconds}s")

    async def _roll_back(
        self, run: _Run, index: int, spec: RemediationSpec, checked: str, line: str, failure: Failure
    ) -> _Result:
        """Verification of ``checked`` failed (``line``: what its rollout status said): run the rollback plan
        when it is automatic and the history allows it."""
        error = f"{checked}: {line}"
        failed = phrase("verification failed: %(target)s: %(error)s", target=checked, error=line)
        plan = spec.rollback
        if plan.kind != "rollout_undo" or plan.argv is None:
            note = phrase("not rolled back automatically: %(plan)s", plan=plan.description)
            await self._thread(run, {"event": "rollback_skipped", "step": index, "error": error, "note": note})
            return _Result(ExecutionState.FAILED, error=failed, reason=failure.reason, rollback=note, step=index)
        for target in verify_targets(spec):
            history, problem = await self._attempts(
                run, index, "history", ("kubectl", *_ns(spec), "rollout", "history", target), self.config.timeout_seconds
            )
            count = revisions_in(history.stdout)
            if problem is not None or count < 2:
                if problem is not None:
                    why = phrase("cannot read the rollout history of %(target)s (%(reason)s)", target=target,
                                 reason=problem.reason)
                elif count == 1:
                    why = phrase("the rollout history of %(target)s shows %(count)s revision; "
                                 "rolling back needs at least 2", target=target, count=str(count))
                else:
                    why = phrase("the rollout history of %(target)s shows %(count)s revisions; "
                                 "rolling back needs at least 2", target=target, count=str(count))
                note = phrase("not rolled back: %(why)s", why=why)
                await self._thread(run, {"event": "rollback_skipped", "step": index, "error": error, "note": note})
                return _Result(ExecutionState.FAILED, error=failed, reason=failure.reason, rollback=note, step=index)
        command = plan.command or shlex.join(plan.argv)
        await self._thread(run, {"event": "rolling_back", "step": index, "error": error, "command": clip(command, 300)})
        undo, problem = await self._attempts(run, index, "rollback", plan.argv, self.config.timeout_seconds)
        if problem is not None:
            note = phrase("rollback failed: %(error)s", error=last_line(undo))
            return _Result(ExecutionState.FAILED, error=failed, reason=failure.reason, rollback=note, step=index)
        return _Result(ExecutionState.ROLLED_BACK, error=failed, reason=failure.reason,
                       rollback=phrase("rolled back with %(command)s", command=command), step=index)

    async def _attempts(
        self, run: _Run, index: int, step: str, argv: tuple[str, ...], timeout: float, *, rollout_check: bool = False
    ) -> tuple[CommandResult, Failure | None]:
        """Run ``argv``, retrying transient failures (each retry threaded); every attempt is audited.
        ``rollout_check``: kubectl's own ``--timeout`` running out means the rollout did not converge — an
        answer, not a transient error — so only the connection-type failures are retried."""
        retries = self.config.max_retries
        attempt = 0
        while True:
            attempt += 1
            started_at = self._now()
            result = await self._executor.run(argv, timeout=timeout)
            failure = classify(result)
            if rollout_check and failure is not None and failure.reason == "timeout" and not result.timed_out:
                failure = Failure(FailureKind.PERMANENT, N_("rollout did not converge"))
            run.attempts += 1
            retry = failure is not None and failure.transient and attempt <= retries
            now = self._now()
            async with self._db.write() as tx:
                await tx.executions.add_attempt(
                    ExecutionAttempt(
                        execution_id=run.execution_id, incident_id=run.incident_id, step=step, step_index=index,
                        attempt=attempt, argv=list(result.argv), started_at=started_at, finished_at=now,
                        duration_ms=result.duration_ms, exit_code=result.exit_code, stdout=result.stdout,
                        stderr=result.stderr if result.error is None else f"{result.stderr}\n{result.error}".strip(),
                        dry_run=result.dry_run, result="ok" if failure is None else failure.kind.value,
                        reason=None if failure is None else failure.reason,
                    )
                )
                alive = await tx.executions.heartbeat(run.execution_id, self._owner, now, attempts=run.attempts)
                if alive and retry:
                    assert failure is not None
                    await self._notify.thread(
                        tx, run.incident_id, "execution",
                        {"event": "retry", "ref": run.ref, "dry_run": run.dry_run, "step": index, "what": step,
                         "steps": len(run.commands),
                         "attempt": attempt, "retries": retries, "reason": failure.reason,
                         "delay": self.config.retry_delay_seconds, "error": last_line(result)},
                        now, dedup_key=f"retry:{run.execution_id}:{index}:{step}:{attempt}",
                    )
            if not alive:
                raise Interrupted
            log.info("execution_attempt", incident_id=run.incident_id, step=step, attempt=attempt,
                     exit_code=result.exit_code, result="ok" if failure is None else failure.kind.value,
                     reason=None if failure is None else failure.reason, duration_ms=result.duration_ms)
            if not retry:
                return result, failure
            run.retried += 1
            self._notify.wake()
            await self._sleep(self.config.retry_delay_seconds)

    async def _thread(self, run: _Run, context: dict[str, object]) -> None:
        now = self._now()
        async with self._db.write() as tx:
            await self._notify.thread(tx, run.incident_id, "execution",
                                      {"ref": run.ref, "dry_run": run.dry_run, "steps": len(run.commands), **context}, now)
        self._notify.wake()

    async def _finish(self, run: _Run, result: _Result) -> None:
        now = self._now()
        seconds = round(time.monotonic() - run.started, 1)
        async with self._db.write() as tx:
            if not await tx.executions.finish(
                run.execution_id, self._owner, result.state, finished_at=now, error=result.error, rollback=result.rollback,
                attempts=run.attempts, replicas_before=run.replicas_before,
            ):
                log.warning("execution_taken_over", incident_id=run.incident_id, execution_id=run.execution_id)
                return
            await tx.proposals.transition(run.proposal_id, [ProposalState.EXECUTING], FINAL_PROPOSAL_STATE[result.state])
            incident = await tx.incidents.get(run.incident_id)
            proposal = await tx.proposals.get(run.proposal_id)
            execution = await tx.executions.get(run.execution_id)
            assert incident is not None and proposal is not None and execution is not None
            await tx.session.refresh(execution)
            succeeded = result.state is ExecutionState.SUCCEEDED
            if succeeded and not run.dry_run:
                await tx.incidents.mark_remediated(run.incident_id, now)
            await tx.timeline.add(
                incident_id=run.incident_id, at=now, kind=f"execution_{result.state.value}", execution_id=run.execution_id,
                attempts=run.attempts, dry_run=run.dry_run, seconds=seconds, reason=result.reason,
                error=clip(result.error, 500) or None, rollback=clip(result.rollback, 300) or None,
            )
            await self._learning.record_outcome(tx, incident, proposal, execution, now)
            firing = incident.status == IncidentStatus.FIRING
            await self._notify.thread(
                tx, run.incident_id, "execution",
                {"event": "finished", "ref": run.ref, "dry_run": run.dry_run, "state": result.state.value,
                 "auto": execution.auto, "seconds": seconds, "attempts": run.attempts, "retried": run.retried,
                 "steps": len(run.commands),
                 "step": result.step, "reason": result.reason, "error": clip(result.error, 400) or None,
                 "rollback": clip(result.rollback, 300) or None, "firing": firing,
                 "command": clip(run.commands[result.step] if run.commands else "", 300)},
                now, dedup_key=f"finished:{run.execution_id}",
            )
            if succeeded and firing and incident.source == "manual":
                await self._incidents.resolve(tx, run.incident_id, now)  # a /run incident ends when its command worked
            await self._notify.card(tx, run.incident_id, now)
        self._notify.wake()
        self._count(result.state, run.dry_run)
        log.info("execution_finished", incident_id=run.incident_id, state=result.state.value, attempts=run.attempts,
                 dry_run=run.dry_run, seconds=seconds)
        if result.state in (ExecutionState.FAILED, ExecutionState.ROLLED_BACK):
            await self._failures.notify(run.incident_id, run.execution_id)

    def _count(self, state: ExecutionState, dry_run: bool) -> None:
        self._metrics.inc("alertpilot_executions_total", result=state.value, dry_run="true" if dry_run else "false")


def commands_context(commands: list[str]) -> dict[str, object]:
    """The commands a thread message lists (the audit has them all)."""
    return command_list(commands, shown=COMMANDS_IN_CHAT, limit=COMMAND_IN_CHAT)


def _ns(spec: RemediationSpec) -> tuple[str, ...]:
    return ("-n", spec.namespace) if spec.namespace else ()


def _output(result: CommandResult) -> str:
    text = (result.stdout or result.stderr or "").strip()
    return text if len(text) <= OUTPUT_IN_CHAT else "…" + text[-(OUTPUT_IN_CHAT - 1):]
