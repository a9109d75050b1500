"""Services wired as in production, on a temporary SQLite file, with a recording gateway and a fake clock."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from bot.render import Renderer
from services.actions import Actor
from services.ai import AIAdvisor
from services.analysis import AnalysisService
from services.approvals import ApprovalService
from services.assistant import AssistantService
from services.chat import ChatService
from services.decision import DecisionService
from services.incidents import IncidentService
from services.knowledge import KnowledgeService
from services.learning import LearningService
from services.metrics import Metrics
from services.notify import Notifier, Wakeup
from services.outbox import OutboxSender
from services.pacing import Pacer
from services.playbooks import PlaybookService
from services.policy import RemediationPolicy
from services.ports import ChannelLimits, ChatModel, ChatTarget
from services.queries import IncidentQueries
from services.roles import parse_roles
from services.safety import NamespacePolicy
from storage.db import Database
from tests.fakes.chat import FakeClock, FakeGateway
from tests.harness import ROLES, scratch_postgres_database

CARD_CHAT = ChatTarget("telegram", "-100")
POLICY = RemediationPolicy(
    namespaces=NamespacePolicy(), allowed_tools=frozenset({"kubectl"}), auto_enabled=False, min_confidence=0.65
)


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
    decisions: DecisionService
    knowledge: KnowledgeService
    playbooks: PlaybookService
    assistant: AssistantService
    metrics: Metrics

    notifier: Notifier

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

    async def rebuild(
        self, *, model: ChatModel | None, sla_seconds: float = 30.0, kb_budget_seconds: float = 5.0,
        policy: RemediationPolicy | None = None,
    ) -> None:
        """Swap the decision engine and the assistant for ones that use ``model`` (None: rules only)."""
        await self.decisions.aclose()
        services = _decision_services(
            self.db, self.clock, model, sla_seconds, self.notifier, self.queries, self.chat, kb_budget_seconds,
            policy or POLICY,
        )
        self.decisions, self.analysis, self.assistant, self.metrics, self.knowledge, self.playbooks = services


def _decision_services(
    db: Database, clock: FakeClock, model: ChatModel | None, sla_seconds: float, notifier: Notifier,
    queries: IncidentQueries, chat: ChatService, kb_budget_seconds: float = 5.0, policy: RemediationPolicy = POLICY,
) -> tuple[DecisionService, AnalysisService, AssistantService, Metrics, KnowledgeService, PlaybookService]:
    metrics = Metrics()
    roles = parse_roles(ROLES)
    knowledge = KnowledgeService(db, clock, roles)
    playbooks = PlaybookService(db, clock)
    advisor = None if model is None else AIAdvisor(model, Renderer(ZoneInfo("UTC")), metrics)
    decisions = DecisionService(
        db, playbooks, knowledge, advisor, metrics, clock, sla_seconds=sla_seconds, kb_budget_seconds=kb_budget_seconds
    )
    analysis = AnalysisService(db, decisions, policy, queries, notifier, roles, clock, Wakeup())
    assistant = AssistantService(queries, knowledge, playbooks, advisor, chat, clock, budget_seconds=sla_seconds)
    return decisions, analysis, assistant, metrics, knowledge, playbooks


@pytest.fixture(params=["sqlite", "postgresql"])
async def url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """An empty database: a SQLite file, then a scratch PostgreSQL database (skipped without a server)."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path}/empty.db"
        return
    pg_url, drop = await scratch_postgres_database()
    try:
        yield pg_url
    finally:
        await drop()


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
    chat = ChatService(db, queries, notifier, roles, clock)
    decisions, analysis, assistant, metrics, knowledge, playbooks = _decision_services(
        db, clock, None, 30.0, notifier, queries, chat
    )
    mono = [1000.0]
    limits = ChannelLimits(per_chat_per_second=1.0, per_group_per_minute=20.0, per_bot_per_second=30.0)
    world = World(
        db=db,
        clock=clock,
        gateway=gateway,
        incidents=IncidentService(db, notifier, clock, analysis_wakeup, LearningService(knowledge)),
        analysis=analysis,
        approvals=ApprovalService(db, notifier, roles, clock),
        chat=chat,
        queries=queries,
        sender=OutboxSender(db, gateway, queries, Pacer(limits, gateway.is_group), clock, max_backoff=60, monotonic=lambda: mono[0]),
        mono=mono,
        decisions=decisions,
        knowledge=knowledge,
        playbooks=playbooks,
        assistant=assistant,
        metrics=metrics,
        notifier=notifier,
    )
    try:
        yield world
    finally:
        await world.decisions.aclose()
        await db.dispose()
        if dropper is not None:
            await dropper()
