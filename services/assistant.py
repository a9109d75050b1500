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

from services.actions import Actor, Reply
from services.ai import AIAdvisor
from services.chat import ChatService, refusal
from services.errors import ModelError
from services.incidents import incident_ref
from services.knowledge import KnowledgeService, index_text, search_terms
from services.languages import MODEL_LANGUAGES
from services.playbooks import PlaybookService
from services.ports import ChatTarget, Languages
from services.queries import IncidentQueries
from services.views import clip, split_text, to_context
from storage.clock import Clock

log = structlog.get_logger(__name__)


ANSWER_CHUNK = 3500  # characters of model text per message (Telegram: 4096 with the header)
KB_BUDGET_SECONDS = 5.0
ASK_INCIDENTS = 10
# What a rule-based answer shows, bounded so the rendered message stays within Telegram's 4096 characters
# whatever the data holds (the gateway refuses a longer one, and the user would get no answer at all).
SUMMARY_EVENTS = 12
SUMMARY_EVENTS_BUDGET = 1600  # characters of the "what was done" lines in a summary
SUMMARY_EVENT_FRAME = 20  # bullet, time and separators of one event line
SUMMARY_EVENT_LIMITS = {"name": 40, "command": 120, "reason": 100, "text": 100}
REFUSED_EVENTS = frozenset({"decision_refused", "reanalyse_refused"})  # attempts, not things done
ASK_RELATED = 5
HIT_TITLE_MAX = 120
HIT_TAGS = 5
ASK_SNIPPET_MAX = 160
PLAYBOOKS_SHOWN = 10
PLAYBOOK_DESCRIPTION_MAX = 100
PLAYBOOK_ALERTNAME_MAX = 40


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
        languages: Languages | None = None,
    ) -> None:
        """``languages``: the model answers in the asking chat's language (/lang)."""
        self._languages = languages
        self._queries, self._knowledge, self._playbooks = queries, knowledge, playbooks
        self._advisor, self._chat, self._now = advisor, chat, clock
        self._budget = budget_seconds

    # --- /summary INC-12 ------------------------------------------------------------------------

    async def summary(self, actor: Actor, incident_id: int, *, reply_to: str | None, reply: Reply | None = None) -> None:
        """``reply``: where the answer goes instead of the actor's chat (a WeCom streamed reply)."""
        say = reply or self._chat.sink(actor.target, reply_to)
        ref = incident_ref(incident_id)
        if not self._chat.may_read(actor):
            await say("action_result", refusal(ref))
            return
        facts = await self._queries.summary_facts(incident_id)  # raises IncidentNotFound
        text, model, failure = await self._write("summary", facts, target=actor.target)
        if text is None:
            await say("summary", {**_summary_view(facts), "ai_failure": failure})
            return
        await self._answer(say, kind="summary", ref=ref, text=text, model=model)

    # --- /ask <question> ------------------------------------------------------------------------

    async def ask(self, actor: Actor, question: str, *, reply_to: str | None, reply: Reply | None = None) -> None:
        say = reply or self._chat.sink(actor.target, reply_to)
        question = question.strip()
        if not question:
            await say("error", {"code": "usage", "command": "ask"})
            return
        if not self._chat.may_read(actor):
            await say("action_result", refusal(""))
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
        text, model, failure = await self._write("ask", data, question=question, target=actor.target)
        if text is None:
            terms = search_terms(question)
            related = [i for i in open_items if _mentions(terms, f"{i['title']} {i['service']}")]
            await say(
                "ask_answer",
                {
                    "question": clip(question, 200),
                    "hits": [_hit_view(h, snippet=ASK_SNIPPET_MAX) for h in hits],
                    "related": related[:ASK_RELATED],
                    "open_total": open_total,
                    "ai_failure": failure,
                },
            )
            return
        await self._answer(say, kind="ask", ref="", text=text, model=model)

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
            actor.target, "kb", {"query": clip(query, 200), "hits": [_hit_view(h) for h in hits]}, reply_to=reply_to
        )

    async def note(self, actor: Actor, incident_id: int, text: str, *, reply_to: str | None) -> None:
        result = await self._knowledge.add_note(incident_id=incident_id, text=text, actor=actor)  # IncidentNotFound
        await self._chat.say(actor.target, "note_result", to_context(result), reply_to=reply_to)

    async def playbooks(self, actor: Actor, *, reply_to: str | None) -> None:
        if not self._chat.may_read(actor):
            await self._chat.refuse_read(actor, reply_to=reply_to)
            return
        items = await self._playbooks.listing()
        shown = [_playbook_view(p) for p in items[:PLAYBOOKS_SHOWN]]
        await self._chat.say(actor.target, "playbooks", {"items": shown, "total": len(items)}, reply_to=reply_to)

    # --- helpers --------------------------------------------------------------------------------

    async def _search(self, query: str, *, limit: int) -> list[Any]:
        try:
            async with asyncio.timeout(KB_BUDGET_SECONDS):
                return list(await self._knowledge.search(query, limit=limit))
        except TimeoutError:
            log.warning("knowledge_search_timeout", budget_seconds=KB_BUDGET_SECONDS)
            return []

    async def _write(
        self, purpose: str, data: dict[str, Any], *, target: ChatTarget, question: str = ""
    ) -> tuple[str | None, str | None, str | None]:
        """(text, model, None) from the model; (None, None, reason) when it failed; (None, None, None) without one."""
        if self._advisor is None:
            return None, None, None
        language = None if self._languages is None else MODEL_LANGUAGES.get(await self._languages.of(target))
        try:
            async with asyncio.timeout(self._budget):
                answer = await self._advisor.write(purpose, data, question=question, language=language)
        except TimeoutError:
            return None, None, "timeout"
        except ModelError as exc:
            log.warning("ai_answer_failed", purpose=purpose, reason=exc.reason, error=str(exc)[:300])
            return None, None, exc.reason
        return answer.text, answer.model, None

    async def _answer(self, say: Reply, *, kind: str, ref: str, text: str, model: str | None) -> None:
        parts = split_text(text, ANSWER_CHUNK)
        for number, part in enumerate(parts, start=1):
            await say("answer", {"kind": kind, "ref": ref, "text": part, "part": number, "parts": len(parts), "model": model})


def _summary_view(facts: dict[str, Any]) -> dict[str, Any]:
    """The rule-based summary: the same four parts the model is asked for, straight from the data."""
    incident = facts["incident"]
    decision = incident.get("decision") or {}
    return {
        **incident_head(incident),
        "started_at": incident["started_at"],
        "resolved_at": incident["resolved_at"],
        "alert_count": len(facts["alerts"]),
        "firing_count": sum(1 for a in facts["alerts"] if a["status"] == "firing"),
        "summary": clip(facts["summary"], 300),
        "root_cause": clip(decision.get("root_cause"), 400),
        "source": decision.get("source"),
        "model": clip(decision.get("model"), 60),
        "command": clip(decision.get("command"), 300),
        "proposal_state": decision.get("state"),
        "decided_by": clip(decision.get("decided_by_name"), 60) or None,
        "events": summary_events(facts["events"]),
        "notes": [clip(n["text"], 200) for n in facts["notes"][-3:]],
    }


def incident_head(incident: dict[str, Any]) -> dict[str, Any]:
    """The incident's heading fields of a summary or postmortem (from IncidentQueries.summary_facts), bounded."""
    return {
        "ref": incident["ref"],
        "title": clip(incident["alertname"] or incident["title"], 120),
        "service": clip(incident["service"], 60),
        "namespace": clip(incident["namespace"], 60),
        "severity": clip(incident["severity"], 20),
        "status": incident["status"],
    }


def summary_events(events: list[dict[str, Any]], *, budget: int = SUMMARY_EVENTS_BUDGET) -> list[dict[str, Any]]:
    """The latest events worth showing, newest kept first: refused attempts left out (before counting, so a
    burst of them cannot push out what was done), texts clipped, at most ``budget`` characters."""
    kept: list[dict[str, Any]] = []
    used = 0
    for event in reversed([e for e in events if e["kind"] not in REFUSED_EVENTS]):
        view = {**event, **{k: clip(event[k], n) for k, n in SUMMARY_EVENT_LIMITS.items() if event.get(k)}}
        weight = SUMMARY_EVENT_FRAME + len(view["kind"]) + sum(len(view.get(k) or "") for k in SUMMARY_EVENT_LIMITS)
        if len(kept) == SUMMARY_EVENTS or used + weight > budget:
            break
        kept.append(view)
        used += weight
    return kept[::-1]


def _hit_view(hit: Any, *, snippet: int | None = None) -> dict[str, Any]:
    view = to_context(hit)
    view["title"] = clip(view["title"], HIT_TITLE_MAX)
    view["tags"] = view["tags"][:HIT_TAGS]
    if snippet is not None:
        view["snippet"] = clip(view["snippet"], snippet)
    return view


def _playbook_view(item: dict[str, Any]) -> dict[str, Any]:
    return {
        **item,
        "description": clip(item.get("description"), PLAYBOOK_DESCRIPTION_MAX),
        "alertnames": [clip(a, PLAYBOOK_ALERTNAME_MAX) for a in item.get("alertnames") or []],
    }


def _mentions(terms: list[str], text: str) -> bool:
    """Whether a word of ``text`` (CamelCase split, as the knowledge base indexes it) starts with a term:
    "crashing" relates to KubePodCrashLooping like a /kb search would."""
    words = index_text(text).split()
    return any(word.startswith(term) or term.startswith(word) for term in terms for word in words if len(word) > 2)
