"""Read side: cards, command answers and the read API, all built from stored state."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from services.errors import IncidentNotFound, InvalidIncidentRef
from services.incidents import incident_ref
from services.ports import IncidentCard
from services.views import build_card, clip, detail_pages, priority_of, started_of, to_context
from storage.db import Database
from storage.repos import Tx
from storage.tables import Alert, Decision, Execution, ExecutionAttempt, Incident, Proposal, TimelineEvent

EVIDENCE_SHOWN = 8


def evidence_view(call: dict[str, Any]) -> dict[str, Any]:
    arguments = call.get("arguments") if isinstance(call.get("arguments"), dict) else {}
    return {
        "tool": clip(str(call.get("tool") or "?"), 40),
        "arguments": clip(" ".join(f"{k}={v}" for k, v in arguments.items()), 160),
        "ok": bool(call.get("ok")),
        "refused": clip(call.get("refused"), 160) or None,
        "excerpt": clip(call.get("excerpt"), 300),
        "seconds": call.get("seconds") if isinstance(call.get("seconds"), int | float) else None,
    }


def vote_view(vote: dict[str, Any]) -> dict[str, Any]:
    """One analysis of a consensus as Details shows it, every value bounded."""
    confidence = vote.get("confidence")
    return {
        "member": clip(str(vote.get("member") or "?"), 60),
        "agrees": bool(vote.get("agrees")),
        "command": clip(vote.get("command"), 300) or None,
        "root_cause": clip(vote.get("root_cause"), 200),
        "tier": clip(vote.get("tier"), 20) or None,
        "blast_score": vote.get("blast_score") if isinstance(vote.get("blast_score"), int) else None,
        "confidence": confidence if isinstance(confidence, int | float) else None,
        "error": clip(vote.get("error"), 160) or None,
    }


_REF = re.compile(r"^(?:inc-?)?#?(\d{1,12})$", re.IGNORECASE)
MAX_PAGE = 500
HISTORY_LIMIT = 8
SUMMARY_ALERTS = 10
SUMMARY_EVENTS = 30
EVENT_DETAIL_KEYS = ("name", "source", "model", "command", "reason", "fallback_reason", "state", "text")


# An incident written so that it cannot be anything else (not a bare number: kubectl, durations and
# silence ids take those): INC-12, inc12, #12.
EXPLICIT_REF = re.compile(r"^(?:inc-?\d{1,12}|#\d{1,12})$", re.IGNORECASE)


def parse_incident_ref(text: str) -> int:
    """``INC-12``, ``inc12``, ``#12`` or ``12`` → 12."""
    match = _REF.match(text.strip())
    if not match or int(match.group(1)) == 0:
        raise InvalidIncidentRef(text)
    return int(match.group(1))


def page_bounds(limit: int | None, offset: int | None, default: int = 50) -> tuple[int, int]:
    limit = default if limit is None else max(1, min(int(limit), MAX_PAGE))
    return limit, max(0, int(offset or 0))


class IncidentQueries:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def card(self, incident_id: int) -> IncidentCard:
        async with self._db.read() as tx:
            return await self.card_in(tx, incident_id)

    async def card_in(self, tx: Tx, incident_id: int) -> IncidentCard:
        incident = await tx.incidents.get(incident_id)
        if incident is None:
            raise IncidentNotFound(incident_ref(incident_id))
        alerts = await tx.alerts.of_incident(incident_id)
        proposal = await tx.proposals.current(incident_id)
        approvals = [] if proposal is None or proposal.id is None else await tx.approvals.of_proposal(proposal.id)
        execution = None if proposal is None or proposal.id is None else await tx.executions.of_proposal(proposal.id)
        return build_card(incident, alerts, proposal, [a.name for a in approvals], execution)

    async def evidence(self, tx: Tx, incident_id: int) -> list[dict[str, Any]]:
        """The read-only tool calls behind the current proposal (bounded for a message), or []."""
        proposal = await tx.proposals.current(incident_id)
        if proposal is None or proposal.decision_id is None or not proposal.tool_calls:
            return []
        decision = await tx.decisions.get(proposal.decision_id)
        calls = (decision.proposal or {}).get("evidence") if decision is not None else None
        return [evidence_view(c) for c in calls[:EVIDENCE_SHOWN] if isinstance(c, dict)] if isinstance(calls, list) else []

    async def consensus(self, tx: Tx, incident_id: int) -> dict[str, Any] | None:
        """How the analyses behind the current proposal voted (agreement and every vote), or None."""
        proposal = await tx.proposals.current(incident_id)
        record = None if proposal is None else proposal.consensus
        if not isinstance(record, dict) or not isinstance(record.get("votes"), list):
            return None
        votes = [vote_view(v) for v in record["votes"] if isinstance(v, dict)]
        return {"agree": record.get("agree"), "of": record.get("of"), "raised": bool(record.get("raised")), "votes": votes}

    async def analysis(self, incident_id: int) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
        """How the current proposal was reached: its tool calls (evidence) and its consensus, either may be empty."""
        async with self._db.read() as tx:
            if await tx.incidents.get(incident_id) is None:
                raise IncidentNotFound(incident_ref(incident_id))
            return await self.evidence(tx, incident_id), await self.consensus(tx, incident_id)

    async def details_pages(self, tx: Tx, incident_id: int) -> tuple[list[list[dict[str, Any]]], int]:
        return detail_pages(await tx.alerts.of_incident(incident_id))

    async def history(self, tx: Tx, incident: Incident) -> list[dict[str, Any]]:
        assert incident.id is not None
        similar = await tx.incidents.similar(
            alertname=incident.alertname, service=incident.service, exclude_id=incident.id, limit=HISTORY_LIMIT
        )
        proposals = await tx.proposals.of_incidents(i.id for i in similar if i.id is not None)
        return [_history_item(i, proposals.get(i.id or 0)) for i in similar]

    async def open_incidents(self, limit: int = 20) -> tuple[list[dict[str, Any]], int]:
        async with self._db.read() as tx:
            incidents, total = await tx.incidents.page(status="firing", limit=limit, offset=0)
            proposals = await tx.proposals.of_incidents(i.id for i in incidents if i.id is not None)
            return [_history_item(i, proposals.get(i.id or 0)) for i in incidents], total

    async def recent_incidents(self, *, since: datetime, limit: int) -> list[dict[str, Any]]:
        async with self._db.read() as tx:
            incidents = await tx.incidents.created_since(since, limit=limit)
            proposals = await tx.proposals.of_incidents(i.id for i in incidents if i.id is not None)
            return [_history_item(i, proposals.get(i.id or 0)) for i in incidents]

    async def summary_facts(self, incident_id: int) -> dict[str, Any]:
        """One incident as data for a summary (the model's or the rule-based one), every field bounded."""
        async with self._db.read() as tx:
            incident = await tx.incidents.get(incident_id)
            if incident is None:
                raise IncidentNotFound(incident_ref(incident_id))
            proposal = await tx.proposals.current(incident_id)
            alerts = await tx.alerts.of_incident(incident_id)
            events = await tx.timeline.of_incident(incident_id)
            notes = await tx.knowledge.of_incident(incident_id)
        summary = ""
        if alerts:
            summary = alerts[0].annotations.get("summary") or alerts[0].annotations.get("description", "")
        return {
            "incident": _incident_json(incident, proposal),
            "summary": clip(summary, 500),
            "alerts": [
                {
                    "alertname": clip(a.alertname, 120),
                    "status": a.status,
                    "labels": {clip(k, 40): clip(v, 120) for k, v in list(a.labels.items())[:20]},
                    "annotations": {clip(k, 40): clip(v, 300) for k, v in list(a.annotations.items())[:6]},
                    "starts_at": a.starts_at.isoformat() if a.starts_at else None,
                    "ends_at": a.ends_at.isoformat() if a.ends_at else None,
                    "repeats": a.repeat_count,
                }
                for a in alerts[:SUMMARY_ALERTS]
            ],
            "more_alerts": max(0, len(alerts) - SUMMARY_ALERTS),
            "events": [_summary_event(e) for e in events[-SUMMARY_EVENTS:]],
            "notes": [{"at": n.created_at.isoformat(), "by": n.created_by, "text": clip(n.body, 500)} for n in notes[-5:]],
        }

    # --- read API -------------------------------------------------------------------------------

    async def api_incidents(self, *, status: str | None, limit: int, offset: int) -> dict[str, Any]:
        async with self._db.read() as tx:
            incidents, total = await tx.incidents.page(status=status, limit=limit, offset=offset)
            proposals = await tx.proposals.of_incidents(i.id for i in incidents if i.id is not None)
            items = [_incident_json(i, proposals.get(i.id or 0)) for i in incidents]
        return {"items": items, "total": total, "limit": limit, "offset": offset}

    async def api_incident(self, incident_id: int) -> dict[str, Any]:
        async with self._db.read() as tx:
            incident = await tx.incidents.get(incident_id)
            if incident is None:
                raise IncidentNotFound(incident_ref(incident_id))
            proposal = await tx.proposals.current(incident_id)
            body = _incident_json(incident, proposal)
            body["alerts"] = [_alert_json(a) for a in await tx.alerts.of_incident(incident_id)]
            body["timeline"] = [_event_json(e) for e in await tx.timeline.of_incident(incident_id)]
            body["decisions"] = [_decision_json(d) for d in await tx.decisions.of_incident(incident_id)]
            body["executions"] = await self._executions_json(tx, incident_id)
            body["messages"] = [
                {"channel": r.channel, "chat_id": r.chat_id, "message_id": r.message_id, "kind": r.kind}
                for r in await tx.refs.cards_of(incident_id)
            ]
        return body

    async def audit(self, incident_id: int) -> list[dict[str, Any]]:
        """Every execution of the incident with every attempt (the audit trail), oldest first."""
        async with self._db.read() as tx:
            if await tx.incidents.get(incident_id) is None:
                raise IncidentNotFound(incident_ref(incident_id))
            return await self._executions_json(tx, incident_id)

    async def _executions_json(self, tx: Tx, incident_id: int) -> list[dict[str, Any]]:
        executions = await tx.executions.of_incident(incident_id)
        attempts = await tx.executions.attempts_of(e.id for e in executions if e.id is not None)
        return [_execution_json(e, attempts.get(e.id or 0, [])) for e in executions]

    async def api_alerts(self, *, fingerprint: str | None, status: str | None, limit: int, offset: int) -> dict[str, Any]:
        async with self._db.read() as tx:
            alerts, total = await tx.alerts.page(fingerprint=fingerprint, status=status, limit=limit, offset=offset)
        return {"items": [_alert_json(a) for a in alerts], "total": total, "limit": limit, "offset": offset}

    async def api_stats(self) -> dict[str, Any]:
        async with self._db.read() as tx:
            alert_totals = await tx.alerts.totals()
            incidents = await tx.incidents.count_by_status()
            outbox = await tx.outbox.counts()
        return {
            "alerts": alert_totals["alerts"],
            "alerts_firing": alert_totals["firing"],
            "deduplicated_repeats": alert_totals["repeats"],
            "incidents": {"total": sum(incidents.values()), **incidents},
            "outbox": outbox,
        }


def _history_item(incident: Incident, proposal: Proposal | None) -> dict[str, Any]:
    return {
        "ref": incident_ref(incident.id or 0),
        "title": clip(incident.alertname, 80),
        "service": clip(incident.service, 60),
        "priority": priority_of(incident.severity),
        "status": incident.status,
        "created_at": incident.created_at.isoformat(),
        "started_at": started_of(incident).isoformat(),
        "resolved_at": incident.resolved_at.isoformat() if incident.resolved_at else None,
        "proposal_state": proposal.state if proposal else None,
        "command": clip(proposal.command, 120) if proposal else "",
    }


def _incident_json(incident: Incident, proposal: Proposal | None) -> dict[str, Any]:
    return {
        "id": incident.id,
        "ref": incident_ref(incident.id or 0),
        "status": incident.status,
        "source": incident.source,
        "receiver": incident.receiver,
        "group_key": incident.group_key,
        "alertname": incident.alertname,
        "title": incident.title,
        "severity": incident.severity,
        "service": incident.service,
        "namespace": incident.namespace,
        "created_at": incident.created_at.isoformat(),
        "started_at": started_of(incident).isoformat(),
        "acknowledged_at": incident.acknowledged_at.isoformat() if incident.acknowledged_at else None,
        "remediated_at": incident.remediated_at.isoformat() if incident.remediated_at else None,
        "resolved_at": incident.resolved_at.isoformat() if incident.resolved_at else None,
        "analysing": incident.needs_analysis,
        "decision": None if proposal is None else _proposal_json(proposal),
    }


def _proposal_json(p: Proposal) -> dict[str, Any]:
    return {
        "id": p.id,
        "state": p.state,
        "source": p.source,
        "model": p.model,
        "category": p.category,
        "root_cause": p.root_cause,
        "command": p.command,
        "risk": p.risk,
        "reasoning": p.reasoning,
        "confidence": p.confidence,
        "latency_ms": p.latency_ms,
        "fallback_reason": p.fallback_reason,
        "blast_score": p.blast_score,
        "tier": p.tier,
        "required_approvals": p.required_approvals,
        "score_reasons": list(p.score_reasons or []),
        "blocked_reason": p.blocked_reason,
        "rollback_plan": p.rollback_plan,
        "spec": p.spec,
        "proposed_by": p.proposed_by,
        "review_url": p.review_url,
        "tool_calls": p.tool_calls or 0,
        "consensus": p.consensus,
        "playbook": p.playbook_name,
        "steps": list(p.steps or []),
        "decided_by": p.decided_by,
        "decided_by_name": p.decided_by_name,
        "decided_at": p.decided_at.isoformat() if p.decided_at else None,
        "decision_reason": p.decision_reason,
        "created_at": p.created_at.isoformat(),
    }


def _alert_json(a: Alert) -> dict[str, Any]:
    return {
        "id": a.id,
        "incident_id": a.incident_id,
        "fingerprint": a.fingerprint,
        "receiver": a.receiver,
        "status": a.status,
        "alertname": a.alertname,
        "severity": a.severity,
        "labels": a.labels,
        "annotations": a.annotations,
        "starts_at": a.starts_at.isoformat() if a.starts_at else None,
        "ends_at": a.ends_at.isoformat() if a.ends_at else None,
        "first_seen": a.first_seen.isoformat(),
        "last_seen": a.last_seen.isoformat(),
        "repeat_count": a.repeat_count,
    }


def _decision_json(d: Decision) -> dict[str, Any]:
    return {
        "id": d.id,
        "source": d.source,
        "model": d.model,
        "outcome": d.outcome,
        "fallback_reason": d.fallback_reason,
        "latency_ms": d.latency_ms,
        "prompt_tokens": d.prompt_tokens,
        "completion_tokens": d.completion_tokens,
        "response_format": d.response_format,
        "repaired": d.repaired,
        "fresh": d.fresh,
        "proposal": d.proposal,
        "error": d.error,
        "created_at": d.created_at.isoformat(),
    }


def _execution_json(e: Execution, attempts: list[ExecutionAttempt]) -> dict[str, Any]:
    return {
        "id": e.id,
        "proposal_id": e.proposal_id,
        "state": e.state,
        "executor": e.executor,
        "dry_run": e.dry_run,
        "auto": e.auto,
        "requested_by": e.requested_by,
        "approvers": list(e.approvers),
        "commands": list(e.commands),
        "started_at": e.started_at.isoformat(),
        "finished_at": e.finished_at.isoformat() if e.finished_at else None,
        "attempts": [_attempt_json(a) for a in attempts],
        "error": e.error,
        "rollback": e.rollback,
        "replicas_before": e.replicas_before,
    }


def _attempt_json(a: ExecutionAttempt) -> dict[str, Any]:
    return {
        "step": a.step,
        "step_index": a.step_index,
        "attempt": a.attempt,
        "argv": list(a.argv),
        "started_at": a.started_at.isoformat(),
        "finished_at": a.finished_at.isoformat(),
        "duration_ms": a.duration_ms,
        "exit_code": a.exit_code,
        "stdout": a.stdout,
        "stderr": a.stderr,
        "dry_run": a.dry_run,
        "result": a.result,
        "reason": a.reason,
    }


def _summary_event(e: TimelineEvent) -> dict[str, Any]:
    detail = {k: clip(str(e.detail[k]), 300) for k in EVENT_DETAIL_KEYS if e.detail.get(k) not in (None, "")}
    return {"at": e.at.isoformat(), "kind": e.kind, **detail}


def _event_json(e: TimelineEvent) -> dict[str, Any]:
    return {"at": e.at.isoformat(), "kind": e.kind, "actor": e.actor, "detail": to_context(e.detail)}
