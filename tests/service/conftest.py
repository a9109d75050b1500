"""Services wired as in production, on a temporary SQLite file, with a recording gateway and a fake clock."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from services.actions import Actor
from services.analysis import AnalysisService
from services.approvals import ApprovalService
from services.chat import ChatService
from services.incidents import IncidentService
from services.notify import Notifier, Wakeup
from services.outbox import OutboxSender
from services.pacing import Pacer
from services.ports import ChannelLimits, ChatTarget
from services.queries import IncidentQueries
from services.roles import parse_roles
from services.rules import RuleEngine
from storage.db import Database
from tests.fakes.chat import FakeClock, FakeGateway
from tests.harness import ROLES, scratch_postgres_database

CARD_CHAT = ChatTarget("telegram", "-100")


@dataclass
class World:
    db: Database
    clock: FakeClock
    gateway: FakeGateway
    incidents: IncidentService
    analysis: AnalysisService
    approvals: ApprovalService
    chat: ChatService
    queries: IncidentQueries
    sender: OutboxSender
    mono: list[float]

    def actor(self, user_id: int, name: str | None = None, chat: ChatTarget = CARD_CHAT) -> Actor:
        return Actor(id=f"tg:{user_id}", name=name or f"@user{user_id}", target=chat)

    async def settle(self) -> None:
        """Run analysis and deliver everything that is due, as the background workers would."""
        for _ in range(10):
            await self.analysis.run_pending()
            self.mono[0] += 10  # pacing windows pass
            await self.sender.pump()
            async with self.db.read() as tx:
                counts = await tx.outbox.counts()
            if not counts.get("pending") and not counts.get("sending"):
                return
            self.clock.advance(seconds=6)  # past the first-card grace and retry backoffs


@pytest.fixture(params=["sqlite", "postgresql"])
async def world(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[World]:
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path}/svc.db"
        dropper = None
    else:
        url, dropper = await scratch_postgres_database()
    db = Database(url)
    await db.create_schema()
    clock = FakeClock()
    gateway = FakeGateway()
    wakeup, analysis_wakeup = Wakeup(), Wakeup()
    notifier = Notifier([CARD_CHAT], wakeup)
    roles = parse_roles(ROLES)
    queries = IncidentQueries(db)
    mono = [1000.0]
    limits = ChannelLimits(per_chat_per_second=1.0, per_group_per_minute=20.0, per_bot_per_second=30.0)
    world = World(
        db=db,
        clock=clock,
        gateway=gateway,
        incidents=IncidentService(db, notifier, clock, analysis_wakeup),
        analysis=AnalysisService(db, RuleEngine(), notifier, roles, clock, analysis_wakeup),
        approvals=ApprovalService(db, notifier, roles, clock),
        chat=ChatService(db, queries, notifier, roles, clock),
        queries=queries,
        sender=OutboxSender(db, gateway, queries, Pacer(limits, gateway.is_group), clock, max_backoff=60, monotonic=lambda: mono[0]),
        mono=mono,
    )
    try:
        yield world
    finally:
        await db.dispose()
        if dropper is not None:
            await dropper()
