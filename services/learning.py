"""Learning from outcomes (DESIGN §1.8).

- Every executed remediation's outcome becomes a knowledge entry (auto or human path, alertname,
  category, services, command, result, error, tags), which later decisions retrieve.
- A playbook's record follows what happened to its proposals: each execution counts once, a success
  counts when the incident then resolves.
- A successful remediation of an incident that resolves, proposed by the AI model, the rules or a person,
  becomes a **learned playbook** (the incident's symptoms → the commands that worked), or strengthens the
  one learned before; a failure of the same commands lowers that playbook's success rate. The decision
  engine then answers the next similar incident with it.

Dry runs change nothing in the cluster, so they teach nothing: no entry, no playbook.
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime

import structlog

from services.incidents import incident_ref
from services.knowledge import KnowledgeService
from services.phrases import phrase
from services.playbooks import NAME_MAX
from services.views import clip
from storage.repos import Tx
from storage.tables import (
    Execution,
    ExecutionState,
    Incident,
    IncidentStatus,
    KnowledgeSource,
    Playbook,
    PlaybookSource,
    Proposal,
)

log = structlog.get_logger(__name__)

LEARNED_PREFIX = "learned-"
_SLUG = re.compile(r"[^a-z0-9]+")
RESULT_WORDS = {
    ExecutionState.SUCCEEDED: "succeeded",
    ExecutionState.FAILED: "failed",
    ExecutionState.ROLLED_BACK: "rolled back",
    ExecutionState.INTERRUPTED: "interrupted",
}


def learned_name(incident: Incident, commands: list[str]) -> str:
    """A learned playbook's name: the symptoms in words and a digest of the commands, so the same fix for
    the same symptoms is one playbook and a different fix is another."""
    digest = hashlib.sha256("\n".join(commands).encode()).hexdigest()[:8]
    parts = [_slug(incident.alertname) or "alert", _slug(incident.service), _slug(incident.namespace)]
    stem = "-".join(p for p in parts if p)[: NAME_MAX - len(LEARNED_PREFIX) - len(digest) - 1].strip("-")
    return f"{LEARNED_PREFIX}{stem}-{digest}"


def learned_symptoms(incident: Incident) -> dict[str, list[str]]:
    """What a similar incident looks like: the same alert name, service and namespace."""
    return {
        "alertnames": [incident.alertname] if incident.alertname else [],
        "services": [incident.service] if incident.service else [],
        "severities": [],
        "matchers": [f'namespace="{incident.namespace}"'] if _plain(incident.namespace) else [],
    }


def _slug(text: str) -> str:
    return _SLUG.sub("-", text.lower()).strip("-")[:30]


def _plain(value: str) -> bool:
    return bool(value) and '"' not in value and "\\" not in value


def learnable(incident: Incident, commands: list[str]) -> bool:
    """Only incidents with an alert name (not a manual /run), and commands without template braces (a
    playbook's commands are templates: a literal brace would not render)."""
    return bool(incident.alertname) and incident.source != "manual" and bool(commands) and not any(
        "{" in c or "}" in c for c in commands
    )


class LearningService:
    def __init__(self, knowledge: KnowledgeService) -> None:
        self._knowledge = knowledge

    async def record_outcome(
        self, tx: Tx, incident: Incident, proposal: Proposal, execution: Execution, now: datetime
    ) -> None:
        """After an execution finished (in its transaction): the knowledge entry and the playbook's count.
        A success of an incident that has already resolved is credited at once."""
        if execution.dry_run:
            return
        assert incident.id is not None and execution.id is not None
        await self._knowledge_entry(tx, incident, proposal, execution)
        playbook = await self._playbook_of(tx, incident, proposal, execution)
        if playbook is not None and playbook.id is not None:
            await tx.playbooks.count_run(playbook.id, now, executions=1)
            log.info("playbook_run_counted", playbook=playbook.name, state=execution.state)
        if execution.state == ExecutionState.SUCCEEDED and incident.status == IncidentStatus.RESOLVED:
            await self._credit(tx, incident, proposal, execution, now)

    async def on_resolved(self, tx: Tx, incident_id: int, now: datetime) -> None:
        """The incident resolved: if its last remediation succeeded, the fix worked — credit its playbook,
        or learn one."""
        execution = await tx.executions.latest_of_incident(incident_id)
        if execution is None or execution.dry_run or execution.state != ExecutionState.SUCCEEDED:
            return
        incident = await tx.incidents.get(incident_id)
        proposal = await tx.proposals.get(execution.proposal_id)
        if incident is None or proposal is None:
            return
        await self._credit(tx, incident, proposal, execution, now)

    async def _credit(self, tx: Tx, incident: Incident, proposal: Proposal, execution: Execution, now: datetime) -> None:
        assert execution.id is not None and incident.id is not None
        if not await tx.executions.mark_credited(execution.id, now):
            return  # already counted
        playbook = await self._playbook_of(tx, incident, proposal, execution)
        if playbook is not None and playbook.id is not None:
            await tx.playbooks.count_run(playbook.id, now, successes=1)
            await tx.timeline.add(incident_id=incident.id, at=now, kind="playbook_strengthened", playbook=playbook.name)
            log.info("playbook_strengthened", playbook=playbook.name, incident_id=incident.id)
            return
        commands = list(execution.commands)
        if not learnable(incident, commands):
            log.info("playbook_not_learned", incident_id=incident.id, reason="manual incident or braces in a command")
            return
        name = learned_name(incident, commands)
        root_cause = (proposal.root_cause or "").replace("{", "(").replace("}", ")")
        await tx.playbooks.add(
            Playbook(
                name=name,
                description=clip(phrase("Learned from %(ref)s: %(command)s resolved it", ref=incident_ref(incident.id),
                                        command=commands[0]), 500),
                symptoms=learned_symptoms(incident),
                steps=[{"name": f"step {i}", "command": c} for i, c in enumerate(commands, start=1)],
                category=proposal.category,
                risk=proposal.risk or "medium",
                root_cause=clip(root_cause, 500),
                executions=1,
                successes=1,
                source=PlaybookSource.LEARNED,
                enabled=True,
                created_at=now,
                updated_at=now,
            )
        )
        await tx.timeline.add(incident_id=incident.id, at=now, kind="playbook_learned", playbook=name)
        log.info("playbook_learned", playbook=name, incident_id=incident.id)

    async def _playbook_of(self, tx: Tx, incident: Incident, proposal: Proposal, execution: Execution) -> Playbook | None:
        """The playbook whose record this outcome belongs to: the one that proposed it, else the one learned
        earlier for these symptoms and these commands."""
        if proposal.playbook_id is not None:
            return await tx.playbooks.get(proposal.playbook_id)
        if not learnable(incident, list(execution.commands)):
            return None
        return await tx.playbooks.by_name(learned_name(incident, list(execution.commands)))

    async def _knowledge_entry(self, tx: Tx, incident: Incident, proposal: Proposal, execution: Execution) -> None:
        assert incident.id is not None
        result = RESULT_WORDS.get(ExecutionState(execution.state), execution.state)
        path = "auto_executed" if execution.auto else "human_approved"
        approvers = ", ".join(execution.approvers) or "—"
        lines = [
            f"Incident: {incident_ref(incident.id)} {incident.alertname} ({incident.severity or 'no severity'})",
            f"Service: {incident.service or '—'} · namespace {incident.namespace or '—'}",
            f"Path: {'auto-remediated by policy' if execution.auto else f'approved by {approvers}'}",
            f"Proposed by: {proposal.source}{f' {proposal.model}' if proposal.model else ''}",
            f"Root cause: {proposal.root_cause}",
            *[f"Command: {c}" for c in execution.commands],
            f"Result: {result} after {execution.attempts} attempt(s)",
        ]
        if execution.error:
            lines.append(f"Error: {execution.error}")
        if execution.rollback:
            lines.append(f"Rollback: {execution.rollback}")
        await self._knowledge.add(
            title=f"{incident_ref(incident.id)} {incident.alertname}: {clip(execution.commands[0] if execution.commands else proposal.command, 120)} {result}",
            body="\n".join(lines),
            tags=[path, "success" if execution.state == ExecutionState.SUCCEEDED else "failure", proposal.category,
                  incident.alertname],
            category=proposal.category,
            services=[incident.service] if incident.service else [],
            source=KnowledgeSource.AUTO,
            incident_id=incident.id,
            created_by="alertpilot",
            tx=tx,
        )
