"""Build platform-neutral views from stored rows. Every free-text field is truncated here, before any
template sees it, so the rendered message stays within the chat's limit (Telegram: 4096 characters after
entity parsing) whatever an alert contains."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import datetime
from enum import Enum
from typing import Any

from services.incidents import incident_ref
from services.ports import CardAction, ExecutionView, IncidentCard, ProposalView
from storage.tables import Alert, Execution, Incident, IncidentStatus, Proposal, ProposalState

# Card field budget: the sum stays far below 4096 with the template's frame (about 400 characters).
CARD_LIMITS = {
    "title": 200,
    "service": 80,
    "namespace": 80,
    "summary": 300,
    "root_cause": 450,
    "command": 400,
    "reasoning": 300,
    "risk": 40,
    "decided_by": 80,
    "decision_reason": 200,
    "model": 60,
    "playbook_name": 80,
    "step": 120,
    "reasons": 200,
    "rollback_plan": 200,
    "blocked_reason": 200,
    "execution_error": 200,  # shown instead of blocked_reason (a blocked proposal never runs)
    "rollback": 200,
}
REVIEW_URL_MAX = 500  # inside href: not visible, so outside the visible budget; a longer one is not shown
CARD_MAX_STEPS = 4
DETAIL_MAX_LABELS = 25
DETAIL_MAX_ANNOTATIONS = 6
# (label value, annotation value) limits, tried in order until one alert fits a page on its own
DETAIL_VALUE_LIMITS = ((200, 600), (120, 300), (60, 150), (30, 60), (16, 24))
DETAIL_PAGE_BUDGET = 3400  # visible characters of alerts per Details message (frame adds < 200)
DETAIL_ALERT_FRAME = 260  # header, status and times lines of one alert, at their longest
DETAIL_MAX_PAGES = 5
PRIORITIES = {
    "critical": "P1",
    "page": "P1",
    "error": "P2",
    "high": "P2",
    "major": "P2",
    "warning": "P3",
    "medium": "P3",
    "info": "P4",
    "low": "P4",
}


def started_of(incident: Incident) -> datetime:
    return incident.started_at or incident.created_at


def clip(text: str | None, limit: int) -> str:
    text = (text or "").strip()
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def last_line(*texts: str | None) -> str:
    """The line that says what happened: the last non-empty line of the first text that has one ("" if none)."""
    for text in texts:
        lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
        if lines:
            return lines[-1]
    return ""


def command_list(commands: Sequence[str], *, shown: int, limit: int = 200) -> dict[str, Any]:
    """The commands a message lists, bounded (a playbook may have 20 steps; a message must stay within the
    chat's limit): the first ``shown``, each clipped, and how many more there are."""
    return {"commands": [clip(c, limit) for c in commands[:shown]], "more_commands": max(0, len(commands) - shown)}


def priority_of(severity: str) -> str:
    return PRIORITIES.get(severity.lower(), "P3")


# Finished without fixing it (or never decided): Re-analyse offers a new proposal.
REPLACEABLE = (
    ProposalState.BLOCKED,
    ProposalState.EXPIRED,
    ProposalState.FAILED,
    ProposalState.ROLLED_BACK,
    ProposalState.INTERRUPTED,
)


def card_actions(incident: Incident, proposal: Proposal | None) -> tuple[CardAction, ...]:
    actions: list[CardAction] = []
    firing = incident.status == IncidentStatus.FIRING
    pending = proposal is not None and proposal.state == ProposalState.PENDING
    blocked = proposal is not None and proposal.state in REPLACEABLE
    if firing and pending:  # a blocked proposal has no Approve button: nothing can make it runnable
        actions += [CardAction.APPROVE, CardAction.REJECT]
    actions.append(CardAction.DETAILS)
    if firing and not incident.needs_analysis and (proposal is None or pending or blocked):
        actions.append(CardAction.REANALYSE)
    actions.append(CardAction.HISTORY)
    if firing and not incident.muted:
        actions.append(CardAction.SILENCE)
    return tuple(actions)


def build_card(
    incident: Incident,
    alerts: list[Alert],
    proposal: Proposal | None,
    approved_by: Sequence[str] = (),
    execution: Execution | None = None,
) -> IncidentCard:
    assert incident.id is not None
    firing = sum(1 for a in alerts if a.status == "firing")
    summary = ""
    if alerts:
        summary = alerts[0].annotations.get("summary") or alerts[0].annotations.get("description", "")
    duration = None
    if incident.resolved_at is not None:
        duration = max(0, round((incident.resolved_at - started_of(incident)).total_seconds() / 60))
    return IncidentCard(
        incident_id=incident.id,
        ref=incident_ref(incident.id),
        status=incident.status,
        severity=clip(incident.severity, 20),
        priority=priority_of(incident.severity),
        title=clip(incident.alertname or incident.title, CARD_LIMITS["title"]),
        service=clip(incident.service, CARD_LIMITS["service"]),
        namespace=clip(incident.namespace, CARD_LIMITS["namespace"]),
        summary=clip(summary if summary != incident.alertname else "", CARD_LIMITS["summary"]),
        alert_count=len(alerts),
        firing_count=firing,
        repeat_count=sum(a.repeat_count for a in alerts),
        since=started_of(incident),
        resolved_at=incident.resolved_at,
        duration_minutes=duration,
        analysing=incident.needs_analysis and incident.status == IncidentStatus.FIRING,
        proposal=None if proposal is None else proposal_view(proposal, approved_by, execution),
        actions=card_actions(incident, proposal),
        links=card_links(alerts),
    )


LINK_KINDS = ("dashboard", "panel")  # shown on the card, in this order
LINK_MAX = 500


def card_links(alerts: Sequence[Alert]) -> tuple[tuple[str, str], ...]:
    """The dashboard and panel links of the incident's first alert that has any (firing ones first)."""
    for alert in sorted(alerts, key=lambda a: a.status != "firing"):
        links = alert.links or {}
        found = tuple((kind, links[kind]) for kind in LINK_KINDS
                      if isinstance(links.get(kind), str) and links[kind].startswith(("https://", "http://"))
                      and len(links[kind]) <= LINK_MAX)
        if found:
            return found
    return ()


def execution_view(e: Execution) -> ExecutionView:
    seconds = None if e.finished_at is None else round((e.finished_at - e.started_at).total_seconds(), 1)
    return ExecutionView(
        state=e.state,
        dry_run=e.dry_run,
        auto=e.auto,
        attempts=e.attempts,
        seconds=seconds,
        error=clip(e.error, CARD_LIMITS["execution_error"]) or None,
        rollback=clip(e.rollback, CARD_LIMITS["rollback"]) or None,
        finished_at=e.finished_at,
    )


def proposal_view(p: Proposal, approved_by: Sequence[str] = (), execution: Execution | None = None) -> ProposalView:
    return ProposalView(
        state=p.state,
        source=p.source,
        model=clip(p.model, CARD_LIMITS["model"]) or None,
        category=p.category,
        root_cause=clip(p.root_cause, CARD_LIMITS["root_cause"]),
        command=clip(p.command, CARD_LIMITS["command"]),
        risk=clip(p.risk, CARD_LIMITS["risk"]),
        reasoning=clip(p.reasoning, CARD_LIMITS["reasoning"]),
        confidence=p.confidence,
        tool_calls=p.tool_calls or 0,
        **_agreement(p.consensus),
        decided_by=clip(p.decided_by_name, CARD_LIMITS["decided_by"]) or None,
        decided_at=p.decided_at,
        decision_reason=clip(p.decision_reason, CARD_LIMITS["decision_reason"]) or None,
        fallback_reason=p.fallback_reason,
        playbook_name=clip(p.playbook_name, CARD_LIMITS["playbook_name"]) or None,
        steps=tuple(clip(step, CARD_LIMITS["step"]) for step in (p.steps or [])[:CARD_MAX_STEPS]),
        blast_score=p.blast_score,
        tier=p.tier,
        required_approvals=p.required_approvals if p.required_approvals is not None else 1,
        reasons=_reasons(p.score_reasons or []),
        rollback_plan=clip(p.rollback_plan, CARD_LIMITS["rollback_plan"]) or None,
        blocked_reason=clip(p.blocked_reason, CARD_LIMITS["blocked_reason"]) or None,
        approved_by=tuple(clip(name, CARD_LIMITS["decided_by"]) for name in approved_by[:2]),
        review_url=p.review_url if p.review_url and len(p.review_url) <= REVIEW_URL_MAX else None,
        execution=None if execution is None or execution.proposal_id != p.id else execution_view(execution),
    )


def _reasons(reasons: Sequence[str]) -> tuple[str, ...]:
    """The score's reasons within the card's budget for their line (each stays whole, so that the chat can show
    it in its language; the one that does not fit is clipped and ends the line)."""
    out: list[str] = []
    used, limit = 0, CARD_LIMITS["reasons"]
    for reason in reasons:
        text, space = str(reason), 1 if out else 0
        if used + space + len(text) > limit:
            if limit - used - space > 1:
                out.append(clip(text, limit - used - space))
            break
        out.append(text)
        used += space + len(text)
    return tuple(out)


def _agreement(record: dict[str, Any] | None) -> dict[str, Any]:
    """A proposal's consensus record as the card's "2/3 agree" (nothing when there was no consensus)."""
    if not isinstance(record, dict) or not isinstance(record.get("agree"), int) or not isinstance(record.get("of"), int):
        return {}
    return {"agree": record["agree"], "voters": record["of"], "consensus_raised": bool(record.get("raised"))}


def alert_view(alert: Alert) -> dict[str, Any]:
    """One alert for the Details message, its values shortened until it fits a page on its own."""
    labels = sorted(alert.labels.items())
    annotations = sorted(alert.annotations.items())[:DETAIL_MAX_ANNOTATIONS]
    for label_limit, annotation_limit in DETAIL_VALUE_LIMITS:
        view = {
            "fingerprint": alert.fingerprint,
            "alertname": clip(alert.alertname, 120),
            "status": alert.status,
            "labels": [(clip(k, 40), clip(v, label_limit)) for k, v in labels[:DETAIL_MAX_LABELS]],
            "hidden_labels": max(0, len(labels) - DETAIL_MAX_LABELS),
            "annotations": [(clip(k, 40), clip(v, annotation_limit)) for k, v in annotations],
            "starts_at": alert.starts_at.isoformat() if alert.starts_at else None,
            "ends_at": alert.ends_at.isoformat() if alert.ends_at else None,
            "repeat_count": alert.repeat_count,
        }
        if _weight(view) <= DETAIL_PAGE_BUDGET:
            break
    return view


def _weight(view: dict[str, Any]) -> int:
    """Visible characters the alert takes when rendered (each pair is one line: key, separator, value)."""
    pairs = view["labels"] + view["annotations"]
    return DETAIL_ALERT_FRAME + sum(len(k) + len(v) + 4 for k, v in pairs)


def detail_pages(alerts: list[Alert]) -> tuple[list[list[dict[str, Any]]], int]:
    """Alert views split into messages that each fit; returns (pages, alerts left out)."""
    pages: list[list[dict[str, Any]]] = []
    current: list[dict[str, Any]] = []
    used = 0
    for index, alert in enumerate(alerts):
        view = alert_view(alert)
        weight = _weight(view)
        if current and used + weight > DETAIL_PAGE_BUDGET:
            pages.append(current)
            current, used = [], 0
            if len(pages) == DETAIL_MAX_PAGES:
                return pages, len(alerts) - index
        current.append(view)
        used += weight
    if current:
        pages.append(current)
    return pages, 0


def split_text(text: str, limit: int) -> list[str]:
    """Plain text cut into messages of at most ``limit`` characters: at a paragraph break, else a line
    break, else a space, else hard. Splitting happens before rendering, never on rendered markup."""
    text = text.strip()
    parts: list[str] = []
    while len(text) > limit:
        window = text[:limit]
        cut = max(window.rfind("\n\n"), 0)
        if cut < limit // 2:
            cut = window.rfind("\n")
        if cut < limit // 2:
            cut = window.rfind(" ")
        if cut < limit // 2:
            cut = limit
        parts.append(text[:cut].rstrip())
        text = text[cut:].lstrip()
    if text:
        parts.append(text)
    return parts


def to_context(value: Any) -> Any:
    """A JSON-safe copy of a view (dataclasses, enums and datetimes included) for an outbox row."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_context(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): to_context(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_context(v) for v in value]
    return value
