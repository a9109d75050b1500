"""Who is acting, and what came of it: shared by every chat-facing use case (Telegram and WeCom alike)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from services.ports import ChatTarget

# Where a command's answer goes: (template name, context) → one message. ChatService.sink queues it for the
# actor's chat; the WeCom callback collects it into its passive reply or a streamed reply.
Reply = Callable[[str, dict[str, Any]], Awaitable[None]]


@dataclass(frozen=True)
class Actor:
    id: str  # tg:111 | wecom:alice
    name: str  # what the chat shows: @alice, or a full name
    target: ChatTarget  # the chat the action came from


class Outcome(StrEnum):
    APPROVED = "approved"
    REJECTED = "rejected"
    ALREADY_DECIDED = "already_decided"
    INCIDENT_RESOLVED = "incident_resolved"
    NOT_ALLOWED = "not_allowed"
    NO_PROPOSAL = "no_proposal"
    REANALYSING = "reanalysing"
    ANALYSIS_RUNNING = "analysis_running"
    NOT_REANALYSABLE = "not_reanalysable"
    DETAILS_SENT = "details_sent"
    HISTORY_SENT = "history_sent"
    ALREADY_POSTED = "already_posted"
    BLOCKED = "blocked"  # the policy blocks the command: nobody can approve it
    SELF_APPROVAL = "self_approval"  # the person who proposed a command cannot approve it
    PARTIAL_APPROVAL = "partial_approval"  # signed; the two-approver tier needs another approver
    ALREADY_SIGNED = "already_signed"  # this approver has already signed; a second approver must agree
    PROPOSED = "proposed"  # /run: the command is now the incident's proposal
    BAD_COMMAND = "bad_command"  # /run without a command, or one too long
    SILENCED = "silenced"  # 🔕: the incident's service is silenced for an hour
    ALREADY_SILENCED = "already_silenced"


@dataclass(frozen=True)
class ActionResult:
    outcome: Outcome
    ref: str
    state: str | None = None  # the proposal state found, when it explains the outcome
    by: str | None = None  # who decided it, when already decided
    needed_role: str | None = None
    namespace: str | None = None  # the namespace a namespace-limited role did not cover
    count: int | None = None  # approvals so far (two-approver tier)
    required: int | None = None

    @property
    def ok(self) -> bool:
        return self.outcome in (
            Outcome.APPROVED,
            Outcome.REJECTED,
            Outcome.PARTIAL_APPROVAL,
            Outcome.PROPOSED,
            Outcome.REANALYSING,
            Outcome.DETAILS_SENT,
            Outcome.HISTORY_SENT,
            Outcome.SILENCED,
        )
