"""PlaybookService against SQLite and PostgreSQL: syncing the file into the table, matching incidents,
and the /playbooks listing."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from services.playbooks import PlaybookService, PlaybookSpec, SyncResult, parse_playbooks
from services.ports import IncidentFacts
from storage.db import Database
from storage.tables import Playbook, PlaybookSource
from tests.fakes.chat import FakeClock
from tests.harness import scratch_postgres_database

CRASHLOOP = """
  - name: api-crashloop
    description: Restart the API when its pods crash-loop
    root_cause: "{workload} in {namespace} is crash-looping"
    category: crash
    risk: medium
    symptoms:
      alertnames: [KubePodCrashLooping]
      services: [api]
      severities: [critical]
      matchers: ['namespace="prod"']
    steps:
      - name: restart
        command: kubectl -n {namespace} rollout restart {workload}
      - name: wait
        command: kubectl -n {namespace} rollout status {workload} --timeout=120s
"""
DISK = """
  - name: disk-cleanup
    description: Restart the writer so it releases deleted log files
    symptoms:
      alertnames: [DiskFull]
    steps:
      - command: kubectl -n {namespace} rollout restart deployment/{service}
"""
GENERIC_CRASH = """
  - name: any-crashloop
    description: Delete the crash-looping pod
    risk: low
    symptoms:
      alertnames: ["Kube*Crash*"]
    steps:
      - command: kubectl -n {namespace} delete pod {pod}
"""


def specs(*items: str) -> list[PlaybookSpec]:
    return parse_playbooks("playbooks:\n" + "".join(items), "test.yaml")


def facts(alertname: str = "KubePodCrashLooping", *, service: str = "api", **labels: str) -> IncidentFacts:
    return IncidentFacts(
        incident_id=7,
        alertname=alertname,
        severity="critical",
        service=service,
        namespace="prod",
        labels={"deployment": service, "pod": f"{service}-5f6d-abc", **labels},
        annotations={},
    )


@dataclass
class Env:
    db: Database
    clock: FakeClock
    playbooks: PlaybookService

    async def rows(self) -> dict[str, Playbook]:
        async with self.db.read() as tx:
            return {p.name: p for p in await tx.playbooks.all()}

    async def set_record(self, name: str, executions: int, successes: int) -> None:
        async with self.db.write() as tx:
            row = await tx.playbooks.by_name(name)
            assert row is not None
            row.executions, row.successes = executions, successes

    async def add_learned(self, name: str, alertnames: list[str], command: str) -> Playbook:
        async with self.db.write() as tx:
            return await tx.playbooks.add(
                Playbook(
                    name=name,
                    description="learned from INC-3",
                    symptoms={"alertnames": alertnames},
                    steps=[{"name": "fix", "command": command}],
                    category="crash",
                    risk="low",
                    executions=4,
                    successes=4,
                    source=PlaybookSource.LEARNED,
                    enabled=True,
                    created_at=self.clock(),
                    updated_at=self.clock(),
                )
            )


@pytest.fixture(params=["sqlite", "postgresql"])
async def env(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Env]:
    if request.param == "sqlite":
        url, dropper = f"sqlite+aiosqlite:///{tmp_path}/playbooks.db", None
    else:
        url, dropper = await scratch_postgres_database()
    db = Database(url)
    try:
        await db.create_schema()
        clock = FakeClock()
        yield Env(db, clock, PlaybookService(db, clock))
    finally:
        await db.dispose()
        if dropper is not None:
            await dropper()


# --- sync -----------------------------------------------------------------------------------------------


async def test_sync_adds_the_file_playbooks(env: Env) -> None:
    result = await env.playbooks.sync(specs(CRASHLOOP, DISK))
    assert result == SyncResult(added=2, updated=0, disabled=0, unchanged=0)
    assert str(result) == "added=2 updated=0 disabled=0 unchanged=0"
    rows = await env.rows()
    crash = rows["api-crashloop"]
    assert (crash.source, crash.enabled, crash.executions, crash.successes) == ("file", True, 0, 0)
    assert crash.symptoms == {
        "alertnames": ["KubePodCrashLooping"],
        "services": ["api"],
        "severities": ["critical"],
        "matchers": ['namespace="prod"'],
    }
    assert crash.steps == [
        {"name": "restart", "command": "kubectl -n {namespace} rollout restart {workload}"},
        {"name": "wait", "command": "kubectl -n {namespace} rollout status {workload} --timeout=120s"},
    ]
    assert (crash.category, crash.risk) == ("crash", "medium")
    assert crash.root_cause == "{workload} in {namespace} is crash-looping"
    assert crash.created_at == crash.updated_at == env.clock()
    assert rows["disk-cleanup"].steps == [
        {"name": "step-1", "command": "kubectl -n {namespace} rollout restart deployment/{service}"}
    ]


async def test_sync_again_updates_keeps_counters_and_disables_what_left(env: Env) -> None:
    await env.playbooks.sync(specs(CRASHLOOP, DISK))
    await env.set_record("api-crashloop", executions=10, successes=9)
    await env.set_record("disk-cleanup", executions=3, successes=3)
    created = env.clock()
    env.clock.advance(hours=1)

    unchanged = await env.playbooks.sync(specs(CRASHLOOP, DISK))
    assert unchanged == SyncResult(added=0, updated=0, disabled=0, unchanged=2)
    assert (await env.rows())["api-crashloop"].updated_at == created  # nothing changed, nothing written

    changed = CRASHLOOP.replace("risk: medium", "risk: high").replace("--timeout=120s", "--timeout=300s")
    result = await env.playbooks.sync(specs(changed, GENERIC_CRASH))
    assert result == SyncResult(added=1, updated=1, disabled=1, unchanged=0)
    rows = await env.rows()
    crash = rows["api-crashloop"]
    assert crash.risk == "high" and crash.steps[1]["command"].endswith("--timeout=300s")
    assert (crash.executions, crash.successes, crash.enabled) == (10, 9, True)
    assert crash.created_at == created and crash.updated_at == env.clock()
    disk = rows["disk-cleanup"]
    assert (disk.enabled, disk.executions, disk.successes) == (False, 3, 3)  # kept, with its history
    assert rows["any-crashloop"].enabled

    # an empty file disables every file playbook; putting one back enables it again, counters intact
    assert await env.playbooks.sync([]) == SyncResult(disabled=2)
    assert not any(r.enabled for r in (await env.rows()).values())
    assert await env.playbooks.sync(specs(DISK)) == SyncResult(updated=1)
    disk = (await env.rows())["disk-cleanup"]
    assert (disk.enabled, disk.executions, disk.successes) == (True, 3, 3)


async def test_sync_never_touches_learned_playbooks(env: Env) -> None:
    learned = await env.add_learned("learned-fix", ["KubePodCrashLooping"], "kubectl -n {namespace} delete pod {pod}")
    clash = await env.add_learned("disk-cleanup", ["DiskFull"], "kubectl -n {namespace} rollout restart {workload}")
    result = await env.playbooks.sync(specs(CRASHLOOP, DISK))
    assert result == SyncResult(added=1, conflicts=("disk-cleanup",))
    assert await env.playbooks.sync([]) == SyncResult(disabled=1)
    rows = await env.rows()
    for before in (learned, clash):
        after = rows[before.name]
        assert (after.source, after.enabled, after.steps, after.updated_at) == (
            "learned", True, before.steps, before.updated_at
        )
        assert (after.executions, after.successes, after.description) == (4, 4, "learned from INC-3")


# --- match ----------------------------------------------------------------------------------------------


async def test_match_proposes_the_rendered_steps(env: Env) -> None:
    await env.playbooks.sync(specs(CRASHLOOP, DISK))
    draft = await env.playbooks.match(facts())
    assert draft is not None
    rows = await env.rows()
    assert draft.source == "playbook"
    assert (draft.playbook_id, draft.playbook_name) == (rows["api-crashloop"].id, "api-crashloop")
    assert draft.command == "kubectl -n prod rollout restart deployment/api"
    assert draft.steps == ("kubectl -n prod rollout status deployment/api --timeout=120s",)
    assert draft.root_cause == "deployment/api in prod is crash-looping"
    assert (draft.risk, draft.category) == ("medium", "crash")
    assert draft.reasoning == "Playbook 'api-crashloop' matched with similarity 1.00; no executions yet"
    assert draft.confidence is None and draft.model is None

    disk = await env.playbooks.match(facts("DiskFull", service="log-writer"))
    assert disk is not None and disk.playbook_name == "disk-cleanup"
    assert disk.root_cause == "matches playbook disk-cleanup"  # no root_cause in the file
    assert disk.command == "kubectl -n prod rollout restart deployment/log-writer" and disk.steps == ()


async def test_match_needs_the_threshold(env: Env) -> None:
    await env.playbooks.sync(specs(CRASHLOOP))
    assert await env.playbooks.match(facts(service="billing")) is None  # 0.80: all but the service
    assert await env.playbooks.match(facts("KubePodCrashing")) is None  # a near name is not enough here
    assert await env.playbooks.match(facts("NodeDown")) is None


async def test_match_gates_on_the_success_rate(env: Env) -> None:
    await env.playbooks.sync(specs(CRASHLOOP))
    await env.set_record("api-crashloop", executions=10, successes=7)
    assert await env.playbooks.match(facts()) is None
    await env.set_record("api-crashloop", executions=10, successes=9)
    draft = await env.playbooks.match(facts())
    assert draft is not None and draft.playbook_name == "api-crashloop"
    assert draft.reasoning == "Playbook 'api-crashloop' matched with similarity 1.00; success rate 9/10"


async def test_match_picks_the_best_of_several(env: Env) -> None:
    # both match KubePodCrashLooping fully; the glob one is older (lower id)
    await env.playbooks.sync(specs(GENERIC_CRASH, CRASHLOOP))
    draft = await env.playbooks.match(facts())
    assert draft is not None and draft.playbook_name == "any-crashloop"  # tie: equal successes, lower id
    await env.set_record("api-crashloop", executions=5, successes=5)
    draft = await env.playbooks.match(facts())
    assert draft is not None and draft.playbook_name == "api-crashloop"  # tie: more successes
    # a higher similarity beats a better record: any-crashloop now fits only 0.86 (one matcher of two fails)
    await env.set_record("any-crashloop", executions=50, successes=50)
    narrower = GENERIC_CRASH.replace(
        'alertnames: ["Kube*Crash*"]',
        'alertnames: ["Kube*Crash*"]\n      services: [api]\n      matchers: [namespace=prod, zone=eu]',
    )
    await env.playbooks.sync(specs(narrower, CRASHLOOP))
    draft = await env.playbooks.match(facts())
    assert draft is not None and draft.playbook_name == "api-crashloop"
    draft = await env.playbooks.match(facts(service="web", app="web"))  # api-crashloop 0.80, any-crashloop 0.64
    assert draft is None
    draft = await env.playbooks.match(facts(zone="eu", service="web"))  # any-crashloop: 0.45+0.25 of 0.9
    assert draft is None
    draft = await env.playbooks.match(facts(zone="eu"))  # both 1.0: the better record wins
    assert draft is not None and draft.playbook_name == "any-crashloop"
    assert draft.reasoning == "Playbook 'any-crashloop' matched with similarity 1.00; success rate 50/50"


async def test_match_skips_disabled_and_unrenderable_playbooks(env: Env) -> None:
    await env.playbooks.sync(specs(GENERIC_CRASH, CRASHLOOP))
    no_pod = IncidentFacts(7, "KubePodCrashLooping", "critical", "api", "prod", {"deployment": "api"}, {})
    draft = await env.playbooks.match(no_pod)  # any-crashloop needs {pod}
    assert draft is not None and draft.playbook_name == "api-crashloop"
    await env.playbooks.sync(specs(GENERIC_CRASH))  # api-crashloop disabled
    assert await env.playbooks.match(no_pod) is None


async def test_match_uses_learned_playbooks_and_ignores_malformed_rows(env: Env) -> None:
    await env.add_learned("learned-fix", ["KubePodCrashLooping"], "kubectl -n {namespace} delete pod {pod}")
    async with env.db.write() as tx:
        await tx.playbooks.add(
            Playbook(
                name="broken",
                symptoms={"alertnames": "not-a-list", "matchers": ["x=~("]},
                steps=[{"command": "kubectl get pods"}],
                source=PlaybookSource.LEARNED,
                created_at=env.clock(),
                updated_at=env.clock(),
            )
        )
    draft = await env.playbooks.match(facts(pod="api-1; reboot"))
    assert draft is not None and draft.playbook_name == "learned-fix"
    assert draft.command == "kubectl -n prod delete pod api-1-reboot"
    assert draft.reasoning.endswith("success rate 4/4")


# --- listing --------------------------------------------------------------------------------------------


async def test_listing_shows_every_playbook_enabled_first(env: Env) -> None:
    assert await env.playbooks.listing() == []
    await env.playbooks.sync(specs(DISK, CRASHLOOP, GENERIC_CRASH))
    await env.add_learned("learned-fix", ["A", "B", "C", "D"], "kubectl -n {namespace} delete pod {pod}")
    await env.set_record("api-crashloop", executions=4, successes=3)
    await env.playbooks.sync(specs(CRASHLOOP, GENERIC_CRASH))  # disk-cleanup disabled
    items = await env.playbooks.listing()
    assert [(i["name"], i["enabled"]) for i in items] == [
        ("any-crashloop", True),
        ("api-crashloop", True),
        ("learned-fix", True),
        ("disk-cleanup", False),
    ]
    crash = items[1]
    assert {k: v for k, v in crash.items() if k != "id"} == {
        "name": "api-crashloop",
        "description": "Restart the API when its pods crash-loop",
        "source": "file",
        "enabled": True,
        "executions": 4,
        "successes": 3,
        "success_rate": 0.75,
        "alertnames": ["KubePodCrashLooping"],
        "steps": 2,
    }
    assert items[0]["success_rate"] is None
    assert items[2]["alertnames"] == ["A", "B", "C"] and items[2]["source"] == "learned"
    json.dumps(items)  # plain JSON values only
    for item in items:
        assert all(v is None or type(v) in (str, int, float, bool, list) for v in item.values())
