"""One failure analysis after a remediation finally failed (after its last retry, never per attempt).

The analysis (summary, likely cause, next steps) comes from the AI model when one is configured and
answers within the budget; otherwise the template builds it from the failure's marker (not found,
forbidden, timeout, a failed verification, …). It goes to every target of ALERTPILOT_FAILURE_NOTIFY —
``tg:<user id>`` (a direct message, and an @mention in the Telegram groups listed), ``tg:<-group id>`` (a
message in that group, threaded under the card when it is a card chat), ``wecom:<userid>`` (an @mention
in WeCom robot messages) — or, when none is set, under the card in the card chats. One message per
target, each queued on its own: a target that fails is logged with its stack trace and the others still
get theirs. The de-duplication key makes it once per execution, whatever retries the caller makes.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import structlog

from services.ai import AIAdvisor
from services.errors import ModelError
from services.incidents import incident_ref
from services.notify import Notifier
from services.ports import ChatTarget
from services.views import clip, command_list
from storage.clock import Clock
from storage.db import Database

log = structlog.get_logger(__name__)

TITLE_FIELDS = ("ref", "alertname", "service", "namespace", "severity", "state")
DEFAULT_TITLE = "🚨 Remediation failed: {ref} {alertname}"
ANALYSIS_MAX = 2000
COMMANDS_SHOWN = 3
MENTIONS_MAX = 10
_TARGET = re.compile(r"^(tg|wecom):(-?\d{1,20}|[A-Za-z0-9_.@-]{1,64})$")
CHANNELS = {"tg": "telegram", "wecom": "wecom"}


@dataclass(frozen=True)
class NotifyTarget:
    channel: str  # telegram | wecom
    id: str  # a Telegram user or chat id, a WeCom userid
    person: bool  # a person (DM and @mention) rather than a group

    @property
    def chat(self) -> ChatTarget:
        return ChatTarget(self.channel, self.id)


def parse_notify_targets(text: str) -> list[NotifyTarget]:
    """``tg:111,tg:-100123,wecom:zhangsan`` → targets; ValueError naming the entry that is wrong."""
    targets: list[NotifyTarget] = []
    for raw in (part.strip() for part in text.split(",")):
        if not raw:
            continue
        found = _TARGET.match(raw)
        if found is None:
            raise ValueError(f"not a target: {raw!r} (use tg:<user or chat id> or wecom:<userid>)")
        prefix, ident = found.groups()
        if prefix == "tg" and not re.fullmatch(r"-?\d+", ident):
            raise ValueError(f"not a Telegram id: {raw!r} (a number: a user id, or a group's negative id)")
        person = prefix == "wecom" or not ident.startswith("-")
        target = NotifyTarget(CHANNELS[prefix], ident, person)
        if target not in targets:
            targets.append(target)
    return targets


def check_title(template: str) -> str:
    """A title with only known ``{placeholders}``; ValueError otherwise."""
    try:
        template.format_map({name: "" for name in TITLE_FIELDS})
    except (KeyError, IndexError, ValueError) as exc:
        raise ValueError(f"unknown placeholder or bad braces in {template!r}: {exc} (known: {', '.join(TITLE_FIELDS)})") from None
    return template


@dataclass(frozen=True)
class Delivery:
    target: ChatTarget
    thread: bool  # under the incident's card (a card chat)
    mentions: tuple[str, ...]  # people to @mention in this message (ids of the target's channel)


class FailureNotifier:
    def __init__(
        self,
        db: Database,
        notifier: Notifier,
        advisor: AIAdvisor | None,
        clock: Clock,
        *,
        targets: Sequence[NotifyTarget],
        channels: Sequence[str],
        enabled: bool = True,
        title: str = DEFAULT_TITLE,
        budget_seconds: float = 30.0,
    ) -> None:
        self._db, self._notify, self._advisor, self._now = db, notifier, advisor, clock
        self._enabled, self._title, self._budget = enabled, check_title(title), budget_seconds
        self.deliveries = plan_deliveries(targets, notifier.card_targets, channels)

    async def notify(self, incident_id: int, execution_id: int) -> int:
        """Queue the analysis for every target; how many messages were queued now."""
        if not self._enabled or not self.deliveries:
            return 0
        facts = await self._facts(incident_id, execution_id)
        if facts is None:
            return 0
        text, model = await self._analysis(facts)
        context = {**facts, "analysis": text, "model": model}
        queued = 0
        for delivery in self.deliveries:
            try:
                queued += await self._queue(delivery, incident_id, execution_id, context)
            except Exception:
                log.exception("failure_notify_target_failed", channel=delivery.target.channel, chat_id=delivery.target.chat_id,
                              incident_id=incident_id)
        self._notify.wake()
        log.info("failure_analysis_sent", incident_id=incident_id, targets=queued, model=model)
        return queued

    async def _queue(self, delivery: Delivery, incident_id: int, execution_id: int, context: dict[str, Any]) -> int:
        now = self._now()
        context = {**context, "mentions": list(delivery.mentions[:MENTIONS_MAX])}
        key = f"failure:{execution_id}"
        async with self._db.write() as tx:
            if delivery.thread:
                return int(await self._notify.thread(tx, incident_id, "failure_analysis", context, now,
                                                     targets=[delivery.target], dedup_key=key))
            return int(await self._notify.answer(tx, delivery.target, "failure_analysis", context, now,
                                                 incident_id=incident_id,
                                                 dedup_key=f"{key}:{delivery.target.channel}:{delivery.target.chat_id}"))

    async def _facts(self, incident_id: int, execution_id: int) -> dict[str, Any] | None:
        async with self._db.read() as tx:
            incident = await tx.incidents.get(incident_id)
            execution = await tx.executions.get(execution_id)
            if incident is None or execution is None:
                return None
            attempts = (await tx.executions.attempts_of([execution_id]))[execution_id]
        failed = [a for a in attempts if a.result != "ok"]
        last = failed[-1] if failed else None
        ref = incident_ref(incident_id)
        fields = {
            "ref": ref, "alertname": incident.alertname, "service": incident.service, "namespace": incident.namespace,
            "severity": incident.severity, "state": execution.state,
        }
        return {
            **{k: clip(str(v), 120) for k, v in fields.items()},
            "title": clip(self._title.format_map(fields), 200),
            **command_list(execution.commands, shown=COMMANDS_SHOWN),
            "approvers": [clip(a, 60) for a in execution.approvers[:3]],
            "auto": execution.auto,
            "attempts": execution.attempts,
            "error": clip(execution.error, 400),
            "rollback": clip(execution.rollback, 300) or None,
            "reason": last.reason if last is not None else None,
            "verification": bool(execution.error and execution.error.startswith("verification failed")),
            "output": clip((last.stderr or last.stdout) if last is not None else "", 400),
            "dry_run": execution.dry_run,
        }

    async def _analysis(self, facts: dict[str, Any]) -> tuple[str | None, str | None]:
        """(model text, model name), or (None, None): the template's rule-based analysis is used."""
        if self._advisor is None:
            return None, None
        try:
            async with asyncio.timeout(self._budget):
                answer = await self._advisor.write("failure", facts)
        except TimeoutError:
            log.warning("failure_analysis_timeout", budget_seconds=self._budget)
            return None, None
        except ModelError as exc:
            log.warning("failure_analysis_failed", reason=exc.reason, error=str(exc)[:300])
            return None, None
        return clip(answer.text, ANALYSIS_MAX), answer.model


def plan_deliveries(
    targets: Sequence[NotifyTarget], card_targets: Sequence[ChatTarget], channels: Sequence[str]
) -> tuple[Delivery, ...]:
    """Who gets which message. Without targets: threaded under the card in every card chat. People are
    messaged directly and @mentioned in the groups of their channel; WeCom people are @mentioned in the
    WeCom robot messages (the robots' chats are WeCom card chats)."""
    if not targets:
        return tuple(Delivery(t, True, ()) for t in card_targets)
    usable = [t for t in targets if t.channel in channels]
    for target in targets:
        if target.channel not in channels:
            log.warning("failure_notify_target_unavailable", channel=target.channel, id=target.id,
                        hint="this channel is not configured; the target gets nothing")
    deliveries: list[Delivery] = []
    groups = [t for t in usable if not t.person]
    for group in groups:
        mentions = tuple(t.id for t in usable if t.person and t.channel == group.channel)
        deliveries.append(Delivery(group.chat, group.chat in card_targets, mentions))
    for person in usable:
        if person.person and person.channel == "telegram":  # a WeCom robot cannot message a person directly
            deliveries.append(Delivery(person.chat, False, ()))
    wecom_people = tuple(t.id for t in usable if t.person and t.channel == "wecom")
    if wecom_people:
        for card in card_targets:
            if card.channel == "wecom":
                deliveries.append(Delivery(card, True, wecom_people))
    return tuple(deliveries)
