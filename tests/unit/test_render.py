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
from services.chat import result_context
from services.ports import CardAction
from services.queries import _history_item
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
from storage.tables import Alert, Incident, IncidentStatus, Proposal, ProposalState
from tests.fakes.botapi import EntityParseError, parse_telegram_html

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


def checked(markup: str) -> str:
    """Assert the markup is valid Telegram HTML within the limit; return its plain text."""
    plain, _ = parse_telegram_html(markup)  # raises EntityParseError on invalid HTML
    assert len(plain) <= TELEGRAM_TEXT_LIMIT
    assert telegram_visible_length(markup) == len(plain)
    return plain


def render_card(renderer: Renderer, incident: Incident, alerts: list[Alert], proposal: Proposal | None) -> str:
    return renderer.render("telegram/card.html.j2", card=build_card(incident, alerts, proposal))


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
    assert sum(CARD_LIMITS.values()) + steps + 20 + 400 + 60 < TELEGRAM_TEXT_LIMIT


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
            {}, {"state": ProposalState.PENDING}, (A.APPROVE, A.REJECT, A.DETAILS, A.REANALYSE, A.HISTORY), id="pending-firing"
        ),
        pytest.param({}, {"state": ProposalState.APPROVED}, (A.DETAILS, A.HISTORY), id="approved"),
        pytest.param({}, {"state": ProposalState.REJECTED}, (A.DETAILS, A.HISTORY), id="rejected"),
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
        pytest.param({"needs_analysis": True}, None, (A.DETAILS, A.HISTORY), id="analysing"),
        pytest.param({"needs_analysis": False}, None, (A.DETAILS, A.REANALYSE, A.HISTORY), id="no-proposal-idle"),
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


def test_render_card_approved_says_execution_not_enabled(renderer: Renderer) -> None:
    proposal = make_proposal(state=ProposalState.APPROVED, decided_by_name="@alice", decided_at=CREATED + timedelta(minutes=3))
    plain = checked(render_card(renderer, make_incident(), [make_alert()], proposal))
    assert "Approved by @alice · 08:33" in plain
    assert "execution not enabled yet" in plain
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

PLAUSIBLE: dict[str, list[dict[str, Any]]] = {
    "action_result": [
        result_context(ActionResult(outcome, "INC-42", state="approved", by="@alice <a>", needed_role="approver"))
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
    "card": [{"card": build_card(make_incident(), [make_alert()], make_proposal())}],
    "decision": [
        {"ref": "INC-42", "approved": True, "by": "@alice", "at": CREATED.isoformat(), "reason": ""},
        {"ref": "INC-42", "approved": False, "by": "Bob <b>", "at": CREATED.isoformat(), "reason": "not now & <never>"},
    ],
    "details": [_details_context()],
    "error": [
        {"code": "usage", "command": "reject"},
        {"code": "usage", "command": "status"},
        {"code": "bad_ref", "text": "<INC-x>&"},
        {"code": "not_found", "ref": "INC-99"},
        {"code": "unknown_command", "command": "/rm -rf <all>"},
        {"code": "<other>"},
    ],
    "help": [{}],
    "history": [
        {"ref": "INC-42", "alertname": "HighErrorRate", "service": "checkout", "items": _HISTORY_ITEMS},
        {"ref": "INC-42", "alertname": "<x>", "service": "", "items": []},
    ],
    "incidents": [{"items": _HISTORY_ITEMS, "total": 17}, {"items": [], "total": 0}],
    "resolved": [{"ref": "INC-42", "minutes": 17, "at": CREATED.isoformat()}],
    "start": [
        {"chat_id": "-1001234567890", "actor_id": "tg:111", "role": "approver", "card_chat": True},
        {"chat_id": "555", "actor_id": "tg:555", "role": "none", "card_chat": False},
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


def test_render_decision_approved_says_nothing_will_run(renderer: Renderer) -> None:
    plain = checked(renderer.render("telegram/decision.html.j2", **PLAUSIBLE["decision"][0]))
    assert "Approved by @alice · 08:30" in plain
    assert "nothing will run" in plain


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
