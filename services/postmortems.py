"""Postmortems. When an incident that lasted at least ALERTPILOT_POSTMORTEM_MIN_MINUTES resolves, a
postmortem is threaded under its card and sent to the report chats: duration, timeline (from the timeline
events), root cause, the actions with their approvers, results and retries, and a narrative from the AI
model when one is configured (within the decision budget; without it, the facts alone).

The resolution writes a durable to-do (``postmortem`` row) in its own transaction; this worker claims it
(compare-and-set, a claim of a dead worker goes stale), builds it and queues one outbox row per chat,
each with three send attempts and a short fallback message (incident id, duration, error) if all fail.
``/postmortem INC-12`` builds the same on demand, for any incident.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import structlog

from services.actions import Actor, Reply
from services.ai import AIAdvisor
from services.assistant import incident_head, summary_events
from services.chat import ChatService, refusal
from services.errors import ModelError
from services.incidents import incident_ref
from services.notify import Notifier
from services.ports import ChatTarget
from services.queries import IncidentQueries
from services.views import clip, command_list
from storage.clock import Clock
from storage.db import Database

log = structlog.get_logger(__name__)

CLAIM_TTL = timedelta(minutes=5)
SEND_ATTEMPTS = 3
# Every field is bounded so that the longest postmortem stays within Telegram's 4096 characters (the
# rendering test builds one from maximal fields): a postmortem too long to send would only reach the chat
# as its fallback.
NARRATIVE_MAX = 600
TIMELINE_BUDGET = 600
ACTIONS_SHOWN = 3  # the latest; /audit has them all
COMMANDS_SHOWN = 1  # each action's first step, and how many more
COMMAND_MAX = 120


def minutes_between(start: str | None, end: str | None) -> int | None:
    if not start or not end:
        return None
    return max(0, round((datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds() / 60))


class PostmortemService:
    def __init__(
        self,
        db: Database,
        queries: IncidentQueries,
        notifier: Notifier,
        chat: ChatService,
        advisor: AIAdvisor | None,
        clock: Clock,
        *,
        targets: Sequence[ChatTarget],
        owner: str,
        budget_seconds: float = 30.0,
    ) -> None:
        self._db, self._queries, self._notify, self._chat = db, queries, notifier, chat
        self._advisor, self._now, self._owner, self._budget = advisor, clock, owner, budget_seconds
        self.targets = tuple(targets)

    async def facts(self, incident_id: int) -> dict[str, Any]:
        """The postmortem's data, every field bounded (raises IncidentNotFound)."""
        facts = await self._queries.summary_facts(incident_id)
        executions = await self._queries.audit(incident_id)
        incident = facts["incident"]
        decision = incident.get("decision") or {}
        actions = []
        for e in executions[-ACTIONS_SHOWN:]:
            attempts = e["attempts"]
            actions.append({
                **command_list(e["commands"], shown=COMMANDS_SHOWN, limit=COMMAND_MAX),
                "state": e["state"],
                "dry_run": e["dry_run"],
                "auto": e["auto"],
                "approvers": [clip(a, 40) for a in e["approvers"][:2]],
                "runs": sum(1 for a in attempts if a["step"] == "run"),
                "retries": sum(1 for a in attempts if a["step"] == "run" and a["result"] == "transient"),
                "seconds": None if not e["finished_at"] else round(
                    (datetime.fromisoformat(e["finished_at"]) - datetime.fromisoformat(e["started_at"])).total_seconds(), 1
                ),
                "error": clip(e["error"], 200) or None,
                "rollback": clip(e["rollback"], 200) or None,
            })
        started, resolved = incident["started_at"] or incident["created_at"], incident["resolved_at"]
        return {
            **incident_head(incident),
            "started_at": started,
            "resolved_at": resolved,
            "minutes": minutes_between(started, resolved or self._now().isoformat()),
            "alert_count": len(facts["alerts"]) + facts["more_alerts"],
            "repeats": sum(a["repeats"] for a in facts["alerts"]),
            "summary": clip(facts["summary"], 150),
            "root_cause": clip(decision.get("root_cause"), 250),
            "category": clip(decision.get("category"), 40),
            "source": decision.get("source"),
            "model": clip(decision.get("model"), 60),
            "proposal_state": decision.get("state"),
            "events": summary_events(facts["events"], budget=TIMELINE_BUDGET),
            "actions": actions,
            "more_actions": max(0, len(executions) - ACTIONS_SHOWN),
            "notes": [clip(n["text"], 120) for n in facts["notes"][-2:]],
        }

    async def narrative(self, facts: dict[str, Any]) -> tuple[str | None, str | None]:
        """(text, model) from the AI model within the budget, or (None, None): the facts speak alone."""
        if self._advisor is None:
            return None, None
        try:
            async with asyncio.timeout(self._budget):
                answer = await self._advisor.write("postmortem", facts)
        except TimeoutError:
            log.warning("postmortem_narrative_timeout", ref=facts["ref"], budget_seconds=self._budget)
            return None, None
        except ModelError as exc:
            log.warning("postmortem_narrative_failed", ref=facts["ref"], reason=exc.reason)
            return None, None
        return clip(answer.text, NARRATIVE_MAX), answer.model

    async def context(self, incident_id: int) -> dict[str, Any]:
        facts = await self.facts(incident_id)
        text, model = await self.narrative(facts)
        return {**facts, "narrative": text, "narrative_model": model}

    # --- the worker ---------------------------------------------------------------------------------

    async def send_due(self) -> int:
        """Build and queue every postmortem that is due; how many were queued."""
        now = self._now()
        async with self._db.read() as tx:
            due = await tx.postmortems.due(now - CLAIM_TTL)
        sent = 0
        for row in due:
            assert row.id is not None
            async with self._db.write() as tx:
                if not await tx.postmortems.claim(row.id, self._owner, self._now(), self._now() - CLAIM_TTL):
                    continue  # another replica has it
            try:
                sent += await self._send(row.id, row.incident_id)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("postmortem_failed", incident_id=row.incident_id)  # its claim goes stale: tried again
        return sent

    async def _send(self, postmortem_id: int, incident_id: int) -> int:
        context = await self.context(incident_id)
        fallback = {"template": "postmortem_fallback", "context": {"ref": context["ref"], "minutes": context["minutes"]}}
        now = self._now()
        key = f"postmortem:{incident_id}"
        async with self._db.write() as tx:
            if not await tx.postmortems.finish(postmortem_id, self._owner, now, context["narrative_model"]):
                return 0  # our claim went stale and someone else sent it
            await tx.timeline.add(incident_id=incident_id, at=now, kind="postmortem", model=context["narrative_model"])
            cards = await self._notify.targets_of(tx, incident_id)
            await self._notify.thread(tx, incident_id, "postmortem", context, now, targets=cards, dedup_key=key,
                                      max_attempts=SEND_ATTEMPTS, fallback=fallback)
            for target in self.targets:
                if target not in cards:
                    await self._notify.answer(tx, target, "postmortem", context, now, incident_id=incident_id,
                                              dedup_key=f"{key}:{target.channel}:{target.chat_id}",
                                              max_attempts=SEND_ATTEMPTS, fallback=fallback)
        self._notify.wake()
        log.info("postmortem_sent", incident_id=incident_id, minutes=context["minutes"], model=context["narrative_model"])
        return 1

    # --- /postmortem INC-12 -------------------------------------------------------------------------

    async def on_demand(self, actor: Actor, incident_id: int, say: Reply) -> None:
        if not self._chat.may_read(actor):
            await say("action_result", refusal(incident_ref(incident_id)))
            return
        await say("postmortem", await self.context(incident_id))  # raises IncidentNotFound
