"""The object graph, built once in bot/app.py and handed to handlers by name."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bot.render import Renderer
from bot.settings import Settings
from services.analysis import AnalysisService
from services.approvals import ApprovalService
from services.assistant import AssistantService
from services.chat import ChatService
from services.decision import DecisionService
from services.execution import ExecutionService
from services.incidents import IncidentService
from services.knowledge import KnowledgeService
from services.languages import ChatLanguages
from services.manual import ManualProposals
from services.metrics import Metrics
from services.notify import Notifier
from services.playbooks import PlaybookService
from services.postmortems import PostmortemService
from services.queries import IncidentQueries
from services.reports import ReportService
from services.silences import SilenceService
from storage.db import Database


@dataclass(frozen=True)
class Deps:
    settings: Settings
    db: Database
    renderer: Renderer
    notifier: Notifier
    incidents: IncidentService
    queries: IncidentQueries
    approvals: ApprovalService
    analysis: AnalysisService
    chat: ChatService
    decisions: DecisionService
    knowledge: KnowledgeService
    playbooks: PlaybookService
    assistant: AssistantService
    execution: ExecutionService
    manual: ManualProposals
    silences: SilenceService
    reports: ReportService
    postmortems: PostmortemService
    metrics: Metrics
    languages: ChatLanguages
    ingest_token: str

    def workflow_data(self) -> dict[str, Any]:
        """What aiogram hands to handlers by parameter name."""
        return {
            "approvals": self.approvals,
            "analysis": self.analysis,
            "chat": self.chat,
            "assistant": self.assistant,
            "manual": self.manual,
            "silences": self.silences,
            "reports": self.reports,
            "postmortems": self.postmortems,
            "renderer": self.renderer,
            "languages": self.languages,
        }
