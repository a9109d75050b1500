"""Telegram templates through bot/render.py and the views of services/views.py: escaping, the 4096-character
limit after entity parsing, card actions per state, and a plausible context for every template."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from bot.render import TELEGRAM_TEXT_LIMIT, TEMPLATES_DIR, Renderer, html_to_text, telegram_visible_length
from services.actions import ActionResult, Outcome
from services.chat import audit_view, result_context
from services.execution import commands_context
from services.failures import ANALYSIS_MAX, COMMANDS_SHOWN, DEFAULT_TITLE, MENTIONS_MAX
from services.languages import LanguageChange
from services.playbooks import STEPS_MAX
from services.ports import CardAction
from services.queries import _execution_json, _history_item, evidence_view, vote_view
from services.storm import FirstCard, StormPlan, digest_context, plan_storm
from services.views import (
    CARD_LIMITS,
    CARD_MAX_STEPS,
    DETAIL_MAX_LABELS,
    DETAIL_MAX_PAGES,
    build_card,
    card_actions,
    clip,
    detail_pages,
    priority_of,
    to_context,
)
from storage.tables import (
    Alert,
    Execution,
    ExecutionAttempt,
    ExecutionState,
    Incident,
    IncidentStatus,
    Proposal,
    ProposalState,
)
from tests.fakes.botapi import EntityParseError, parse_telegram_html
from tests.unit.test_render_schedule import SCHEDULE_PLAUSIBLE

CREATED = datetime(2026, 11, 24, 0, 30, tzinfo=UTC)  # 08:30 in Asia/Taipei
HOSTILE = '<placeholder> & "quotes" </b> \'apos\' <code>x</code> &amp;'


@pytest.fixture
def renderer() -> Renderer:
    return Renderer(ZoneInfo("Asia/Taipei"))


def make_incident(**overrides: Any) -> Incident:
    values: dict[str, Any] = {
        "id": 42,
        "status": IncidentStatus.FIRING,
        "alertname": "HighErrorRate",
        "title": "HighErrorRate",
        "severity": "critical",
        "service": "checkout",
        "namespace": "shop",
        "created_at": CREATED,
        "updated_at": CREATED,
        "needs_analysis": False,
    }
    values.update(overrides)
    return Incident(**values)


def make_alert(index: int = 0, **overrides: Any) -> Alert:
    values: dict[str, Any] = {
        "id": index + 1,
        "incident_id": 42,
        "fingerprint": f"fp{index:04d}",
        "status": "firing",
        "alertname": "HighErrorRate",
        "severity": "critical",
        "labels": {"alertname": "HighErrorRate", "service": "checkout", "instance": f"pod-{index}"},
        "annotations": {"summary": "Error rate above 5%"},
        "starts_at": CREATED,
        "first_seen": CREATED,
        "last_seen": CREATED,
    }
    values.update(overrides)
    return Alert(**values)


def make_proposal(**overrides: Any) -> Proposal:
    values: dict[str, Any] = {
        "id": 7,
        "incident_id": 42,
        "state": ProposalState.PENDING,
        "source": "rules",
        "category": "error_rate",
        "root_cause": "error rate spike on deployment/checkout in shop",
        "command": "kubectl -n shop rollout undo deployment/checkout",
        "risk": "medium",
        "reasoning": "Rule 'error_rate' matched alert HighErrorRate",
        "created_at": CREATED,
    }
    values.update(overrides)
    return Proposal(**values)


def make_execution(**overrides: Any) -> Execution:
    """The run of make_proposal()'s proposal (id 7): started 5 minutes after CREATED, finished 2 minutes later."""
    values: dict[str, Any] = {
        "id": 5,
        "proposal_id": 7,
        "incident_id": 42,
        "state": ExecutionState.SUCCEEDED,
        "executor": "kubectl",
        "dry_run": False,
        "auto": False,
        "requested_by": "alertpilot",
        "approvers": ["@alice"],
        "commands": ["kubectl -n shop rollout undo deployment/checkout"],
        "owner": "exec-test",
        "heartbeat_at": CREATED + timedelta(minutes=7),
        "started_at": CREATED + timedelta(minutes=5),
        "finished_at": CREATED + timedelta(minutes=7),
        "attempts": 1,
    }
    values.update(overrides)
    return Execution(**values)


def checked(markup: str) -> str:
    """Assert the markup is valid Telegram HTML within the limit; return its plain text."""
    plain, _ = parse_telegram_html(markup)  # raises EntityParseError on invalid HTML
    assert len(plain) <= TELEGRAM_TEXT_LIMIT
    assert telegram_visible_length(markup) == len(plain)
    return plain


def render_card(
    renderer: Renderer,
    incident: Incident,
    alerts: list[Alert],
    proposal: Proposal | None,
    execution: Execution | None = None,
) -> str:
    return renderer.render("telegram/card.html.j2", card=build_card(incident, alerts, proposal, execution=execution))


# --- the fake's parser really rejects what Telegram rejects ------------------------------------


@pytest.mark.parametrize("bad", ["a < b", "a & b", "<b>open", "<div>x</div>", "&nbsp;", "<b><i>x</b></i>"])
def test_render_parse_telegram_html_rejects_invalid_markup(bad: str) -> None:
    with pytest.raises(EntityParseError):
        parse_telegram_html(bad)


# --- (a) escaping -----------------------------------------------------------------------------


def test_render_card_escapes_every_dynamic_value(renderer: Renderer) -> None:
    incident = make_incident(alertname=HOSTILE, service=HOSTILE, namespace=HOSTILE, severity="critical")
    alerts = [make_alert(annotations={"summary": "summary " + HOSTILE})]
    proposal = make_proposal(
        root_cause="cause " + HOSTILE,
        command="kubectl " + HOSTILE,
        reasoning="why " + HOSTILE,
        risk="risk " + HOSTILE,
    )
    markup = render_card(renderer, incident, alerts, proposal)

    assert "&lt;placeholder&gt;" in markup
    assert "&amp; " in markup
    assert "&amp;amp;" in markup
    assert "<placeholder>" not in markup
    assert "&lt;/b&gt;" in markup
    assert "&#34;quotes&#34;" in markup or "&quot;quotes&quot;" in markup
    assert '"quotes"' not in markup
    # only the template's own tags are markup: 4 bold labels + the title, one code, one italic (summary) + source
    assert markup.count("<b>") == markup.count("</b>") == 5
    assert markup.count("<code>") == markup.count("</code>") == 1
    plain = checked(markup)
    for text in (HOSTILE, "summary " + HOSTILE, "cause " + HOSTILE, "kubectl " + HOSTILE, "why " + HOSTILE):
        assert text in plain


def test_render_card_escapes_rejection_reason_and_decider(renderer: Renderer) -> None:
    proposal = make_proposal(
        state=ProposalState.REJECTED,
        decided_by_name="<b>Eve</b> & co",
        decided_at=CREATED,
        decision_reason="no </code> way <script>",
    )
    markup = render_card(renderer, make_incident(), [make_alert()], proposal)
    assert "&lt;b&gt;Eve&lt;/b&gt; &amp; co" in markup
    plain = checked(markup)
    assert "Rejected by <b>Eve</b> & co" in plain
    assert "no </code> way <script>" in plain


def test_render_status_template_escapes_card_context(renderer: Renderer) -> None:
    card = build_card(make_incident(alertname=HOSTILE), [make_alert()], make_proposal(command=HOSTILE))
    markup = renderer.render("telegram/status.html.j2", card=to_context(card))
    plain = checked(markup)
    assert HOSTILE in plain
    assert "since 08:30" in plain


def test_render_card_and_status_agree(renderer: Renderer) -> None:
    card = build_card(make_incident(), [make_alert(), make_alert(1, status="resolved")], make_proposal())
    assert renderer.render("telegram/card.html.j2", card=card) == renderer.render(
        "telegram/status.html.j2", card=to_context(card)
    )


# --- (b) huge fields: truncate fields before rendering, never the markup -----------------------

HUGE = 50_000


@pytest.mark.parametrize("state", [ProposalState.PENDING, ProposalState.APPROVED, ProposalState.REJECTED])
@pytest.mark.parametrize("filler", ["x", "<&>", "é", " word"])
def test_render_card_with_huge_fields_stays_within_limit(renderer: Renderer, state: str, filler: str) -> None:
    huge = (filler * HUGE)[:HUGE]
    incident = make_incident(alertname=huge, title=huge, service=huge, namespace=huge, severity=huge)
    alerts = [make_alert(annotations={"summary": huge, "description": huge})]
    proposal = make_proposal(
        state=state,
        model=huge,
        root_cause=huge,
        command=huge,
        reasoning=huge,
        risk=huge,
        decided_by_name=huge,
        decided_at=CREATED,
        decision_reason=huge,
        fallback_reason="timeout",
        playbook_name=huge,
        steps=[huge] * 12,
    )
    card = build_card(incident, alerts, proposal)
    markup = renderer.render("telegram/card.html.j2", card=card)

    plain = checked(markup)
    assert telegram_visible_length(markup) <= TELEGRAM_TEXT_LIMIT
    # the markup itself is intact: the card's own entities are all there
    _, entities = parse_telegram_html(markup)
    assert {"bold", "code"} <= {e["type"] for e in entities}
    # fields were clipped with an ellipsis, not dropped
    assert "…" in plain
    assert card.title.endswith("…") and len(card.title) == CARD_LIMITS["title"]
    assert card.proposal is not None
    assert len(card.proposal.command) == CARD_LIMITS["command"]
    # the status answer (JSON context) obeys the same bound
    checked(renderer.render("telegram/status.html.j2", card=to_context(card)))


def test_render_card_field_budget_fits_the_limit() -> None:
    # the frame is about 400 characters; the sum of all field budgets must leave room for it
    steps = CARD_LIMITS["step"] * (CARD_MAX_STEPS - 1) + 12 * CARD_MAX_STEPS  # each step line has a frame
    # a card shows either why its proposal is blocked or how its execution ended, never both
    exclusive = min(CARD_LIMITS["blocked_reason"], CARD_LIMITS["execution_error"] + CARD_LIMITS["rollback"])
    assert sum(CARD_LIMITS.values()) - exclusive + steps + 20 + 400 + 60 < TELEGRAM_TEXT_LIMIT


def test_views_clip() -> None:
    assert clip(None, 5) == ""
    assert clip("  abc  ", 5) == "abc"
    assert clip("abcde", 5) == "abcde"
    assert clip("abcdef", 5) == "abcd…"
    assert len(clip("x" * 50_000, 200)) == 200
    assert clip("abc   defgh", 7) == "abc…"


@pytest.mark.parametrize(
    ("severity", "priority"),
    [("critical", "P1"), ("CRITICAL", "P1"), ("page", "P1"), ("error", "P2"), ("warning", "P3"), ("info", "P4"), ("", "P3"), ("weird", "P3")],
)
def test_views_priority_of(severity: str, priority: str) -> None:
    assert priority_of(severity) == priority


# --- (c) details pages --------------------------------------------------------------------------


def render_details(renderer: Renderer, pages: list[list[dict[str, Any]]], left_out: int) -> list[str]:
    return [
        renderer.render(
            "telegram/details.html.j2",
            ref="INC-42",
            alerts=alerts,
            page=number,
            pages=len(pages),
            left_out=left_out if number == len(pages) else 0,
            incident_id=42,
        )
        for number, alerts in enumerate(pages, start=1)
    ]


def many_label_alerts(count: int, labels: int, value_len: int) -> list[Alert]:
    return [
        make_alert(
            i,
            labels={"alertname": "HighErrorRate", **{f"label_{j:02d}": f"<{i}&{j}>" + "v" * value_len for j in range(labels)}},
            annotations={"summary": "s" * value_len, "description": "<d&>" * value_len},
        )
        for i in range(count)
    ]


def test_render_details_of_200_alerts_with_40_long_labels_fit(renderer: Renderer) -> None:
    pages, left_out = detail_pages(many_label_alerts(200, 40, 500))
    for markup in render_details(renderer, pages, left_out):
        checked(markup)


def test_render_details_of_200_alerts_with_40_long_labels_are_valid_and_report_left_out(renderer: Renderer) -> None:
    alerts = many_label_alerts(200, 40, 500)
    pages, left_out = detail_pages(alerts)

    assert 1 <= len(pages) <= DETAIL_MAX_PAGES
    shown = sum(len(p) for p in pages)
    assert left_out == 200 - shown > 0
    for view in (v for page in pages for v in page):
        assert len(view["labels"]) == DETAIL_MAX_LABELS
        assert view["hidden_labels"] == 41 - DETAIL_MAX_LABELS
    rendered = render_details(renderer, pages, left_out)
    for markup in rendered:
        parse_telegram_html(markup)  # valid HTML whatever the values contain
    assert f"… {left_out} more alerts: GET /api/incidents/42" in html_to_text(rendered[-1])
    assert "more alerts" not in html_to_text(rendered[0]) or len(rendered) == 1
    assert f"(1/{len(pages)})" in rendered[0]


def test_render_details_of_200_small_alerts_fit_and_report_left_out(renderer: Renderer) -> None:
    alerts = many_label_alerts(200, 6, 30)
    pages, left_out = detail_pages(alerts)

    assert len(pages) == DETAIL_MAX_PAGES
    assert all(len(p) > 1 for p in pages)
    assert left_out == 200 - sum(len(p) for p in pages) > 0
    rendered = render_details(renderer, pages, left_out)
    for number, markup in enumerate(rendered, start=1):
        plain = checked(markup)
        assert f"INC-42 · alerts ({number}/{len(pages)})" in plain
        assert "<0&0>" in plain or number > 1
    assert f"{left_out} more alerts" in html_to_text(rendered[-1])
    assert all("more alerts" not in html_to_text(m) for m in rendered[:-1])


def test_render_details_few_alerts_single_page_nothing_left_out(renderer: Renderer) -> None:
    alerts = [make_alert(0), make_alert(1, status="resolved", ends_at=CREATED + timedelta(minutes=5), repeat_count=2)]
    pages, left_out = detail_pages(alerts)
    assert left_out == 0 and len(pages) == 1 and len(pages[0]) == 2
    (markup,) = render_details(renderer, pages, left_out)
    plain = checked(markup)
    assert "(1/1)" not in plain
    assert "more alerts" not in plain
    assert "started 2026-11-24 08:30" in plain
    assert "ended 2026-11-24 08:35" in plain
    assert "2 repeats" in plain


# --- (d) card actions per state ---------------------------------------------------------------

A = CardAction


@pytest.mark.parametrize(
    ("incident", "proposal", "expected"),
    [
        pytest.param(
            {}, {"state": ProposalState.PENDING}, (A.APPROVE, A.REJECT, A.DETAILS, A.REANALYSE, A.HISTORY, A.SILENCE), id="pending-firing"
        ),
        pytest.param({}, {"state": ProposalState.APPROVED}, (A.DETAILS, A.HISTORY, A.SILENCE), id="approved"),
        pytest.param({}, {"state": ProposalState.REJECTED}, (A.DETAILS, A.HISTORY, A.SILENCE), id="rejected"),
        pytest.param(
            {"status": IncidentStatus.RESOLVED, "resolved_at": CREATED + timedelta(minutes=5)},
            {"state": ProposalState.PENDING},
            (A.DETAILS, A.HISTORY),
            id="resolved-pending",
        ),
        pytest.param(
            {"status": IncidentStatus.RESOLVED, "resolved_at": CREATED + timedelta(minutes=5)},
            {"state": ProposalState.EXPIRED},
            (A.DETAILS, A.HISTORY),
            id="resolved-expired",
        ),
        pytest.param({"muted": True}, {"state": ProposalState.PENDING}, (A.APPROVE, A.REJECT, A.DETAILS, A.REANALYSE, A.HISTORY),
                     id="muted"),  # silenced already: no 🔕 button
        pytest.param({"needs_analysis": True}, None, (A.DETAILS, A.HISTORY, A.SILENCE), id="analysing"),
        pytest.param({"needs_analysis": False}, None, (A.DETAILS, A.REANALYSE, A.HISTORY, A.SILENCE), id="no-proposal-idle"),
        pytest.param({}, {"state": ProposalState.EXECUTING}, (A.DETAILS, A.HISTORY, A.SILENCE), id="executing"),
        pytest.param({}, {"state": ProposalState.SUCCEEDED}, (A.DETAILS, A.HISTORY, A.SILENCE), id="succeeded-firing"),
        pytest.param({}, {"state": ProposalState.FAILED}, (A.DETAILS, A.REANALYSE, A.HISTORY, A.SILENCE), id="failed"),
        pytest.param({}, {"state": ProposalState.ROLLED_BACK}, (A.DETAILS, A.REANALYSE, A.HISTORY, A.SILENCE), id="rolled-back"),
        pytest.param({}, {"state": ProposalState.INTERRUPTED}, (A.DETAILS, A.REANALYSE, A.HISTORY, A.SILENCE), id="interrupted"),
        pytest.param(
            {"status": IncidentStatus.RESOLVED, "resolved_at": CREATED + timedelta(minutes=9)},
            {"state": ProposalState.FAILED},
            (A.DETAILS, A.HISTORY),
            id="resolved-failed",
        ),
    ],
)
def test_views_card_actions_per_state(
    incident: dict[str, Any], proposal: dict[str, Any] | None, expected: tuple[CardAction, ...]
) -> None:
    inc = make_incident(**incident)
    prop = None if proposal is None else make_proposal(**proposal)
    assert card_actions(inc, prop) == expected
    assert build_card(inc, [make_alert()], prop).actions == expected


# --- (e) what the card says -------------------------------------------------------------------


def test_render_card_pending_shows_proposal_and_local_time(renderer: Renderer) -> None:
    plain = checked(render_card(renderer, make_incident(), [make_alert()], make_proposal()))
    assert "P1 · INC-42 · HighErrorRate" in plain
    assert "checkout · shop · 1 alert · since 08:30" in plain
    assert "Error rate above 5%" in plain
    assert "kubectl -n shop rollout undo deployment/checkout" in plain
    assert "— rules" in plain
    assert "confidence" not in plain  # rules never claim a confidence
    assert "Awaiting approval" in plain


def test_render_card_approved_says_starting(renderer: Renderer) -> None:
    proposal = make_proposal(state=ProposalState.APPROVED, decided_by_name="@alice", decided_at=CREATED + timedelta(minutes=3))
    plain = checked(render_card(renderer, make_incident(), [make_alert()], proposal))
    assert "Approved by @alice · 08:33 — starting…" in plain
    assert "not enabled" not in plain
    assert "Awaiting approval" not in plain


def test_render_card_rejected_shows_decider_and_reason(renderer: Renderer) -> None:
    proposal = make_proposal(
        state=ProposalState.REJECTED, decided_by_name="Bob Smith", decided_at=CREATED + timedelta(hours=16), decision_reason="too risky at peak"
    )
    plain = checked(render_card(renderer, make_incident(), [make_alert()], proposal))
    assert "Rejected by Bob Smith · 00:30: too risky at peak" in plain  # 16:30 UTC = 00:30 next day in Taipei


def test_render_card_resolved_shows_duration(renderer: Renderer) -> None:
    incident = make_incident(status=IncidentStatus.RESOLVED, resolved_at=CREATED + timedelta(minutes=17, seconds=10))
    alerts = [make_alert(status="resolved")]
    plain = checked(render_card(renderer, incident, alerts, make_proposal(state=ProposalState.EXPIRED)))
    assert "Resolved after 17 min" in plain
    assert plain.startswith("✅")
    assert "Not decided before the incident resolved" in plain
    assert "Awaiting approval" not in plain


def test_render_card_analysing(renderer: Renderer) -> None:
    plain = checked(render_card(renderer, make_incident(needs_analysis=True), [make_alert()], None))
    assert "Analysing…" in plain
    assert "Proposal" not in plain


def test_render_card_ai_model_and_confidence(renderer: Renderer) -> None:
    proposal = make_proposal(source="ai", model="gpt-x", confidence=0.873)
    plain = checked(render_card(renderer, make_incident(), [make_alert()], proposal))
    assert "— AI gpt-x" in plain
    assert "confidence 87%" in plain
    assert "rule-based proposal" not in plain


def test_render_card_says_when_rules_answered_for_a_failed_model(renderer: Renderer) -> None:
    for reason, note in (("timeout", "AI timed out"), ("unavailable", "AI unavailable"),
                         ("invalid_output", "AI gave no usable answer")):
        plain = checked(render_card(renderer, make_incident(), [make_alert()], make_proposal(fallback_reason=reason)))
        assert f"{note} — rule-based proposal" in plain
        assert "confidence" not in plain
    plain = checked(render_card(renderer, make_incident(), [make_alert()], make_proposal(fallback_reason="no_model")))
    assert "rule-based proposal" not in plain  # no model configured: nothing failed


def test_render_card_playbook_source_and_steps(renderer: Renderer) -> None:
    proposal = make_proposal(source="playbook", playbook_name="api-crashloop", steps=["kubectl -n shop rollout status deployment/checkout"])
    plain = checked(render_card(renderer, make_incident(), [make_alert()], proposal))
    assert "— playbook api-crashloop" in plain
    assert "then kubectl -n shop rollout status deployment/checkout" in plain


def test_render_model_text_is_escaped(renderer: Renderer) -> None:
    text = "Restart <b>now</b> & run `rm -rf /` </code><script>x</script>"
    markup = renderer.render("telegram/answer.html.j2", kind="ask", ref="", text=text, part=1, parts=1, model="m<1>")
    plain = checked(markup)
    assert text in plain and "AI m<1>" in plain
    proposal = make_proposal(source="ai", model="<i>m</i>", root_cause="<a href='x'>click</a>", reasoning="</code>&")
    plain = checked(render_card(renderer, make_incident(), [make_alert()], proposal))
    assert "<a href='x'>click</a>" in plain and "AI <i>m</i>" in plain


def test_render_card_counts_alerts_and_repeats(renderer: Renderer) -> None:
    alerts = [make_alert(0, repeat_count=2), make_alert(1, status="resolved", repeat_count=1), make_alert(2)]
    plain = checked(render_card(renderer, make_incident(severity="warning"), alerts, make_proposal()))
    assert "3 alerts (2 firing) · 3 repeats" in plain
    assert "P3 · INC-42" in plain


def test_render_card_summary_equal_to_alertname_is_hidden(renderer: Renderer) -> None:
    card = build_card(make_incident(), [make_alert(annotations={"summary": "HighErrorRate"})], None)
    assert card.summary == ""


# --- (f) every template renders valid Telegram HTML with a plausible context -------------------

# built by the same function the chat service uses, so the context keys follow the code
_HISTORY_ITEMS = [
    _history_item(
        make_incident(
            id=3,
            status=IncidentStatus.RESOLVED,
            resolved_at=CREATED + timedelta(minutes=9),
        ),
        make_proposal(
            incident_id=3,
            state=ProposalState.APPROVED,
            command="kubectl -n shop rollout undo deployment/checkout && <x>",
        ),
    ),
    _history_item(make_incident(id=4, alertname="Odd <name> & co", service="", severity="warning"), None),
]


def _card_context() -> dict[str, Any]:
    card = build_card(make_incident(alertname=HOSTILE), [make_alert()], make_proposal(command=HOSTILE))
    return {"card": to_context(card)}


def _details_context() -> dict[str, Any]:
    pages, left_out = detail_pages([make_alert(i) for i in range(3)])
    return {"ref": "INC-42", "alerts": pages[0], "page": 1, "pages": 1, "left_out": 0, "incident_id": 42}


_KB_HIT = {
    "id": 3, "title": "Disk <full> on db", "snippet": "Rotate logs & restart", "tags": ["disk", "db"], "category": "note",
    "services": ["db"], "source": "human", "incident_ref": "INC-7", "created_at": CREATED.isoformat(),
}
_PLAYBOOK = {
    "id": 1, "name": "api-crashloop", "description": "Restart <api>", "source": "file", "enabled": True, "executions": 10,
    "successes": 9, "success_rate": 0.9, "alertnames": ["KubePodCrashLooping"], "steps": 2,
}

# --- execution, failure analysis and audit contexts, with the keys services/execution.py, services/failures.py
# and services/chat.py send ----------------------------------------------------------------------------------

HOSTILE_OUTPUT = 'Error from server (<b>Forbidden</b>): "checkout" & co </pre> &amp;'
_RUN: dict[str, Any] = {"ref": "INC-42", "dry_run": False}  # every event but 'skipped'
_IN_THREAD: dict[str, Any] = {**_RUN, "steps": 1}  # what ExecutionService._thread adds
_COMMAND = "kubectl -n shop rollout undo deployment/checkout"


def _started(**values: Any) -> dict[str, Any]:
    return {"event": "started", **_RUN, "auto": False, "approvers": ["@alice"], "commands": [_COMMAND], **values}


def _retry(**values: Any) -> dict[str, Any]:
    return {"event": "retry", **_RUN, "step": 0, "what": "run", "attempt": 1, "retries": 2, "reason": "timeout",
            "delay": 30.0, "error": "dial tcp 10.0.0.1:6443: i/o timeout", **values}


def _finished(state: str, **values: Any) -> dict[str, Any]:
    """The 'finished' event as ExecutionService._finish sends it."""
    return {"event": "finished", **_RUN, "state": state, "auto": False, "seconds": 12.3, "attempts": 1, "retried": 0,
            "steps": 1, "step": 0, "reason": None, "error": None, "rollback": None, "firing": True, "command": _COMMAND, **values}


_EXECUTION: list[dict[str, Any]] = [
    _started(approvers=["@alice", "Bob <b> & co"], commands=[_COMMAND, "kubectl get <pods> && echo 'x'"]),
    _started(dry_run=True),
    _started(auto=True, approvers=["alertpilot"]),
    _retry(),
    _retry(dry_run=True, attempt=2, reason="connection refused", delay=7.5, error=HOSTILE_OUTPUT),
    {"event": "rehearsal_failed", **_IN_THREAD, "step": 0, "reason": "forbidden", "error": HOSTILE_OUTPUT,
     "output": HOSTILE_OUTPUT},
    {"event": "rehearsal_failed", **_IN_THREAD, "steps": 2, "step": 1, "reason": "not found", "error": "not <found>",
     "output": ""},
    {"event": "step_done", **_IN_THREAD, "steps": 2, "step": 0, "duration_ms": 1234, "verifying": True,
     "output": "deployment.apps/checkout <restarted> & ok"},
    {"event": "step_done", **_IN_THREAD, "step": 0, "duration_ms": 80, "verifying": False, "output": ""},
    {"event": "rolling_back", **_IN_THREAD, "step": 0, "error": "deployment/checkout: timed out <waiting> & more",
     "command": "kubectl -n shop rollout undo deployment/checkout"},
    {"event": "rollback_skipped", **_IN_THREAD, "step": 0, "error": "deployment/checkout: timed out",
     "note": "not rolled back: the rollout history of deployment/checkout shows 1 revision; "
             "rolling back needs at least 2"},
    _finished("succeeded", dry_run=True, attempts=2),
    _finished("succeeded", attempts=3, firing=True),
    _finished("succeeded", auto=True, firing=False),
    _finished("failed", steps=3, step=1, attempts=4, reason="forbidden", error=HOSTILE_OUTPUT,
              rollback="not rolled back automatically: scale deployment/checkout back to 3 <replicas> by hand"),
    _finished("failed", dry_run=True, reason=None, error="internal error: RuntimeError: <boom>"),
    _finished("rolled_back", attempts=5, reason="timeout", error="verification failed: deployment/checkout: timed out",
              rollback="rolled back with kubectl -n shop rollout undo deployment/checkout"),
    {"event": "interrupted", **_RUN, "commands": [_COMMAND, "kubectl <x> & y"], "attempts": 1},
    {"event": "interrupted", **_RUN, "dry_run": True, "commands": [_COMMAND], "attempts": 3},
    # services/execution.py sends {"event": "skipped", "ref": ...} without dry_run, which the template cannot render
    # (see test_render_execution_skipped_with_the_context_the_service_sends); dry_run is added here
    {"event": "skipped", **_RUN},
]


def _failure_context(**values: Any) -> dict[str, Any]:
    """FailureNotifier._facts plus analysis, model and mentions (services/failures.py)."""
    fields = {"ref": "INC-42", "alertname": "HighErrorRate", "service": "checkout", "namespace": "shop",
              "severity": "critical", "state": "failed"}
    return {
        **fields,
        "title": DEFAULT_TITLE.format_map(fields),
        "commands": [_COMMAND],
        "approvers": ["@alice"],
        "auto": False,
        "attempts": 3,
        "error": "Error from server (NotFound): deployments.apps \"checkout\" not found",
        "rollback": None,
        "reason": "not found",
        "verification": False,
        "output": HOSTILE_OUTPUT,
        "dry_run": False,
        "analysis": None,
        "model": None,
        "mentions": [],
        **values,
    }


_VERIFICATION_FAILED = "verification failed: deployment/checkout: timed out waiting for the condition"
_FAILURE_ANALYSIS: list[dict[str, Any]] = [
    _failure_context(
        analysis="Summary: the rollout <b>failed</b> & stopped.\nLikely cause: <script>alert(1)</script>\n\n"
                 "Next steps:\n1. kubectl -n shop get pods",
        model="gpt-x <1>",
        mentions=["111", "222"],
    ),
    _failure_context(analysis="short", model=None, output=""),
    _failure_context(reason="not found", mentions=["111", "222"]),
    _failure_context(reason="forbidden", error="Error from server (Forbidden): <b>nope</b> & more", auto=True),
    _failure_context(reason="timeout", error="dial tcp: i/o timeout", attempts=1, output=""),
    _failure_context(reason="timeout", verification=True, error=_VERIFICATION_FAILED,
                     rollback="rolled back with kubectl -n shop rollout undo deployment/checkout"),
    _failure_context(reason="exit code 1", namespace="", service="", error="", approvers=["@a", "@b"]),
    _failure_context(reason=None, error="internal error: <x>", commands=[_COMMAND, "kubectl b"], mentions=["-100123"]),
]


def _attempt(step: str, attempt: int, result: str, **values: Any) -> ExecutionAttempt:
    at = CREATED + timedelta(minutes=5, seconds=attempt)
    return ExecutionAttempt(
        **{
            "execution_id": 5, "incident_id": 42, "step": step, "step_index": 0, "attempt": attempt,
            "argv": ["kubectl", "-n", "shop", "rollout", "undo", "deployment/checkout"], "started_at": at,
            "finished_at": at, "duration_ms": 420, "exit_code": 0, "stdout": "", "stderr": "", "dry_run": False,
            "result": result, "reason": None, **values,
        }
    )


def _audit_context(
    execution: Execution, attempts: list[ExecutionAttempt], page: int = 1, pages: int = 1
) -> dict[str, Any]:
    """What ChatService.audit sends: the read API's execution bounded by audit_view."""
    view = audit_view(_execution_json(execution, attempts), page)
    return {"ref": "INC-42", "incident_id": 42, "executions": [view], "page": page, "pages": pages}


def _three_attempts(dry_run: bool) -> list[ExecutionAttempt]:
    """A rehearsal that passed, a transient failure that was retried, a permanent one that ended it."""
    return [
        _attempt("dry_run", 1, "ok", argv=["kubectl", "rollout", "undo", "--dry-run=server"], dry_run=dry_run,
                 stdout="deployment.apps/checkout rolled back (server dry run)"),
        _attempt("run", 1, "transient", exit_code=None, reason="timeout", dry_run=dry_run,
                 stderr="first line\ndial tcp 10.0.0.1:6443: i/o timeout & <retry>"),
        _attempt("run", 2, "permanent", exit_code=1, reason="forbidden", dry_run=dry_run,
                 argv=["kubectl", "-n", "shop", "rollout", "undo", "deployment/<checkout>&"],
                 stderr='Error from server (Forbidden): "checkout" <b>is</b> forbidden & more'),
    ]


_AUDIT: list[dict[str, Any]] = [
    {"ref": "INC-42", "incident_id": 42, "executions": [], "page": 1, "pages": 1},
    _audit_context(
        make_execution(state=ExecutionState.FAILED, attempts=3, approvers=["@alice <a>", "Bob & co"],
                       requested_by="@olga <o>", error="Error from server (Forbidden): <b>is</b> forbidden & more",
                       rollback="not rolled back automatically: <scale> back by hand", replicas_before=3),
        _three_attempts(dry_run=False),
    ),
    _audit_context(
        make_execution(state=ExecutionState.SUCCEEDED, executor="dry-run", dry_run=True, auto=True, attempts=3,
                       approvers=["alertpilot"], requested_by=None),
        _three_attempts(dry_run=True), page=2, pages=3,
    ),
    _audit_context(  # more attempts than one message shows, over two commands
        make_execution(state=ExecutionState.ROLLED_BACK, attempts=12, commands=[_COMMAND, "kubectl b"],
                       error=_VERIFICATION_FAILED, rollback="rolled back with kubectl undo"),
        [_attempt("run", n, "transient", step_index=n % 2, exit_code=None, reason="timeout",
                  stdout="x" * 500) for n in range(1, 13)],
    ),
]

_STORM = plan_storm([
    FirstCard(n, n, ("critical", "warning", "info", "", "High")[n % 5], ("KubePodCrashLooping", "Odd <name> & co")[n % 2],
              ("checkout", "payments", "", "search")[n % 4], CREATED + timedelta(seconds=n))
    for n in range(1, 41)
], 20)
assert _STORM is not None

PLAUSIBLE: dict[str, list[dict[str, Any]]] = {
    "action_result": [
        result_context(ActionResult(outcome, "INC-42", state="approved", by="@alice <a>", needed_role="approver",
                                    count=1, required=2))
        for outcome in Outcome
    ]
    + [
        result_context(ActionResult(Outcome.ALREADY_DECIDED, "INC-42", state="rejected", by=None)),
        {"outcome": "not_found", "ref": "INC-9", "state": None, "by": None, "needed_role": None},
        {"outcome": "stale_button", "ref": "", "state": None, "by": None, "needed_role": None},
        {"outcome": "working", "ref": "INC-9", "state": None, "by": None, "needed_role": None},
        {"outcome": "already_posted", "ref": "INC-9", "state": None, "by": None, "needed_role": None},
        {"outcome": "not_allowed", "ref": "", "state": None, "by": None, "needed_role": "viewer"},
        {"outcome": "<weird> & new", "ref": "", "state": None, "by": None, "needed_role": None},
    ],
    "audit": _AUDIT,
    "card": [
        {"card": build_card(make_incident(), [make_alert()], make_proposal())},
        {"card": build_card(make_incident(), [make_alert()], make_proposal(
            source="ai", model="gpt-a", tool_calls=3, tier="two_approvers", blast_score=12, required_approvals=2,
            consensus={"agree": 2, "of": 3, "raised": True, "votes": []}))},
    ],
    "consensus": [
        {"ref": "INC-42", "agree": 2, "of": 3, "raised": True, "votes": [
            vote_view({"member": "gpt-a", "agrees": True, "command": "kubectl -n shop rollout restart deploy/api",
                       "root_cause": "memory leak <b>&", "tier": "one_approver", "blast_score": 12, "confidence": 0.8}),
            vote_view({"member": "gpt-b <i>", "agrees": False, "command": "kubectl -n shop scale deploy/api --replicas=0",
                       "root_cause": "bad deploy", "tier": "two_approvers", "blast_score": 60, "confidence": "x"}),
            vote_view({"member": "gpt-c", "agrees": False, "error": "timeout: no answer within the SLA"}),
        ]},
        {"ref": "INC-43", "agree": 3, "of": 3, "raised": False, "votes": [
            vote_view({"member": "m #%d" % i, "agrees": True, "command": "k" * 900, "root_cause": "r" * 900})
            for i in range(1, 4)
        ]},
    ],
    "decision": [
        {"ref": "INC-42", "approved": True, "by": "@alice", "at": CREATED.isoformat(), "reason": ""},
        {"ref": "INC-42", "approved": False, "by": "Bob <b>", "at": CREATED.isoformat(), "reason": "not now & <never>"},
    ],
    "details": [_details_context()],
    "evidence": [
        {"ref": "INC-3", "calls": [
            evidence_view({"tool": "kubectl_logs", "arguments": {"namespace": "prod", "pod": "db-0"}, "ok": True,
                           "excerpt": "ERROR no space left on device <b>&", "seconds": 0.42}),
            evidence_view({"tool": "kubectl_delete", "arguments": {}, "ok": False,
                           "refused": "unknown tool 'kubectl_delete'", "excerpt": ""}),
            evidence_view({"tool": "prometheus_query", "arguments": {"query": "up"}, "ok": False,
                           "excerpt": "HTTP 503", "seconds": 10.0}),
        ]},
        {"ref": "INC-4", "calls": [evidence_view({"tool": "x" * 100, "arguments": {"a": "y" * 500}, "ok": True,
                                                  "excerpt": "z" * 5000, "seconds": "bad"})]},
    ],
    "lang": [LanguageChange(outcome, "zh-TW", "en", "fr<b>").context() for outcome in ("set", "shown", "unknown", "not_allowed")]
    + [LanguageChange("shown", "en", "en").context()],
    "execution": _EXECUTION,
    "failure_analysis": _FAILURE_ANALYSIS,
    "error": [
        {"code": "usage", "command": "reject"},
        {"code": "usage", "command": "status"},
        {"code": "bad_ref", "text": "<INC-x>&"},
        {"code": "not_found", "ref": "INC-99"},
        {"code": "unknown_command", "command": "/rm -rf <all>"},
        {"code": "<other>"},
    ],
    "help": [
        {},  # the whole list
        {"sections": ["everyone"], "role": "none", "namespaces": [], "routes": [], "more": True},
        {"sections": ["everyone", "viewer"], "role": "none", "namespaces": [], "routes": [], "more": True},
        {"sections": ["everyone", "viewer", "operator"], "role": "operator", "namespaces": ["prod", "*-dev"],
         "routes": ["pay<ments>"], "more": True},
        {"sections": ["everyone", "viewer", "operator", "approver"], "role": "admin", "namespaces": [], "routes": [],
         "more": False},
    ],
    "whoami": [
        {"actor_id": "tg:111", "role": "approver", "namespaces": ["prod", "staging"], "routes": ["payments"],
         "anonymous": False, "card_chat": True},
        {"actor_id": "tg:555", "role": "none", "namespaces": [], "routes": [], "anonymous": False, "card_chat": True},
        {"actor_id": "wecom:zhang<san>", "role": "none", "namespaces": [], "routes": [], "anonymous": False,
         "card_chat": False},
        {"actor_id": "tg:anonymous", "role": "none", "namespaces": [], "routes": [], "anonymous": True,
         "card_chat": False},
    ],
    "chatid": [
        {"chat_id": "-1001234567890", "thread_id": None, "private": False, "card_chat": True, "robots": 0},
        {"chat_id": "-1009876543210", "thread_id": 42, "private": False, "card_chat": False, "robots": 2},
        {"chat_id": "555", "thread_id": None, "private": True, "card_chat": False, "robots": 1},
        {"chat_id": "wrkSFfCgAA<x>", "thread_id": None, "private": False, "card_chat": False, "robots": 0},
    ],
    "first_run": [{"chat_id": "-1009876543210"}],
    "history": [
        {"ref": "INC-42", "alertname": "HighErrorRate", "service": "checkout", "items": _HISTORY_ITEMS},
        {"ref": "INC-42", "alertname": "<x>", "service": "", "items": []},
    ],
    "incidents": [{"items": _HISTORY_ITEMS, "total": 17}, {"items": [], "total": 0}],
    "resolved": [{"ref": "INC-42", "minutes": 17, "at": CREATED.isoformat()}],
    "start": [
        {"chat_id": "-1001234567890", "actor_id": "tg:111", "role": "approver", "card_chat": True, "private": False},
        {"chat_id": "555", "actor_id": "tg:555", "role": "none", "card_chat": False, "private": False},
        {"chat_id": "111", "actor_id": "tg:111", "role": "approver", "namespaces": ["prod"], "routes": ["payments"],
         "anonymous": False, "card_chat": False, "private": True},
        {"chat_id": "555", "actor_id": "tg:555", "role": "none", "namespaces": [], "routes": [], "anonymous": False,
         "card_chat": False, "private": True},
    ],
    "status": [_card_context()],
    "answer": [
        {"kind": "summary", "ref": "INC-42", "text": "What happened:\n- <b>x</b> & y", "part": 1, "parts": 2, "model": "gpt"},
        {"kind": "summary", "ref": "INC-42", "text": "second part", "part": 2, "parts": 2, "model": "gpt"},
        {"kind": "ask", "ref": "", "text": "Nothing is open.", "part": 1, "parts": 1, "model": None},
    ],
    "ask_answer": [
        {"question": "why <slow>?", "hits": [_KB_HIT], "related": _HISTORY_ITEMS, "open_total": 2, "ai_failure": None},
        {"question": "disk", "hits": [], "related": [], "open_total": 0, "ai_failure": "timeout"},
    ],
    "kb": [{"query": "disk <full>", "hits": [_KB_HIT, {**_KB_HIT, "tags": [], "incident_ref": None}]}, {"query": "x", "hits": []}],
    "note_result": [
        {"outcome": o, "ref": "INC-42", "entry_id": 5, "needed_role": "operator", "limit": 4000}
        for o in ("added", "not_allowed", "empty", "too_long")
    ],
    "playbooks": [
        {"items": [_PLAYBOOK, {**_PLAYBOOK, "name": "off", "enabled": False, "success_rate": None, "executions": 0,
                               "successes": 0, "steps": 1, "description": "", "alertnames": []}], "total": 40},
        {"items": [], "total": 0},
    ],
    "run_proposed": [{"ref": "INC-42", "by": "@olga <o>", "command": "kubectl -n shop scale deploy/x --replicas=5",
                      "blast_score": 18, "tier": "one_approver"}],
    "review_opened": [{"ref": "INC-42", "url": "https://git.example.com/ops/cluster/issues/7?a=1&b=<2>"}],
    "review_failed": [{"ref": "INC-42", "reason": "HTTP 500 from github: <boom> & more"}],
    "expired": [{"ref": "INC-42", "minutes": 60, "command": "kubectl -n shop delete deployment <x>"}],
    "reanalysed": [
        {"ref": "INC-42", "old": "kubectl a <x>", "new": "kubectl b", "source": "ai", "model": "gpt", "fallback_reason": None},
        {"ref": "INC-42", "old": "kubectl a", "new": "kubectl a", "source": "rules", "model": None, "fallback_reason": "timeout"},
    ],
    "summary": [
        {"ref": "INC-42", "title": "DiskFull <x>", "service": "db", "namespace": "prod", "severity": "critical",
         "status": "firing", "started_at": CREATED.isoformat(), "resolved_at": None, "alert_count": 2, "firing_count": 1,
         "summary": "Disk almost full & <rising>", "root_cause": "logs", "source": "ai", "model": "gpt",
         "command": "kubectl -n prod rollout restart statefulset/db", "proposal_state": "approved", "decided_by": "@alice",
         "events": [{"at": CREATED.isoformat(), "kind": "approved", "name": "@alice", "reason": "ok"},
                    {"at": CREATED.isoformat(), "kind": "note", "name": "@bob", "text": "saw <it>"}],
         "notes": ["saw <it>"], "ai_failure": "unavailable"},
        {"ref": "INC-43", "title": "X", "service": "", "namespace": "", "severity": "", "status": "resolved",
         "started_at": CREATED.isoformat(), "resolved_at": CREATED.isoformat(), "alert_count": 1, "firing_count": 0,
         "summary": "", "root_cause": "", "source": None, "model": None, "command": "", "proposal_state": None,
         "decided_by": None, "events": [], "notes": [], "ai_failure": None},
    ],
    "storm_digest": [
        digest_context(_STORM),
        digest_context(StormPlan(kept=[], folded=_STORM.all[:6])),
        {**digest_context(_STORM), "within_minute": False},
    ],
    **SCHEDULE_PLAUSIBLE,  # report, postmortem, silence, silences, reminder (built from the scheduled services)
}

TEMPLATES = sorted(p.name.removesuffix(".html.j2") for p in (TEMPLATES_DIR / "telegram").glob("*.html.j2") if not p.name.startswith("_"))


def test_render_every_template_has_a_plausible_context() -> None:
    missing = set(TEMPLATES) - set(PLAUSIBLE)
    assert not missing, f"add a plausible context for the new template(s): {sorted(missing)}"


@pytest.mark.parametrize("name", TEMPLATES)
def test_render_every_template_produces_valid_telegram_html(renderer: Renderer, name: str) -> None:
    for context in PLAUSIBLE.get(name, []):
        markup = renderer.render(f"telegram/{name}.html.j2", **context)
        assert markup.strip(), f"{name} rendered nothing for {context}"
        checked(markup)


def test_render_templates_escape_hostile_context(renderer: Renderer) -> None:
    plain = checked(renderer.render("telegram/error.html.j2", code="unknown_command", command="/rm -rf <all> & more"))
    assert "/rm -rf <all> & more" in plain
    plain = checked(renderer.render("telegram/decision.html.j2", **PLAUSIBLE["decision"][1]))
    assert "Rejected by Bob <b> · 08:30: not now & <never>" in plain
    plain = checked(renderer.render("telegram/incidents.html.j2", items=_HISTORY_ITEMS, total=17))
    assert "Odd <name> & co" in plain
    assert "newest 2 shown" in plain


def test_render_decision_approved_no_longer_says_nothing_will_run(renderer: Renderer) -> None:
    plain = checked(renderer.render("telegram/decision.html.j2", **PLAUSIBLE["decision"][0]))
    assert plain == "✅ Approved by @alice · 08:30"
    assert "nothing will run" not in plain
    assert "not enabled" not in plain


def test_render_history_lists_items_in_local_time(renderer: Renderer) -> None:
    plain = checked(renderer.render("telegram/history.html.j2", **PLAUSIBLE["history"][0]))
    assert "INC-3 · 2026-11-24 08:30 · HighErrorRate (checkout) — resolved 2026-11-24 08:39; proposal approved" in plain
    assert "INC-4" in plain and "still firing" in plain
    empty = checked(renderer.render("telegram/history.html.j2", **PLAUSIBLE["history"][1]))
    assert "No earlier incidents" in empty


def test_render_action_result_every_outcome_has_text(renderer: Renderer) -> None:
    for context in PLAUSIBLE["action_result"]:
        plain = checked(renderer.render("telegram/action_result.html.j2", **context))
        assert plain
        if context["outcome"] in ("approved", "rejected"):
            assert "INC-42" in plain


def test_render_strings_expose_button_labels(renderer: Renderer) -> None:
    buttons = renderer.strings("telegram").buttons
    assert set(buttons) == {a.value for a in CardAction}
    assert all(isinstance(v, str) and v for v in buttons.values())


def test_render_telegram_visible_length_counts_after_entities() -> None:
    assert telegram_visible_length("<b>a&amp;b</b> &lt;x&gt;") == len("a&b <x>")
    assert html_to_text("<i>&quot;q&quot;</i>") == '"q"'


def test_render_templates_dir_is_the_project_one() -> None:
    assert TEMPLATES_DIR == Path(__file__).resolve().parents[2] / "templates"


def test_render_card_shows_blast_radius_tier_rollback_and_approvals(renderer: Renderer) -> None:
    proposal = make_proposal(
        blast_score=82, tier="two_approvers", required_approvals=2,
        score_reasons=["delete deployment 55", "× prod 1.5", "= 83 → 82"],
        rollback_plan="kubectl -n shop rollout undo deployment/checkout",
    )
    card = build_card(make_incident(), [make_alert()], proposal, ["@alice <a>"])
    plain = checked(renderer.render("telegram/card.html.j2", card=card))
    assert "Blast radius 82 → 2 approvers · rollback: kubectl -n shop rollout undo deployment/checkout" in plain
    assert "delete deployment 55 × prod 1.5 = 83 → 82" in plain
    assert "Awaiting approval · 1/2 approvals: @alice <a>" in plain
    blocked = make_proposal(state=ProposalState.BLOCKED, blast_score=100, tier="blocked", blocked_reason="deletes a namespace")
    card = build_card(make_incident(), [make_alert()], blocked)
    plain = checked(renderer.render("telegram/card.html.j2", card=card))
    assert "Blast radius 100 → blocked" in plain and "⛔ Blocked: deletes a namespace" in plain
    assert CardAction.APPROVE not in card.actions and CardAction.REANALYSE in card.actions


def test_render_decision_partial_and_final_approval(renderer: Renderer) -> None:
    at = CREATED.isoformat()
    partial = checked(renderer.render("telegram/decision.html.j2", ref="INC-42", approved=True, by="@alice", at=at,
                                      reason="", count=1, required=2))
    assert "Approval 1/2 by @alice" in partial and "one more approver" in partial
    final = checked(renderer.render("telegram/decision.html.j2", ref="INC-42", approved=True, by="@bob", at=at,
                                    reason="", count=2, required=2))
    assert "Approved by @bob" in final and "(approval 2/2)" in final


def test_render_card_of_a_manual_incident_says_it_was_proposed_by_hand(renderer: Renderer) -> None:
    incident = make_incident(source="manual", alertname="ManualRun", service="web", namespace="dev")
    plain = checked(renderer.render("telegram/card.html.j2", card=build_card(incident, [], make_proposal(source="human"))))
    assert "web · dev · proposed by hand" in plain and "0 alerts" not in plain


def test_render_action_result_approved_says_it_runs_now(renderer: Renderer) -> None:
    context = result_context(ActionResult(Outcome.APPROVED, "INC-42", by="@alice"))
    plain = checked(renderer.render("telegram/action_result.html.j2", **context))
    assert plain == "✅ INC-42 approved; it runs now and the card's thread shows each step."


# --- (g) execution: the threaded steps, the failure analysis, the audit, the card's states ------------------


def render_execution(renderer: Renderer, context: dict[str, Any]) -> tuple[str, str]:
    markup = renderer.render("telegram/execution.html.j2", **context)
    return markup, checked(markup)


def test_render_execution_retry_says_attempt_reason_delay_and_count(renderer: Renderer) -> None:
    _, plain = render_execution(renderer, _retry(attempt=1, retries=2, reason="timeout", delay=30.0))
    assert "⚠️ attempt 1 failed (timeout); retrying in 30 s (1/2)" in plain
    assert plain.splitlines()[0] == "⚠️ attempt 1 failed (timeout); retrying in 30 s (1/2)"
    assert "dial tcp 10.0.0.1:6443: i/o timeout" in plain
    _, plain = render_execution(renderer, _retry(dry_run=True, attempt=2, delay=7.5))
    assert plain.startswith("⚠️ DRY RUN · attempt 2 failed (timeout); retrying in 8 s (2/2)")


def test_render_execution_started_dry_run_and_real(renderer: Renderer) -> None:
    _, plain = render_execution(renderer, _started(dry_run=True))
    assert "DRY RUN" in plain and "Would run" in plain
    assert "Running" not in plain
    assert _COMMAND in plain
    _, plain = render_execution(renderer, _started(dry_run=False))
    assert "Running · approved by @alice" in plain
    assert "DRY RUN" not in plain and "Would run" not in plain
    _, plain = render_execution(renderer, _started(auto=True, approvers=["alertpilot"]))
    assert "Running (auto-remediation)" in plain and "approved by" not in plain
    context = _started(approvers=["@alice", "Bob <b>"], commands=["kubectl <x> & y", "b"])
    markup, plain = render_execution(renderer, context)
    assert "approved by @alice, Bob <b>:" in plain
    assert "kubectl <x> & y\nb" in plain
    assert markup.count("<code>") == 2


def test_render_execution_finished_succeeded(renderer: Renderer) -> None:
    _, plain = render_execution(renderer, _finished("succeeded", firing=True))
    assert plain == "✅ Remediated in 12.3 s · waiting for alerts to resolve."
    _, plain = render_execution(renderer, _finished("succeeded", firing=False, attempts=5, retried=2))
    assert plain == "✅ Remediated in 12.3 s after 2 retries."
    _, plain = render_execution(renderer, _finished("succeeded", auto=True, firing=True))
    assert "Auto-remediated" in plain and "waiting for alerts to resolve" in plain
    _, plain = render_execution(renderer, _finished("succeeded", dry_run=True, firing=True))
    assert "DRY RUN complete" in plain and "nothing was changed" in plain
    assert "Remediated" not in plain and "waiting for alerts" not in plain


def test_render_execution_finished_failed_shows_the_error_escaped_and_what_next(renderer: Renderer) -> None:
    context = _finished("failed", steps=3, step=1, attempts=4, retried=1, reason="forbidden", error=HOSTILE_OUTPUT,
                        rollback="not rolled back automatically: scale back <by hand>")
    markup, plain = render_execution(renderer, context)
    assert f"❌ Failed at step 2/3 after 1 retry (forbidden): {HOSTILE_OUTPUT}" in plain
    assert "not rolled back automatically: scale back <by hand>." in plain
    assert "Re-analyse" in plain and "/run <command> INC-42" in plain
    assert "<b>Forbidden</b>" not in markup and "&lt;b&gt;Forbidden&lt;/b&gt;" in markup
    assert "&amp;amp;" in markup
    _, plain = render_execution(renderer, _finished("failed", reason=None, error="boom", dry_run=True))
    assert "❌ DRY RUN · Failed (error): boom" in plain
    assert "at step" not in plain


def test_render_execution_rolled_back_interrupted_and_verification_steps(renderer: Renderer) -> None:
    _, plain = render_execution(renderer, _finished("rolled_back", error=_VERIFICATION_FAILED,
                                                    rollback="rolled back with kubectl undo"))
    assert f"Rolled back after 12.3 s: {_VERIFICATION_FAILED}" in plain
    assert "rolled back with kubectl undo." in plain and "Re-analyse" in plain
    _, plain = render_execution(renderer, {"event": "interrupted", **_RUN, "commands": [_COMMAND], "attempts": 2})
    assert "Interrupted" in plain and "after 2 runs" in plain and "not run again" in plain and _COMMAND in plain
    _, plain = render_execution(renderer, {"event": "rolling_back", **_IN_THREAD, "step": 0, "error": "timed <out>",
                                           "command": _COMMAND})
    assert plain == f"↩️ Verification failed: timed <out>\nRolling back: {_COMMAND}"
    _, plain = render_execution(renderer, {"event": "rehearsal_failed", **_IN_THREAD, "steps": 2, "step": 1,
                                           "reason": "not found", "error": "no <such>", "output": ""})
    assert plain == "❌ Dry run failed (step 2/2) (not found): nothing was changed.\nno <such>"
    _, plain = render_execution(renderer, {"event": "step_done", **_IN_THREAD, "steps": 2, "step": 0,
                                           "duration_ms": 1234, "verifying": True, "output": ""})
    assert plain == "✅ Step 1/2 succeeded in 1.2 s · verifying rollout …"


def test_render_execution_skipped_with_the_context_the_service_sends(renderer: Renderer) -> None:
    # exactly what ExecutionService._claim threads when the incident resolved before the command started
    _, plain = render_execution(renderer, {"event": "skipped", "ref": "INC-42"})
    assert "INC-42 resolved before the approved command started: it was not run." in plain


# failure analysis


def render_failure(renderer: Renderer, **values: Any) -> tuple[str, str]:
    markup = renderer.render("telegram/failure_analysis.html.j2", **_failure_context(**values))
    return markup, checked(markup)


def test_render_failure_analysis_from_the_model_is_escaped_text(renderer: Renderer) -> None:
    text = "Summary: <b>x</b> & y\nLikely cause: <script>alert(1)</script>\n\nNext steps:\n1. kubectl get pods"
    markup, plain = render_failure(renderer, analysis=text, model="gpt-x")
    assert text in plain
    assert "<script>" not in markup and "&lt;script&gt;" in markup
    assert "Analysis (AI gpt-x)" in plain
    assert "Likely cause: <script>" in plain and "Next steps:\n1." in plain
    assert "the command failed" not in plain  # no rule-based text when the model answered
    assert HOSTILE_OUTPUT in plain  # the error output still follows


@pytest.mark.parametrize(
    ("reason", "cause", "step"),
    [
        ("not found", "does not exist", "get all"),
        ("forbidden", "RBAC permission", "kubectl auth can-i"),
        ("timeout", "did not answer in time, on every attempt", "/audit INC-42"),
        ("exit code 1", "see the error output below", "/audit INC-42"),
        (None, "see the error output below", "/audit INC-42"),
    ],
)
def test_render_failure_analysis_rule_based_per_reason(
    renderer: Renderer, reason: str | None, cause: str, step: str
) -> None:
    _, plain = render_failure(renderer, reason=reason, error="it <broke> & stopped")
    assert "Summary: the command failed: it <broke> & stopped" in plain
    (likely,) = [line for line in plain.splitlines() if line.startswith("Likely cause: ")]
    assert cause in likely
    assert step in plain
    assert "Re-analyse" in plain
    assert "Analysis" not in plain


def test_render_failure_analysis_forbidden_names_rbac(renderer: Renderer) -> None:
    _, plain = render_failure(renderer, reason="forbidden")
    assert "RBAC" in plain


def test_render_failure_analysis_verification_failure(renderer: Renderer) -> None:
    _, plain = render_failure(renderer, reason="timeout", verification=True, error=_VERIFICATION_FAILED,
                              rollback="rolled back with kubectl -n shop rollout undo deployment/checkout")
    assert "the command ran, but the rollout did not become healthy" in plain
    assert "rolled back with kubectl -n shop rollout undo deployment/checkout" in plain
    assert "new pods do not become ready" in plain
    assert "kubectl -n shop get pods" in plain
    assert "did not answer in time" not in plain  # the verification explains it, not the marker


def test_render_failure_analysis_mentions_are_user_links(renderer: Renderer) -> None:
    markup, plain = render_failure(renderer, mentions=["111", "222"])
    assert '<a href="tg://user?id=111">' in markup and '<a href="tg://user?id=222">' in markup
    assert "on-call 111, on-call 222" in plain
    _, entities = parse_telegram_html(markup)
    assert [e.get("url") for e in entities if e["type"] == "text_link"] == ["tg://user?id=111", "tg://user?id=222"]
    markup, _ = render_failure(renderer, mentions=[])
    assert "tg://user" not in markup and "<a " not in markup


def test_render_failure_analysis_who_ran_it(renderer: Renderer) -> None:
    _, plain = render_failure(renderer, auto=True, attempts=1)
    assert "checkout · shop · auto-remediation · 1 run" in plain
    _, plain = render_failure(renderer, approvers=["@alice", "Bob <b>"], attempts=3)
    assert "checkout · shop · approved by @alice, Bob <b> · 3 runs" in plain


def test_render_failure_analysis_title_has_one_siren(renderer: Renderer) -> None:
    _, plain = render_failure(renderer)
    assert plain.startswith("🚨 Remediation failed: INC-42 HighErrorRate")


def test_render_failure_analysis_without_namespace_shows_a_placeholder(renderer: Renderer) -> None:
    _, plain = render_failure(renderer, namespace="", verification=True, error=_VERIFICATION_FAILED)
    assert "kubectl -n <ns> get pods" in plain


def test_render_failure_analysis_mentions_on_their_own_line(renderer: Renderer) -> None:
    _, plain = render_failure(renderer, mentions=["111"])
    assert f"on-call 111\n{_COMMAND}" in plain


def _longest_failure(commands: int, **values: Any) -> dict[str, Any]:
    """A failure analysis with every field at the bound services/failures.py gives it."""
    return _failure_context(
        title="t" * 200, service="s" * 120, namespace="n" * 120, approvers=["a" * 60] * 3, error="e" * 400,
        rollback="r" * 300, output="o" * 400, commands=["k" * 200] * min(commands, COMMANDS_SHOWN),
        more_commands=max(0, commands - COMMANDS_SHOWN), mentions=[str(10**9 + i) for i in range(MENTIONS_MAX)],
        **values,
    )


@pytest.mark.parametrize(
    ("name", "context"),
    [
        pytest.param(
            "failure_analysis", _longest_failure(2, analysis="a" * ANALYSIS_MAX, model="m" * 60), id="ai-2-steps"
        ),
        pytest.param("failure_analysis", _longest_failure(STEPS_MAX), id="rules-all-steps"),
        pytest.param("execution", _started(**commands_context(["k" * 300] * STEPS_MAX), approvers=["a" * 60] * 3),
                     id="started"),
        pytest.param("execution", {"event": "interrupted", **_RUN, **commands_context(["k" * 300] * STEPS_MAX),
                                   "attempts": 9}, id="interrupted"),
    ],
)
def test_render_execution_messages_with_the_longest_fields_fit(
    renderer: Renderer, name: str, context: dict[str, Any]
) -> None:
    assert telegram_visible_length(renderer.render(f"telegram/{name}.html.j2", **context)) <= TELEGRAM_TEXT_LIMIT


def test_render_failure_analysis_of_one_command_with_the_longest_fields_fits(renderer: Renderer) -> None:
    checked(renderer.render("telegram/failure_analysis.html.j2", **_longest_failure(1, analysis="a" * ANALYSIS_MAX)))
    checked(renderer.render("telegram/failure_analysis.html.j2", **_longest_failure(3)))


# audit


def test_render_audit_without_executions(renderer: Renderer) -> None:
    plain = checked(renderer.render("telegram/audit.html.j2", **PLAUSIBLE["audit"][0]))
    assert plain == "🧾 Audit of INC-42\nNo command has run for INC-42 yet."


def test_render_audit_lists_every_attempt_escaped(renderer: Renderer) -> None:
    markup = renderer.render("telegram/audit.html.j2", **PLAUSIBLE["audit"][1])
    plain = checked(markup)
    assert "Execution 1 · failed · kubectl" in plain and "DRY RUN" not in plain
    assert "requested by @olga <o> · approved by @alice <a>, Bob & co" in plain
    assert "2026-11-24 08:35 → 08:37 · replicas before: 3" in plain
    assert "error: Error from server (Forbidden): <b>is</b> forbidden & more" in plain
    assert "✅ dry run · attempt 1 · exit 0 · 420 ms" in plain
    assert "⚠️ run · attempt 1 · exit — · 420 ms · timeout" in plain
    assert "dial tcp 10.0.0.1:6443: i/o timeout & <retry>" in plain  # the last line of the output
    assert "❌ run · attempt 2 · exit 1 · 420 ms · forbidden" in plain
    assert "kubectl -n shop rollout undo 'deployment/<checkout>&'" in plain
    assert "<b>is</b>" not in markup
    dry = checked(renderer.render("telegram/audit.html.j2", **PLAUSIBLE["audit"][2]))
    assert "Audit of INC-42 (2/3)" in dry
    assert "succeeded · DRY RUN · dry-run" in dry and "auto-remediation" in dry and "requested by —" in dry
    assert "420 ms · dry run · timeout" in dry


def test_render_audit_says_how_many_attempts_are_left_out(renderer: Renderer) -> None:
    plain = checked(renderer.render("telegram/audit.html.j2", **PLAUSIBLE["audit"][3]))
    assert "… 4 earlier attempts: GET /api/incidents/42" in plain
    assert "attempt 4 " not in plain and "attempt 12 " in plain
    assert "run #2 · attempt 5" in plain  # two commands: each attempt says which


# the card


def executed(proposal_state: ProposalState, /, **execution: Any) -> tuple[Proposal, Execution]:
    """A proposal approved by @alice at 08:33 and its run (make_execution with these overrides)."""
    proposal = make_proposal(state=proposal_state, decided_by_name="@alice", decided_at=CREATED + timedelta(minutes=3))
    return proposal, make_execution(**execution)


def test_render_card_executing(renderer: Renderer) -> None:
    proposal, execution = executed(ProposalState.EXECUTING, state=ExecutionState.RUNNING, dry_run=True,
                                   finished_at=None)
    plain = checked(render_card(renderer, make_incident(), [make_alert()], proposal, execution))
    assert "▶️ DRY RUN · Running · approved by @alice · 08:33" in plain
    proposal, execution = executed(ProposalState.EXECUTING, state=ExecutionState.RUNNING, finished_at=None)
    plain = checked(render_card(renderer, make_incident(), [make_alert()], proposal, execution))
    assert "▶️ Running · approved by @alice · 08:33" in plain and "DRY RUN" not in plain


def test_render_card_succeeded(renderer: Renderer) -> None:
    proposal, execution = executed(ProposalState.SUCCEEDED, dry_run=True)
    plain = checked(render_card(renderer, make_incident(), [make_alert()], proposal, execution))
    assert "🧪 DRY RUN done · approved by @alice — nothing was changed" in plain
    assert "Remediated" not in plain and "waiting for alerts" not in plain

    proposal, execution = executed(ProposalState.SUCCEEDED)
    plain = checked(render_card(renderer, make_incident(), [make_alert()], proposal, execution))
    assert "✅ Remediated · approved by @alice · 08:37 · waiting for alerts to resolve" in plain

    resolved = make_incident(status=IncidentStatus.RESOLVED, resolved_at=CREATED + timedelta(minutes=9))
    plain = checked(render_card(renderer, resolved, [make_alert(status="resolved")], proposal, execution))
    assert "Remediated · approved by @alice · 08:37" in plain and "waiting for alerts" not in plain
    assert "Resolved after 9 min" in plain

    proposal = make_proposal(state=ProposalState.SUCCEEDED, decided_by_name="alertpilot", decided_at=CREATED)
    plain = checked(render_card(renderer, make_incident(), [make_alert()], proposal, make_execution(auto=True)))
    assert "✅ Auto-remediated · 08:37 · waiting for alerts to resolve" in plain
    assert "approved by" not in plain


def test_render_card_failed_shows_the_error_and_what_next(renderer: Renderer) -> None:
    proposal, execution = executed(ProposalState.FAILED, state=ExecutionState.FAILED, attempts=3,
                                   error="Error from server (Forbidden): <b>nope</b> & more",
                                   rollback="not rolled back automatically: <scale> back")
    markup = render_card(renderer, make_incident(), [make_alert()], proposal, execution)
    plain = checked(markup)
    assert ("❌ Remediation failed: Error from server (Forbidden): <b>nope</b> & more "
            "(not rolled back automatically: <scale> back). Re-analyse or /run another command.") in plain
    assert "&lt;b&gt;nope&lt;/b&gt; &amp; more" in markup
    proposal, execution = executed(ProposalState.FAILED, state=ExecutionState.FAILED, dry_run=True, error="boom")
    plain = checked(render_card(renderer, make_incident(), [make_alert()], proposal, execution))
    assert "❌ DRY RUN · Remediation failed: boom. Re-analyse" in plain


def test_render_card_rolled_back_and_interrupted(renderer: Renderer) -> None:
    proposal, execution = executed(ProposalState.ROLLED_BACK, state=ExecutionState.ROLLED_BACK,
                                   error=_VERIFICATION_FAILED, rollback="rolled back with kubectl undo")
    plain = checked(render_card(renderer, make_incident(), [make_alert()], proposal, execution))
    assert f"↩️ Rolled back: {_VERIFICATION_FAILED}. Re-analyse or /run another command." in plain
    proposal, execution = executed(ProposalState.INTERRUPTED, state=ExecutionState.INTERRUPTED,
                                   error="alertpilot stopped while this was running; it was not re-run")
    plain = checked(render_card(renderer, make_incident(), [make_alert()], proposal, execution))
    assert "⚠️ Interrupted: alertpilot stopped while it ran; not re-run." in plain


def test_render_card_ignores_the_execution_of_another_proposal(renderer: Renderer) -> None:
    proposal, execution = executed(ProposalState.FAILED, proposal_id=99, state=ExecutionState.FAILED,
                                   error="old <error>")
    card = build_card(make_incident(), [make_alert()], proposal, execution=execution)
    assert card.proposal is not None and card.proposal.execution is None
    plain = checked(renderer.render("telegram/card.html.j2", card=card))
    assert "Remediation failed: see the thread." in plain and "old <error>" not in plain
    proposal, execution = executed(ProposalState.ROLLED_BACK, proposal_id=99)
    plain = checked(render_card(renderer, make_incident(), [make_alert()], proposal, execution))
    assert "Rolled back: verification failed." in plain


@pytest.mark.parametrize(
    ("state", "execution_state"),
    [
        (ProposalState.EXECUTING, ExecutionState.RUNNING),
        (ProposalState.SUCCEEDED, ExecutionState.SUCCEEDED),
        (ProposalState.FAILED, ExecutionState.FAILED),
        (ProposalState.ROLLED_BACK, ExecutionState.ROLLED_BACK),
        (ProposalState.INTERRUPTED, ExecutionState.INTERRUPTED),
    ],
)
def test_render_card_of_an_execution_offers_the_right_buttons_and_agrees_with_status(
    renderer: Renderer, state: ProposalState, execution_state: ExecutionState
) -> None:
    proposal, execution = executed(state, state=execution_state, error="it <broke>", rollback="<none>")
    incident = make_incident()
    card = build_card(incident, [make_alert()], proposal, execution=execution)
    assert card.proposal is not None and card.proposal.execution is not None
    assert card.proposal.execution.state == execution_state
    assert card.actions == card_actions(incident, proposal)
    assert CardAction.APPROVE not in card.actions and CardAction.REJECT not in card.actions
    finished_without_fixing = state in (ProposalState.FAILED, ProposalState.ROLLED_BACK, ProposalState.INTERRUPTED)
    assert (CardAction.REANALYSE in card.actions) == finished_without_fixing
    markup = renderer.render("telegram/card.html.j2", card=card)
    checked(markup)
    assert markup == renderer.render("telegram/status.html.j2", card=to_context(card))
    resolved = make_incident(status=IncidentStatus.RESOLVED, resolved_at=CREATED + timedelta(minutes=9))
    assert CardAction.REANALYSE not in build_card(resolved, [], proposal, execution=execution).actions


@pytest.mark.parametrize("state", [ProposalState.FAILED, ProposalState.ROLLED_BACK, ProposalState.EXECUTING,
                                   ProposalState.SUCCEEDED, ProposalState.INTERRUPTED])
@pytest.mark.parametrize("filler", ["x", "<&>", " word"])
def test_render_card_of_an_execution_with_huge_fields_stays_within_limit(
    renderer: Renderer, state: str, filler: str
) -> None:
    huge = (filler * HUGE)[:HUGE]
    incident = make_incident(alertname=huge, title=huge, service=huge, namespace=huge, severity=huge)
    alerts = [make_alert(annotations={"summary": huge, "description": huge})]
    proposal = make_proposal(
        state=state, model=huge, root_cause=huge, command=huge, reasoning=huge, risk=huge, decided_by_name=huge,
        decided_at=CREATED, decision_reason=huge, fallback_reason="timeout", playbook_name=huge, steps=[huge] * 12,
        blast_score=100, tier="two_approvers", required_approvals=2, score_reasons=[huge] * 5, rollback_plan=huge,
        blocked_reason=huge, review_url="https://git.example.com/" + "x" * 400,
    )
    execution = make_execution(state=ExecutionState.FAILED, dry_run=True, error=(filler * 5000)[:5000],
                               rollback=(filler * 3000)[:3000], attempts=99)
    card = build_card(incident, alerts, proposal, [huge, huge], execution)
    markup = renderer.render("telegram/card.html.j2", card=card)

    plain = checked(markup)
    assert telegram_visible_length(markup) <= TELEGRAM_TEXT_LIMIT
    assert card.proposal is not None and card.proposal.execution is not None
    assert len(card.proposal.execution.error or "") == CARD_LIMITS["execution_error"]
    assert len(card.proposal.execution.rollback or "") <= CARD_LIMITS["rollback"]
    if state == ProposalState.FAILED:
        assert "Remediation failed: " in plain and "Re-analyse" in plain
    checked(renderer.render("telegram/status.html.j2", card=to_context(card)))
