"""Answers to chat commands and info buttons. Every answer is an outbox row (template name + context), so
it is paced, retried and rendered by the channel it goes to (templates/<channel>/<name>.*.j2)."""

from __future__ import annotations

import secrets
import shlex
from datetime import datetime
from typing import Any

from services.actions import ActionResult, Actor, Outcome, Reply
from services.errors import IncidentNotFound
from services.incidents import incident_ref
from services.notify import Notifier
from services.ports import ChatTarget
from services.queries import IncidentQueries
from services.roles import ROUTE_PREFIX, Role, RoleMap
from services.views import clip, last_line, to_context
from storage.clock import Clock
from storage.db import Database

AUDIT_EXECUTIONS = 3  # one message each, the newest
AUDIT_ATTEMPTS = 8  # per execution, the last ones
AUDIT_ARGV = 180
AUDIT_OUTPUT = 120
ANONYMOUS_TELEGRAM = "tg:anonymous"  # an anonymous group admin or a channel post: nobody to give a role to
# /help: each section and the role it needs (the viewer section also shows to members of a card chat)
HELP_SECTIONS = (("everyone", Role.NONE), ("viewer", Role.VIEWER), ("operator", Role.OPERATOR),
                 ("approver", Role.APPROVER))
# how ALERTPILOT_ROLES (and the first-run key) spell each channel
PLATFORMS = {"telegram": "tg", "wecom": "wecom"}


class ChatService:
    def __init__(self, db: Database, queries: IncidentQueries, notifier: Notifier, roles: RoleMap, clock: Clock) -> None:
        self._db, self._queries, self._notify, self._roles, self._now = db, queries, notifier, roles, clock

    async def say(
        self, target: ChatTarget, template: str, context: dict[str, Any] | None = None, *, reply_to: str | None = None
    ) -> None:
        """Queue one answer to a chat."""
        async with self._db.write() as tx:
            await self._notify.answer(tx, target, template, context or {}, self._now(), reply_to_message_id=reply_to)
        self._notify.wake()

    def sink(self, target: ChatTarget, reply_to: str | None = None) -> Reply:
        """A Reply that queues each answer for ``target`` (as a reply to the user's message, when given)."""
        async def say(template: str, context: dict[str, Any]) -> None:
            await self.say(target, template, context, reply_to=reply_to)
        return say

    async def start(self, actor: Actor, *, reply_to: str | None, private: bool = False) -> None:
        """``/start``: in a group, this chat's id and the caller's role; in a private chat, also what alertpilot
        is and where to read more."""
        context = {**self.identity(actor), "chat_id": actor.target.chat_id, "private": private}
        await self.say(actor.target, "start", context, reply_to=reply_to)

    def identity(self, actor: Actor) -> dict[str, Any]:
        """Who the actor is to alertpilot: the id exactly as ALERTPILOT_ROLES spells it, the role and its limits."""
        scope = self._roles.scope_of(actor.id)
        return {
            "actor_id": actor.id,
            "role": self._roles.role_of(actor.id).name.lower(),
            "namespaces": [s for s in scope if not s.startswith(ROUTE_PREFIX)],
            "routes": [s.removeprefix(ROUTE_PREFIX) for s in scope if s.startswith(ROUTE_PREFIX)],
            "anonymous": actor.id == ANONYMOUS_TELEGRAM,
            "card_chat": actor.target in self._notify.all_card_targets,
        }

    async def whoami(self, actor: Actor, *, reply_to: str | None) -> None:
        await self.say(actor.target, "whoami", self.identity(actor), reply_to=reply_to)

    def chat_info(self, actor: Actor, *, private: bool, thread_id: int | None = None) -> dict[str, Any]:
        """The chat's id as the settings spell it (and the forum topic's), and whether it receives cards."""
        return {
            "chat_id": actor.target.chat_id,
            "thread_id": thread_id,
            "private": private,
            "card_chat": actor.target in self._notify.all_card_targets,
            "robots": sum(1 for t in self._notify.all_card_targets if t.channel == "wecom"),
        }

    async def chatid(self, actor: Actor, *, private: bool, thread_id: int | None, reply_to: str | None) -> None:
        await self.say(actor.target, "chatid", self.chat_info(actor, private=private, thread_id=thread_id),
                       reply_to=reply_to)

    def help_context(self, actor: Actor) -> dict[str, Any]:
        """``/help`` for this actor: only the sections their role (or this card chat) allows."""
        role = self._roles.role_of(actor.id)
        identity = self.identity(actor)
        return {
            "sections": help_sections(role, may_read=self.may_read(actor)),
            "role": identity["role"],
            "namespaces": identity["namespaces"],
            "routes": identity["routes"],
            "more": role < Role.APPROVER,  # a higher role would show more (admin adds no command of its own)
        }

    async def help(self, actor: Actor, *, reply_to: str | None) -> None:
        await self.say(actor.target, "help", self.help_context(actor), reply_to=reply_to)

    async def first_run(self, target: ChatTarget) -> bool:
        """alertpilot was added to a group: unless it is a card chat, say once (ever, across restarts) how to
        configure it. False when nothing was said (a card chat, or said before)."""
        if target in self._notify.all_card_targets:
            return False
        now = self._now()
        mark = f"{now.isoformat()} {secrets.token_hex(4)}"
        key = f"onboarded:{PLATFORMS.get(target.channel, target.channel)}:{target.chat_id}"
        async with self._db.write() as tx:
            if await tx.kv.put_if_absent(key, mark) != mark:
                return False
            await self._notify.answer(tx, target, "first_run", {"chat_id": target.chat_id}, now)
        self._notify.wake()
        return True

    def may_read(self, actor: Actor) -> bool:
        """Members of a card chat see the cards anyway; elsewhere (a DM, another group) reading incidents
        needs at least the viewer role."""
        return actor.target in self._notify.all_card_targets or self._roles.allows(actor.id, Role.VIEWER)

    async def refuse_read(self, actor: Actor, ref: str = "", *, reply_to: str | None) -> None:
        await self.say(actor.target, "action_result", refusal(ref), reply_to=reply_to)

    async def incidents(self, actor: Actor, *, reply_to: str | None) -> None:
        if not self.may_read(actor):
            await self.refuse_read(actor, reply_to=reply_to)
            return
        items, total = await self._queries.open_incidents(limit=15)
        await self.say(actor.target, "incidents", {"items": items, "total": total}, reply_to=reply_to)

    async def status(self, actor: Actor, incident_id: int, *, reply_to: str | None) -> None:
        if not self.may_read(actor):
            await self.refuse_read(actor, incident_ref(incident_id), reply_to=reply_to)
            return
        card = await self._queries.card(incident_id)  # raises IncidentNotFound
        await self.say(actor.target, "status", {"card": to_context(card)}, reply_to=reply_to)

    async def audit(self, actor: Actor, incident_id: int, *, reply_to: str | None) -> None:
        """``/audit INC-12``: what ran, who approved it, every attempt — one message per execution (the last
        AUDIT_EXECUTIONS; each shows its last AUDIT_ATTEMPTS attempts; everything is in the read API)."""
        if not self.may_read(actor):
            await self.refuse_read(actor, incident_ref(incident_id), reply_to=reply_to)
            return
        executions = await self._queries.audit(incident_id)  # raises IncidentNotFound
        shown = [audit_view(e, number) for number, e in enumerate(executions, start=1)][-AUDIT_EXECUTIONS:]
        base = {"ref": incident_ref(incident_id), "incident_id": incident_id}
        if not shown:
            await self.say(actor.target, "audit", {**base, "executions": [], "page": 1, "pages": 1}, reply_to=reply_to)
            return
        for page, view in enumerate(shown, start=1):
            await self.say(actor.target, "audit", {**base, "executions": [view], "page": page, "pages": len(shown)},
                           reply_to=reply_to)

    async def details(self, *, incident_id: int, actor: Actor) -> ActionResult:
        """Every alert of the incident, threaded under the card in the chat that asked (once a minute)."""
        ref = incident_ref(incident_id)
        if not self.may_read(actor):
            return ActionResult(Outcome.NOT_ALLOWED, ref, needed_role=Role.VIEWER.name.lower())
        now = self._now()
        async with self._db.write() as tx:
            if await tx.incidents.get(incident_id) is None:
                raise IncidentNotFound(ref)
            pages, left_out = await self._queries.details_pages(tx, incident_id)
            queued = False
            for number, alerts in enumerate(pages, start=1):
                context = {
                    "ref": ref,
                    "alerts": alerts,
                    "page": number,
                    "pages": len(pages),
                    "left_out": left_out if number == len(pages) else 0,
                    "incident_id": incident_id,
                }
                queued = await self._notify.thread(
                    tx, incident_id, "details", context, now, targets=[actor.target],
                    dedup_key=f"details:{incident_id}:{_minute(now)}:{number}",
                ) or queued
            evidence = await self._queries.evidence(tx, incident_id)
            if evidence:  # what the model looked at before it proposed (issue 12)
                queued = await self._notify.thread(
                    tx, incident_id, "evidence", {"ref": ref, "calls": evidence}, now, targets=[actor.target],
                    dedup_key=f"details:{incident_id}:{_minute(now)}:evidence",
                ) or queued
            consensus = await self._queries.consensus(tx, incident_id)
            if consensus:  # how several analyses voted, the dissent included (issue 12)
                queued = await self._notify.thread(
                    tx, incident_id, "consensus", {"ref": ref, **consensus}, now, targets=[actor.target],
                    dedup_key=f"details:{incident_id}:{_minute(now)}:consensus",
                ) or queued
        self._notify.wake()
        return ActionResult(Outcome.DETAILS_SENT if queued else Outcome.ALREADY_POSTED, ref)

    async def history(self, *, incident_id: int, actor: Actor) -> ActionResult:
        """The last incidents with the same alertname or service and how they ended (once a minute)."""
        ref = incident_ref(incident_id)
        if not self.may_read(actor):
            return ActionResult(Outcome.NOT_ALLOWED, ref, needed_role=Role.VIEWER.name.lower())
        now = self._now()
        async with self._db.write() as tx:
            incident = await tx.incidents.get(incident_id)
            if incident is None:
                raise IncidentNotFound(ref)
            items = await self._queries.history(tx, incident)
            context = {"ref": ref, "alertname": incident.alertname, "service": incident.service, "items": items}
            queued = await self._notify.thread(
                tx, incident_id, "history", context, now, targets=[actor.target],
                dedup_key=f"history:{incident_id}:{_minute(now)}",
            )
        self._notify.wake()
        return ActionResult(Outcome.HISTORY_SENT if queued else Outcome.ALREADY_POSTED, ref)

    async def report(self, actor: Actor, result: ActionResult, *, reply_to: str | None) -> None:
        """Answer a command's outcome. A successful decision made in a card chat already shows as a threaded
        reply under the card, so it is not repeated there."""
        if result.ok and actor.target in self._notify.all_card_targets:
            return
        await self.say(actor.target, "action_result", result_context(result), reply_to=reply_to)


def audit_view(execution: dict[str, Any], number: int) -> dict[str, Any]:
    """One execution of the read API's audit, bounded to fit one chat message."""
    attempts = execution["attempts"]
    return {
        "number": number,
        "state": execution["state"],
        "executor": execution["executor"],
        "dry_run": execution["dry_run"],
        "auto": execution["auto"],
        "requested_by": clip(execution["requested_by"], 60) or None,
        "approvers": [clip(a, 40) for a in execution["approvers"][:3]],
        "started_at": execution["started_at"],
        "finished_at": execution["finished_at"],
        "replicas_before": execution["replicas_before"],
        "error": clip(execution["error"], 300) or None,
        "rollback": clip(execution["rollback"], 200) or None,
        "steps": len(execution["commands"]),
        "hidden": max(0, len(attempts) - AUDIT_ATTEMPTS),
        "attempts": [
            {
                "step": a["step"],
                "step_index": a["step_index"],
                "attempt": a["attempt"],
                "exit_code": a["exit_code"],
                "duration_ms": a["duration_ms"],
                "dry_run": a["dry_run"],
                "result": a["result"],
                "reason": a["reason"],
                "argv": clip(shlex.join(a["argv"]), AUDIT_ARGV),
                "output": clip(last_line(a["stderr"], a["stdout"]), AUDIT_OUTPUT),
            }
            for a in attempts[-AUDIT_ATTEMPTS:]
        ],
    }


def help_sections(role: Role, *, may_read: bool) -> list[str]:
    """The /help sections a caller with ``role`` sees; ``may_read``: they may read incidents here without a role
    (a member of a card chat)."""
    return [name for name, needed in HELP_SECTIONS if role >= needed or (name == "viewer" and may_read)]


def refusal(ref: str) -> dict[str, Any]:
    """The answer to someone who may not read incidents here (it needs the viewer role)."""
    return result_context(ActionResult(Outcome.NOT_ALLOWED, ref, needed_role=Role.VIEWER.name.lower()))


def result_context(result: ActionResult) -> dict[str, Any]:
    return {
        "outcome": result.outcome.value,
        "ref": result.ref,
        "state": result.state,
        "by": result.by,
        "needed_role": result.needed_role,
        "namespace": result.namespace,
        "count": result.count,
        "required": result.required,
    }


def _minute(moment: datetime) -> str:
    """A de-duplication bucket: repeated presses within the same minute post one answer."""
    return moment.strftime("%Y%m%d%H%M")
