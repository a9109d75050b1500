"""Ports (Protocols) the services depend on, and the platform-neutral view models chat adapters render.

Nothing here knows Telegram, WeCom or jinja2: a ChatGateway implementation (bot/chat/*) turns a view
model into its platform's message through templates/<channel>/*.j2.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol


class CardAction(StrEnum):
    APPROVE = "approve"
    REJECT = "reject"
    DETAILS = "details"
    REANALYSE = "reanalyse"
    HISTORY = "history"
    SILENCE = "silence"  # 🔕 the incident's service for an hour


DECISION_ACTIONS = (CardAction.APPROVE, CardAction.REJECT)


@dataclass(frozen=True)
class ExecutionView:
    """The run of the card's proposal, for the card's status line."""

    state: str  # running | succeeded | failed | rolled_back | interrupted
    dry_run: bool
    auto: bool
    attempts: int
    seconds: float | None  # how long it took, once finished
    error: str | None
    rollback: str | None
    finished_at: datetime | None


@dataclass(frozen=True)
class ProposalView:
    state: str
    source: str
    model: str | None
    category: str
    root_cause: str
    command: str
    risk: str
    reasoning: str
    confidence: float | None
    decided_by: str | None
    decided_at: datetime | None
    decision_reason: str | None
    fallback_reason: str | None = None  # why the rules answered although a model is configured
    playbook_name: str | None = None
    steps: tuple[str, ...] = ()  # a playbook's later steps
    blast_score: int | None = None  # 0–100 (None: assessed before the policy existed)
    tier: str | None = None  # auto | one_approver | two_approvers | blocked
    required_approvals: int = 1
    reasons: tuple[str, ...] = ()  # the score's reasons, shown in one line: "rollout restart 8 × prod 1.5 = 12"
    rollback_plan: str | None = None
    blocked_reason: str | None = None
    approved_by: tuple[str, ...] = ()  # signatures so far (two-approver tier)
    review_url: str | None = None  # the GitOps review issue, when one was opened
    tool_calls: int = 0  # the AI model investigated with this many read-only tool calls
    agree: int = 0  # consensus: this many of ``voters`` analyses proposed this remediation (0: no consensus)
    voters: int = 0
    consensus_raised: bool = False  # the tier is a dissent's (or auto was withheld for lack of agreement)
    execution: ExecutionView | None = None


@dataclass(frozen=True)
class IncidentCard:
    """Everything the card shows, already truncated to fit a 4096-character message."""

    incident_id: int
    ref: str  # INC-12
    status: str  # firing | resolved
    severity: str
    priority: str  # P1..P4
    title: str
    service: str
    namespace: str
    summary: str
    alert_count: int
    firing_count: int
    repeat_count: int
    since: datetime
    resolved_at: datetime | None
    duration_minutes: int | None
    analysing: bool
    proposal: ProposalView | None
    actions: tuple[CardAction, ...]
    links: tuple[tuple[str, str], ...] = ()  # (kind, url): the source's dashboard, panel… (http(s) only)


def card_version(card: IncidentCard) -> str:
    """What a posted card must still show to be current where cards cannot be edited: the proposal (its
    source and command), or that it is still being analysed. State changes of the same proposal are sent as
    their own messages."""
    if card.analysing:
        return "analysing"
    if card.proposal is None:
        return "none"
    digest = hashlib.sha1(f"{card.proposal.source}|{card.proposal.command}".encode()).hexdigest()[:8]
    return f"p{digest}"


@dataclass(frozen=True)
class ChannelLimits:
    per_chat_per_second: float
    per_group_per_minute: float
    per_bot_per_second: float


@dataclass(frozen=True)
class ChatTarget:
    channel: str
    chat_id: str


class Languages(Protocol):
    """Which language a chat's messages are rendered in (services/languages.py ChatLanguages)."""

    async def of(self, target: ChatTarget) -> str: ...

    async def chats(self, channel: str) -> dict[str, str]:
        """The chats of ``channel`` with their own language: chat id → language."""
        ...


class ChatGateway(Protocol):
    """One chat platform's delivery. Raises services.errors.DeliveryError subclasses on failure."""

    channel: str
    can_edit: bool  # False: a card is posted once; its later state changes arrive as their own messages

    def is_group(self, chat_id: str) -> bool: ...

    async def send_card(self, chat_id: str, card: IncidentCard, *, edit_message_id: str | None) -> str:
        """Send the card (or edit ``edit_message_id`` in place); return its message id."""
        ...

    def shows(self, message_id: str, card: IncidentCard) -> bool:
        """For a channel that cannot edit: whether the card posted as ``message_id`` still shows what matters
        (its proposal); if not, the card is posted again. Channels that edit answer False."""
        ...

    async def send_message(
        self, chat_id: str, template: str, context: dict[str, Any], *, reply_to: str | None
    ) -> str:
        """Render ``template`` with ``context``; send it, threaded under ``reply_to`` when given."""
        ...


@dataclass(frozen=True)
class IncidentFacts:
    """What a decision engine sees about an incident."""

    incident_id: int
    alertname: str
    severity: str
    service: str
    namespace: str
    labels: dict[str, str]
    annotations: dict[str, str]
    alerts: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class ProposalDraft:
    source: str  # rules | playbook | ai
    root_cause: str
    command: str
    risk: str
    reasoning: str
    category: str = ""
    model: str | None = None
    confidence: float | None = None  # only the AI model claims one
    playbook_id: int | None = None
    playbook_name: str | None = None
    steps: tuple[str, ...] = ()  # a playbook's later steps, after ``command``
    # the read-only tool calls the model made before it proposed: tool, arguments, ok, excerpt, seconds, refused
    evidence: tuple[dict[str, Any], ...] = ()
    # several analyses compared (services/consensus.py): {"agree": 2, "of": 3, "votes": [{member, command, agrees, …}]}
    consensus: dict[str, Any] | None = None


# --- the AI model (an OpenAI-compatible chat-completions server) ---------------------------------


@dataclass(frozen=True)
class ToolCall:
    """One function call the model asked for, parsed and checked by the client.

    ``arguments`` is the parsed JSON object. When the model sent something unusable (not JSON, not an object,
    over the size cap, no name, a tool that was not offered) ``error`` says what and ``arguments`` is empty:
    never run such a call; answer it with ``result_message(<the error>)`` so the model may try again.
    ``raw_arguments`` is what the model sent, cut to the cap (for logs)."""

    id: str
    name: str
    arguments: dict[str, Any]
    error: str | None = None
    raw_arguments: str = ""

    @property
    def ok(self) -> bool:
        return self.error is None

    def request_part(self) -> dict[str, Any]:
        """This call as it goes back to the model inside the assistant message (``tool_calls[i]``). A call
        whose arguments were unusable is echoed with ``{}`` so that strict servers accept the history."""
        arguments = json.dumps(self.arguments, ensure_ascii=False) if self.ok else "{}"
        return {"id": self.id, "type": "function", "function": {"name": self.name, "arguments": arguments}}

    def result_message(self, content: str) -> dict[str, Any]:
        """The ``role: tool`` message answering this call (every call of a reply needs one)."""
        return {"role": "tool", "tool_call_id": self.id, "content": content}


@dataclass(frozen=True)
class ModelReply:
    """One chat completion. ``response_format`` says which structured-output mode the server accepted:
    ``json_schema``, ``json_object``, or ``prompt`` (none: the prompt alone asks for JSON) — ``text`` when
    no structure was requested, ``tools`` for ``complete_with_tools``.

    Only ``complete_with_tools`` fills ``tool_calls`` (in the model's order, at most the client's cap;
    ``dropped_tool_calls`` counts the ones over it). Then ``text`` may be empty: the model wants tool results
    before it answers."""

    text: str
    model: str
    response_format: str
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    finish_reason: str | None = None  # "length" means the answer was cut off; "tool_calls" asks for results
    tool_calls: tuple[ToolCall, ...] = ()
    dropped_tool_calls: int = 0

    def assistant_message(self) -> dict[str, Any]:
        """This reply as the ``role: assistant`` message to append to the conversation before the tool
        results (``ToolCall.result_message``) and the next ``complete_with_tools``."""
        message: dict[str, Any] = {"role": "assistant", "content": self.text or None}
        if self.tool_calls:
            message["tool_calls"] = [call.request_part() for call in self.tool_calls]
        return message


class ChatModel(Protocol):
    """A chat-completions model. ``complete`` raises services.errors.ModelError subclasses (never httpx
    errors): ModelTimeout, ModelUnavailable (HTTP status, connection refused/reset, malformed envelope)."""

    name: str

    async def complete(
        self, messages: list[dict[str, str]], *, json_schema: dict[str, Any] | None = None, max_tokens: int = 800
    ) -> ModelReply: ...


class ToolChatModel(ChatModel, Protocol):
    """A ChatModel that can also offer tools (OpenAI ``tools`` / ``tool_calls``). A caller runs the loop::

        reply = await model.complete_with_tools(messages, tools)
        while reply.tool_calls:
            messages.append(reply.assistant_message())
            messages += [call.result_message(run(call) if call.ok else call.error) for call in reply.tool_calls]
            reply = await model.complete_with_tools(messages, tools)   # tools=[]: forces a final answer

    Raises what ``complete`` raises; a server that cannot do tools raises a ModelError whose ``reason`` is
    ``"tools_unsupported"`` (then fall back to the single-shot prompt). ``supports_tools`` is None until the
    server has answered a request with tools, then True or False (False: later calls raise at once)."""

    @property
    def supports_tools(self) -> bool | None: ...

    async def complete_with_tools(
        self,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]],
        *,
        max_tokens: int = 800,
        tool_choice: str | dict[str, Any] = "auto",
    ) -> ModelReply: ...


class Prompts(Protocol):
    """Renders a prompt template (templates/ai/<name>.j2) to plain text."""

    def prompt(self, name: str, **context: Any) -> str: ...


# --- execution (services/execution.py runs approved commands through an Executor) ------------------


@dataclass(frozen=True)
class CommandResult:
    """One run of one argv. ``exit_code`` is None when the process could not start (``error`` says why) or
    was killed at its timeout (``timed_out``). Output is decoded and already cut to a bounded excerpt."""

    argv: tuple[str, ...]  # exactly what was executed (or, for a dry-run executor, what would have been)
    exit_code: int | None
    stdout: str
    stderr: str
    duration_ms: int
    timed_out: bool = False
    error: str | None = None
    dry_run: bool = False

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out and self.error is None


class Executor(Protocol):
    """Runs an argv without a shell. ``run`` never raises for a failing command: the failure is in the
    result (a cancellation still propagates, after the process is killed)."""

    name: str  # dry-run | kubectl
    dry_run: bool  # True: nothing is executed, every result says what would have run

    async def run(self, argv: tuple[str, ...], *, timeout: float) -> CommandResult: ...
