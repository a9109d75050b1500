"""services/investigation.py: the past_incidents tool through PastIncidents and IncidentQueries on SQLite."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from services.investigation import PastIncidents, Toolbox
from services.policy import RemediationPolicy
from services.queries import IncidentQueries
from services.safety import NamespacePolicy
from storage.db import Database
from storage.tables import Incident
from tests.fakes.chat import FakeClock

POLICY = RemediationPolicy(
    namespaces=NamespacePolicy(), allowed_tools=frozenset({"kubectl"}), auto_enabled=False, min_confidence=0.65
)


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(f"sqlite+aiosqlite:///{tmp_path}/inv.db")
    await database.create_schema()
    try:
        yield database
    finally:
        await database.dispose()


async def test_past_incidents_lists_similar_incidents_without_the_current_one(db: Database) -> None:
    clock = FakeClock()
    ids = []
    async with db.write() as tx:
        for alertname, service in (("KubePodCrashLooping", "api"), ("DiskFull", "db"), ("KubePodCrashLooping", "api")):
            row = await tx.incidents.add(Incident(alertname=alertname, service=service, created_at=clock(),
                                                  updated_at=clock()))
            ids.append(row.id)
    box = Toolbox(policy=POLICY, incidents=PastIncidents(db, IncidentQueries(db)))
    result = await box.call("past_incidents", {"alertname": "KubePodCrashLooping", "service": "api",
                                               "exclude_incident_id": ids[2]})
    assert result.ok, result.content
    assert result.excerpt.splitlines() == [line for line in result.excerpt.splitlines() if "INC-" in line]
    assert [line.split()[0] for line in result.excerpt.splitlines()] == [f"INC-{ids[0]}"]
    none = await box.call("past_incidents", {"alertname": "Nothing"})
    assert none.ok and none.excerpt == "no past incidents like this one"
