"""Group commit on ingest: webhook batches that arrive together are one transaction, with the same outcome as
if each had been written after the one before (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import copy
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from services.incidents import IncidentService
from services.ingest_model import AlertBatch, IngestResult
from services.knowledge import KnowledgeService
from services.learning import LearningService
from services.notify import Notifier, Wakeup
from services.queries import IncidentQueries
from services.roles import parse_roles
from services.sources.alertmanager import parse_alertmanager
from storage.db import Database
from storage.repos import LiveAlert
from tests.fakes.chat import FakeClock
from tests.harness import ROLES, fixture
from tests.service.conftest import CARD_CHAT, World
from tests.service.test_ingest import batch


async def together(service: IncidentService, batches: list[Any]) -> list[IngestResult]:
    return list(await asyncio.gather(*(service.ingest(b) for b in batches)))


def storm_payloads() -> list[dict[str, Any]]:
    """The real capture sequence, interleaved with another group and its repeat, then a re-fire after the
    incident resolved (a new incident for the same group)."""
    names = ["01-firing-one-alert.json", "02-firing-two-alerts.json", "01-firing-one-alert.json",
             "03-firing-one-resolved.json", "04-resolved.json", "01-firing-one-alert.json"]
    payloads = [copy.deepcopy(fixture(name)) for name in names]
    payloads[-1]["alerts"][0]["startsAt"] = "2030-01-01T00:00:00Z"
    other = copy.deepcopy(fixture("01-firing-one-alert.json"))
    other["groupKey"] = '{}:{alertname="Other"}'
    other["alerts"][0]["fingerprint"] = "00000000000000aa"
    payloads[2:2] = [other, copy.deepcopy(other)]
    return payloads


def shape(result: IngestResult) -> tuple[object, ...]:
    return (result.accepted, result.new_alerts, result.repeats, result.resolved_alerts,
            result.incidents_opened, result.incidents_resolved, result.incident_ids)


async def stored(queries: IncidentQueries, opened: int) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    alerts = await queries.api_alerts(fingerprint=None, status=None, limit=100, offset=0)
    incidents = [await queries.api_incident(i) for i in range(1, opened + 1)]
    return (
        sorted((a["fingerprint"], a["status"], a["repeat_count"], a["incident_id"]) for a in alerts["items"]),
        [(i["id"], i["status"], i["severity"], [e["kind"] for e in i["timeline"]]) for i in incidents],
    )


async def grouped_and_one_by_one(
    world: World, tmp_path: Path, payloads: list[dict[str, Any]], before: list[dict[str, Any]] = ()  # type: ignore[assignment]
) -> list[IngestResult]:
    """``before`` one by one, then the payloads as one group in ``world``; the same, one transaction each, in a
    second database. Asserts both gave the same results and stored the same incidents, alerts, repeat counts,
    states and timelines; returns the group's results."""
    for payload in before:
        await world.incidents.ingest(parse_alertmanager(payload))
    grouped = await together(world.incidents, [parse_alertmanager(p) for p in payloads])
    assert (world.incidents.committer.groups, world.incidents.committer.items) == (
        len(before) + 1, len(before) + len(payloads))
    reference = Database(f"sqlite+aiosqlite:///{tmp_path}/one-by-one.db")
    await reference.create_schema()
    try:
        clock = FakeClock()
        clock.now = world.clock.now
        one_by_one = IncidentService(reference, Notifier([CARD_CHAT], Wakeup()), clock, Wakeup(),
                                     LearningService(KnowledgeService(reference, clock, parse_roles(ROLES))))
        sequential = [await one_by_one.ingest(parse_alertmanager(p)) for p in [*before, *payloads]]
        assert one_by_one.committer.groups == len(before) + len(payloads)
        assert [shape(r) for r in grouped] == [shape(r) for r in sequential[len(before):]]
        opened = len(before) + sum(len(r.incidents_opened) for r in grouped)
        assert await stored(world.queries, opened) == await stored(IncidentQueries(reference), opened)
    finally:
        await reference.dispose()
    return grouped


async def test_a_group_has_the_outcome_of_its_batches_one_after_the_other(world: World, tmp_path: Path) -> None:
    grouped = await grouped_and_one_by_one(world, tmp_path, storm_payloads())
    # what the sequence means, spelled out: INC-1 opened, its two alerts resolved it; the other group's INC-2
    # took one alert and a repeat; the re-fire after resolution opened INC-3
    assert [r.incidents_opened for r in grouped] == [[1], [], [2], [], [], [], [], [3]]
    assert grouped[6].incidents_resolved == [1] and grouped[3].repeats == 1


def firing(group: str, *fingerprints: str, severity: str = "warning") -> dict[str, Any]:
    payload = copy.deepcopy(fixture("02-firing-two-alerts.json"))
    payload["groupKey"] = f'{{}}:{{alertname="{group}"}}'
    payload["commonLabels"] = {**payload["commonLabels"], "alertname": group, "severity": severity}
    template = payload["alerts"][0]
    payload["alerts"] = [
        {**copy.deepcopy(template), "fingerprint": fp,
         "labels": {**template["labels"], "alertname": group, "instance": fp, "severity": severity}}
        for fp in fingerprints
    ]
    return payload


async def test_a_group_of_new_incidents_is_inserted_together(world: World, tmp_path: Path) -> None:
    """Firing-only groups insert their new incidents ahead, in one flush; the outcome is still the
    one-by-one outcome: the same group twice opens once, an alert already live is a repeat, a batch that
    brings a new alert to an incident opened earlier in the group grows it."""
    payloads = [
        firing("A", "a1", "a2"), firing("B", "b1"), firing("A", "a1", "a3"), firing("Existing", "e1", "e2"),
        firing("C", "c1", severity="critical"), firing("B", "b1"), firing("D", "a1"),  # a1 is live in A: a repeat
    ]
    grouped = await grouped_and_one_by_one(world, tmp_path, payloads, before=[firing("Existing", "e1")])
    assert [r.incidents_opened for r in grouped] == [[2], [3], [], [], [4], [], []]
    assert [(r.new_alerts, r.repeats) for r in grouped] == [(2, 0), (1, 0), (1, 1), (1, 1), (1, 0), (0, 1), (0, 1)]
    assert [r.incident_ids for r in grouped] == [[2], [3], [2], [1], [4], [3], [2]]
    incidents = {i: await world.queries.api_incident(i) for i in (1, 2, 3, 4)}
    assert {i: len(body["alerts"]) for i, body in incidents.items()} == {1: 2, 2: 3, 3: 1, 4: 1}
    assert incidents[4]["severity"] == "critical"
    await world.settle()
    assert len(world.gateway.cards(edited=False)) == 4  # one card each


async def test_the_real_sequence_sent_at_once_resolves_its_incident(world: World) -> None:
    first, second, third, fourth = await together(world.incidents, [
        batch("01-firing-one-alert.json"), batch("02-firing-two-alerts.json"),
        batch("03-firing-one-resolved.json"), batch("04-resolved.json"),
    ])
    assert world.incidents.committer.groups == 1
    assert first.incidents_opened == [1] and second.new_alerts == 1 and second.repeats == 1
    assert third.resolved_alerts == 1 and fourth.incidents_resolved == [1]
    body = await world.queries.api_incident(1)
    assert body["status"] == "resolved" and [e["kind"] for e in body["timeline"]].count("opened") == 1
    await world.settle()
    assert len(world.gateway.cards(edited=False)) == 1  # one card for the incident, not one per batch


async def test_a_batch_that_fails_fails_alone(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    apply = world.incidents._apply

    async def failing(tx: Any, one: AlertBatch, *args: Any) -> IngestResult:
        if one.receiver == "broken":
            raise RuntimeError("cannot store this one")
        return await apply(tx, one, *args)

    monkeypatch.setattr(world.incidents, "_apply", failing)
    good = batch("01-firing-one-alert.json")
    other = copy.deepcopy(fixture("01-firing-one-alert.json"))
    other["groupKey"] = '{}:{alertname="Other"}'
    other["alerts"][0]["fingerprint"] = "00000000000000aa"
    results = await asyncio.gather(
        world.incidents.ingest(good), world.incidents.ingest(batch("01-firing-one-alert.json", receiver="broken")),
        world.incidents.ingest(parse_alertmanager(other)), return_exceptions=True,
    )
    assert isinstance(results[1], RuntimeError)
    assert isinstance(results[0], IngestResult) and isinstance(results[2], IngestResult)
    assert results[0].new_alerts == 1 and results[2].new_alerts == 1
    alerts = await world.queries.api_alerts(fingerprint=None, status=None, limit=10, offset=0)
    assert alerts["total"] == 2  # the broken batch stored nothing, the others are stored once


async def test_a_group_inserts_its_new_rows_in_one_statement_per_table(world: World) -> None:
    statements: list[str] = []
    event.listen(world.db.engine.sync_engine, "before_cursor_execute",
                 lambda _c, _cur, sql, *_rest: statements.append(sql.split("(")[0].strip()))
    results = await together(world.incidents, [parse_alertmanager(firing(f"G{i}", f"g{i}a", f"g{i}b")) for i in range(6)])
    assert [r.incidents_opened for r in results] == [[1], [2], [3], [4], [5], [6]]
    inserts = [s for s in statements if s.startswith("INSERT")]
    # six incidents, twelve alerts, six cards and six timeline events: one statement for each table
    assert sorted(inserts) == ["INSERT INTO alert", "INSERT INTO incident", "INSERT INTO outbox",
                               "INSERT INTO timelineevent"]
    body = await world.queries.api_incident(4)
    assert sorted(a["fingerprint"] for a in body["alerts"]) == ["g3a", "g3b"]  # each row got its own incident's id


async def test_a_stored_alert_takes_what_changed_in_a_later_group(world: World) -> None:
    first = fixture("01-firing-one-alert.json")
    await world.incidents.ingest(parse_alertmanager(first))
    changed = copy.deepcopy(first)
    changed["alerts"][0]["labels"]["pod"] = "api-7d9f-new"  # same fingerprint, new labels and annotations
    changed["alerts"][0]["annotations"]["summary"] = "still down"
    same = copy.deepcopy(changed)
    results = await together(world.incidents, [parse_alertmanager(changed), parse_alertmanager(same)])
    assert [r.repeats for r in results] == [1, 1]
    async with world.db.read() as tx:
        (alert,) = await tx.alerts.of_incident(1)
    assert (alert.labels["pod"], alert.annotations["summary"], alert.repeat_count) == ("api-7d9f-new", "still down", 2)
    assert alert.labels == changed["alerts"][0]["labels"]


def test_a_live_alert_records_its_changes_and_refuses_other_fields() -> None:
    live = LiveAlert(7, 1, "firing", None, None, {"a": "1"}, {})
    live.status = "resolved"
    live.labels = {"a": "2"}
    assert live.changed == {"status": "resolved", "labels": {"a": "2"}}
    with pytest.raises(AttributeError):
        live.incident_id = 2  # type: ignore[misc]
