"""Answers from data in chat: /summary, /ask (through the AI model, or built from the data without one),
/kb (knowledge-base search), /note (a human note on an incident, kept in the knowledge base) and
/playbooks. Every answer is queued through ChatService.say, so it is paced, retried and rendered by the
channel it goes to; model text is split before rendering and escaped by the channel's templates.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import structlog

from services.actions import Actor
from services.ai import AIAdvisor
from services.chat import ChatService
from services.errors import ModelError
from services.incidents import incident_ref
from services.knowledge import KnowledgeService, search_terms
from services.playbooks import PlaybookService
from services.queries import IncidentQueries
from services.views import clip, split_text, to_context
from storage.clock import Clock

log = structlog.get_logger(__name__)

ANSWER_CHUNK = 3500  # characters of model text per message (Telegram: 4096 with the header)
KB_BUDGET_SECONDS = 5.0
SUMMARY_EVENTS = 12
ASK_INCIDENTS = 10


class AssistantService:
    def __init__(
        self,
        queries: IncidentQueries,
        knowledge: KnowledgeService,
        playbooks: PlaybookService,
        advisor: AIAdvisor | None,
        chat: ChatService,
        clock: Clock,
        *,
        budget_seconds: float,
    ) -> None:
        self._queries, self._knowledge, self._playbooks = queries, knowledge, playbooks
        self._advisor, self._chat, self._now = advisor, chat, clock
        self._budget = budget_seconds

    # --- /summary INC-12 ------------------------------------------------------------------------

    async def summary(self, actor: Actor, incident_id: int, *, reply_to: str | None) -> None:
        ref = incident_ref(incident_id)
        if not self._chat.may_read(actor):
            await self._chat.refuse_read(actor, ref, reply_to=reply_to)
            return
        facts = await self._queries.summary_facts(incident_id)  # raises IncidentNotFound
        text, model, failure = await self._write("summary", facts)
        if text is None:
            await self._chat.say(actor.target, "summary", {**_summary_view(facts), "ai_failure": failure}, reply_to=reply_to)
            return
        await self._answer(actor, reply_to, kind="summary", ref=ref, text=text, model=model)

    # --- /ask <question> ------------------------------------------------------------------------

    async def ask(self, actor: Actor, question: str, *, reply_to: str | None) -> None:
        question = question.strip()
        if not question:
            await self._chat.say(actor.target, "error", {"code": "usage", "command": "ask"}, reply_to=reply_to)
            return
        if not self._chat.may_read(actor):
            await self._chat.refuse_read(actor, reply_to=reply_to)
            return
        question = clip(question, 1000)
        open_items, open_total = await self._queries.open_incidents(limit=ASK_INCIDENTS)
        recent = await self._queries.recent_incidents(since=self._now() - timedelta(days=7), limit=ASK_INCIDENTS)
        hits = await self._search(question, limit=5)
        data = {
            "now": self._now().isoformat(),
            "open_incidents": open_items,
            "open_total": open_total,
            "recent_incidents": recent,
            "knowledge_base": [to_context(h) for h in hits],
        }
        text, model, failure = await self._write("ask", data, question=question)
        if text is None:
            terms = set(search_terms(question))
            related = [i for i in open_items if terms & set(search_terms(f"{i['title']} {i['service']}"))]
            await self._chat.say(
                actor.target,
                "ask_answer",
                {
                    "question": clip(question, 200),
                    "hits": [to_context(h) for h in hits],
                    "related": related,
                    "open_total": open_total,
                    "ai_failure": failure,
                },
                reply_to=reply_to,
            )
            return
        await self._answer(actor, reply_to, kind="ask", ref="", text=text, model=model)

    # --- /kb, /note, /playbooks -------------------------------------------------------------------

    async def kb(self, actor: Actor, query: str, *, reply_to: str | None) -> None:
        if not query.strip():
            await self._chat.say(actor.target, "error", {"code": "usage", "command": "kb"}, reply_to=reply_to)
            return
        if not self._chat.may_read(actor):
            await self._chat.refuse_read(actor, reply_to=reply_to)
            return
        hits = await self._search(query, limit=5)
        await self._chat.say(
            actor.target, "kb", {"query": clip(query, 200), "hits": [to_context(h) for h in hits]}, reply_to=reply_to
        )

    async def note(self, actor: Actor, incident_id: int, text: str, *, reply_to: str | None) -> None:
        result = await self._knowledge.add_note(incident_id=incident_id, text=text, actor=actor)  # IncidentNotFound
        await self._chat.say(actor.target, "note_result", to_context(result), reply_to=reply_to)

    async def playbooks(self, actor: Actor, *, reply_to: str | None) -> None:
        if not self._chat.may_read(actor):
            await self._chat.refuse_read(actor, reply_to=reply_to)
            return
        items = await self._playbooks.listing()
        await self._chat.say(actor.target, "playbooks", {"items": items[:30], "total": len(items)}, reply_to=reply_to)

    # --- helpers --------------------------------------------------------------------------------

    async def _search(self, query: str, *, limit: int) -> list[Any]:
        try:
            async with asyncio.timeout(KB_BUDGET_SECONDS):
                return list(await self._knowledge.search(query, limit=limit))
        except TimeoutError:
            log.warning("knowledge_search_timeout", budget_seconds=KB_BUDGET_SECONDS)
            return []

    async def _write(self, purpose: str, data: dict[str, Any], *, question: str = "") -> tuple[str | None, str | None, str | None]:
        """(text, model, None) from the model; (None, None, reason) when it failed; (None, None, None) without one."""
        if self._advisor is None:
            return None, None, None
        try:
            async with asyncio.timeout(self._budget):
                answer = await self._advisor.write(purpose, data, question=question)
        except TimeoutError:
            return None, None, "timeout"
        except ModelError as exc:
            log.warning("ai_answer_failed", purpose=purpose, reason=exc.reason, error=str(exc)[:300])
            return None, None, exc.reason
        return answer.text, answer.model, None

    async def _answer(self, actor: Actor, reply_to: str | None, *, kind: str, ref: str, text: str, model: str | None) -> None:
        parts = split_text(text, ANSWER_CHUNK)
        for number, part in enumerate(parts, start=1):
            context = {"kind": kind, "ref": ref, "text": part, "part": number, "parts": len(parts), "model": model}
            await self._chat.say(actor.target, "answer", context, reply_to=reply_to)


def _summary_view(facts: dict[str, Any]) -> dict[str, Any]:
    """The rule-based summary: the same four parts the model is asked for, straight from the data."""
    incident = facts["incident"]
    decision = incident.get("decision") or {}
    return {
        "ref": incident["ref"],
        "title": clip(incident["alertname"] or incident["title"], 120),
        "service": clip(incident["service"], 60),
        "namespace": clip(incident["namespace"], 60),
        "severity": clip(incident["severity"], 20),
        "status": incident["status"],
        "started_at": incident["started_at"],
        "resolved_at": incident["resolved_at"],
        "alert_count": len(facts["alerts"]),
        "firing_count": sum(1 for a in facts["alerts"] if a["status"] == "firing"),
        "summary": clip(facts["summary"], 300),
        "root_cause": clip(decision.get("root_cause"), 400),
        "source": decision.get("source"),
        "model": decision.get("model"),
        "command": clip(decision.get("command"), 300),
        "proposal_state": decision.get("state"),
        "decided_by": decision.get("decided_by_name"),
        "events": facts["events"][-SUMMARY_EVENTS:],
        "notes": [clip(n["text"], 200) for n in facts["notes"][-3:]],
    }

