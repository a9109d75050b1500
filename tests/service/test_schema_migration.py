"""create_schema on a database made by the previous release: the decision engine's tables appear, the
proposal table gains its new nullable columns in place, old rows stay, and a second run changes nothing."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import pytest
from sqlalchemy import Column, ForeignKey, MetaData, Table, inspect
from sqlmodel import SQLModel

from services.knowledge import KnowledgeService
from services.roles import RoleMap
from storage.db import Database
from storage.tables import Incident, Proposal
from tests.fakes.chat import FakeClock

NEW_PROPOSAL_COLUMNS = ("decision_id", "fallback_reason", "playbook_id", "playbook_name", "steps")
NEW_TABLES = ("decision", "playbook", "knowledgeentry")


def previous_release(without: Collection[str] = NEW_PROPOSAL_COLUMNS) -> MetaData:
    """The schema of the release before the decision engine: no decision/playbook/knowledge tables, and a
    proposal table without the columns named in ``without``."""
    meta = MetaData()
    for table in SQLModel.metadata.sorted_tables:
        if table.name in NEW_TABLES:
            continue
        if table.name != "proposal":
            table.to_metadata(meta)
            continue
        columns = [
            Column(
                c.name,
                c.type,
                *[ForeignKey(fk.target_fullname) for fk in c.foreign_keys],
                primary_key=c.primary_key,
                nullable=c.nullable,
            )
            for c in table.columns
            if c.name not in without
        ]
        Table("proposal", meta, *columns)
    return meta


async def make_old_database(url: str, clock: FakeClock, without: Collection[str] = NEW_PROPOSAL_COLUMNS) -> int:
    """Create the old schema with one incident and its proposal; return the incident id."""
    old = Database(url)
    try:
        meta = previous_release(without)
        async with old.engine.begin() as conn:
            await conn.run_sync(meta.create_all)
        async with old.write() as tx:
            incident = await tx.incidents.add(
                Incident(alertname="DiskFull", service="db", created_at=clock(), updated_at=clock())
            )
        assert incident.id is not None
        values: dict[str, Any] = {
            "incident_id": incident.id,
            "state": "pending",
            "is_current": True,
            "source": "rules",
            "category": "disk",
            "root_cause": "the WAL volume is full",
            "command": "kubectl -n db exec db-0 -- df -h",
            "risk": "low",
            "reasoning": "disk usage above 95%",
            "latency_ms": 12,
            "created_at": clock(),
        }
        async with old.engine.begin() as conn:
            await conn.execute(meta.tables["proposal"].insert().values({k: v for k, v in values.items() if k not in without}))
        return incident.id
    finally:
        await old.dispose()


async def columns_of(db: Database, table: str) -> set[str]:
    async with db.engine.connect() as conn:
        return await conn.run_sync(lambda c: {col["name"] for col in inspect(c).get_columns(table)})


async def tables_of(db: Database) -> set[str]:
    async with db.engine.connect() as conn:
        return set(await conn.run_sync(lambda c: inspect(c).get_table_names()))


async def test_create_schema_adds_the_new_columns_and_keeps_old_rows(url: str):
    clock = FakeClock()
    incident_id = await make_old_database(url, clock)
    db = Database(url)
    try:
        before = await columns_of(db, "proposal")
        assert not before & set(NEW_PROPOSAL_COLUMNS)

        await db.create_schema()

        assert set(NEW_PROPOSAL_COLUMNS) <= await columns_of(db, "proposal")
        assert set(NEW_TABLES) <= await tables_of(db)
        async with db.read() as tx:
            proposal = await tx.proposals.current(incident_id)
        assert proposal is not None
        assert (proposal.root_cause, proposal.command, proposal.latency_ms) == (
            "the WAL volume is full", "kubectl -n db exec db-0 -- df -h", 12,
        )
        assert proposal.created_at == clock()
        assert (proposal.decision_id, proposal.fallback_reason, proposal.playbook_id) == (None, None, None)
        assert (proposal.playbook_name, proposal.steps) == (None, None)
    finally:
        await db.dispose()


async def test_migrated_columns_are_usable_and_reference_like_a_fresh_database(url: str):
    clock = FakeClock()
    incident_id = await make_old_database(url, clock)
    db = Database(url)
    try:
        await db.create_schema()
        async with db.write() as tx:
            await tx.proposals.add_current(
                Proposal(
                    incident_id=incident_id, source="playbook", playbook_name="disk-cleanup",
                    steps=["df -h", "du -sh /var/log"], fallback_reason="ai_timeout", created_at=clock(),
                )
            )
        async with db.read() as tx:
            current = await tx.proposals.current(incident_id)
            previous = await tx.proposals.previous(incident_id)
        assert current is not None and current.steps == ["df -h", "du -sh /var/log"]
        assert current.playbook_name == "disk-cleanup" and current.fallback_reason == "ai_timeout"
        assert previous is not None and previous.root_cause == "the WAL volume is full"

        async with db.engine.connect() as conn:
            fks = await conn.run_sync(lambda c: inspect(c).get_foreign_keys("proposal"))
        referred = {(tuple(fk["constrained_columns"]), fk["referred_table"]) for fk in fks}
        assert {(("decision_id",), "decision"), (("playbook_id",), "playbook")} <= referred
    finally:
        await db.dispose()


async def test_create_schema_twice_is_idempotent(url: str):
    clock = FakeClock()
    incident_id = await make_old_database(url, clock)
    first = Database(url)
    try:
        await first.create_schema()
        columns, tables = await columns_of(first, "proposal"), await tables_of(first)
        await first.create_schema()
    finally:
        await first.dispose()

    again = Database(url)  # a restart
    try:
        await again.create_schema()
        assert await columns_of(again, "proposal") == columns
        assert await tables_of(again) == tables
        async with again.read() as tx:
            assert (await tx.proposals.of_incidents([incident_id]))[incident_id].root_cause == "the WAL volume is full"
    finally:
        await again.dispose()


async def test_knowledge_search_works_on_a_migrated_database(url: str):
    clock = FakeClock()
    await make_old_database(url, clock)
    db = Database(url)
    try:
        await db.create_schema()
        await db.create_schema()
        knowledge = KnowledgeService(db, clock, RoleMap())
        entry = await knowledge.add(title="DiskFull on db", body="grow the WAL volume")
        assert [h.id for h in await knowledge.search("disk wal")] == [entry]
    finally:
        await db.dispose()


async def test_missing_not_null_column_is_refused_by_name(url: str):
    clock = FakeClock()
    await make_old_database(url, clock, without=(*NEW_PROPOSAL_COLUMNS, "root_cause"))
    db = Database(url)
    try:
        with pytest.raises(RuntimeError, match=r"proposal\W.*root_cause") as caught:
            await db.create_schema()
        assert "migration" in str(caught.value)
        # nothing was added half-way: the nullable columns are still missing too
        assert not await columns_of(db, "proposal") & set(NEW_PROPOSAL_COLUMNS)
    finally:
        await db.dispose()
