"""Silences: ``/silence <service | label=value …> <duration> [reason]``, ``/silences``, ``/unsilence <id>`` and
the card's 🔕 Silence 1h button (operators and up).

An incident that opens while a silence matches it is stored with its alerts (and counted in the reports),
but gets no card, no analysis and no reminders: it is *muted*. Silencing also mutes the firing incidents
that match at that moment. When the silence ends (its time is up — the expiry job says "silence expired"
— or ``/unsilence``), its incidents that still fire are unmuted: each gets its card (and an analysis, if
it never had one).

``/silence INC-12 2h`` silences what the incident's button would (its service, or alertname, in its
namespace) for that long. Matchers: a bare word is a service (matched against the incident's service, as derived from its labels,
and a ``service`` label); ``label=value`` matches that label of the incident's common labels, or its
alertname, namespace or severity. Every matcher must match.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import structlog

from services.actions import ActionResult, Actor, Outcome, Reply
from services.chat import ChatService, refusal, result_context
from services.errors import IncidentNotFound
from services.incidents import incident_ref
from services.matchers import REASON_MAX, SilenceError, first_match, matches, parse_duration, parse_silence
from services.notify import Notifier, Wakeup
from services.phrases import phrase
from services.ports import ChatTarget
from services.queries import EXPLICIT_REF, parse_incident_ref
from services.roles import Role, RoleMap
from services.views import clip
from storage.clock import Clock
from storage.db import Database
from storage.repos import Tx
from storage.tables import Incident, IncidentStatus, Silence

log = structlog.get_logger(__name__)

BUTTON_DURATION = timedelta(hours=1)
LISTED = 20


def silence_view(silence: Silence, suppressed: tuple[int, int] = (0, 0)) -> dict[str, Any]:
    return {
        "id": silence.id,
        "matchers": [[clip(k, 40), clip(v, 80)] for k, v in sorted(silence.matchers.items())],
        "reason": clip(silence.reason, 120),
        "by": clip(silence.created_by_name or silence.created_by, 60),
        "created_at": silence.created_at.isoformat(),
        "ends_at": silence.ends_at.isoformat(),
        "incidents": suppressed[0],
        "alerts": suppressed[1],
    }


def incident_matchers(incident: Incident) -> dict[str, str]:
    """What silencing an incident silences: its service (or alertname) in its namespace."""
    matchers = {"service": incident.service} if incident.service else {"alertname": incident.alertname}
    if incident.namespace:
        matchers["namespace"] = incident.namespace
    return matchers


class SilenceService:
    def __init__(
        self, db: Database, notifier: Notifier, chat: ChatService, roles: RoleMap, clock: Clock, analysis_wakeup: Wakeup
    ) -> None:
        self._db, self._notify, self._chat, self._roles, self._now = db, notifier, chat, roles, clock
        self._analysis_wakeup = analysis_wakeup

    # --- commands ----------------------------------------------------------------------------------

    async def create(self, actor: Actor, text: str, say: Reply) -> None:
        """``/silence``: operators and up."""
        if not self._roles.allows(actor.id, Role.OPERATOR):
            await say("action_result", result_context(self._not_allowed("")))
            return
        words = text.split()
        try:
            if words and EXPLICIT_REF.match(words[0]):  # /silence INC-12 2h: what the incident's 🔕 button silences
                if len(words) < 2:
                    raise SilenceError("no_duration")
                duration, reason = parse_duration(words[1]), " ".join(words[2:])[:REASON_MAX]
                incident_id = parse_incident_ref(words[0])
                async with self._db.read() as tx:
                    incident = await tx.incidents.get(incident_id)
                if incident is None:
                    raise IncidentNotFound(incident_ref(incident_id))
                matchers = incident_matchers(incident)
            else:
                matchers, duration, reason = parse_silence(text)
        except SilenceError as exc:
            await say("silence", {"event": "error", "code": exc.code, "text": exc.text})
            return
        except IncidentNotFound as exc:
            await say("error", {"code": "not_found", "ref": exc.ref})
            return
        silence, muted = await self._add(actor, matchers, duration, reason)
        await say("silence", {"event": "created", "silence": silence_view(silence), "muted": muted})

    async def silence_incident(self, *, incident_id: int, actor: Actor) -> ActionResult:
        """The card's 🔕 button: silence the incident's service (or its alertname) for an hour."""
        ref = incident_ref(incident_id)
        if not self._roles.allows(actor.id, Role.OPERATOR):
            return self._not_allowed(ref)
        async with self._db.read() as tx:
            incident = await tx.incidents.get(incident_id)
        if incident is None:
            raise IncidentNotFound(ref)
        if incident.status != IncidentStatus.FIRING:
            return ActionResult(Outcome.INCIDENT_RESOLVED, ref)
        if incident.muted:
            return ActionResult(Outcome.ALREADY_SILENCED, ref, state=str(incident.silence_id))
        reason = phrase("🔕 on %(ref)s", ref=ref)
        silence, _ = await self._add(actor, incident_matchers(incident), BUTTON_DURATION, reason)
        return ActionResult(Outcome.SILENCED, ref, state=str(silence.id), count=int(BUTTON_DURATION.total_seconds() // 60))

    async def list(self, actor: Actor, say: Reply) -> None:
        if not self._chat.may_read(actor):
            await say("action_result", refusal(""))
            return
        async with self._db.read() as tx:
            active = await tx.silences.active(self._now(), limit=LISTED + 1)
            counts = await tx.silences.suppressed([s.id for s in active if s.id is not None])
        views = [silence_view(s, counts.get(s.id or 0, (0, 0))) for s in active[:LISTED]]
        await say("silences", {"silences": views, "more": max(0, len(active) - LISTED)})

    async def remove(self, actor: Actor, text: str, say: Reply) -> None:
        """``/unsilence <id>``: operators and up; the silence's incidents that still fire get their cards."""
        if not self._roles.allows(actor.id, Role.OPERATOR):
            await say("action_result", result_context(self._not_allowed("")))
            return
        word = text.strip().lstrip("#")
        if not word.isdigit() or len(word) > 12:
            await say("silence", {"event": "error", "code": "bad_id", "text": text.strip()[:32]})
            return
        now = self._now()
        async with self._db.write() as tx:
            silence = await tx.silences.get(int(word))
            if silence is None or not await tx.silences.remove(int(word), actor.id, now):
                await say("silence", {"event": "error", "code": "not_active", "text": word})
                return
            unmuted = await self._unmute(tx, silence, now)
            view = silence_view(silence)
            context = {"event": "removed", "silence": view, "by": clip(actor.name, 60), "unmuted": unmuted}
            await tx.timeline.add(incident_id=None, at=now, kind="silence_removed", actor=actor.id, silence_id=silence.id)
            origin = ChatTarget(silence.channel, silence.chat_id)
            if silence.channel and origin != actor.target:  # whoever set it learns it is gone
                await self._notify.answer(tx, origin, "silence", context, now, dedup_key=f"silence-end:{silence.id}")
        self._notify.wake()
        self._analysis_wakeup.set()
        await say("silence", context)

    # --- the expiry job ----------------------------------------------------------------------------

    async def expire_due(self) -> int:
        """Announce silences whose time is up (once each, compare-and-set) and unmute their firing incidents."""
        now = self._now()
        ended = 0
        async with self._db.write() as tx:
            for silence in await tx.silences.ended_unnoted(now):
                assert silence.id is not None
                if not await tx.silences.note_ended(silence.id, now):
                    continue
                unmuted = await self._unmute(tx, silence, now)
                context = {"event": "expired", "silence": silence_view(silence), "unmuted": unmuted}
                targets = list(self._notify.card_targets)
                origin = ChatTarget(silence.channel, silence.chat_id)
                if silence.channel and origin not in targets:
                    targets.append(origin)
                for target in targets:
                    await self._notify.answer(tx, target, "silence", context, now,
                                              dedup_key=f"silence-end:{silence.id}:{target.channel}:{target.chat_id}")
                await tx.timeline.add(incident_id=None, at=now, kind="silence_expired", silence_id=silence.id)
                ended += 1
        if ended:
            self._notify.wake()
            self._analysis_wakeup.set()
            log.info("silences_expired", count=ended)
        return ended

    # --- internals ---------------------------------------------------------------------------------

    async def _add(
        self, actor: Actor, matchers: dict[str, str], duration: timedelta, reason: str
    ) -> tuple[Silence, list[str]]:
        now = self._now()
        async with self._db.write() as tx:
            silence = await tx.silences.add(
                Silence(
                    matchers=matchers, reason=reason, created_by=actor.id, created_by_name=actor.name,
                    channel=actor.target.channel, chat_id=actor.target.chat_id, created_at=now, ends_at=now + duration,
                )
            )
            assert silence.id is not None
            muted: list[str] = []
            for incident in await tx.incidents.firing():
                assert incident.id is not None
                if matches(matchers, incident) and await tx.incidents.mute(incident.id, silence.id):
                    muted.append(incident_ref(incident.id))
                    await tx.timeline.add(incident_id=incident.id, at=now, kind="silenced", actor=actor.id,
                                          name=actor.name, silence_id=silence.id)
                    await self._notify.card(tx, incident.id, now)  # the 🔕 button goes away
            await tx.timeline.add(incident_id=None, at=now, kind="silence_created", actor=actor.id,
                                  silence_id=silence.id, matchers=matchers, minutes=int(duration.total_seconds() // 60))
        self._notify.wake()
        log.info("silence_created", silence_id=silence.id, matchers=matchers, by=actor.id, muted=len(muted))
        return silence, muted

    async def _unmute(self, tx: Tx, silence: Silence, now: datetime) -> list[str]:
        """Give the silence's incidents that still fire their cards back (an analysis first if they never had one);
        one that another active silence also matches stays muted, under that one."""
        unmuted: list[str] = []
        others = [s for s in await tx.silences.active(now) if s.id != silence.id]
        for incident in await tx.incidents.muted_by(silence.id or 0):
            assert incident.id is not None
            if incident.status != IncidentStatus.FIRING or not await tx.incidents.unmute(incident.id):
                continue
            still = first_match(others, incident)
            if still is not None and still.id is not None and await tx.incidents.mute(incident.id, still.id):
                await tx.timeline.add(incident_id=incident.id, at=now, kind="silenced", silence_id=still.id)
                continue
            unmuted.append(incident_ref(incident.id))
            await tx.timeline.add(incident_id=incident.id, at=now, kind="unsilenced", silence_id=silence.id)
            if await tx.proposals.current(incident.id) is None:
                await tx.incidents.request_analysis(incident.id, None)
            await self._notify.card(tx, incident.id, now)
        return unmuted[:20]

    @staticmethod
    def _not_allowed(ref: str) -> ActionResult:
        return ActionResult(Outcome.NOT_ALLOWED, ref, needed_role=Role.OPERATOR.name.lower())
