"""KnowledgeService on SQLite (FTS5) and PostgreSQL (tsvector): ranking, prefixes, CamelCase, OR semantics,
hostile queries, Unicode, and /note (an entry and a timeline event in one transaction)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from services.actions import Actor
from services.errors import IncidentNotFound
from services.knowledge import KnowledgeService, NoteOutcome
from services.ports import ChatTarget
from services.roles import parse_roles
from storage.db import Database
from storage.repos import Tx
from storage.tables import Incident, KnowledgeSource
from tests.fakes.chat import FakeClock
from tests.harness import APPROVER, OPERATOR, ROLES, VIEWER, scratch_postgres_database

CHAT = ChatTarget("telegram", "-100")


class TimelineDown:
    """A timeline that fails on write: shows whether the note's entry shares the event's transaction."""

    async def add(self, **_: Any) -> None:
        raise RuntimeError("timeline unavailable")


class TimelineFailingDatabase(Database):
    @asynccontextmanager
    async def write(self) -> AsyncIterator[Tx]:
        async with super().write() as tx:
            tx.timeline = TimelineDown()  # type: ignore[assignment]
            yield tx


@dataclass
class KB:
    db: Database
    clock: FakeClock
    knowledge: KnowledgeService

    async def incident(self, alertname: str = "KubePodCrashLooping", service: str = "payments-api") -> int:
        async with self.db.write() as tx:
            row = await tx.incidents.add(
                Incident(alertname=alertname, service=service, created_at=self.clock(), updated_at=self.clock())
            )
        assert row.id is not None
        return row.id

    async def entry(self, title: str, body: str = "", **fields: Any) -> int:
        return await self.knowledge.add(title=title, body=body, **fields)

    async def ids(self, query: str, limit: int = 5) -> list[int]:
        return [hit.id for hit in await self.knowledge.search(query, limit=limit)]


def actor(user_id: int) -> Actor:
    return Actor(id=f"tg:{user_id}", name=f"@user{user_id}", target=CHAT)


@pytest.fixture(params=["sqlite", "postgresql"])
async def kb(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[KB]:
    if request.param == "sqlite":
        url, dropper = f"sqlite+aiosqlite:///{tmp_path}/kb.db", None
    else:
        url, dropper = await scratch_postgres_database()
    db = Database(url)
    await db.create_schema()
    clock = FakeClock()
    try:
        yield KB(db, clock, KnowledgeService(db, clock, parse_roles(ROLES)))
    finally:
        await db.dispose()
        if dropper is not None:
            await dropper()


# --- search -----------------------------------------------------------------------------------------------


async def test_search_title_hit_outranks_body_only_hit(kb: KB):
    body_only = await kb.entry("Nightly backup job", "the backup filled the disk of db-1 before rotation")
    in_title = await kb.entry("Disk full on db-1", "rotated the logs and raised the volume size")
    unrelated = await kb.entry("Certificate expiry", "renew with cert-manager")

    assert await kb.ids("disk") == [in_title, body_only]
    assert unrelated not in await kb.ids("disk full")


async def test_search_matches_prefixes(kb: KB):
    crash = await kb.entry("Pods restarting", "KubePodCrashLooping fired for the payments deployment")

    assert await kb.ids("crash") == [crash]
    assert await kb.ids("restart") == [crash]
    assert await kb.ids("paym") == [crash]


async def test_search_finds_camel_case_names_by_their_pieces_and_whole(kb: KB):
    entry = await kb.entry("OOM in the worker", "KubePodCrashLooping after the memory limit change")

    assert await kb.ids("pod looping") == [entry]
    assert await kb.ids("KubePodCrashLooping") == [entry]
    assert await kb.ids("kubepodcrashlooping") == [entry]
    assert await kb.ids("crashlooping pods") == [entry]
    assert await kb.ids("crash_looping") == [entry]


async def test_search_any_word_may_match(kb: KB):
    disk = await kb.entry("Disk full", "clean /var/log")
    cert = await kb.entry("Certificate expired", "renew it")

    assert await kb.ids("disk zzqxunknown") == [disk]
    assert set(await kb.ids("disk certificate")) == {disk, cert}


async def test_search_ranks_entries_matching_more_words_first(kb: KB):
    one = await kb.entry("Disk pressure", "evictions")
    both = await kb.entry("Disk full on postgres", "vacuum and clean the WAL")

    assert (await kb.ids("postgres disk"))[0] == both
    assert one in await kb.ids("postgres disk")


async def test_search_of_nothing_searchable_is_empty(kb: KB):
    await kb.entry("Disk full", "the disk is full")

    assert await kb.knowledge.search("") == []
    assert await kb.knowledge.search("   ") == []
    assert await kb.knowledge.search("why is the of a") == []
    assert await kb.knowledge.search("disk", limit=0) == []


async def test_search_respects_the_limit(kb: KB):
    for n in range(7):
        await kb.entry(f"Disk full {n}", "clean up")

    assert len(await kb.ids("disk")) == 5
    assert len(await kb.ids("disk", limit=2)) == 2


@pytest.mark.parametrize(
    "query",
    [
        'disk" OR 1=1 --',
        "disk OR full",
        "NEAR(disk full, 2)",
        "disk*",
        "*",
        "-disk",
        "title:disk",
        "search_text:disk",
        "disk & full",
        "disk | full",
        "!disk",
        "disk:*",
        "disk <-> full",
        "'; DROP TABLE knowledgeentry; --",
        "disk'); DELETE FROM knowledgeentry; --",
        '"',
        "(((disk",
        "disk\x00full",
        "² ½ ⅻ ፩",
        "፩፪፫ ៣៤",
        "\\",
    ],
)
async def test_search_survives_hostile_queries(kb: KB, query: str):
    disk = await kb.entry("Disk full", "clean /var/log on db-1")

    hits = await kb.knowledge.search(query)

    assert all(hit.id == disk for hit in hits)
    if "disk" in query.lower():
        assert [hit.id for hit in hits] == [disk]
    async with kb.db.read() as tx:
        assert await tx.knowledge.count() == 1


async def test_search_unicode_text(kb: KB):
    cjk = await kb.entry("磁盘已满", "清理 /var/log 日志, 扩容磁盘")
    accented = await kb.entry("Überlauf der Warteschlange", "café queue overflow")

    assert await kb.ids("磁盘已满") == [cjk]
    assert await kb.ids("磁盘") == [cjk]
    assert await kb.ids("扩容磁盘") == [cjk]
    assert await kb.ids("überlauf") == [accented]
    assert await kb.ids("CAFÉ") == [accented]


async def test_search_hit_fields(kb: KB):
    incident_id = await kb.incident()
    body = "Restarted the consumer. " + "The queue drained slowly afterwards. " * 20
    entry = await kb.entry(
        "Consumer stuck",
        body,
        tags=["queue", "kafka"],
        category="runbook",
        services=["orders"],
        source=KnowledgeSource.IMPORT,
        incident_id=incident_id,
        created_by="tg:222",
    )

    (hit,) = await kb.knowledge.search("consumer")

    assert hit.id == entry
    assert hit.title == "Consumer stuck"
    assert hit.snippet.startswith("Restarted the consumer.")
    assert hit.snippet.endswith("…") and len(hit.snippet) <= 240
    assert not hit.snippet[:-1].endswith(" ") and body.startswith(hit.snippet[:-1])
    assert hit.tags == ("queue", "kafka")
    assert hit.category == "runbook"
    assert hit.services == ("orders",)
    assert hit.source == "import"
    assert hit.incident_ref == f"INC-{incident_id}"
    assert hit.created_at == kb.clock()


async def test_search_finds_tags_category_and_services(kb: KB):
    entry = await kb.entry("Checklist", "steps", tags=["RabbitMQ"], category="messaging", services=["billing-worker"])

    assert await kb.ids("rabbit") == [entry]
    assert await kb.ids("messaging") == [entry]
    assert await kb.ids("billing") == [entry]


# --- add --------------------------------------------------------------------------------------------------


async def test_add_stores_bounded_fields(kb: KB):
    entry_id = await kb.entry(
        "  " + "T" * 300 + "  ",
        "b" * 5000,
        tags=[" a ", "", "a", *[f"tag{n}" for n in range(30)], "x" * 100],
        category="  runbook ",
        services=[" api ", "api", ""],
    )

    async with kb.db.read() as tx:
        entry = await tx.knowledge.get(entry_id)
    assert entry is not None
    assert len(entry.title) <= 200
    assert len(entry.body) <= 4000
    assert len(entry.tags) == 20 and entry.tags[0] == "a" and all(len(t) <= 40 for t in entry.tags)
    assert entry.category == "runbook"
    assert entry.services == ["api"]
    assert entry.source == "human"
    assert entry.created_at == kb.clock()
    assert entry.search_text and all(word.isalnum() for word in entry.search_text.split())


async def test_add_requires_a_title(kb: KB):
    with pytest.raises(ValueError):
        await kb.entry("   ", "body")
    with pytest.raises(ValueError):
        await kb.entry("fine", "body", source="rumour")
    async with kb.db.read() as tx:
        assert await tx.knowledge.count() == 0


async def test_add_in_the_callers_transaction_rolls_back_with_it(kb: KB):
    with pytest.raises(RuntimeError):
        async with kb.db.write() as tx:
            await kb.knowledge.add(title="Disk full", body="clean up", tx=tx)
            raise RuntimeError("the caller's later step failed")

    async with kb.db.read() as tx:
        assert await tx.knowledge.count() == 0
    assert await kb.knowledge.search("disk") == []


# --- /note ------------------------------------------------------------------------------------------------


async def test_add_note_writes_entry_and_timeline_event(kb: KB):
    incident_id = await kb.incident()
    text = "Rolled back to v1.4.2, the new image had a broken config map.\nWatch the error rate for an hour."

    result = await kb.knowledge.add_note(incident_id=incident_id, text=text, actor=actor(OPERATOR))

    ref = f"INC-{incident_id}"
    assert result.outcome is NoteOutcome.ADDED and result.ok
    assert result.ref == ref and result.entry_id is not None
    async with kb.db.read() as tx:
        entry = await tx.knowledge.get(result.entry_id)
        events = await tx.timeline.of_incident(incident_id)
        of_incident = await tx.knowledge.of_incident(incident_id)
    assert entry is not None and [e.id for e in of_incident] == [entry.id]
    assert entry.title == f"{ref} KubePodCrashLooping: Rolled back to v1.4.2, the new image had a broken config map."
    assert entry.body == text
    assert entry.tags == ["note", "KubePodCrashLooping"]
    assert entry.category == "note"
    assert entry.services == ["payments-api"]
    assert entry.source == "human"
    assert entry.created_by == f"tg:{OPERATOR}"
    (event,) = events
    assert event.kind == "note" and event.actor == f"tg:{OPERATOR}" and event.at == kb.clock()
    assert event.detail == {"name": f"@user{OPERATOR}", "entry_id": entry.id, "text": " ".join(text.split())}


async def test_add_note_is_found_by_search(kb: KB):
    incident_id = await kb.incident()
    result = await kb.knowledge.add_note(
        incident_id=incident_id, text="Broken ConfigMap in the new image; rolled back", actor=actor(APPROVER)
    )

    hits = await kb.knowledge.search("configmap rollback")
    assert [h.id for h in hits] == [result.entry_id]
    assert hits[0].incident_ref == f"INC-{incident_id}"
    assert [h.id for h in await kb.knowledge.search("crash looping payments")] == [result.entry_id]


async def test_add_note_headline_is_clipped(kb: KB):
    incident_id = await kb.incident(service="")
    result = await kb.knowledge.add_note(incident_id=incident_id, text="word " * 100, actor=actor(OPERATOR))

    async with kb.db.read() as tx:
        entry = await tx.knowledge.get(result.entry_id or 0)
        (event,) = await tx.timeline.of_incident(incident_id)
    assert entry is not None
    headline = entry.title.split(": ", 1)[1]
    assert len(headline) <= 80 and headline.endswith("…")
    assert entry.services == []
    assert len(event.detail["text"]) <= 500


async def test_add_note_needs_the_operator_role(kb: KB):
    incident_id = await kb.incident()

    for user in (VIEWER, 999):
        result = await kb.knowledge.add_note(incident_id=incident_id, text="a note", actor=actor(user))
        assert result.outcome is NoteOutcome.NOT_ALLOWED and not result.ok
        assert result.needed_role == "operator"
        assert result.entry_id is None

    async with kb.db.read() as tx:
        assert await tx.knowledge.count() == 0
        assert await tx.timeline.of_incident(incident_id) == []


async def test_add_note_refuses_empty_and_too_long_text(kb: KB):
    incident_id = await kb.incident()

    empty = await kb.knowledge.add_note(incident_id=incident_id, text=" \n\t ", actor=actor(OPERATOR))
    too_long = await kb.knowledge.add_note(incident_id=incident_id, text="x" * 4001, actor=actor(OPERATOR))
    longest = await kb.knowledge.add_note(incident_id=incident_id, text="x" * 4000, actor=actor(OPERATOR))

    assert empty.outcome is NoteOutcome.EMPTY
    assert too_long.outcome is NoteOutcome.TOO_LONG and too_long.limit == 4000
    assert longest.outcome is NoteOutcome.ADDED
    async with kb.db.read() as tx:
        assert await tx.knowledge.count() == 1


async def test_add_note_to_an_unknown_incident_raises(kb: KB):
    with pytest.raises(IncidentNotFound) as caught:
        await kb.knowledge.add_note(incident_id=404, text="a note", actor=actor(OPERATOR))

    assert caught.value.ref == "INC-404"
    async with kb.db.read() as tx:
        assert await tx.knowledge.count() == 0


async def test_add_note_entry_and_event_share_one_transaction(kb: KB):
    incident_id = await kb.incident()
    failing = TimelineFailingDatabase(kb.db.url)
    try:
        service = KnowledgeService(failing, kb.clock, parse_roles(ROLES))
        with pytest.raises(RuntimeError, match="timeline unavailable"):
            await service.add_note(incident_id=incident_id, text="rolled back", actor=actor(OPERATOR))
    finally:
        await failing.dispose()

    async with kb.db.read() as tx:
        assert await tx.knowledge.count() == 0
    assert await kb.knowledge.search("rolled back") == []


# --- for the AI prompt ------------------------------------------------------------------------------------


async def test_for_incident_returns_the_best_three(kb: KB):
    best = await kb.entry("KubePodCrashLooping on payments-api", "bad config map: roll back the deployment")
    for n in range(4):
        await kb.entry(f"Pod note {n}", "the pod restarted after a node drain")
    await kb.entry("Certificate expiry", "renew with cert-manager")

    hits = await kb.knowledge.for_incident(
        alertname="KubePodCrashLooping", service="payments-api", summary="Pod is crash looping"
    )

    assert len(hits) == 3
    assert hits[0].id == best
    assert all("Certificate" not in h.title for h in hits)


async def test_for_incident_without_words_is_empty(kb: KB):
    await kb.entry("Disk full", "clean up")

    assert await kb.knowledge.for_incident(alertname="", service="", summary="") == []
    assert await kb.knowledge.for_incident(alertname="Watchdog", service="", summary="", limit=3) == []
