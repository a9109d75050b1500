"""What the services count on /metrics (alerts stored and repeated, sends by result, executions by result)
and the database-wide gauges read at scrape time, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

from services.actions import Outcome
from services.errors import RateLimited, TransientDeliveryError
from services.execution import ExecutionService
from services.executors import DryRunExecutor
from services.failures import FailureNotifier
from services.incidents import IncidentService
from services.learning import LearningService
from services.metrics import Metrics, read_state
from services.notify import Wakeup
from services.outbox import OutboxSender
from services.pacing import Pacer
from services.ports import ChannelLimits, CommandResult
from services.sources.alertmanager import parse_alertmanager
from storage.db import Database
from tests.harness import APPROVER, fixture
from tests.service.conftest import POLICY, World
from tests.service.helpers import alert_payload, open_incident

UNPACED = ChannelLimits(per_chat_per_second=1e6, per_group_per_minute=1e9, per_bot_per_second=1e6)


async def test_metrics_count_stored_alerts_sends_and_read_the_outbox_backlog(world: World) -> None:
    metrics = Metrics()
    incidents = IncidentService(world.db, world.notifier, world.clock, Wakeup(), LearningService(world.knowledge),
                                metrics=metrics)
    mono = [0.0]
    sender = OutboxSender(world.db, world.gateway, world.queries, Pacer(UNPACED, world.gateway.is_group), world.clock,
                          max_backoff=1, monotonic=lambda: mono[0], metrics=metrics)
    batch = parse_alertmanager(fixture("01-firing-one-alert.json"))
    await incidents.ingest(batch)
    await incidents.ingest(batch)  # the same alert again: a repeat
    assert metrics.value("alertpilot_alerts_received_total", kind="alertmanager") == 2
    assert metrics.value("alertpilot_alerts_deduplicated_total", kind="alertmanager") == 1

    assert await read_state(metrics, world.db, world.clock())
    assert metrics.value("alertpilot_incidents", status="firing") == 1
    assert metrics.value("alertpilot_incidents", status="resolved") == 0
    assert metrics.value("alertpilot_outbox_pending_messages", channel="telegram") == 1  # the card, in its grace
    assert metrics.value("alertpilot_outbox_oldest_pending_age_seconds", channel="telegram") == 0
    assert metrics.value("alertpilot_database_up") == 1

    world.clock.advance(seconds=90)
    world.gateway.failures += [TransientDeliveryError("502 Bad Gateway"), RateLimited(1)]
    for _ in range(5):
        await sender.pump()
        world.clock.advance(seconds=2)  # past the backoff and the retry_after
        mono[0] += 2
        await read_state(metrics, world.db, world.clock())
        if not metrics.value("alertpilot_outbox_pending_messages", channel="telegram"):
            break
        assert metrics.value("alertpilot_outbox_oldest_pending_age_seconds", channel="telegram") >= 92
    assert metrics.value("alertpilot_outbox_sends_total", channel="telegram", result="transient_error") == 1
    assert metrics.value("alertpilot_outbox_sends_total", channel="telegram", result="rate_limited") == 1
    assert metrics.value("alertpilot_outbox_sends_total", channel="telegram", result="sent") == 1
    assert metrics.value("alertpilot_outbox_sends_total", channel="telegram", result="failed") == 0
    assert len(world.gateway.cards()) == 1
    # the backlog emptied: the channel's gauges say 0, they do not vanish
    assert 'alertpilot_outbox_pending_messages{channel="telegram"} 0' in metrics.render()
    assert 'alertpilot_outbox_oldest_pending_age_seconds{channel="telegram"} 0' in metrics.render()


class BlockingExecutor(DryRunExecutor):
    """A dry run whose commands wait until released (an execution caught running)."""

    def __init__(self) -> None:
        self.started, self.release = asyncio.Event(), asyncio.Event()

    async def run(self, argv: tuple[str, ...], *, timeout: float) -> CommandResult:
        self.started.set()
        await self.release.wait()
        return await super().run(argv, timeout=timeout)


def execution_service(world: World, executor: DryRunExecutor, metrics: Metrics) -> ExecutionService:
    failures = FailureNotifier(world.db, world.notifier, None, world.clock, targets=[], channels=["telegram"])
    return ExecutionService(
        world.db, executor, POLICY, world.incidents, LearningService(world.knowledge), failures, world.notifier,
        world.clock, Wakeup(), metrics=metrics,
    )


async def approve(world: World, alertname: str) -> None:
    incident_id = await open_incident(world, alert_payload(alertname))
    result = await world.approvals.decide(incident_id=incident_id, actor=world.actor(APPROVER, "@alice"), approve=True)
    assert result.outcome is Outcome.APPROVED, result


async def test_metrics_count_finished_and_interrupted_executions_and_read_the_running_ones(world: World) -> None:
    metrics = Metrics()
    await approve(world, "KubePodCrashLooping")
    assert await execution_service(world, DryRunExecutor(), metrics).run_pending() == 1
    assert metrics.value("alertpilot_executions_total", result="succeeded", dry_run="true") == 1

    await approve(world, "PodCrashLooping")  # a second incident with its own approved proposal
    blocking = BlockingExecutor()
    running = asyncio.create_task(execution_service(world, blocking, Metrics()).run_pending())
    try:
        await asyncio.wait_for(blocking.started.wait(), 10)
        assert await read_state(metrics, world.db, world.clock())
        assert metrics.value("alertpilot_executions_running") == 1
        assert await execution_service(world, DryRunExecutor(), metrics).interrupt_running() == 1
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
    assert metrics.value("alertpilot_executions_total", result="interrupted", dry_run="true") == 1
    assert await read_state(metrics, world.db, world.clock())
    assert metrics.value("alertpilot_executions_running") == 0


async def test_read_state_of_an_unreadable_database_reports_it_down_and_nothing_stale(tmp_path: Path) -> None:
    metrics = Metrics()
    metrics.set("alertpilot_outbox_pending_messages", 3, channel="telegram")  # from an earlier scrape
    metrics.set("alertpilot_executions_running", 1)
    metrics.inc("alertpilot_alerts_received_total", kind="alertmanager")
    db = Database(f"sqlite+aiosqlite:///{tmp_path}/no-schema.db")  # no tables: every read fails
    try:
        assert await read_state(metrics, db, datetime(2026, 11, 24, tzinfo=UTC)) is False
    finally:
        await db.dispose()
    text = metrics.render()
    assert "alertpilot_database_up 0" in text
    assert 'alertpilot_alerts_received_total{kind="alertmanager"} 1' in text
    series = [line for line in text.splitlines() if not line.startswith("#")]
    assert not [line for line in series if line.startswith(("alertpilot_outbox_pending", "alertpilot_executions_running"))]
