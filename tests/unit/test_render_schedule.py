"""Templates of the scheduled features (issue 7), in both channels: the KPI report and weekly digest, postmortems
and their fallback, silences, approval reminders, the 🔕 button's answers, the new usage and help lines, and the
AI postmortem prompt.

The contexts come from the services' own code around fakes of their storage (ReportService.context,
PostmortemService.context with a scripted model, ReminderService._context, silence_view, parse_silence), so the
keys the templates read are the keys the code sends. Every report figure has its own number, so a figure the
template leaves out is caught. This module imports no other test module: tests/unit/test_render.py may take
SCHEDULE_PLAUSIBLE from it for its every-template checks."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from bot.chat.wecom import SHRINK_STEPS, _shrink_view
from bot.render import (
    TELEGRAM_TEXT_LIMIT,
    TEMPLATES_DIR,
    WECOM_MARKDOWN_LIMIT,
    Renderer,
    telegram_visible_length,
)
from services.actions import ActionResult, Outcome
from services.ai import AIAdvisor
from services.chat import result_context
from services.matchers import SilenceError, parse_duration, parse_silence
from services.metrics import Metrics
from services.postmortems import PostmortemService
from services.queries import _execution_json, _incident_json, _summary_event
from services.reminders import ReminderService
from services.reports import TRENDS, ReportService, grade, trend
from services.roles import parse_roles
from services.schedule import Period, ReportKind, days
from services.silences import silence_view
from storage.tables import (
    Execution,
    ExecutionAttempt,
    ExecutionState,
    Incident,
    IncidentStatus,
    Proposal,
    ProposalState,
    Silence,
    TimelineEvent,
)
from tests.fakes.botapi import parse_telegram_html
from tests.fakes.model import FakeModel

TZ = ZoneInfo("Asia/Taipei")
NOW = datetime(2026, 11, 24, 0, 30, tzinfo=UTC)  # Tuesday 08:30 in Asia/Taipei
STARTED = datetime(2026, 11, 23, 5, 6, tzinfo=UTC)  # 13:06 Taipei
HOSTILE_MD = '<@all> **x** [l](http://evil) `y` # h <font color="warning">w</font>'
_ALLOWED_TAG = re.compile(r'<font color="(?:info|comment|warning)">|</font>|<@[^<>\s]+>')
NEW_TEMPLATES = ("report", "postmortem", "postmortem_fallback", "silence", "silences", "reminder")


@pytest.fixture
def renderer() -> Renderer:
    return Renderer(TZ)


def telegram(renderer: Renderer, name: str, context: dict[str, Any]) -> str:
    """The Telegram message as its reader sees it, after asserting it is valid HTML within the limit."""
    markup = renderer.render(f"telegram/{name}.html.j2", **context)
    plain, _ = parse_telegram_html(markup)  # raises on what Telegram rejects
    assert plain.strip()
    assert len(plain) <= TELEGRAM_TEXT_LIMIT and telegram_visible_length(markup) == len(plain)
    return plain


def wecom(renderer: Renderer, name: str, context: dict[str, Any], *, mentions: tuple[str, ...] = ()) -> str:
    """The WeCom markdown, after asserting it is valid robot markdown: within 4096 bytes, only the tags WeCom
    supports, no HTML escaping, only the expected @mentions, and the incident named on the first line."""
    markdown = renderer.render(f"wecom/{name}.md.j2", **context)
    assert markdown.strip()
    assert len(markdown.encode("utf-8")) <= WECOM_MARKDOWN_LIMIT
    bad = [tag for tag in re.findall(r"<[^<>]*>", markdown) if not _ALLOWED_TAG.fullmatch(tag)]
    assert not bad, f"HTML tags WeCom does not support: {bad}"
    assert not re.search(r"&(?:lt|gt|amp|quot|#\d+);", markdown), "HTML escaping in markdown"
    assert set(re.findall(r"<@([^<>\s]+)>", markdown)) <= set(mentions)
    if context.get("ref"):
        assert context["ref"] in markdown.splitlines()[0], f"the first line does not name {context['ref']}"
    return markdown


def plain(markdown: str) -> str:
    """WeCom markdown as read: without bold markers, colour tags and code-span backticks."""
    return re.sub(r"\*\*|</?font[^>]*>|`", "", markdown)


def both(renderer: Renderer, name: str, context: dict[str, Any], *, mentions: tuple[str, ...] = ()) -> list[str]:
    """The text of the Telegram and the WeCom message, for assertions that hold in both channels."""
    return [telegram(renderer, name, context), plain(wecom(renderer, name, context, mentions=mentions))]


# --- the report: storage fakes around the real ReportService ---------------------------------------------------

# What storage/reports.py ReportRepo returns for the week of the digest, every figure its own number.
RAW: dict[str, Any] = {
    "alerts": {"alerts": 1201, "repeats": 3402, "grouped": 453, "silenced_alerts": 74},
    "incidents": {"incidents": 125, "silenced_incidents": 26, "resolved_of_opened": 117, "mtta_seconds": 250.0,
                  "acknowledged": 68},
    "resolutions": {"resolved": 119, "auto_resolved": 41, "mttr_seconds": 3930.0},
    "decisions": {"human_approved": 57, "rejected": 13, "expired": 22, "approval_p50_seconds": 185.0},
    "executions": {"auto_succeeded": 31, "auto_failed": 9, "approved_succeeded": 47, "approved_failed": 3,
                   "dry_runs": 15},
    "noisiest": [
        {"alertname": "DiskFull", "alerts": 212, "notifications": 1530},
        {"alertname": "HighLatency", "alerts": 151, "notifications": 420},
        {"alertname": "KubePodCrashLooping", "alerts": 97, "notifications": 388},
        {"alertname": "Odd <b>name</b> & co", "alerts": 5, "notifications": 201},
        {"alertname": "NodeNotReady", "alerts": 1, "notifications": 1},
    ],
    "categories": [{"category": "disk", "incidents": 44}, {"category": "memory", "incidents": 23},
                   {"category": "network", "incidents": 12}],
    "knowledge": 61,
    "playbooks": {"active_playbooks": 71, "used_playbooks": 39},
}
# The week before, for the digest's comparison: some figures changed, some did not, one had no data.
RAW_BEFORE: dict[str, Any] = {
    **RAW,
    "alerts": {**RAW["alerts"], "alerts": 1001},
    "incidents": {**RAW["incidents"], "incidents": 100, "mtta_seconds": None},
    "resolutions": {**RAW["resolutions"], "auto_resolved": 30, "mttr_seconds": 4000.0},
    "decisions": {**RAW["decisions"], "human_approved": 60},
    "executions": {"auto_succeeded": 20, "auto_failed": 10, "approved_succeeded": 40, "approved_failed": 5,
                   "dry_runs": 0},
    "knowledge": 0,
}
# No data: nothing acknowledged, resolved, approved or remediated, so no means, rates or grade.
RAW_EMPTY: dict[str, Any] = {
    "alerts": {"alerts": 0, "repeats": 0, "grouped": 0, "silenced_alerts": 0},
    "incidents": {"incidents": 0, "silenced_incidents": 0, "resolved_of_opened": 0, "mtta_seconds": None,
                  "acknowledged": 0},
    "resolutions": {"resolved": 0, "auto_resolved": 0, "mttr_seconds": None},
    "decisions": {"human_approved": 0, "rejected": 0, "expired": 0, "approval_p50_seconds": None},
    "executions": {"auto_succeeded": 0, "auto_failed": 0, "approved_succeeded": 0, "approved_failed": 0,
                   "dry_runs": 0},
    "noisiest": [], "categories": [], "knowledge": 0, "playbooks": {"active_playbooks": 0, "used_playbooks": 0},
}


def make_silence(id: int, **values: Any) -> Silence:
    fields: dict[str, Any] = {
        "id": id, "matchers": {"service": "db", "namespace": "prod"}, "reason": "disk migration",
        "created_by": "tg:333", "created_by_name": "@olga", "channel": "telegram", "chat_id": "-100",
        "created_at": NOW - timedelta(hours=1), "ends_at": datetime(2026, 11, 24, 10, 0, tzinfo=UTC),  # 18:00 Taipei
    }
    return Silence(**{**fields, **values})


class FakeReports:
    """storage/reports.py ReportRepo: each period (by its start) answers with its own figures."""

    def __init__(self, raw: dict[datetime, dict[str, Any]], ending: list[Silence]) -> None:
        self.raw, self.ending = raw, ending

    async def alerts(self, start: datetime, end: datetime) -> dict[str, int]:
        return dict(self.raw[start]["alerts"])

    async def incidents(self, start: datetime, end: datetime) -> dict[str, Any]:
        return dict(self.raw[start]["incidents"])

    async def resolutions(self, start: datetime, end: datetime) -> dict[str, Any]:
        return dict(self.raw[start]["resolutions"])

    async def decisions(self, start: datetime, end: datetime, *, auto_actor: str) -> dict[str, Any]:
        return dict(self.raw[start]["decisions"])

    async def executions(self, start: datetime, end: datetime) -> dict[str, int]:
        return dict(self.raw[start]["executions"])

    async def noisiest(self, start: datetime, end: datetime) -> list[dict[str, Any]]:
        return list(self.raw[start]["noisiest"])

    async def categories(self, start: datetime, end: datetime) -> list[dict[str, Any]]:
        return list(self.raw[start]["categories"])

    async def knowledge(self, start: datetime, end: datetime) -> int:
        return int(self.raw[start]["knowledge"])

    async def playbooks(self) -> dict[str, int]:
        return dict(next(iter(self.raw.values()))["playbooks"])

    async def silences_ending(self, start: datetime, end: datetime) -> list[Silence]:
        assert start == NOW
        return list(self.ending)


class FakeTx:
    def __init__(self, **repos: Any) -> None:
        self.__dict__.update(repos)


class FakeDatabase:
    """storage.db.Database: read() yields the one fake transaction."""

    def __init__(self, tx: FakeTx) -> None:
        self.tx = tx

    @asynccontextmanager
    async def read(self) -> AsyncIterator[FakeTx]:
        yield self.tx


def period(kind: ReportKind) -> Period:
    """The period of each kind at NOW (the scheduled ones as they fire at 08:00 that morning)."""
    today = NOW.astimezone(TZ).date()
    if kind is ReportKind.WEEKLY:
        return days(date(2026, 11, 16), date(2026, 11, 22), kind, TZ)
    if kind in (ReportKind.DAILY, ReportKind.YESTERDAY):
        return days(today - timedelta(days=1), today - timedelta(days=1), kind, TZ)
    if kind is ReportKind.TODAY:
        return Period(kind, days(today, today, kind, TZ).start, NOW, today, today)
    return Period(kind, NOW - timedelta(days=7), NOW, (NOW - timedelta(days=7)).astimezone(TZ).date(), today)


async def report_context(
    kind: ReportKind,
    raw: dict[str, Any] = RAW,
    before: dict[str, Any] = RAW_BEFORE,
    ending: list[Silence] | None = None,
) -> dict[str, Any]:
    """ReportService.context for ``kind`` at NOW, from the figures the fake storage holds."""
    covered = period(kind)
    earlier = days(date(2026, 11, 9), date(2026, 11, 15), kind, TZ)
    reports = FakeReports({covered.start: raw, earlier.start: before}, [make_silence(4)] if ending is None else ending)
    service = ReportService(
        FakeDatabase(FakeTx(reports=reports)), None, None, None, lambda: NOW,  # type: ignore[arg-type]
        tz=TZ, at=datetime(2026, 1, 1, 8, 0).time(), targets=[], grace=timedelta(hours=6),
    )
    return await service.context(covered)


def report_line(text: str, start: str) -> str:
    """The line of ``text`` that starts with ``start``."""
    found = [line for line in text.splitlines() if line.startswith(start)]
    assert found, f"no line starts with {start!r}:\n{text}"
    return found[0]


async def test_render_schedule_report_figures_are_the_services_own(renderer: Renderer) -> None:
    context = await report_context(ReportKind.DAILY)
    figures = context["figures"]
    assert set(context) == {"kind", "first_day", "last_day", "start", "end", "timezone", "figures", "silences_ending"}
    assert figures["remediations"] == 90 and figures["auto_rate"] == 77.5
    assert round(figures["success_rate"]) == 87
    assert (figures["grade"], figures["grade_basis"]) == ("excellent", "remediation")
    assert context["silences_ending"] == [
        {"id": 4, "matchers": "namespace=prod service=db", "ends_at": "2026-11-24T10:00:00+00:00"}
    ]


# Every figure of the report, as both channels write it (label and value, so a swapped figure is caught too).
EVERY_FIGURE = (
    "Alerts: 1201", "de-duplicated repeats: 3402", "grouped into incidents: 453", "silenced: 74",
    "Incidents opened: 125", "silenced: 26", "resolved since: 117",
    "Resolved: 119", "auto-resolved (nobody acted, nothing ran): 41",
    "MTTA: 4 min (acknowledged: 68)", "MTTR: 1 h 6 min",
    "Human-approved: 57", "rejected: 13", "expired: 22", "approval latency p50: 3 min",
    "Auto-remediation: 31 succeeded · 9 failed · rate 78%",
    "Approved runs: 47 succeeded · 3 failed",
    "Remediations: 90 · success 87% · dry runs (not counted): 15",
    "1. DiskFull — 1530 notifications (212 alerts)",
    "2. HighLatency — 420 notifications (151 alerts)",
    "3. KubePodCrashLooping — 388 notifications (97 alerts)",
    "4. Odd <b>name</b> & co — 201 notifications (5 alerts)",
    "5. NodeNotReady — 1 notification (1 alert)",
    "Top categories: disk (44) · memory (23) · network (12)",
    "New knowledge entries: 61 · playbooks: 71 active, 39 used",
    "Silences ending today:\n• #4 namespace=prod service=db — at 18:00",
    "Health: 🟢 excellent — 87% of remediations succeeded",
)


async def test_render_schedule_daily_report_shows_every_figure(renderer: Renderer) -> None:
    context = await report_context(ReportKind.DAILY)
    for text in both(renderer, "report", context):
        assert text.splitlines()[0] == "📊 Daily report · 2026-11-23 (Asia/Taipei)"
        for figure in EVERY_FIGURE:
            assert figure.replace("<", "＜").replace(">", "＞") in text.replace("<", "＜").replace(">", "＞"), figure
        assert "week before" not in text and " vs " not in text  # only the digest compares


@pytest.mark.parametrize(
    ("kind", "headline"),
    [
        (ReportKind.DAILY, "📊 Daily report · 2026-11-23 (Asia/Taipei)"),
        (ReportKind.WEEKLY, "📊 Weekly digest · 2026-11-16 – 2026-11-22 (Asia/Taipei)"),
        (ReportKind.TODAY, "📊 Report — today · 2026-11-24 00:00 – 08:30 (Asia/Taipei)"),
        (ReportKind.YESTERDAY, "📊 Report — yesterday · 2026-11-23 (Asia/Taipei)"),
        (ReportKind.LAST_7_DAYS, "📊 Report — last 7 days · 2026-11-17 08:30 – 2026-11-24 08:30 (Asia/Taipei)"),
    ],
)
async def test_render_schedule_report_headline_per_kind(renderer: Renderer, kind: ReportKind, headline: str) -> None:
    context = await report_context(kind)
    for text in both(renderer, "report", context):
        assert text.splitlines()[0] == headline
        assert "Alerts: 1201" in text  # every kind shows the figures


async def test_render_schedule_weekly_digest_compares_every_trended_figure(renderer: Renderer) -> None:
    context = await report_context(ReportKind.WEEKLY)
    assert set(context["trends"]) == set(TRENDS)
    telegram_text, wecom_markdown = telegram(renderer, "report", context), wecom(renderer, "report", context)
    # (this week, the week before, arrow, delta): the arrow's colour says whether the change is good
    expected = {
        "Alerts": ("1201 vs 1001", "↑ +20%", False),
        "De-duplicated repeats": ("3402 vs 3402", "→", None),
        "Incidents": ("125 vs 100", "↑ +25%", False),
        "Auto-resolved": ("41 vs 30", "↑ +37%", True),
        "Human-approved": ("57 vs 60", "↓ -5%", False),
        "Rejected": ("13 vs 13", "→", None),
        "Remediations": ("90 vs 75", "↑ +20%", True),
        "Remediation success": ("87% vs 80%", "↑ +8%", True),
        "MTTA": ("4 min vs —", "→", None),  # nothing to compare with
        "MTTR": ("1 h 6 min vs 1 h 7 min", "↓ -2%", True),
        "Approval p50": ("3 min vs 3 min", "→", None),
        "New knowledge entries": ("61 vs 0", "↑", True),  # from zero: no percentage
    }
    assert telegram_text.count(" vs ") == len(expected) + 1 == len(TRENDS) + 1  # and the section's heading
    for label, (values, arrow, good) in expected.items():
        mark = {True: " 🟢", False: " 🔴", None: ""}[good]
        assert report_line(telegram_text, f"{label}: ") == f"{label}: {values} {arrow}{mark}"
        colour = {True: "info", False: "warning", None: "comment"}[good]
        assert report_line(wecom_markdown, f"{label}: ") == f'{label}: {values} <font color="{colour}">{arrow}</font>'
    for text in (telegram_text, plain(wecom_markdown)):
        assert "This week vs the week before" in text
        for figure in EVERY_FIGURE:  # the digest shows every figure too
            assert figure.replace("<", "＜").replace(">", "＞") in text.replace("<", "＜").replace(">", "＞"), figure


async def test_render_schedule_report_without_data_shows_dashes_not_numbers(renderer: Renderer) -> None:
    context = await report_context(ReportKind.YESTERDAY, raw=RAW_EMPTY, ending=[])
    for text in both(renderer, "report", context):
        for figure in ("MTTA: — (acknowledged: 0)", "MTTR: —", "approval latency p50: —", "rate —", "success —",
                       "Noisiest alerts: —", "Top categories: —", "Silences ending today: none",
                       "Health: ⚪ quiet — no incidents", "Alerts: 0", "Incidents opened: 0"):
            assert figure in text
        assert "None" not in text and "%" not in text


async def test_render_schedule_weekly_digest_against_a_week_without_data(renderer: Renderer) -> None:
    context = await report_context(ReportKind.WEEKLY, before=RAW_EMPTY)
    for text in both(renderer, "report", context):
        assert "MTTR: 1 h 6 min vs — →" in text and "Remediation success: 87% vs — →" in text
        assert "Alerts: 1201 vs 0 ↑" in text and "None" not in text


@pytest.mark.parametrize(
    ("raw", "health"),
    [
        (RAW, "🟢 excellent — 87% of remediations succeeded"),
        ({**RAW, "executions": {**RAW["executions"], "approved_failed": 25}}, "🟡 good — 70% of remediations succeeded"),
        ({**RAW, "executions": {**RAW["executions"], "auto_failed": 80}},
         "🔴 needs attention — 48% of remediations succeeded"),
        ({**RAW_EMPTY, "incidents": {**RAW_EMPTY["incidents"], "incidents": 8, "resolved_of_opened": 3}},
         "🔴 needs attention — 38% of the incidents opened are resolved"),
        ({**RAW_EMPTY, "incidents": {**RAW_EMPTY["incidents"], "incidents": 4, "resolved_of_opened": 4}},
         "🟢 excellent — 100% of the incidents opened are resolved"),
        (RAW_EMPTY, "⚪ quiet — no incidents"),
    ],
    ids=["excellent", "good", "attention", "attention-resolution", "excellent-resolution", "quiet"],
)
async def test_render_schedule_report_health_grade_with_rate_and_basis(
    renderer: Renderer, raw: dict[str, Any], health: str
) -> None:
    context = await report_context(ReportKind.DAILY, raw=raw)
    for text in both(renderer, "report", context):
        assert text.splitlines()[1] == f"Health: {health}"


async def test_render_schedule_report_lists_at_most_five_silences_ending_today(renderer: Renderer) -> None:
    ending = [make_silence(i, matchers={"alertname": f"Alert{i}"}) for i in range(1, 9)]
    context = await report_context(ReportKind.DAILY, ending=ending)
    for text in both(renderer, "report", context):
        assert "#5 alertname=Alert5 — at 18:00" in text and "#6 " not in text
        assert "… and 3 more: /silences" in text


async def test_render_schedule_report_with_the_longest_fields_fits(renderer: Renderer) -> None:
    huge = {**RAW, "noisiest": [{"alertname": "A" * 5000, "alerts": 10**6, "notifications": 10**7}] * 5,
            "categories": [{"category": "c" * 5000, "incidents": 10**6}] * 5}
    ending = [make_silence(i, matchers={f"l{n}": "v" * 200 for n in range(8)}) for i in range(20)]
    context = await report_context(ReportKind.WEEKLY, raw=huge, before=huge, ending=ending)
    telegram(renderer, "report", context)
    wecom(renderer, "report", context)


async def test_render_schedule_report_values_cannot_add_markup(renderer: Renderer) -> None:
    raw = {**RAW, "noisiest": [{"alertname": HOSTILE_MD, "alerts": 1, "notifications": 2}],
           "categories": [{"category": HOSTILE_MD, "incidents": 1}]}
    context = await report_context(ReportKind.DAILY, raw=raw, ending=[make_silence(4, matchers={"x": HOSTILE_MD})])
    markdown = wecom(renderer, "report", context)
    assert "<@all>" not in markdown and "[l](" not in markdown and "**x**" not in markdown and "`y`" not in markdown
    assert '<font color="warning">w' not in markdown
    assert "<@all>" in telegram(renderer, "report", context)  # escaped, shown as text


# --- postmortems: the real PostmortemService over fake queries and a scripted model ------------------------------

NARRATIVE = (
    "After 4 minutes the disk of db-0 was full.\nThe approved restart failed twice, then rotating logs fixed it."
)


def _incident(**values: Any) -> Incident:
    fields: dict[str, Any] = {
        "id": 12, "status": IncidentStatus.RESOLVED, "alertname": "DiskFull", "title": "Disk almost full",
        "severity": "critical", "service": "db", "namespace": "prod", "created_at": STARTED + timedelta(minutes=1),
        "started_at": STARTED, "updated_at": STARTED, "resolved_at": STARTED + timedelta(minutes=25),
        "needs_analysis": False,
    }
    return Incident(**{**fields, **values})


def _proposal(**values: Any) -> Proposal:
    fields: dict[str, Any] = {
        "id": 7, "incident_id": 12, "state": ProposalState.FAILED, "source": "ai", "model": "gpt-x",
        "category": "disk", "root_cause": "application logs filled the data volume of db-0",
        "command": "kubectl -n prod rollout restart statefulset/db", "risk": "medium", "reasoning": "",
        "created_at": STARTED + timedelta(minutes=2),
    }
    return Proposal(**{**fields, **values})


def _execution(id: int, **values: Any) -> Execution:
    fields: dict[str, Any] = {
        "id": id, "proposal_id": id, "incident_id": 12, "state": ExecutionState.SUCCEEDED, "executor": "kubectl",
        "dry_run": False, "auto": False, "requested_by": "alertpilot", "approvers": ["@alice", "@bob"],
        "commands": ["kubectl -n prod rollout restart statefulset/db"], "owner": "x",
        "heartbeat_at": STARTED, "started_at": STARTED + timedelta(minutes=5),
        "finished_at": STARTED + timedelta(minutes=5, seconds=42.5),
    }
    return Execution(**{**fields, **values})


def _attempt(execution_id: int, attempt: int, result: str, step: str = "run") -> ExecutionAttempt:
    at = STARTED + timedelta(minutes=5, seconds=attempt)
    return ExecutionAttempt(
        execution_id=execution_id, incident_id=12, step=step, attempt=attempt, argv=["kubectl"], started_at=at,
        finished_at=at, result=result,
    )


def _event(minutes: int, kind: str, actor: str | None = None, **detail: Any) -> TimelineEvent:
    return TimelineEvent(incident_id=12, at=STARTED + timedelta(minutes=minutes), kind=kind, actor=actor, detail=detail)


EVENTS = [
    _event(1, "created"),
    _event(2, "analysed", source="ai", model="gpt-x"),
    _event(4, "approved", "tg:111", name="@alice", reason="disk at 99%"),
    _event(5, "executed", state="failed", command="kubectl -n prod rollout restart statefulset/db"),
    _event(9, "note", "tg:222", name="@bob", text="rotated the logs by hand"),
    _event(25, "resolved"),
]
# the oldest first; the postmortem shows the last three, and says how many came before
EXECUTIONS = [
    (_execution(1, state=ExecutionState.SUCCEEDED, dry_run=True, executor="dry-run"), [_attempt(1, 1, "ok")]),
    (
        _execution(2, state=ExecutionState.FAILED, error="Error from server (Timeout): the server was too slow",
                   rollback="rolled back with kubectl -n prod rollout undo statefulset/db",
                   commands=["kubectl -n prod rollout restart statefulset/db", "kubectl -n prod get pods",
                             "kubectl -n prod logs db-0", "kubectl -n prod describe pod db-0"]),
        [_attempt(2, 1, "ok", step="dry_run"), _attempt(2, 1, "transient"), _attempt(2, 2, "transient"),
         _attempt(2, 3, "permanent")],
    ),
    (_execution(3, auto=True, approvers=["alertpilot"], commands=["kubectl -n prod delete pod db-0"],
                finished_at=None), [_attempt(3, 1, "ok")]),
    (_execution(4, approvers=["@carol"], commands=["kubectl -n prod exec db-0 -- logrotate -f /etc/logrotate.conf"]),
     [_attempt(4, 1, "ok")]),
]


class FakeQueries:
    """services.queries.IncidentQueries.summary_facts and audit, built with its own JSON helpers."""

    def __init__(self, incident: Incident, proposal: Proposal | None, executions: list[tuple[Execution, list]],
                 events: list[TimelineEvent]) -> None:
        self.incident, self.proposal, self.executions, self.events = incident, proposal, executions, events

    async def summary_facts(self, incident_id: int) -> dict[str, Any]:
        return {
            "incident": _incident_json(self.incident, self.proposal),
            "summary": "Disk of db-0 above 95% & <rising>",
            "alerts": [{"alertname": "DiskFull", "repeats": 6}, {"alertname": "DiskFull", "repeats": 3}],
            "more_alerts": 1,
            "events": [_summary_event(e) for e in self.events],
            "notes": [{"at": STARTED.isoformat(), "by": "tg:222", "text": "rotated the logs by hand"}],
        }

    async def audit(self, incident_id: int) -> list[dict[str, Any]]:
        return [_execution_json(e, attempts) for e, attempts in self.executions]


async def postmortem_context(
    *script: Any, incident: Incident | None = None, proposal: Proposal | None = None, executions: Any = EXECUTIONS,
    events: list[TimelineEvent] = EVENTS, now: datetime = STARTED + timedelta(hours=1),
) -> tuple[dict[str, Any], FakeModel | None]:
    """PostmortemService.context with an AI model answering ``script`` (no model when empty)."""
    model = FakeModel(*script, name="gpt-x") if script else None
    advisor = AIAdvisor(model, Renderer(TZ), Metrics()) if model else None
    queries = FakeQueries(incident or _incident(), proposal or _proposal(), executions, events)
    service = PostmortemService(None, queries, None, None, advisor, lambda: now,  # type: ignore[arg-type]
                                targets=[], owner="test")
    return await service.context(12), model


async def test_render_schedule_postmortem_shows_every_fact(renderer: Renderer) -> None:
    context, _ = await postmortem_context(NARRATIVE)
    for text in both(renderer, "postmortem", context):
        lines = text.splitlines()
        assert lines[0] == "📝 Postmortem · INC-12 · DiskFull"
        assert lines[1] == "db · prod · critical · 3 alerts · 9 repeats"
        assert "Duration: 25 min · 2026-11-23 13:06 → resolved 2026-11-23 13:31" in text
        assert "What happened (AI gpt-x)\n" + NARRATIVE in text
        assert "Root cause: application logs filled the data volume of db-0 (AI gpt-x · disk) · proposal failed" in text
        for event in ("• 13:07 created", "• 13:08 analysed", "• 13:10 approved by @alice — disk at 99%",
                      "• 13:11 executed (failed): kubectl -n prod rollout restart statefulset/db",
                      "• 13:15 note by @bob — rotated the logs by hand", "• 13:31 resolved"):
            assert event in text
        # the last three actions, each with who approved it, its result, runs, retries and time
        assert ("❌ failed · approved by @alice, @bob · 3 runs, 2 retries · 42.5 s\n"
                "kubectl -n prod rollout restart statefulset/db\n"
                "… and 3 more steps\n"
                "error: Error from server (Timeout): the server was too slow\n"
                "rollback: rolled back with kubectl -n prod rollout undo statefulset/db") in text
        assert ("✅ succeeded · auto-remediation · 1 run, 0 retries · not finished\n"
                "kubectl -n prod delete pod db-0") in text
        assert "✅ succeeded · approved by @carol · 1 run, 0 retries · 42.5 s" in text
        assert "… and 1 earlier action: /audit INC-12" in text and "DRY RUN" not in text
        assert "Notes\n• rotated the logs by hand" in text
        assert "Disk of db-0 above 95% & " in text


async def test_render_schedule_postmortem_of_a_dry_run_without_narrative_still_firing(renderer: Renderer) -> None:
    context, _ = await postmortem_context(
        incident=_incident(status=IncidentStatus.FIRING, resolved_at=None),
        executions=EXECUTIONS[:1], events=[],
    )
    assert context["narrative"] is None and context["minutes"] == 60
    for text in both(renderer, "postmortem", context):
        assert "Duration: 60 min (1 h) so far · 2026-11-23 13:06 → still firing" in text
        assert "What happened" not in text and "AI gpt-x ·" in text  # the analysis was still the model's
        assert "✅ succeeded · DRY RUN · approved by @alice, @bob · 1 run, 0 retries · 42.5 s" in text
        assert "• nothing recorded" in text and "earlier action" not in text


async def test_render_schedule_postmortem_without_analysis_or_actions(renderer: Renderer) -> None:
    context, _ = await postmortem_context(executions=[], events=[], now=STARTED + timedelta(days=2))
    context = {**context, "root_cause": "", "source": None, "model": "", "category": "", "proposal_state": None,
               "notes": [], "summary": "", "minutes": 1530}
    for text in both(renderer, "postmortem", context):
        assert "Duration: 1530 min (25 h 30 min) ·" in text
        assert "Root cause: not analysed\n" in text and "No command was run." in text and "Notes" not in text


async def test_render_schedule_postmortem_prompt_asks_for_a_blameless_narrative_from_the_facts() -> None:
    context, model = await postmortem_context(NARRATIVE)
    assert model is not None and context["narrative"] == NARRATIVE and context["narrative_model"] == "gpt-x"
    [call] = model.calls
    prompt = call.messages[1]["content"]
    assert "blameless" in prompt and "only the facts" in prompt
    assert "do not invent" in prompt
    assert '"ref": "INC-12"' in prompt and "application logs filled the data volume" in prompt
    assert "<data>" in prompt and "\n</data>" in prompt and prompt.count("</data>") == 1


async def test_render_schedule_postmortem_values_cannot_add_markup(renderer: Renderer) -> None:
    context, _ = await postmortem_context(HOSTILE_MD + "\n# " + HOSTILE_MD)
    context = {**context, "title": HOSTILE_MD, "root_cause": HOSTILE_MD, "notes": [HOSTILE_MD]}
    markdown = wecom(renderer, "postmortem", context)
    assert "<@all>" not in markdown and "[l](" not in markdown and "**x**" not in markdown and "\n#" not in markdown
    assert HOSTILE_MD in telegram(renderer, "postmortem", context)


async def longest_postmortem() -> dict[str, Any]:
    """The postmortem of the longest facts services/postmortems.py lets through (it clips every field)."""
    long = "x" * 1000
    executions = [
        (_execution(n, approvers=["a" * 100] * 5, commands=["k" * 500] * 5, error=long, rollback=long),
         [_attempt(n, i, "transient") for i in range(1, 9)]) for n in range(1, 6)
    ]
    events = [_event(n, "note", "tg:1", name=long, text=long) for n in range(20)]
    context, _ = await postmortem_context("n" * 5000, incident=_incident(alertname=long, service=long, namespace=long),
                                          proposal=_proposal(root_cause=long, model=long), executions=executions,
                                          events=events)
    return context


async def test_render_schedule_postmortem_with_the_longest_fields_fits_wecom_once_shrunk(renderer: Renderer) -> None:
    """What the WeCom gateway does with a message that is too long (bot/chat/wecom.py): shrink every field of
    the context, step by step, until it fits."""
    context = await longest_postmortem()
    shown = context
    for limit in SHRINK_STEPS:
        if len(renderer.render("wecom/postmortem.md.j2", **shown).encode("utf-8")) <= WECOM_MARKDOWN_LIMIT:
            break
        shown = _shrink_view(context, limit)
    assert "Postmortem · INC-12 ·" in wecom(renderer, "postmortem", shown)  # fits, and is valid


async def test_render_schedule_postmortem_with_the_longest_fields_fits_telegram(renderer: Renderer) -> None:
    """services/postmortems.py bounds every field so that the longest postmortem is sent as it is, not as
    its fallback (telegram() checks the 4096-character limit)."""
    text = telegram(renderer, "postmortem", await longest_postmortem())
    assert "INC-12" in text and "n" * 100 in text  # the (clipped) narrative is there


def test_render_schedule_postmortem_fallback(renderer: Renderer) -> None:
    context = {"ref": "INC-12", "minutes": 25, "error": "rendered message has 5012 characters <b>"}
    assert telegram(renderer, "postmortem_fallback", context) == (
        "⚠️ Postmortem for INC-12 (lasted 25 min) could not be sent: rendered message has 5012 characters <b>"
    )
    assert wecom(renderer, "postmortem_fallback", context) == (
        "⚠️ **INC-12** · Postmortem (lasted 25 min) could not be sent: rendered message has 5012 characters ＜b＞"
    )
    unknown = {**context, "minutes": None}
    for text in both(renderer, "postmortem_fallback", unknown):
        assert "(duration unknown)" in text


# --- silences ------------------------------------------------------------------------------------------------

VIEW = silence_view(make_silence(5, reason="disk <migration> & co"), (2, 9))


def _silence_error(text: str) -> SilenceError:
    with pytest.raises(SilenceError) as caught:
        parse_silence(text)
    return caught.value


def _duration_error(text: str) -> SilenceError:
    with pytest.raises(SilenceError) as caught:
        parse_duration(text)
    return caught.value


def test_render_schedule_silence_created(renderer: Renderer) -> None:
    matchers, _, reason = parse_silence("namespace=prod alertname=HighLatency 30m disk <migration> & co")
    view = silence_view(make_silence(5, matchers=matchers, reason=reason))
    for text in both(renderer, "silence", {"event": "created", "silence": view, "muted": ["INC-3", "INC-4"]}):
        assert text.splitlines()[0] == "🔕 Silence #5 until 2026-11-24 18:00: alertname=HighLatency namespace=prod"
        assert "Reason: disk " in text and "Set by @olga." in text
        assert "Muted now: INC-3, INC-4" in text and "/unsilence 5 ends it early." in text
    for text in both(renderer, "silence", {"event": "created", "silence": {**view, "reason": ""}, "muted": []}):
        assert "No firing incident matches right now." in text and "Reason" not in text


def test_render_schedule_silence_removed_and_expired(renderer: Renderer) -> None:
    removed = {"event": "removed", "silence": VIEW, "by": "@olga", "unmuted": ["INC-3"]}
    for text in both(renderer, "silence", removed):
        assert text.startswith("🔔 Silence #5 removed by @olga: namespace=prod service=db (set by @olga: disk ")
        assert "it would have ended 2026-11-24 18:00" in text
        assert "Still firing, so their cards come now: INC-3" in text
    expired = {"event": "expired", "silence": VIEW, "unmuted": []}
    for text in both(renderer, "silence", expired):
        assert text.startswith("🔔 Silence #5 expired at 2026-11-24 18:00: namespace=prod service=db (set by @olga")
        assert "None of its incidents is still firing." in text


SILENCE_USAGE = "Usage: /silence <service | label=value … | INC-12> <duration> [reason]"
EXAMPLES = "e.g. /silence checkout 2h deploy or /silence namespace=prod alertname=HighLatency 30m"


@pytest.mark.parametrize(
    ("error", "says"),
    [
        (_duration_error("2x"), "2x is not a duration: write a number and a unit (s, m, h, d or w)"),
        (_silence_error("checkout 45d"), "45d is out of range: a silence lasts from 1 minute to 30 days."),
        (_silence_error("2h deploy"), "Say what to silence before the duration: a service, or label=value pairs."),
        (_silence_error("1x=y 2h"), "1x=y is not a matcher: give at most one service name"),
        (_silence_error("checkout payments 2h"), "payments is not a matcher:"),
        (_silence_error("checkout namespace=prod"), "Say for how long, after the matchers: e.g. 30m, 2h or 1d"),
        (_silence_error(""), "Say what to silence and for how long."),
    ],
    ids=lambda value: value.code if isinstance(value, SilenceError) else None,
)
def test_render_schedule_silence_errors_say_what_is_wrong_and_show_usage(
    renderer: Renderer, error: SilenceError, says: str
) -> None:
    context = {"event": "error", "code": error.code, "text": error.text}  # as SilenceService.create sends it
    telegram_text = telegram(renderer, "silence", context)
    wecom_text = plain(wecom(renderer, "silence", context))
    for text in (telegram_text, wecom_text.replace("＜", "<").replace("＞", ">")):
        assert text.startswith("⚠️ " + says)
        assert SILENCE_USAGE in text and EXAMPLES in text


def test_render_schedule_silence_error_codes_are_all_covered() -> None:
    codes = {_duration_error("2x").code, _silence_error("checkout 45d").code, _silence_error("2h").code,
             _silence_error("1x=y 2h").code, _silence_error("checkout").code, _silence_error("").code}
    assert codes == {"bad_duration", "duration_range", "no_matcher", "bad_matcher", "no_duration", "usage"}


@pytest.mark.parametrize(
    ("context", "says"),
    [
        ({"event": "error", "code": "bad_id", "text": "abc"},
         "⚠️ abc is not a silence id: give the number /silences shows."),
        ({"event": "error", "code": "not_active", "text": "7"}, "⚠️ There is no active silence #7: it has ended"),
    ],
)
def test_render_schedule_unsilence_errors_show_its_usage(
    renderer: Renderer, context: dict[str, Any], says: str
) -> None:
    for text in both(renderer, "silence", context):
        assert text.startswith(says)
        assert "/unsilence 5" in text and "/silence checkout" not in text
    assert "Usage: /unsilence <id>, e.g. /unsilence 5" in telegram(renderer, "silence", context)


def test_render_schedule_silence_values_cannot_add_markup(renderer: Renderer) -> None:
    hostile = make_silence(5, matchers={"service": HOSTILE_MD}, reason=HOSTILE_MD, created_by_name=HOSTILE_MD)
    view = silence_view(hostile)
    markdown = wecom(renderer, "silence", {"event": "created", "silence": view, "muted": []})
    assert "<@all>" not in markdown and "[l](" not in markdown and "**x**" not in markdown and "`y`" not in markdown
    markdown = wecom(renderer, "silence", {"event": "error", "code": "bad_matcher", "text": HOSTILE_MD})
    assert "<@all>" not in markdown and "`y`" not in markdown


def test_render_schedule_silences_list(renderer: Renderer) -> None:
    other = silence_view(make_silence(6, matchers={"alertname": "DiskFull"}, reason=""))
    context = {"silences": [VIEW, other], "more": 0}
    for text in both(renderer, "silences", context):
        assert text.splitlines()[0] == "🔕 Active silences (2)"
        assert ("• #5 namespace=prod service=db until 2026-11-24 18:00 · by @olga — disk "
                in text.replace("＜", "<").replace("＞", ">"))
        assert "· muted 2 incidents, 9 alerts" in text
        assert "• #6 alertname=DiskFull until 2026-11-24 18:00 · by @olga\n" in text
    more = {"silences": [VIEW] * 20, "more": 1}  # SilenceService.list: one row past those listed says there are more
    for text in both(renderer, "silences", more):
        assert text.splitlines()[0] == "🔕 Active silences (more than 20: the 20 ending soonest)"
        assert "… and more that end later" in text


def test_render_schedule_silences_empty(renderer: Renderer) -> None:
    for text in both(renderer, "silences", {"silences": [], "more": 0}):
        assert text.startswith("🔔 No active silences.")


# --- approval reminders ------------------------------------------------------------------------------------------

ROLES = parse_roles("tg:111=approver,tg:222=admin,tg:333=operator,wecom:alice=approver,wecom:bob=approver@staging")


async def reminder_context(**incident: Any) -> dict[str, Any]:
    """ReminderService._context for a two-approver proposal waiting 16 minutes, one signature in."""
    inc = _incident(status=IncidentStatus.FIRING, resolved_at=None, alertname="HighErrorRate", service="checkout",
                    namespace="shop", **incident)
    proposal = _proposal(state=ProposalState.PENDING, command="kubectl -n shop rollout undo deployment/checkout",
                         blast_score=64, required_approvals=2, created_at=NOW - timedelta(minutes=16))

    class Incidents:
        async def get(self, incident_id: int) -> Incident:
            return inc

    class Approvals:
        async def of_proposal(self, proposal_id: int) -> list[str]:
            return ["tg:111"]

    service = ReminderService(None, None, ROLES, lambda: NOW, after=timedelta(minutes=15),  # type: ignore[arg-type]
                              escalate_to=[])
    _, context = await service._context(FakeTx(incidents=Incidents(), approvals=Approvals()), proposal, NOW)
    return context


async def test_render_schedule_reminder_mentions_the_approvers_per_channel(renderer: Renderer) -> None:
    context = await reminder_context()
    assert context["mentions"] == {"telegram": ["111", "222"], "wecom": ["alice"]}
    markup = renderer.render("telegram/reminder.html.j2", **context)
    assert '<a href="tg://user?id=111">111</a>, <a href="tg://user?id=222">222</a>: please approve or reject' in markup
    markdown = wecom(renderer, "reminder", context, mentions=("alice",))
    assert "<@alice>: please approve or reject" in markdown and "bob" not in markdown and "111" not in markdown
    for text in both(renderer, "reminder", context, mentions=("alice",)):
        lines = text.splitlines()
        assert lines[0] == "⏰ INC-12 · HighErrorRate has been waiting 16 min for approval"
        assert "escalat" not in text.lower()
        assert "checkout · shop · critical · firing for " in lines[1]
        assert "kubectl -n shop rollout undo deployment/checkout" in text
        assert "Blast radius 64 · 1/2 approvals" in text
    assert "/approve INC-12 · /reject INC-12 [reason]" in telegram(renderer, "reminder", context)


async def test_render_schedule_reminder_escalation_variant(renderer: Renderer) -> None:
    context = {**await reminder_context(), "escalation": True}  # as ReminderService._escalate sends it
    for text in both(renderer, "reminder", context, mentions=("alice",)):
        assert text.splitlines()[0] == "🚨 INC-12 · HighErrorRate still awaiting approval after 16 min — escalating"
        assert "has been waiting" not in text
    assert "tg://user?id=111" in renderer.render("telegram/reminder.html.j2", **context)
    assert "<@alice>" in wecom(renderer, "reminder", context, mentions=("alice",))


async def test_render_schedule_reminder_without_approvers_to_mention(renderer: Renderer) -> None:
    context = {**await reminder_context(), "mentions": {"telegram": [], "wecom": []}, "blast_score": None}
    for text in both(renderer, "reminder", context):
        assert "Nobody to mention: no approver is configured for namespace shop (ALERTPILOT_ROLES)." in text
        assert "Blast radius" not in text and "1/2 approvals" in text
    assert "tg://" not in renderer.render("telegram/reminder.html.j2", **context)


# --- the 🔕 button, usage, help and strings ---------------------------------------------------------------------


def test_render_schedule_action_result_silenced_and_already_silenced(renderer: Renderer) -> None:
    # as SilenceService.silence_incident answers: the silence's id, and its length in minutes
    silenced = result_context(ActionResult(Outcome.SILENCED, "INC-12", state="5", count=60))
    for text in both(renderer, "action_result", silenced):
        assert text == ("🔕 INC-12's service silenced for 1 h (silence #5): matching alerts open no cards until then. "
                        "/unsilence 5 ends it early.")
        assert len(text) <= 200  # a Telegram button's answer
    odd = result_context(ActionResult(Outcome.SILENCED, "INC-12", state="5", count=90))
    assert "silenced for 90 min (silence #5)" in telegram(renderer, "action_result", odd)
    already = result_context(ActionResult(Outcome.ALREADY_SILENCED, "INC-12", state="5"))
    for text in both(renderer, "action_result", already):
        assert text == "ℹ️ INC-12 is already silenced (silence #5); nothing changed."


@pytest.mark.parametrize(
    ("command", "usage"),
    [
        ("report", "Usage: /report [today|yesterday|7d]"),
        ("postmortem", "Usage: /postmortem INC-12"),
        ("silence", SILENCE_USAGE),
        ("unsilence", "Usage: /unsilence <id>"),
    ],
)
def test_render_schedule_error_usage_of_the_new_commands(renderer: Renderer, command: str, usage: str) -> None:
    context = {"code": "usage", "command": command}
    for text in both(renderer, "error", context):
        assert text.replace("＜", "<").replace("＞", ">").startswith("⚠️ " + usage)
    if command == "silence":
        assert all(EXAMPLES in text for text in both(renderer, "error", context))


def test_render_schedule_wecom_no_longer_sends_the_new_commands_to_telegram(renderer: Renderer) -> None:
    text = plain(wecom(renderer, "error", {"code": "telegram_only", "command": "kb"}))
    assert "report, postmortem, silence, silences, unsilence" in text
    help_text = plain(wecom(renderer, "help", {}))
    assert "/playbooks." in help_text and ", silences." not in help_text


def test_render_schedule_help_lists_the_new_commands(renderer: Renderer) -> None:
    telegram_text, wecom_text = both(renderer, "help", {})
    for line in ("/report [today|yesterday|7d] — ", "/postmortem INC-12 — ",
                 "/silence <service | label=value … | INC-12> <duration> [reason] — ", "/silences — ", "/unsilence <id> — "):
        assert line in telegram_text
        assert line.removeprefix("/").replace("<", "＜").replace(">", "＞") in wecom_text
    assert "🔕 Silence 1h" in telegram_text and "🔕 Silence 1h" in wecom_text


def test_render_schedule_strings_label_the_silence_button(renderer: Renderer) -> None:
    assert renderer.strings("telegram").buttons["silence"] == "🔕 Silence 1h"
    assert renderer.strings("wecom").buttons["silence"] == "🔕 Silence 1h"
    usage = renderer.strings("telegram").usage
    assert usage["report"] == "/report [today|yesterday|7d]" and usage["unsilence"] == "/unsilence <id>"


def test_render_schedule_every_new_template_has_both_twins() -> None:
    for name in NEW_TEMPLATES:
        assert (TEMPLATES_DIR / "telegram" / f"{name}.html.j2").is_file(), name
        assert (TEMPLATES_DIR / "wecom" / f"{name}.md.j2").is_file(), name
    assert (TEMPLATES_DIR / "ai" / "postmortem.j2").is_file()


# --- plausible contexts for tests/unit/test_render.py's every-template checks ----------------------------------


def _plain_figures(raw: dict[str, Any]) -> dict[str, Any]:
    """The figures ReportService.figures computes from ``raw`` (without a database), for synchronous fixtures."""
    parts = {**raw["alerts"], **raw["incidents"], **raw["resolutions"], **raw["decisions"], **raw["executions"]}
    auto = parts["auto_succeeded"] + parts["auto_failed"]
    remediations = auto + parts["approved_succeeded"] + parts["approved_failed"]
    figures = {
        **parts,
        "auto_rate": None if not auto else 100.0 * parts["auto_succeeded"] / auto,
        "remediations": remediations,
        "success_rate": None if not remediations else
        100.0 * (parts["auto_succeeded"] + parts["approved_succeeded"]) / remediations,
        "noisiest": raw["noisiest"], "categories": raw["categories"], "knowledge": raw["knowledge"], **raw["playbooks"],
    }
    figures["grade"], figures["grade_rate"], figures["grade_basis"] = grade(figures)
    return figures


_WEEK = {"kind": "weekly", "first_day": "2026-11-16", "last_day": "2026-11-22", "start": "2026-11-15T16:00:00+00:00",
         "end": "2026-11-22T16:00:00+00:00", "timezone": "Asia/Taipei", "figures": _plain_figures(RAW),
         "silences_ending": [
             {"id": 4, "matchers": "namespace=prod service=db", "ends_at": "2026-11-24T10:00:00+00:00"}
         ]}
_BEFORE = _plain_figures(RAW_BEFORE)
_PM_ACTION = {"commands": ["kubectl -n prod rollout restart statefulset/db"], "more_commands": 1, "state": "failed",
              "dry_run": False, "auto": False, "approvers": ["@alice <a>"], "runs": 3, "retries": 2, "seconds": 42.5,
              "error": "timeout & <more>", "rollback": None}
_PM = {"ref": "INC-12", "title": "DiskFull <x>", "service": "db", "namespace": "prod", "severity": "critical",
       "status": "resolved", "started_at": STARTED.isoformat(),
       "resolved_at": (STARTED + timedelta(minutes=25)).isoformat(), "minutes": 25, "alert_count": 3, "repeats": 9,
       "summary": "Disk & <rising>", "root_cause": "logs", "category": "disk",
       "source": "ai", "model": "gpt-x", "proposal_state": "failed",
       "events": [{"at": STARTED.isoformat(), "kind": "approved", "name": "@alice", "reason": "ok <go>"}],
       "actions": [_PM_ACTION], "more_actions": 1, "notes": ["saw <it>"], "narrative": "It <b>filled</b> & stopped.",
       "narrative_model": "gpt-x"}
_REMINDER = {"ref": "INC-12", "title": "HighErrorRate <x>", "service": "checkout", "namespace": "shop",
             "severity": "critical", "command": "kubectl -n shop rollout undo deployment/checkout && <x>",
             "blast_score": 64, "required": 2, "signed": 1, "waiting_minutes": 16, "firing_minutes": 21,
             # test_render_wecom.py's check takes `mentions` as a list of WeCom ids: its keys here, so none in WeCom
             "mentions": {"telegram": ["111"], "wecom": []}}
SCHEDULE_PLAUSIBLE: dict[str, list[dict[str, Any]]] = {
    "report": [
        {**_WEEK, "kind": "daily", "first_day": "2026-11-23", "last_day": "2026-11-23"},
        {**_WEEK, "previous": _BEFORE,
         "trends": {n: trend(_WEEK["figures"][n], _BEFORE[n], more_is_better=b) for n, b in TRENDS.items()}},
        {**_WEEK, "kind": "today", "figures": _plain_figures(RAW_EMPTY), "silences_ending": []},
    ],
    "postmortem": [_PM, {**_PM, "narrative": None, "narrative_model": None, "resolved_at": None, "actions": [],
                         "events": [], "notes": [], "minutes": None, "source": None, "root_cause": ""}],
    "postmortem_fallback": [{"ref": "INC-12", "minutes": 25, "error": "HTTP 400: <bad> & more"}],
    "silence": [
        {"event": "created", "silence": VIEW, "muted": ["INC-3"]},
        {"event": "removed", "silence": VIEW, "by": "@olga <o>", "unmuted": []},
        {"event": "expired", "silence": VIEW, "unmuted": ["INC-3"]},
        {"event": "error", "code": "bad_matcher", "text": "<x>=&"},
        {"event": "error", "code": "not_active", "text": "7"},
    ],
    "silences": [{"silences": [VIEW], "more": 1}, {"silences": [], "more": 0}],
    "reminder": [_REMINDER, {**_REMINDER, "escalation": True, "mentions": {"telegram": [], "wecom": []}}],
}


@pytest.mark.parametrize(("name", "contexts"), list(SCHEDULE_PLAUSIBLE.items()), ids=list(SCHEDULE_PLAUSIBLE))
def test_render_schedule_plausible_contexts_render_in_both_channels(
    renderer: Renderer, name: str, contexts: list[dict[str, Any]]
) -> None:
    for context in contexts:
        telegram(renderer, name, context)
        wecom(renderer, name, context)


async def test_render_schedule_plausible_report_has_the_services_keys() -> None:
    """The synchronous fixture above has exactly the keys ReportService.context sends (nested too)."""
    context = await report_context(ReportKind.WEEKLY)
    fixture = SCHEDULE_PLAUSIBLE["report"][1]
    assert set(fixture) == set(context)
    assert fixture["figures"] == context["figures"] and fixture["previous"] == context["previous"]
    assert fixture["trends"] == context["trends"]


async def test_render_schedule_plausible_postmortem_has_the_services_keys() -> None:
    context, _ = await postmortem_context(NARRATIVE)
    assert set(_PM) == set(context)
    assert set(_PM_ACTION) == set(context["actions"][0])
