"""SQLModel tables. Status values are stored as the enum's string value and compared the same way.

Uniqueness that protects against races (several requests, several replicas) lives in the schema:
- ``incident.open_key`` is ``receiver|groupKey`` while the incident is open and NULL after: one open
  incident per Alertmanager group;
- ``alert.active_key`` is ``receiver|fingerprint`` while the alert belongs to an open incident: one live
  row per alert;
- ``outbox.dedup_key`` and ``message_ref (channel, chat_id, incident_id, kind)``: one card per chat.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, Index, Text, UniqueConstraint
from sqlalchemy import insert_sentinel as sentinel_column
from sqlalchemy.types import DateTime, TypeDecorator
from sqlmodel import Field, SQLModel

from storage.clock import UTC


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in Python, naive UTC in the database (SQLite keeps no zone)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


def ts(*, nullable: bool = False, index: bool = False) -> Any:
    return Field(default=None, sa_column=Column(UTCDateTime(), nullable=nullable, index=index))


# Default factories are Python functions, not the dict/list builtins: pydantic reads a factory's signature each
# time it calls it, and a builtin's takes ~80 µs to find (every new row pays it; the ingest makes thousands).
def _new_dict() -> dict[str, Any]:
    return {}


def _new_list() -> list[Any]:
    return []


def json_col() -> Any:
    return Field(default_factory=_new_dict, sa_column=Column(JSON, nullable=False))


def json_list() -> Any:
    return Field(default_factory=_new_list, sa_column=Column(JSON, nullable=False))


def added_json() -> Any:
    """A JSON column added after the first release: nullable, so existing databases gain it in place."""
    return Field(default=None, sa_column=Column(JSON, nullable=True))


class IncidentStatus(StrEnum):
    FIRING = "firing"
    RESOLVED = "resolved"


class AlertStatus(StrEnum):
    FIRING = "firing"
    RESOLVED = "resolved"


class ProposalState(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    EXPIRED = "expired"
    BLOCKED = "blocked"
    SUPERSEDED = "superseded"
    EXECUTING = "executing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    ROLLED_BACK = "rolled_back"
    INTERRUPTED = "interrupted"


class OutboxState(StrEnum):
    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    COALESCED = "coalesced"
    FOLDED = "folded"  # an incident's card (or thread) in a chat, folded into an alert-storm digest there


class OutboxKind(StrEnum):
    CARD = "card"  # make the incident's card in this chat show current state (send or edit)
    MESSAGE = "message"  # a rendered template, optionally threaded under the card


class Incident(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    # Lets SQLAlchemy insert many rows in one INSERT … RETURNING and match the ids to the rows (SQLite has no
    # order for RETURNING); filled only by such inserts, never read.
    sentinel: int | None = Field(default=None, sa_column=sentinel_column("sentinel"))
    status: str = Field(default=IncidentStatus.FIRING, index=True)
    source: str = "alertmanager"
    receiver: str = ""
    group_key: str = Field(default="", sa_column=Column(Text, nullable=False))
    open_key: str | None = Field(default=None, sa_column=Column(Text, nullable=True, unique=True))
    alertname: str = Field(default="", index=True)
    title: str = ""
    severity: str = ""
    service: str = Field(default="", index=True)
    namespace: str = ""
    common_labels: dict[str, str] = json_col()
    created_at: datetime = ts(index=True)  # when alertpilot opened it
    started_at: datetime | None = ts(nullable=True)  # earliest startsAt of its alerts (never after created_at)
    updated_at: datetime = ts()
    acknowledged_at: datetime | None = ts(nullable=True)
    resolved_at: datetime | None = ts(nullable=True, index=True)
    # Analysis is a durable to-do: set at creation and on re-analyse, cleared with the proposal's insert.
    needs_analysis: bool = Field(default=True, index=True)
    analysis_claimed_by: str | None = None
    analysis_claimed_at: datetime | None = ts(nullable=True)
    analysis_requested_by: str | None = None
    remediated_at: datetime | None = ts(nullable=True)  # an executed remediation succeeded (not a dry run)
    # Added with silences: the silence that matched when the incident opened (no card while it lasts).
    silence_id: int | None = Field(default=None, index=True)
    muted: bool | None = None  # True while that silence lasts (None on rows from before silences: not muted)
    chats: list[str] | None = Field(default=None, sa_column=Column(JSON))  # routed: ["telegram:-100123", …]; None: default
    route: str | None = None  # the route (or source) that chose those chats; roles may be limited to it


class Alert(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    # Lets SQLAlchemy insert many rows in one INSERT … RETURNING and match the ids to the rows (SQLite has no
    # order for RETURNING); filled only by such inserts, never read.
    sentinel: int | None = Field(default=None, sa_column=sentinel_column("sentinel"))
    incident_id: int | None = Field(default=None, foreign_key="incident.id", index=True)
    receiver: str = ""
    fingerprint: str = Field(index=True)
    active_key: str | None = Field(default=None, sa_column=Column(Text, nullable=True, unique=True))
    status: str = Field(default=AlertStatus.FIRING, index=True)
    alertname: str = ""
    severity: str = ""
    labels: dict[str, str] = json_col()
    annotations: dict[str, str] = json_col()
    starts_at: datetime | None = ts(nullable=True)
    ends_at: datetime | None = ts(nullable=True)
    generator_url: str = ""
    links: dict[str, str] | None = Field(default=None, sa_column=Column(JSON))  # {"dashboard": url, "panel": url, …}
    first_seen: datetime = ts(index=True)  # the reports count alerts by it
    last_seen: datetime = ts()
    repeat_count: int = 0  # re-notifications of this alert after the first


class Proposal(SQLModel, table=True):
    """A decision's result (the 'decision row'): what to do, who said so, and where it stands."""

    id: int | None = Field(default=None, primary_key=True)
    incident_id: int = Field(foreign_key="incident.id", index=True)
    state: str = Field(default=ProposalState.PENDING, index=True)
    is_current: bool = True
    source: str = "rules"  # rules | ai | playbook | human
    model: str | None = None
    category: str = ""
    root_cause: str = Field(default="", sa_column=Column(Text, nullable=False))
    command: str = Field(default="", sa_column=Column(Text, nullable=False))
    risk: str = ""
    reasoning: str = Field(default="", sa_column=Column(Text, nullable=False))
    confidence: float | None = None
    latency_ms: int = 0
    requested_by: str | None = None
    decided_by: str | None = None
    decided_by_name: str | None = None
    decided_at: datetime | None = ts(nullable=True, index=True)
    decision_reason: str | None = None
    created_at: datetime = ts(index=True)
    # Added with the decision engine (nullable: existing databases gain them in place).
    decision_id: int | None = Field(default=None, foreign_key="decision.id")
    fallback_reason: str | None = None  # why the rules answered although a model is configured
    tool_calls: int | None = None  # read-only tool calls the AI model made before it proposed (issue 12)
    # several analyses compared (services/consensus.py): agree, of, votes with their tiers, raised
    consensus: dict[str, Any] | None = added_json()
    playbook_id: int | None = Field(default=None, foreign_key="playbook.id")
    playbook_name: str | None = None
    steps: list[str] | None = added_json()  # a playbook's later steps (``command`` is the first)
    # Added with the remediation policy: the command's assessment (services/safety.py).
    blast_score: int | None = None  # 0–100
    tier: str | None = None  # auto | one_approver | two_approvers | blocked
    required_approvals: int | None = None
    score_reasons: list[str] | None = added_json()
    blocked_reason: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    rollback_plan: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    spec: dict[str, Any] | None = added_json()  # the parsed RemediationSpec
    proposed_by: str | None = None  # a person who proposed the command (/run): never its approver
    review_url: str | None = Field(default=None, sa_column=Column(Text, nullable=True))  # GitOps review issue
    # Added with reminders: when the approvers were reminded, and when it was escalated (each once).
    reminded_at: datetime | None = ts(nullable=True)
    escalated_at: datetime | None = ts(nullable=True)


class ExecutionState(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    ROLLED_BACK = "rolled_back"
    INTERRUPTED = "interrupted"  # the process died while it ran: reported, never re-run blindly


class Execution(SQLModel, table=True):
    """The run of one approved proposal. Unique per proposal: one approval executes once, whatever clicks
    or replicas race (the proposal's approved → executing compare-and-set decides who runs it)."""

    id: int | None = Field(default=None, primary_key=True)
    proposal_id: int = Field(foreign_key="proposal.id", unique=True)
    incident_id: int = Field(foreign_key="incident.id", index=True)
    state: str = Field(default=ExecutionState.RUNNING, index=True)
    executor: str = "dry-run"  # dry-run | kubectl
    dry_run: bool = True
    auto: bool = False  # approved by the policy (tier auto), not by a person
    requested_by: str | None = None  # who proposed it: a person (/run), "alertpilot" (analysis), …
    approvers: list[str] = json_list()  # names, in signing order
    commands: list[str] = json_list()  # the steps, in order
    owner: str = ""  # the worker running it
    heartbeat_at: datetime = ts()  # renewed while running; a stale one means the runner died
    started_at: datetime = ts()
    finished_at: datetime | None = ts(nullable=True, index=True)
    attempts: int = 0
    error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    rollback: str | None = Field(default=None, sa_column=Column(Text, nullable=True))  # what happened to the rollback
    replicas_before: int | None = None  # read before a scale, for its rollback
    credited_at: datetime | None = ts(nullable=True)  # the outcome was counted for its playbook (once)


class ExecutionAttempt(SQLModel, table=True):
    """One process run (or, in dry-run mode, what would have run): the audit trail."""

    id: int | None = Field(default=None, primary_key=True)
    execution_id: int = Field(foreign_key="execution.id", index=True)
    incident_id: int = Field(foreign_key="incident.id", index=True)
    step: str  # read_replicas | dry_run | run | verify | history | rollback
    step_index: int = 0  # which command of a playbook (0-based)
    attempt: int = 1
    argv: list[str] = json_list()
    started_at: datetime = ts()
    finished_at: datetime = ts()
    duration_ms: int = 0
    exit_code: int | None = None
    stdout: str = Field(default="", sa_column=Column(Text, nullable=False))
    stderr: str = Field(default="", sa_column=Column(Text, nullable=False))
    dry_run: bool = False
    result: str = "ok"  # ok | transient | permanent
    reason: str | None = None  # the failure's marker: timeout, not found, exit code 1, …


class Approval(SQLModel, table=True):
    """One approver's signature on a proposal. Unique per person: a second click by the same approver of a
    two-approver proposal cannot count twice, even from two replicas at once."""

    __table_args__ = (UniqueConstraint("proposal_id", "actor", name="uq_approval_actor"),)

    id: int | None = Field(default=None, primary_key=True)
    proposal_id: int = Field(foreign_key="proposal.id", index=True)
    incident_id: int = Field(foreign_key="incident.id")
    actor: str
    name: str = ""
    at: datetime = ts()


class DecisionOutcome(StrEnum):
    USED = "used"  # became the incident's proposal
    LATE = "late"  # the model answered after the SLA: kept for the record, the card was not flipped
    FAILED = "failed"  # the model was asked and gave no usable answer
    VOTE = "vote"  # a consensus analysis that answered but is not the one on the card (it was counted)


class Decision(SQLModel, table=True):
    """One engine's answer (or failure) for an incident: the audit of how each proposal was reached."""

    id: int | None = Field(default=None, primary_key=True)
    incident_id: int = Field(foreign_key="incident.id", index=True)
    source: str  # playbook | ai | rules
    model: str | None = None
    outcome: str = DecisionOutcome.USED
    fallback_reason: str | None = None
    latency_ms: int = 0
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    response_format: str | None = None  # json_schema | json_object | prompt (what the model server accepted)
    repaired: bool = False
    proposal: dict[str, Any] = json_col()  # root_cause, command, risk, confidence, reasoning
    error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    fresh: bool = False  # a re-analyse: the playbook was skipped
    created_at: datetime = ts()


class KnowledgeSource(StrEnum):
    HUMAN = "human"  # /note
    AUTO = "auto"  # learned from an outcome
    IMPORT = "import"


class KnowledgeEntry(SQLModel, table=True):
    """A knowledge-base entry. Full-text search lives behind KnowledgeRepo.search (SQLite FTS5 table
    ``knowledge_fts``, PostgreSQL tsvector over ``search_text``)."""

    id: int | None = Field(default=None, primary_key=True)
    title: str = Field(sa_column=Column(Text, nullable=False))
    body: str = Field(default="", sa_column=Column(Text, nullable=False))
    tags: list[str] = json_list()
    category: str = ""
    services: list[str] = json_list()
    source: str = KnowledgeSource.HUMAN
    incident_id: int | None = Field(default=None, foreign_key="incident.id", index=True)
    created_by: str | None = None
    created_at: datetime = ts(index=True)
    search_text: str = Field(default="", sa_column=Column(Text, nullable=False))  # normalised words, indexed


class PlaybookSource(StrEnum):
    FILE = "file"  # ALERTPILOT_PLAYBOOKS_FILE
    LEARNED = "learned"


class Playbook(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(sa_column=Column(Text, nullable=False, unique=True))
    description: str = Field(default="", sa_column=Column(Text, nullable=False))
    # {"alertnames": [...], "services": [...], "severities": [...], "matchers": ['namespace="prod"', ...]}
    symptoms: dict[str, Any] = json_col()
    steps: list[dict[str, str]] = json_list()  # [{"name": ..., "command": "kubectl -n {namespace} ..."}]
    category: str = ""
    risk: str = ""
    root_cause: str = Field(default="", sa_column=Column(Text, nullable=False))
    executions: int = 0
    successes: int = 0
    source: str = PlaybookSource.FILE
    enabled: bool = True
    created_at: datetime = ts()
    updated_at: datetime = ts()


class TimelineEvent(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    # Lets SQLAlchemy insert many rows in one INSERT … RETURNING and match the ids to the rows (SQLite has no
    # order for RETURNING); filled only by such inserts, never read.
    sentinel: int | None = Field(default=None, sa_column=sentinel_column("sentinel"))
    incident_id: int | None = Field(default=None, foreign_key="incident.id", index=True)
    at: datetime = ts()
    kind: str
    actor: str | None = None
    detail: dict[str, Any] = json_col()


class MessageRef(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("channel", "chat_id", "incident_id", "kind", name="uq_message_ref"),)

    id: int | None = Field(default=None, primary_key=True)
    channel: str
    chat_id: str
    message_id: str
    thread_id: str | None = None
    kind: str = "card"
    incident_id: int = Field(foreign_key="incident.id", index=True)
    created_at: datetime = ts()


class Outbox(SQLModel, table=True):
    __table_args__ = (Index("ix_outbox_due", "channel", "state", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    # Lets SQLAlchemy insert many rows in one INSERT … RETURNING and match the ids to the rows (SQLite has no
    # order for RETURNING); filled only by such inserts, never read.
    sentinel: int | None = Field(default=None, sa_column=sentinel_column("sentinel"))
    channel: str
    chat_id: str
    incident_id: int | None = Field(default=None, index=True)
    kind: str = OutboxKind.MESSAGE
    template: str = ""
    context: dict[str, Any] = json_col()
    reply_to_card: bool = False
    reply_to_message_id: str | None = None
    dedup_key: str | None = Field(default=None, sa_column=Column(Text, nullable=True, unique=True))
    state: str = Field(default=OutboxState.PENDING)
    attempts: int = 0
    not_before: datetime = ts()
    claimed_by: str | None = None
    claimed_at: datetime | None = ts(nullable=True)
    last_error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    message_id: str | None = None
    created_at: datetime = ts()
    sent_at: datetime | None = ts(nullable=True)
    # Added with postmortems: give up after this many sends (None: never, an outage only delays) and then
    # queue ``fallback`` ({"template": …, "context": …}, the error added) instead.
    max_attempts: int | None = None
    fallback: dict[str, Any] | None = added_json()


class KeyValue(SQLModel, table=True):
    key: str = Field(primary_key=True)
    value: str = Field(sa_column=Column(Text, nullable=False))


class Lease(SQLModel, table=True):
    """A scheduled job's occurrence (``report:daily:2026-11-24``) or a periodic job's turn (``job:reminders``).
    Whoever inserts the row, or takes it over once ``expires_at`` has passed (its holder died), runs it;
    ``done_at`` marks an occurrence finished for good (it never runs again)."""

    name: str = Field(sa_column=Column(Text, primary_key=True))
    owner: str
    acquired_at: datetime = ts()
    expires_at: datetime = ts()
    done_at: datetime | None = ts(nullable=True)


class TelegramUpdate(SQLModel, table=True):
    """An update Telegram posted to the webhook: stored before it is acknowledged (so an acknowledged update is
    never lost), processed in the background by the replica that received it (``claimed_by``), or by any
    replica once that claim is stale (it died). ``update_id`` is the key: an update Telegram posts again, to
    this replica or another, is recognised and not processed twice. Done rows are kept a day for that."""

    __table_args__ = (Index("ix_telegramupdate_pending", "done_at", "claimed_at"),)

    update_id: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    body: dict[str, Any] = json_col()
    received_at: datetime = ts()
    claimed_by: str | None = None
    claimed_at: datetime | None = ts(nullable=True)
    done_at: datetime | None = ts(nullable=True)
    error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))


class Silence(SQLModel, table=True):
    """Alerts matching every matcher open incidents without a card until ``ends_at``."""

    id: int | None = Field(default=None, primary_key=True)
    matchers: dict[str, str] = json_col()  # label → value; "service" also matches the incident's service
    reason: str = Field(default="", sa_column=Column(Text, nullable=False))
    created_by: str = ""
    created_by_name: str = ""
    channel: str = ""  # where it was created: "silence expired" is said there too
    chat_id: str = ""
    created_at: datetime = ts()
    ends_at: datetime = ts(index=True)
    removed_at: datetime | None = ts(nullable=True)  # /unsilence
    removed_by: str | None = None
    expired_noted_at: datetime | None = ts(nullable=True)  # "silence expired" was queued (once)


class PostmortemState(StrEnum):
    DUE = "due"
    SENT = "sent"  # queued to every chat (the outbox delivers it, or its fallback)


class Postmortem(SQLModel, table=True):
    """The automatic postmortem of a resolved incident: a durable to-do, written with the resolution."""

    id: int | None = Field(default=None, primary_key=True)
    incident_id: int = Field(foreign_key="incident.id", unique=True)
    state: str = Field(default=PostmortemState.DUE, index=True)
    created_at: datetime = ts()
    claimed_by: str | None = None
    claimed_at: datetime | None = ts(nullable=True)
    sent_at: datetime | None = ts(nullable=True)
    model: str | None = None  # the AI model that wrote the narrative, if any
