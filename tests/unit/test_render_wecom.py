"""WeCom robot markdown templates (templates/wecom/*.md.j2) through bot/render.py: a twin for every Telegram
template, the 4096-byte limit, the incident named first (robots cannot thread or edit), only the markup WeCom
supports, and every inserted value neutralised (no mention, bold, link or code span from a value)."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from bot.render import TEMPLATES_DIR, WECOM_MARKDOWN_LIMIT, Renderer
from services.execution import commands_context
from services.failures import ANALYSIS_MAX
from services.playbooks import STEPS_MAX
from services.ports import CardAction
from services.views import build_card, detail_pages, to_context
from storage.tables import ExecutionState, IncidentStatus, ProposalState
from tests.unit.test_render import (
    _RUN,
    CREATED,
    PLAUSIBLE,
    _attempt,
    _audit_context,
    _failure_context,
    _longest_failure,
    _started,
    executed,
    make_alert,
    make_execution,
    make_incident,
    make_proposal,
    many_label_alerts,
)

# what a value may try: @mention everyone, bold, a link, a code span, a heading, a colour
HOSTILE_MD = '<@all> **x** [l](http://evil) `y` # h <font color="warning">w</font>'
_ALLOWED_TAG = re.compile(r'<font color="(?:info|comment|warning)">|</font>|<@[^<>\s]+>')
_ENTITIES = ("&lt;", "&gt;", "&quot;", "&#", "&amp;amp;")


@pytest.fixture
def renderer() -> Renderer:
    return Renderer(ZoneInfo("Asia/Taipei"))


def _names(channel: str, suffix: str) -> set[str]:
    return {
        p.name.removesuffix(suffix)
        for p in (TEMPLATES_DIR / channel).glob(f"*{suffix}")
        if not p.name.startswith("_") and p.name != "strings.j2"
    }


TELEGRAM = sorted(_names("telegram", ".html.j2"))


def render(renderer: Renderer, name: str, context: dict[str, Any]) -> str:
    return renderer.render(f"wecom/{name}.md.j2", **context)


def plain(markdown: str) -> str:
    """The text a reader sees: without bold markers, colour tags and code-span backticks."""
    return re.sub(r"\*\*|</?font[^>]*>|`", "", markdown)


def ref_of(context: dict[str, Any]) -> str:
    if "card" in context:
        card = context["card"]
        return str(card["ref"] if isinstance(card, dict) else card.ref)
    return str(context.get("ref") or "")


def checked(markdown: str, context: dict[str, Any] | None = None) -> str:
    """Assert the markdown is a valid WeCom robot message for this context; return it."""
    assert markdown.strip()
    assert len(markdown.encode("utf-8")) <= WECOM_MARKDOWN_LIMIT
    bad = [tag for tag in re.findall(r"<[^<>]*>", markdown) if not _ALLOWED_TAG.fullmatch(tag)]
    assert not bad, f"HTML tags WeCom does not support: {bad}"
    for entity in _ENTITIES:
        assert entity not in markdown, f"HTML escaping in markdown: {entity}"
    if context is not None:
        if "&amp;" not in repr(context):
            assert "&amp;" not in markdown
        mentioned = set(re.findall(r"<@([^<>\s]+)>", markdown))
        assert mentioned <= {str(m) for m in context.get("mentions", [])}, f"unexpected mentions: {mentioned}"
        ref = ref_of(context)
        if ref:
            first = markdown.splitlines()[0]
            assert ref in first, f"the first line does not name {ref}: {first!r}"
    return markdown


def render_card(renderer: Renderer, *args: Any, **kwargs: Any) -> str:
    card = build_card(*args, **kwargs)
    markdown = checked(renderer.render("wecom/card.md.j2", card=card), {"card": card})
    assert markdown == renderer.render("wecom/status.md.j2", card=to_context(card))  # /status says the same
    return markdown


# --- a WeCom twin for every Telegram template ------------------------------------------------------


def test_render_wecom_every_telegram_template_has_a_twin() -> None:
    missing = set(TELEGRAM) - _names("wecom", ".md.j2")
    assert not missing, f"write templates/wecom/<name>.md.j2 for: {sorted(missing)}"


def test_render_wecom_plausible_covers_every_template() -> None:
    assert set(TELEGRAM) <= set(PLAUSIBLE)


@pytest.mark.parametrize(
    ("name", "context"),
    [
        pytest.param(name, context, id=f"{name}-{index}")
        for name in TELEGRAM
        for index, context in enumerate(PLAUSIBLE.get(name, []))
    ],
)
def test_render_wecom_every_plausible_context(renderer: Renderer, name: str, context: dict[str, Any]) -> None:
    checked(render(renderer, name, context), context)


# --- values are neutralised --------------------------------------------------------------------------


def _assert_neutralised(markdown: str) -> None:
    assert "＜@all＞" in markdown and "<@all>" not in markdown
    assert "**x**" not in markdown and "＊＊x＊＊" in markdown
    assert "[l](" not in markdown and "http://evil" in markdown
    assert "`y`" not in markdown
    assert '<font color="warning">w' not in markdown
    assert "\n#" not in markdown and not markdown.startswith("#")


@pytest.mark.parametrize(
    ("name", "context"),
    [
        pytest.param("error", {"code": "unknown_command", "command": HOSTILE_MD}, id="error"),
        pytest.param("error", {"code": "bad_ref", "text": HOSTILE_MD}, id="bad-ref"),
        pytest.param("decision", {**PLAUSIBLE["decision"][1], "by": HOSTILE_MD, "reason": HOSTILE_MD}, id="decision"),
        pytest.param("execution", {**PLAUSIBLE["execution"][3], "error": HOSTILE_MD}, id="retry"),
        pytest.param("execution", {**PLAUSIBLE["execution"][5], "output": "ok\n" + HOSTILE_MD}, id="rehearsal"),
        pytest.param("execution", _started(approvers=[HOSTILE_MD], commands=[HOSTILE_MD]), id="started"),
        pytest.param("failure_analysis", _failure_context(analysis=HOSTILE_MD, model=HOSTILE_MD), id="analysis"),
        pytest.param("failure_analysis", _failure_context(error=HOSTILE_MD, output=HOSTILE_MD), id="rules"),
        pytest.param("answer", {**PLAUSIBLE["answer"][0], "text": "# " + HOSTILE_MD + "\n# " + HOSTILE_MD},
                     id="answer"),
        pytest.param("kb", {"query": HOSTILE_MD, "hits": [{**PLAUSIBLE["kb"][0]["hits"][0], "tags": [HOSTILE_MD]}]},
                     id="kb"),
        pytest.param("run_proposed", {**PLAUSIBLE["run_proposed"][0], "by": HOSTILE_MD, "command": HOSTILE_MD},
                     id="run-proposed"),
        pytest.param("review_failed", {"ref": "INC-42", "reason": HOSTILE_MD}, id="review-failed"),
        pytest.param("summary", {**PLAUSIBLE["summary"][0], "title": HOSTILE_MD, "notes": [HOSTILE_MD]},
                     id="summary"),
        pytest.param("action_result", {**PLAUSIBLE["action_result"][2], "by": HOSTILE_MD}, id="action-result"),
    ],
)
def test_render_wecom_values_cannot_add_markup(renderer: Renderer, name: str, context: dict[str, Any]) -> None:
    markdown = checked(render(renderer, name, context), context)
    _assert_neutralised(markdown)


def test_render_wecom_card_values_cannot_add_markup(renderer: Renderer) -> None:
    incident = make_incident(alertname=HOSTILE_MD, service=HOSTILE_MD, namespace=HOSTILE_MD)
    alerts = [make_alert(annotations={"summary": HOSTILE_MD})]
    proposal = make_proposal(root_cause=HOSTILE_MD, command=HOSTILE_MD, reasoning=HOSTILE_MD, risk=HOSTILE_MD,
                             blast_score=12, tier="one_approver", rollback_plan=HOSTILE_MD, score_reasons=[HOSTILE_MD])
    markdown = render_card(renderer, incident, alerts, proposal)
    _assert_neutralised(markdown)
    assert markdown.count("**") == 2 * 6  # the title and five labels: Root cause, Proposal, Blast radius, Risk, Why
    assert markdown.count("`") == 2 * 4  # proposal, rollback plan and the two commands of the last line


def test_render_wecom_does_not_escape_html(renderer: Renderer) -> None:
    markdown = checked(render(renderer, "decision", PLAUSIBLE["decision"][1]), PLAUSIBLE["decision"][1])
    assert markdown == "❌ **INC-42** · Rejected by Bob ＜b＞ · 08:30: not now & ＜never＞"


def test_render_wecom_links_keep_working(renderer: Renderer) -> None:
    context = PLAUSIBLE["review_opened"][0]
    markdown = checked(render(renderer, "review_opened", context), context)
    assert "(https://git.example.com/ops/cluster/issues/7?a=1&b=%3C2%3E)" in markdown
    proposal = make_proposal(blast_score=82, tier="two_approvers", required_approvals=2,
                             review_url="https://git.example.com/ops/cluster/issues/7")
    markdown = render_card(renderer, make_incident(), [make_alert()], proposal)
    assert "🔗 [Review issue](https://git.example.com/ops/cluster/issues/7)" in markdown


# --- the card --------------------------------------------------------------------------------------


def test_render_wecom_card_pending_names_the_commands(renderer: Renderer) -> None:
    proposal = make_proposal(blast_score=12, tier="one_approver")
    card = build_card(make_incident(), [make_alert()], proposal)
    assert CardAction.APPROVE in card.actions
    markdown = render_card(renderer, make_incident(), [make_alert()], proposal)
    text = plain(markdown)
    assert markdown.startswith("🔴 **P1 · INC-42 · HighErrorRate**\n")
    assert "checkout · shop · 1 alert · since 08:30" in text
    assert "Error rate above 5%" in text
    assert "**Proposal:** `kubectl -n shop rollout undo deployment/checkout`" in markdown
    assert "— rules" in text and "confidence" not in text
    assert "Blast radius 12 → 1 approver" in text
    assert "⏳ Awaiting approval" in text
    assert markdown.splitlines()[-1] == (
        "Approve: `/approve INC-42` · Reject: `/reject INC-42` (or @alertpilot in the group)"
    )


def test_render_wecom_card_two_approvers(renderer: Renderer) -> None:
    proposal = make_proposal(blast_score=82, tier="two_approvers", required_approvals=2,
                             score_reasons=["delete deployment 55", "× prod 1.5", "= 83 → 82"],
                             rollback_plan="kubectl -n shop rollout undo deployment/checkout")
    text = plain(render_card(renderer, make_incident(), [make_alert()], proposal, ["@alice <a>"]))
    assert "Blast radius 82 → 2 approvers · rollback: kubectl -n shop rollout undo deployment/checkout" in text
    assert "delete deployment 55 × prod 1.5 = 83 → 82" in text
    assert "Awaiting approval · 1/2 approvals: @alice ＜a＞" in text


def test_render_wecom_card_blocked_has_no_approve_line(renderer: Renderer) -> None:
    blocked = make_proposal(state=ProposalState.BLOCKED, blast_score=100, tier="blocked",
                            blocked_reason="deletes a namespace")
    markdown = render_card(renderer, make_incident(), [make_alert()], blocked)
    text = plain(markdown)
    assert "Blast radius 100 → blocked" in text and "⛔ Blocked: deletes a namespace" in text
    assert "/approve" not in markdown and "Awaiting approval" not in text


def test_render_wecom_card_approved(renderer: Renderer) -> None:
    proposal = make_proposal(state=ProposalState.APPROVED, decided_by_name="@alice",
                             decided_at=CREATED + timedelta(minutes=3))
    markdown = render_card(renderer, make_incident(), [make_alert()], proposal)
    assert "✅ Approved by @alice · 08:33 — starting…" in markdown
    assert "Awaiting approval" not in markdown and "/approve" not in markdown


def test_render_wecom_card_executing(renderer: Renderer) -> None:
    proposal, execution = executed(ProposalState.EXECUTING, state=ExecutionState.RUNNING, dry_run=True,
                                   finished_at=None)
    markdown = render_card(renderer, make_incident(), [make_alert()], proposal, execution=execution)
    assert "▶️ DRY RUN · Running · approved by @alice · 08:33" in markdown
    proposal, execution = executed(ProposalState.EXECUTING, state=ExecutionState.RUNNING, finished_at=None)
    markdown = render_card(renderer, make_incident(), [make_alert()], proposal, execution=execution)
    assert "▶️ Running · approved by @alice · 08:33" in markdown and "DRY RUN" not in markdown


def test_render_wecom_card_succeeded(renderer: Renderer) -> None:
    proposal, execution = executed(ProposalState.SUCCEEDED, dry_run=True)
    markdown = render_card(renderer, make_incident(), [make_alert()], proposal, execution=execution)
    assert "🧪 DRY RUN done · approved by @alice — nothing was changed" in markdown
    assert "Remediated" not in markdown
    proposal, execution = executed(ProposalState.SUCCEEDED)
    markdown = render_card(renderer, make_incident(), [make_alert()], proposal, execution=execution)
    assert "✅ Remediated · approved by @alice · 08:37 · waiting for alerts to resolve" in markdown
    resolved = make_incident(status=IncidentStatus.RESOLVED, resolved_at=CREATED + timedelta(minutes=9))
    markdown = render_card(renderer, resolved, [make_alert(status="resolved")], proposal, execution=execution)
    assert "Remediated · approved by @alice · 08:37" in markdown and "waiting for alerts" not in markdown
    assert "Resolved after 9 min" in markdown


def test_render_wecom_card_failed(renderer: Renderer) -> None:
    proposal, execution = executed(ProposalState.FAILED, state=ExecutionState.FAILED, attempts=3,
                                   error="Error from server (Forbidden): <b>nope</b> & more",
                                   rollback="not rolled back automatically: <scale> back")
    markdown = render_card(renderer, make_incident(), [make_alert()], proposal, execution=execution)
    assert ("❌ Remediation failed: Error from server (Forbidden): ＜b＞nope＜/b＞ & more "
            "(not rolled back automatically: ＜scale＞ back). Re-analyse or /run another command.") in markdown
    proposal, execution = executed(ProposalState.FAILED, state=ExecutionState.FAILED, dry_run=True, error="boom")
    markdown = render_card(renderer, make_incident(), [make_alert()], proposal, execution=execution)
    assert "❌ DRY RUN · Remediation failed: boom. Re-analyse" in markdown


def test_render_wecom_card_resolved(renderer: Renderer) -> None:
    incident = make_incident(status=IncidentStatus.RESOLVED, resolved_at=CREATED + timedelta(minutes=17, seconds=10))
    markdown = render_card(renderer, incident, [make_alert(status="resolved")],
                           make_proposal(state=ProposalState.EXPIRED))
    assert markdown.startswith("✅ **P1 · INC-42 · HighErrorRate**")
    assert "Resolved after 17 min" in markdown
    assert "Not decided before the incident resolved" in markdown
    assert "Awaiting approval" not in markdown and "/approve" not in markdown


def test_render_wecom_card_analysing_and_ai(renderer: Renderer) -> None:
    markdown = render_card(renderer, make_incident(needs_analysis=True), [make_alert()], None)
    assert "⏳ Analysing…" in markdown and "Proposal" not in markdown
    proposal = make_proposal(source="ai", model="gpt-x", confidence=0.873, fallback_reason=None)
    text = plain(render_card(renderer, make_incident(), [make_alert()], proposal))
    assert "— AI gpt-x" in text and "confidence 87%" in text
    text = plain(render_card(renderer, make_incident(), [make_alert()], make_proposal(fallback_reason="timeout")))
    assert "⚠️ AI timed out — rule-based proposal" in text


def test_render_wecom_card_optional_on_call_mentions(renderer: Renderer) -> None:
    # not in the Telegram card's context: a WeCom gateway may add its on-call userids
    card = build_card(make_incident(), [make_alert()], make_proposal())
    context = {"card": card, "mentions": ["zhangsan", "lisi"]}
    markdown = checked(renderer.render("wecom/card.md.j2", **context), context)
    assert markdown.splitlines()[2] == "on-call <@zhangsan>, <@lisi>"
    assert "<@" not in renderer.render("wecom/card.md.j2", card=card)


# --- failure analysis, execution -------------------------------------------------------------------


def test_render_wecom_failure_analysis_mentions(renderer: Renderer) -> None:
    context = _failure_context(mentions=["zhangsan", "lisi"])
    markdown = checked(render(renderer, "failure_analysis", context), context)
    assert "<@zhangsan>" in markdown and "<@lisi>" in markdown
    assert markdown.startswith("**🚨 Remediation failed: INC-42 HighErrorRate**\n")
    assert "on-call <@zhangsan>, <@lisi>\n`kubectl -n shop rollout undo deployment/checkout`" in markdown
    context = _failure_context(mentions=[])
    assert "<@" not in checked(render(renderer, "failure_analysis", context), context)


def test_render_wecom_failure_analysis_with_a_title_without_the_ref(renderer: Renderer) -> None:
    context = _failure_context(title="checkout rollback failed")
    markdown = checked(render(renderer, "failure_analysis", context), context)
    assert markdown.startswith("🚨 **INC-42** · **checkout rollback failed**\n")


def test_render_wecom_failure_analysis_rule_based(renderer: Renderer) -> None:
    context = _failure_context(reason="forbidden", error="it <broke> & stopped")
    text = plain(checked(render(renderer, "failure_analysis", context), context))
    assert "Summary: the command failed: it ＜broke＞ & stopped" in text
    assert "RBAC permission" in text and "kubectl auth can-i" in text
    assert "> Error from server (＜b＞Forbidden＜/b＞)" in text  # the output is a quote


def test_render_wecom_execution_names_the_incident_first(renderer: Renderer) -> None:
    markdown = checked(render(renderer, "execution", PLAUSIBLE["execution"][3]), PLAUSIBLE["execution"][3])
    assert markdown.splitlines()[0] == "⚠️ **INC-42** · attempt 1 failed (timeout); retrying in 30 s (1/2)"
    # exactly what ExecutionService._claim sends when the incident resolved before the command started
    context = {"event": "skipped", "ref": "INC-42"}
    markdown = checked(render(renderer, "execution", context), context)
    assert markdown == "ℹ️ **INC-42** resolved before the approved command started: it was not run."


def test_render_wecom_action_result_without_a_namespace(renderer: Renderer) -> None:
    # jinja2 has a global called "namespace": a context without the key must not print it
    context = {"outcome": "not_allowed", "ref": "", "state": None, "by": None, "needed_role": "viewer"}
    assert render(renderer, "action_result", context) == "⛔ You are not allowed to do this: it needs the viewer role."


# --- the longest fields still fit ------------------------------------------------------------------


def _huge_card() -> dict[str, Any]:
    huge = "x" * 50_000
    incident = make_incident(alertname=huge, title=huge, service=huge, namespace=huge, severity=huge)
    proposal = make_proposal(
        state=ProposalState.FAILED, model=huge, root_cause=huge, command=huge, reasoning=huge, risk=huge,
        decided_by_name=huge, decided_at=CREATED, decision_reason=huge, fallback_reason="timeout", playbook_name=huge,
        steps=[huge] * 12, blast_score=100, tier="two_approvers", required_approvals=2, score_reasons=[huge] * 5,
        rollback_plan=huge, blocked_reason=huge, review_url="https://git.example.com/" + "x" * 400,
    )
    execution = make_execution(state=ExecutionState.FAILED, dry_run=True, error="e" * 5000, rollback="r" * 3000)
    alerts = [make_alert(annotations={"summary": huge})]
    return {"card": build_card(incident, alerts, proposal, [huge, huge], execution)}


def _longest_audit() -> dict[str, Any]:
    execution = make_execution(state=ExecutionState.FAILED, attempts=12, approvers=["a" * 80] * 3,
                               requested_by="r" * 80, error="e" * 600, rollback="b" * 400, replicas_before=3,
                               commands=["k" * 300, "k" * 300])
    attempts = [_attempt("run", n, "transient", step_index=n % 2, exit_code=None, reason="connection refused",
                         argv=["k" * 400], stderr="o" * 400) for n in range(1, 13)]
    return _audit_context(execution, attempts, page=3, pages=3)


def _details(alerts: int, labels: int, value_len: int) -> list[dict[str, Any]]:
    pages, left_out = detail_pages(many_label_alerts(alerts, labels, value_len))
    return [
        {"ref": "INC-42", "alerts": page, "page": number, "pages": len(pages),
         "left_out": left_out if number == len(pages) else 0, "incident_id": 42}
        for number, page in enumerate(pages, start=1)
    ]


@pytest.mark.parametrize(
    ("name", "contexts"),
    [
        pytest.param("failure_analysis", [_longest_failure(2, analysis="a" * ANALYSIS_MAX, model="m" * 60),
                                          _longest_failure(STEPS_MAX), _longest_failure(1, analysis="a" * ANALYSIS_MAX)],
                     id="failure-analysis"),
        pytest.param("execution", [_started(**commands_context(["k" * 300] * STEPS_MAX), approvers=["a" * 60] * 3),
                                   {"event": "interrupted", **_RUN, **commands_context(["k" * 300] * STEPS_MAX),
                                    "attempts": 9}], id="execution"),
        pytest.param("card", [_huge_card()], id="card"),
        pytest.param("audit", [_longest_audit()], id="audit"),
        pytest.param("details", _details(200, 40, 500) + _details(200, 6, 30), id="details"),
        pytest.param("answer", [{"kind": "summary", "ref": "INC-42", "text": "t " * 1750, "part": 1, "parts": 3,
                                 "model": "m" * 60}], id="answer"),
    ],
)
def test_render_wecom_longest_fields_fit(renderer: Renderer, name: str, contexts: list[dict[str, Any]]) -> None:
    for context in contexts:
        checked(render(renderer, name, context), context)
