"""Postmortems: an incident that lasted at least 10 minutes gets one when it resolves, threaded under its card
and sent to the report chats, once whatever replicas do; its facts (timeline, actions with approvers and
retries) with or without an AI narrative; and its delivery: three attempts with backoff, then a short
fallback message. Time is the injected clock; the retry waits are recorded, not slept."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from bot.render import Renderer
from services.ai import AIAdvisor
from services.errors import IncidentNotFound, ModelUnavailable, PermanentDeliveryError, TransientDeliveryError
from services.metrics import Metrics
from services.ports import ChatTarget
from services.postmortems import CLAIM_TTL
from storage.db import Database
from storage.tables import OutboxState, PostmortemState
from tests.fakes.kubectl import FakeKubectl
from tests.fakes.model import FakeModel
from tests.harness import APPROVER, STRANGER, VIEWER
from tests.service.conftest import CARD_CHAT, World
from tests.service.helpers import (
    REPORT_CHAT,
    Said,
    am_payload,
    ingest,
    messages_of,
    scheduled,
    with_postmortems,
)
from tests.service.test_execution import Sleeps, build, real

NOW = datetime(2026, 11, 24, 2, 0, tzinfo=UTC)
DM = ChatTarget("telegram", "4242")
RESTART = "kubectl -n prod rollout restart deployment/api"


@pytest.fixture
def kubectl(tmp_path: Path) -> FakeKubectl:
    return FakeKubectl(tmp_path / "kubectl").install()


@pytest.fixture(autouse=True)
def _postmortems_after_ten_minutes(world: World) -> None:
    with_postmortems(world, timedelta(minutes=10))
    world.clock.now = NOW


async def fire(world: World, alertname: str = "KubePodCrashLooping", service: str = "api") -> int:
    """A firing incident analysed by the rules, its card delivered."""
    [incident_id] = (await ingest(world, am_payload(alertname, service=service, starts_at=NOW))).incidents_opened
    await world.analysis.run_pending()
    await world.settle()
    return incident_id


async def resolve(world: World, after: timedelta, alertname: str = "KubePodCrashLooping", service: str = "api") -> None:
    world.clock.now = NOW + after
    payload = am_payload(alertname, service=service, status="resolved", starts_at=NOW, ends_at=world.clock())
    assert (await ingest(world, payload)).incidents_resolved


async def postmortem_state(world: World, incident_id: int) -> str | None:
    async with world.db.read() as tx:
        row = await tx.postmortems.of_incident(incident_id)
    return None if row is None else row.state


def card_message_id(world: World, incident_id: int) -> str:
    return next(c.message_id for c in world.gateway.cards(edited=False) if c.card and c.card.incident_id == incident_id)


class Prompts:
    """Prompt templates for the AIAdvisor: the name and the data, as text."""

    def prompt(self, name: str, **context: Any) -> str:
        return f"{name}: {context}"


def advisor(*script: Any) -> tuple[AIAdvisor, FakeModel]:
    model = FakeModel(*script, name="fake-model")
    return AIAdvisor(model, Prompts(), Metrics()), model


# --- when one is due -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("lasted", "due"), [(timedelta(minutes=9, seconds=59), False), (timedelta(minutes=10), True),
                                             (timedelta(hours=3), True)])
async def test_postmortem_is_due_only_for_incidents_that_lasted_ten_minutes(
    world: World, lasted: timedelta, due: bool
) -> None:
    sch = scheduled(world)
    incident_id = await fire(world)
    await resolve(world, lasted)

    assert await postmortem_state(world, incident_id) == ("due" if due else None)
    assert await sch.postmortems.send_due() == (1 if due else 0)
    assert len(await messages_of(world.db, "postmortem")) == (2 if due else 0)


async def test_postmortem_is_threaded_under_the_card_and_sent_to_the_report_chats_once(world: World) -> None:
    sch = scheduled(world)
    incident_id = await fire(world)
    await resolve(world, timedelta(minutes=25))
    world.clock.advance(seconds=10)  # the job's next tick

    assert await sch.postmortems.send_due() == 1
    assert await sch.postmortems.send_due() == 0

    threaded, report = await messages_of(world.db, "postmortem")
    assert (threaded.chat_id, threaded.incident_id, threaded.reply_to_card) == (CARD_CHAT.chat_id, incident_id, True)
    assert (report.chat_id, report.incident_id, report.reply_to_card) == (REPORT_CHAT.chat_id, incident_id, False)
    assert [r.dedup_key for r in (threaded, report)] == [
        f"postmortem:{incident_id}:telegram:-100", f"postmortem:{incident_id}:telegram:-200"
    ]
    for row in (threaded, report):
        assert row.max_attempts == 3
        assert row.fallback == {"template": "postmortem_fallback", "context": {"ref": f"INC-{incident_id}", "minutes": 25}}
    assert threaded.context == report.context and threaded.context["minutes"] == 25
    assert await postmortem_state(world, incident_id) == PostmortemState.SENT

    await world.settle()
    sent = {m.chat_id: m.reply_to for m in world.gateway.messages("postmortem")}
    assert sent == {"-100": card_message_id(world, incident_id), "-200": None}
    async with world.db.read() as tx:
        assert [e.kind for e in await tx.timeline.of_incident(incident_id)].count("postmortem") == 1


async def test_postmortem_by_two_replicas_is_sent_once(world: World) -> None:
    other_db = Database(world.db.url)
    try:
        a, b = scheduled(world, owner="replica-a"), scheduled(world, owner="replica-b", db=other_db)
        incidents = [await fire(world, "KubePodCrashLooping", service) for service in ("api", "web", "db")]
        for service in ("api", "web", "db"):
            await resolve(world, timedelta(minutes=15), "KubePodCrashLooping", service)

        sent = await asyncio.gather(a.postmortems.send_due(), b.postmortems.send_due())
        sent += await asyncio.gather(b.postmortems.send_due(), a.postmortems.send_due())

        assert sum(sent) == 3
        rows = await messages_of(world.db, "postmortem")
        assert sorted((r.incident_id, r.chat_id) for r in rows) == sorted(
            (i, chat) for i in incidents for chat in ("-100", "-200")
        )
    finally:
        await other_db.dispose()


async def test_postmortem_claimed_by_a_dead_worker_is_sent_once_its_claim_is_stale(world: World) -> None:
    sch = scheduled(world)
    incident_id = await fire(world)
    await resolve(world, timedelta(minutes=15))
    async with world.db.write() as tx:
        row = await tx.postmortems.of_incident(incident_id)
        assert row is not None and row.id is not None
        assert await tx.postmortems.claim(row.id, "dead-replica", world.clock(), world.clock() - CLAIM_TTL)

    assert await sch.postmortems.send_due() == 0
    world.clock.advance(seconds=CLAIM_TTL.total_seconds() - 1)
    assert await sch.postmortems.send_due() == 0
    world.clock.advance(seconds=2)
    assert await sch.postmortems.send_due() == 1
    assert len(await messages_of(world.db, "postmortem")) == 2


def crash() -> str:
    raise RuntimeError("prompt template missing")


async def test_postmortem_that_fails_to_build_is_tried_again(world: World) -> None:
    model = FakeModel(crash, default="Recovered on the second try.")
    sch = scheduled(world, advisor=AIAdvisor(model, Prompts(), Metrics()))
    incident_id = await fire(world)
    await resolve(world, timedelta(minutes=15))

    assert await sch.postmortems.send_due() == 0  # a bug while building it: logged, its claim goes stale
    assert await postmortem_state(world, incident_id) == "due"
    world.clock.advance(seconds=CLAIM_TTL.total_seconds() + 1)
    assert await sch.postmortems.send_due() == 1
    [row, _] = await messages_of(world.db, "postmortem")
    assert row.context["narrative"] == "Recovered on the second try."


# --- what it says --------------------------------------------------------------------------------------------


async def test_postmortem_facts_have_the_timeline_actions_approvers_and_retries(
    world: World, kubectl: FakeKubectl
) -> None:
    sch = scheduled(world)
    incident_id = await fire(world)
    world.clock.now = NOW + timedelta(minutes=3)
    assert (await world.approvals.decide(incident_id=incident_id, actor=world.actor(APPROVER, "@alice"),
                                         approve=True)).ok
    kubectl.on("rollout restart", transient=1)  # the API server refused once: one retry
    sleeps = Sleeps()
    assert await build(world, real(kubectl), sleeps=sleeps).run_pending() == 1
    assert sleeps == [30]
    await resolve(world, timedelta(minutes=14))

    facts = await sch.postmortems.facts(incident_id)

    assert {k: facts[k] for k in ("ref", "title", "service", "namespace", "severity", "status", "minutes")} == {
        "ref": f"INC-{incident_id}", "title": "KubePodCrashLooping", "service": "api", "namespace": "prod",
        "severity": "critical", "status": "resolved", "minutes": 14,
    }
    assert (facts["started_at"], facts["resolved_at"]) == (NOW.isoformat(), (NOW + timedelta(minutes=14)).isoformat())
    assert (facts["alert_count"], facts["repeats"], facts["summary"]) == (1, 0, "KubePodCrashLooping on api")
    assert (facts["category"], facts["source"], facts["proposal_state"]) == ("crash", "rules", "succeeded")
    assert "crashing" in facts["root_cause"]
    [action] = facts["actions"]
    assert action["commands"] == [RESTART] and action["more_commands"] == 0
    assert (action["state"], action["dry_run"], action["auto"], action["approvers"]) == ("succeeded", False, False,
                                                                                         ["@alice"])
    assert (action["runs"], action["retries"], action["error"], action["rollback"]) == (2, 1, None, None)
    assert facts["more_actions"] == 0
    assert [e["kind"] for e in facts["events"]] == [
        "opened", "proposed", "approved", "execution_started", "execution_succeeded", "resolved", "playbook_learned"
    ]
    approved = facts["events"][2]
    assert (approved["name"], approved["at"]) == ("@alice", (NOW + timedelta(minutes=3)).isoformat())


async def test_postmortem_narrative_from_the_ai_model(world: World) -> None:
    ai, model = advisor("The api crash-looped after a bad config push; a restart fixed it.")
    sch = scheduled(world, advisor=ai)
    incident_id = await fire(world)
    await resolve(world, timedelta(minutes=12))

    assert await sch.postmortems.send_due() == 1

    [row, _] = await messages_of(world.db, "postmortem")
    assert row.context["narrative"] == "The api crash-looped after a bad config push; a restart fixed it."
    assert row.context["narrative_model"] == "fake-model"
    assert row.context["ref"] == f"INC-{incident_id}" and row.context["minutes"] == 12
    [call] = model.calls
    assert call.messages[1]["content"].startswith("postmortem: ")  # asked with the facts
    assert f"INC-{incident_id}" in call.messages[1]["content"]
    async with world.db.read() as tx:
        postmortem = await tx.postmortems.of_incident(incident_id)
    assert postmortem is not None and postmortem.model == "fake-model"


async def test_postmortem_narrative_prompt_is_the_production_template_with_the_facts(world: World) -> None:
    model = FakeModel("Short and blameless.", name="fake-model")
    sch = scheduled(world, advisor=AIAdvisor(model, Renderer(ZoneInfo("UTC")), Metrics()))
    incident_id = await fire(world)
    await resolve(world, timedelta(minutes=12))

    assert await sch.postmortems.send_due() == 1

    [call] = model.calls
    prompt = call.messages[1]["content"]
    assert "postmortem" in prompt and f'"ref": "INC-{incident_id}"' in prompt and '"minutes": 12' in prompt
    [row, _] = await messages_of(world.db, "postmortem")
    assert row.context["narrative"] == "Short and blameless."


@pytest.mark.parametrize("ai", [None, "failing"])
async def test_postmortem_without_a_narrative_has_the_facts_alone(world: World, ai: str | None) -> None:
    sch = scheduled(world, advisor=None if ai is None else advisor(ModelUnavailable("connection refused"))[0])
    incident_id = await fire(world)
    await resolve(world, timedelta(minutes=12))

    assert await sch.postmortems.send_due() == 1

    [row, _] = await messages_of(world.db, "postmortem")
    assert (row.context["narrative"], row.context["narrative_model"]) == (None, None)
    assert row.context["ref"] == f"INC-{incident_id}" and row.context["events"]


async def test_postmortem_on_demand(world: World) -> None:
    sch = scheduled(world)
    incident_id = await fire(world)
    world.clock.advance(minutes=7)
    said = Said()

    await sch.postmortems.on_demand(world.actor(VIEWER, chat=DM), incident_id, said)
    await sch.postmortems.on_demand(world.actor(STRANGER, chat=DM), incident_id, said)

    (template, context), (refused, reason) = said
    assert template == "postmortem" and context["status"] == "firing" and context["minutes"] == 7
    assert refused == "action_result" and reason["outcome"] == "not_allowed" and reason["ref"] == f"INC-{incident_id}"
    with pytest.raises(IncidentNotFound):
        await sch.postmortems.on_demand(world.actor(VIEWER, chat=DM), 999, said)
    assert await messages_of(world.db, "postmortem") == []  # answered, nothing scheduled


# --- delivery: three attempts, then the fallback ---------------------------------------------------------------


async def queued_postmortem(world: World) -> int:
    """A postmortem queued for the card chat only, with everything else already delivered."""
    sch = scheduled(world, targets=(CARD_CHAT,))
    incident_id = await fire(world)
    await resolve(world, timedelta(minutes=15))
    await world.settle()
    assert world.gateway.messages("resolved")  # the resolution went out; only the postmortem is left
    assert await sch.postmortems.send_due() == 1
    return incident_id


async def send_pass(world: World) -> None:
    """One pass of the sender, a pacing window after the previous one (the chat may send again)."""
    world.mono[0] += 10
    await world.sender.pump()


async def test_postmortem_delivery_fails_three_times_with_backoff_then_the_fallback_is_sent(world: World) -> None:
    incident_id = await queued_postmortem(world)
    world.gateway.failures.extend(TransientDeliveryError("502 Bad Gateway") for _ in range(3))

    waits = []
    for _ in range(2):
        await send_pass(world)
        [row] = await messages_of(world.db, "postmortem")
        assert row.state == OutboxState.PENDING and row.last_error == "502 Bad Gateway"
        waits.append((row.not_before - world.clock()).total_seconds())
        world.clock.advance(seconds=waits[-1])
    await send_pass(world)  # the third and last attempt

    assert waits == [1.0, 2.0]  # exponential backoff
    [row] = await messages_of(world.db, "postmortem")
    assert (row.state, row.attempts, row.last_error) == (OutboxState.FAILED, 3, "502 Bad Gateway")
    [fallback] = await messages_of(world.db, "postmortem_fallback")
    assert fallback.context == {"ref": f"INC-{incident_id}", "minutes": 15, "error": "502 Bad Gateway"}
    assert (fallback.reply_to_card, fallback.max_attempts) == (True, None)  # the fallback is never given up
    assert fallback.dedup_key == f"postmortem:{incident_id}:telegram:-100:fallback"
    await send_pass(world)
    assert world.gateway.messages("postmortem") == []
    [sent] = world.gateway.messages("postmortem_fallback")
    assert sent.reply_to == card_message_id(world, incident_id) and sent.context["error"] == "502 Bad Gateway"
    [fallback] = await messages_of(world.db, "postmortem_fallback")
    assert fallback.state == OutboxState.SENT


async def test_postmortem_delivered_on_the_third_attempt_needs_no_fallback(world: World) -> None:
    await queued_postmortem(world)
    world.gateway.failures.extend(TransientDeliveryError("timeout") for _ in range(2))
    for _ in range(3):
        await send_pass(world)
        world.clock.advance(seconds=5)
    assert len(world.gateway.messages("postmortem")) == 1
    [row] = await messages_of(world.db, "postmortem")
    assert (row.state, row.attempts) == (OutboxState.SENT, 3)
    assert await messages_of(world.db, "postmortem_fallback") == []


async def test_postmortem_permanent_delivery_error_sends_the_fallback_at_once(world: World) -> None:
    incident_id = await queued_postmortem(world)
    world.gateway.failures.append(PermanentDeliveryError("Bad Request: message is too long"))
    await send_pass(world)
    await send_pass(world)
    [sent] = world.gateway.messages("postmortem_fallback")
    assert sent.context == {"ref": f"INC-{incident_id}", "minutes": 15, "error": "Bad Request: message is too long"}
