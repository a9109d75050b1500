"""The knowledge base: notes operators add to incidents (``/note INC-12 …``), imported or learned entries, and
the full-text search that feeds them back to people and to the AI prompt.

Words are made here (``search_terms`` for queries, ``index_text`` for the stored ``search_text``), so the
repository only ever sees plain lower-case alphanumeric words: no user text reaches FTS5 or tsquery syntax.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

import structlog

from services.actions import Actor
from services.errors import IncidentNotFound
from services.incidents import incident_ref
from services.roles import Role, RoleMap
from storage.clock import Clock
from storage.db import Database
from storage.repos import Tx
from storage.tables import KnowledgeEntry, KnowledgeSource

log = structlog.get_logger(__name__)

TITLE_MAX = 200
BODY_MAX = 4000
TAGS_MAX = 20
TAG_MAX = 40
CATEGORY_MAX = 40
SERVICES_MAX = 20
SERVICE_MAX = 100
SNIPPET_MAX = 240
NOTE_HEADLINE_MAX = 80
TIMELINE_TEXT_MAX = 500
SEARCH_LIMIT_MAX = 50
TERM_MAX = 64  # a longer query word is cut; as a prefix it still finds the (longer) indexed word
INDEXED_WORD_MAX = 128
CAMEL_TAILS_MAX = 8  # a CamelCase word of more pieces is indexed whole and in pieces only

STOP_WORDS = frozenset(
    "the a an is of to in on for and or with why what how does did do it this that be are was".split()
)
_RUNS = re.compile(r"[^\W_]+")  # letters and digits (Unicode), everything else separates
_SPACES = re.compile(r"\s+")


# --- words ----------------------------------------------------------------------------------------------


def _wide(ch: str) -> bool:
    """CJK ideographs, kana, hangul: scripts written without spaces between words."""
    return unicodedata.east_asian_width(ch) in ("W", "F")


def _script_runs(run: str) -> list[str]:
    """Split a letters-and-digits run where it changes between wide (CJK) and other characters, so
    ``api服务`` gives ``api`` and ``服务``."""
    pieces: list[str] = []
    start = 0
    for i in range(1, len(run)):
        if _wide(run[i]) != _wide(run[i - 1]):
            pieces.append(run[start:i])
            start = i
    pieces.append(run[start:])
    return pieces


def _camel_pieces(word: str) -> list[str]:
    """``KubePodCrashLooping`` → Kube Pod Crash Looping; ``HTTPServerError`` → HTTP Server Error;
    digits stay with their word (``k8sNode`` → k8s Node, ``Http5xxErrors`` → Http5xx Errors)."""
    pieces: list[str] = []
    start = 0
    for i in range(1, len(word)):
        ch = word[i]
        if ch.isupper() and (word[i - 1].islower() or (i + 1 < len(word) and word[i + 1].islower())):
            pieces.append(word[start:i])
            start = i
    pieces.append(word[start:])
    return pieces


def _clean(word: str, max_len: int) -> str:
    # lower() can produce combining marks (``İ`` → ``i̇``): keep only what FTS sees as word characters
    lowered = word.lower()
    if not lowered.isalnum():
        lowered = "".join(ch for ch in lowered if ch.isalnum())
    return lowered[:max_len]


def _words(text: str, *, whole: bool) -> Iterator[str]:
    """Alphanumeric words of ``text``. With ``whole``, a CamelCase word is given whole and by its tails as
    well as in pieces (KubePodCrashLooping, PodCrashLooping, CrashLooping, Kube, Pod, Crash, Looping), so
    "crashlooping" written as one word finds it too."""
    normalised = unicodedata.normalize("NFKC", text)
    for match in _RUNS.finditer(normalised):
        for run in _script_runs(match.group()):
            pieces = _camel_pieces(run)
            if whole:  # tails only of a word-like run: "AbAbAb…" must not make a quadratic search_text
                tails = len(pieces) - 1 if len(pieces) <= CAMEL_TAILS_MAX else 1
                yield from ("".join(pieces[i:]) for i in range(tails))
            yield from pieces


def search_terms(text: str, *, limit: int = 12) -> list[str]:
    """Words to search for: CamelCase and punctuation split, lower-cased, no 1-character words and no stop
    words, de-duplicated in order, at most ``limit``. Every term satisfies ``str.isalnum()``."""
    terms: list[str] = []
    seen: set[str] = set()
    if limit <= 0:
        return terms
    for raw in _words(text, whole=False):
        word = _clean(raw, TERM_MAX)
        if len(word) < 2 or word in STOP_WORDS or word in seen:
            continue
        seen.add(word)
        terms.append(word)
        if len(terms) >= limit:
            break
    return terms


def index_text(*parts: str) -> str:
    """The normalised ``search_text`` of an entry: every word of every part, lower-case, separated by
    spaces; a CamelCase word whole, by its tails and in pieces (``kubepodcrashlooping podcrashlooping
    crashlooping kube pod crash looping``)."""
    words = (_clean(raw, INDEXED_WORD_MAX) for part in parts if part for raw in _words(part, whole=True))
    return " ".join(w for w in words if w)


def flat_clip(text: str, limit: int) -> str:
    """``text`` with its whitespace collapsed, cut to at most ``limit`` characters on a word boundary where
    there is one nearby, ending in "…" when cut."""
    flat = _SPACES.sub(" ", text).strip()
    if len(flat) <= limit:
        return flat
    cut = flat[: limit - 1]
    space = cut.rfind(" ")
    if space >= limit * 2 // 3:  # a word boundary not too far back (CJK text has none)
        cut = cut[:space]
    return cut.rstrip(" .,;:-") + "…"


# --- results --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KnowledgeHit:
    id: int
    title: str
    snippet: str  # the body, clipped to about 240 characters
    tags: tuple[str, ...]
    category: str
    services: tuple[str, ...]
    source: str  # KnowledgeSource value
    incident_ref: str | None  # "INC-12" when the entry belongs to an incident
    created_at: datetime

    @classmethod
    def of(cls, entry: KnowledgeEntry) -> KnowledgeHit:
        assert entry.id is not None
        return cls(
            id=entry.id,
            title=entry.title,
            snippet=flat_clip(entry.body, SNIPPET_MAX),
            tags=tuple(entry.tags or ()),
            category=entry.category,
            services=tuple(entry.services or ()),
            source=entry.source,
            incident_ref=None if entry.incident_id is None else incident_ref(entry.incident_id),
            created_at=entry.created_at,
        )


class NoteOutcome(StrEnum):
    ADDED = "added"
    NOT_ALLOWED = "not_allowed"
    EMPTY = "empty"
    TOO_LONG = "too_long"


@dataclass(frozen=True)
class NoteResult:
    outcome: NoteOutcome
    ref: str  # INC-12
    entry_id: int | None = None  # set when added
    needed_role: str | None = None  # set when not allowed
    limit: int | None = None  # set when too long: the most characters a note may have

    @property
    def ok(self) -> bool:
        return self.outcome is NoteOutcome.ADDED


# --- the service ----------------------------------------------------------------------------------------


class KnowledgeService:
    def __init__(self, db: Database, clock: Clock, roles: RoleMap) -> None:
        self._db, self._now, self._roles = db, clock, roles

    async def search(self, query: str, *, limit: int = 5) -> list[KnowledgeHit]:
        """The best entries for ``query`` (any word may match, each as a prefix); [] for a query without
        searchable words."""
        return await self._search(search_terms(query), limit)

    async def for_incident(self, *, alertname: str, service: str, summary: str, limit: int = 3) -> list[KnowledgeHit]:
        """What the knowledge base knows about an incident like this one (for the AI prompt)."""
        return await self._search(search_terms(" ".join((alertname, service, summary))), limit)

    async def _search(self, terms: Sequence[str], limit: int) -> list[KnowledgeHit]:
        limit = max(0, min(limit, SEARCH_LIMIT_MAX))
        if not terms or not limit:
            return []
        async with self._db.read() as tx:
            entries = await tx.knowledge.search(terms, limit)
        return [KnowledgeHit.of(e) for e in entries]

    async def add(
        self,
        *,
        title: str,
        body: str,
        tags: Iterable[str] = (),
        category: str = "",
        services: Iterable[str] = (),
        source: KnowledgeSource | str = KnowledgeSource.HUMAN,
        incident_id: int | None = None,
        created_by: str | None = None,
        tx: Tx | None = None,
    ) -> int:
        """Store an entry and return its id. Fields are stripped and bounded (title 200, body 4000, 20 tags
        of 40 characters); a title is required (ValueError). With ``tx`` the entry is written in the
        caller's transaction, otherwise in one of its own."""
        title = flat_clip(title, TITLE_MAX)
        if not title:
            raise ValueError("a knowledge entry needs a title")
        body = body.strip()
        if len(body) > BODY_MAX:
            body = body[: BODY_MAX - 1].rstrip() + "…"
        kept_tags = _bounded(tags, TAGS_MAX, TAG_MAX)
        kept_services = _bounded(services, SERVICES_MAX, SERVICE_MAX)
        category = flat_clip(category, CATEGORY_MAX)
        entry = KnowledgeEntry(
            title=title,
            body=body,
            tags=kept_tags,
            category=category,
            services=kept_services,
            source=KnowledgeSource(source).value,
            incident_id=incident_id,
            created_by=created_by,
            created_at=self._now(),
            search_text=index_text(title, body, *kept_tags, category, *kept_services),
        )
        if tx is not None:
            await tx.knowledge.add(entry)
        else:
            async with self._db.write() as own:
                await own.knowledge.add(entry)
        assert entry.id is not None
        log.info("knowledge_entry_added", entry_id=entry.id, source=entry.source, incident_id=incident_id)
        return entry.id

    async def add_note(self, *, incident_id: int, text: str, actor: Actor) -> NoteResult:
        """``/note INC-12 <text>``: the note becomes a knowledge entry of the incident and a timeline event,
        in one transaction. Raises IncidentNotFound for an unknown incident."""
        ref = incident_ref(incident_id)
        if not self._roles.allows(actor.id, Role.OPERATOR):
            return NoteResult(NoteOutcome.NOT_ALLOWED, ref, needed_role=Role.OPERATOR.name.lower())
        text = text.strip()
        if not text:
            return NoteResult(NoteOutcome.EMPTY, ref)
        if len(text) > BODY_MAX:
            return NoteResult(NoteOutcome.TOO_LONG, ref, limit=BODY_MAX)
        now = self._now()
        async with self._db.write() as tx:
            incident = await tx.incidents.get(incident_id)
            if incident is None:
                raise IncidentNotFound(ref)
            headline = flat_clip(text.splitlines()[0], NOTE_HEADLINE_MAX)
            label = f"{ref} {incident.alertname}" if incident.alertname else ref
            entry_id = await self.add(
                title=f"{label}: {headline}",
                body=text,
                tags=["note", incident.alertname],
                category="note",
                services=[incident.service] if incident.service else [],
                source=KnowledgeSource.HUMAN,
                incident_id=incident_id,
                created_by=actor.id,
                tx=tx,
            )
            await tx.timeline.add(
                incident_id=incident_id,
                at=now,
                kind="note",
                actor=actor.id,
                name=actor.name,
                entry_id=entry_id,
                text=flat_clip(text, TIMELINE_TEXT_MAX),
            )
        log.info("incident_note_added", incident_id=incident_id, entry_id=entry_id, actor=actor.id)
        return NoteResult(NoteOutcome.ADDED, ref, entry_id=entry_id)


def _bounded(values: Iterable[str], count: int, length: int) -> list[str]:
    """Stripped, non-empty, de-duplicated values, each at most ``length`` characters, at most ``count``."""
    kept: list[str] = []
    for value in values:
        item = value.strip()[:length].strip()
        if item and item not in kept:
            kept.append(item)
            if len(kept) == count:
                break
    return kept
