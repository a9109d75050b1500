"""Text that services write for people, in every language (issue 11): each phrase the services mark (every file
but services/safety.py, whose phrases have their own tests) is produced, where it is cheap, by the real code,
translated with the chat's phrase book (bot/render.py), and checked for English prose left over (the values are
data: alert and workload names, commands, kubectl's and the model's own words). English is the identity, and
the English text is what it was before it was marked."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from bot.render import SERVICE_CATALOGS, Renderer, phrase_book, read_catalog
from services import decision, investigation, llm
from services.ai import _evidence
from services.analysis import AUTO_DECISION
from services.consensus import PanelMember, Vote, _vote_json
from services.execution import last_line
from services.executors import PERMANENT_MARKERS, TRANSIENT_MARKERS, DryRunExecutor, SubprocessExecutor, classify
from services.gitops import REVIEW_TEMPLATE, GitOpsClient, GitOpsError, review_context
from services.investigation import HttpUpstream, KubectlAccess, Toolbox
from services.phrases import phrase
from services.policy import RemediationPolicy
from services.ports import CommandResult, IncidentFacts, ToolCall
from services.rules import DEFAULT_RULE, RULES, propose
from services.safety import NamespacePolicy, parse_command
from tests.unit.test_gitops import incident, proposal
from tests.unit.test_i18n import english_left, service_phrases

CHINESE = ("zh-CN", "zh-TW")
NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
BOOKS = {lang: phrase_book(lang) for lang in ("en", *CHINESE)}
POLICY = RemediationPolicy(
    namespaces=NamespacePolicy(), allowed_tools=frozenset({"kubectl"}), auto_enabled=False, min_confidence=0.65
)
# Identifiers that stay as they are in a translation (label names, JSON words, API fields, argument names).
IDENTIFIERS = ("deployment", "statefulset", "service", "app", "finish_reason", "choices", "function", "html_url",
               "for_kind", "for_name", "now", "true", "false", "Unix")


def mine() -> dict[str, str]:
    """The message ids of the services this module covers → where they are marked."""
    return {msgid: where for msgid, where in service_phrases().items() if not where.startswith("services/safety.py")}


def check(text: str, data: dict[str, Any] | None = None) -> dict[str, str]:
    """``text`` in each language: English unchanged, Chinese translated with no English prose but ``data``."""
    assert BOOKS["en"].translate(text) == text
    shown = {}
    for lang in CHINESE:
        translated = BOOKS[lang].translate(text)
        assert translated != text, f"{lang}: not recognised as a phrase: {text!r}"
        left = english_left(translated, data or {})
        assert not left, f"{lang}: English left {left} in {translated!r} (from {text!r})"
        shown[lang] = translated
    return shown


# --- every phrase ----------------------------------------------------------------------------------------


def test_every_phrase_is_translated_and_recognised_with_its_values() -> None:
    """Each marked message id, filled with data, comes back as its own translation with the same data (not
    another phrase's), in both languages, with no English but identifiers."""
    catalogs = {lang: {m.id: m.string for m in read_catalog(lang, pattern=SERVICE_CATALOGS) if m.id}
                for lang in CHINESE}
    assert len(mine()) > 100
    for msgid, where in mine().items():
        values = {name: f"⟨{name}-7⟩" for name in re.findall(r"%\((\w+)\)s", msgid)}
        text = phrase(msgid, **values)
        assert BOOKS["en"].translate(text) == text
        for lang in CHINESE:
            expected = catalogs[lang][msgid] % values if values else catalogs[lang][msgid].replace("%%", "%")
            assert BOOKS[lang].translate(text) == expected, f"{where}: {msgid!r} in {lang}"
            for value in values.values():
                assert value in expected, f"{where}: a value is lost in {lang}: {expected!r}"
            kept = [word for word in IDENTIFIERS if word.lower() in msgid.lower()]
            left = english_left(expected, {"values": values, "kept": kept})
            assert not left, f"{where}: {lang} {expected!r} still has English {left}"


# --- rules -----------------------------------------------------------------------------------------------

RULE_ALERTS = {"crash": "KubePodCrashLooping", "error_rate": "HighErrorRate", "latency": "HighLatencyP99",
               "resource_exhaustion": "NodeMemoryPressure", "storage": "DiskFull", "unknown": "Watchdog"}
LABELS = ({"deployment": "api"}, {"statefulset": "db-0"}, {"pod": "api-7d9"}, {})


def facts(alertname: str, labels: dict[str, str], namespace: str = "shop") -> IncidentFacts:
    return IncidentFacts(incident_id=1, alertname=alertname, severity="critical", service="", namespace=namespace,
                         labels={"alertname": alertname, **labels}, annotations={})


@pytest.mark.parametrize("rule", [*RULES, DEFAULT_RULE], ids=lambda r: r.category)
@pytest.mark.parametrize("labels", LABELS, ids=lambda labels: ",".join(labels) or "no-labels")
def test_rules_proposals_speak_every_language(rule: Any, labels: dict[str, str]) -> None:
    alertname = RULE_ALERTS[rule.category]
    draft = propose(facts(alertname, labels))
    assert draft.category == rule.category
    target = next(word for word in draft.command.split() if "/" in word)
    data = {"alertname": alertname, "target": target, "namespace": "shop", "rule": rule.category,
            "labels": ["deployment", "statefulset", "service", "app"]}
    for text in (draft.root_cause, draft.reasoning):
        shown = check(text, data)
        for translated in shown.values():
            assert target in translated or alertname in translated


def test_rules_english_is_unchanged() -> None:
    crash = propose(facts("KubePodCrashLooping", {"deployment": "api"}))
    assert crash.root_cause == "deployment/api is crashing or was OOM-killed in shop"
    assert crash.reasoning == "Rule 'crash' matched alert KubePodCrashLooping"
    scale = propose(facts("HighLatencyP99", {}))
    assert scale.root_cause == "deployment/highlatencyp99 in shop is slow; it is probably short of capacity"
    assert scale.reasoning == (
        "Rule 'latency' matched alert HighLatencyP99; no workload label (deployment, statefulset, service, app), "
        "so the target is a guess to check; scale target 3 replicas assumes the current count is lower"
    )
    default = propose(facts("Watchdog", {"pod": "api-7d9"}, namespace=""))
    assert default.root_cause == "no specific rule matched pod/api-7d9 in default"
    assert default.reasoning == (
        "No rule matched alert Watchdog; a restart is the default first step; no workload label (deployment, "
        "statefulset, service, app), so the target is a guess to check"
    )
    storage = propose(facts("DiskFull", {"deployment": "api"}))
    assert storage.root_cause == (
        "storage on deployment/api in shop is nearly full; a restart releases temporary files and logs"
    )
    assert check(crash.root_cause, {"t": "deployment/api", "ns": "shop"})["zh-CN"] == (
        "shop 中的 deployment/api 正在崩溃或被 OOM 终止")
    assert check(crash.reasoning, {"a": "KubePodCrashLooping", "r": "crash"})["zh-TW"] == (
        "規則 'crash' 符合警報 KubePodCrashLooping")


# --- proposals, approvals, playbooks, silences ------------------------------------------------------------


def test_decisions_and_proposals_by_people_and_playbooks() -> None:
    assert AUTO_DECISION["decided_by_name"] == "alertpilot (auto)"
    assert AUTO_DECISION["decision_reason"] == "auto-remediation: low blast radius, trusted proposal"
    assert check(AUTO_DECISION["decided_by_name"]) == {"zh-CN": "alertpilot（自动）", "zh-TW": "alertpilot（自動）"}
    assert check(AUTO_DECISION["decision_reason"])["zh-TW"] == "自動修復：影響範圍小，修復建議可信"
    expired = phrase("not decided within %(minutes)s min", minutes="60")
    assert expired == "not decided within 60 min"
    assert check(expired)["zh-CN"] == "60 分钟内未作决定"
    by_hand = phrase("proposed by %(name)s", name="@olga")
    assert by_hand == "proposed by @olga"
    assert check(by_hand, {"name": "@olga"}) == {"zh-CN": "由 @olga 提出", "zh-TW": "由 @olga 提出"}
    assert check(phrase("🔕 on %(ref)s", ref="INC-12"))["zh-TW"] == "在 INC-12 上點選 🔕"
    learned = phrase("Learned from %(ref)s: %(command)s resolved it", ref="INC-12",
                     command="kubectl -n shop rollout restart deployment/api")
    assert learned == "Learned from INC-12: kubectl -n shop rollout restart deployment/api resolved it"
    check(learned, {"command": "kubectl -n shop rollout restart deployment/api"})
    for text in (phrase("matches playbook %(name)s", name="restart-api"),
                 phrase("Playbook '%(name)s' matched with similarity %(score)s; "
                        "success rate %(successes)s/%(executions)s",
                        name="restart-api", score="0.93", successes="4", executions="5"),
                 phrase("Playbook '%(name)s' matched with similarity %(score)s; no executions yet", name="restart-api",
                        score="1.00")):
        check(text, {"name": "restart-api"})


# --- execution --------------------------------------------------------------------------------------------


def result(**fields: Any) -> CommandResult:
    return CommandResult(**({"argv": ("kubectl",), "exit_code": 1, "stdout": "", "stderr": "", "duration_ms": 5}
                            | fields))


@pytest.mark.parametrize(("label", "_pattern"), [*PERMANENT_MARKERS, *TRANSIENT_MARKERS])
def test_every_failure_reason_speaks_every_language(label: str, _pattern: str) -> None:
    check(label)  # a keyword (templates key explanations on it) and a phrase


def test_failure_reasons_and_errors_of_the_executors() -> None:
    failure = classify(result(stderr='Error from server (NotFound): deployments.apps "api" not found'))
    assert failure is not None and failure.reason == "not found"
    assert check(failure.reason)["zh-TW"] == "找不到"
    unknown = result(exit_code=3)
    failure = classify(unknown)
    assert failure is not None and failure.reason == "exit code 3" and last_line(unknown) == "exit code 3"
    assert check(failure.reason) == {"zh-CN": "退出码 3", "zh-TW": "結束代碼 3"}
    started = classify(result(exit_code=None, error="cannot run kubectl: No such file or directory"))
    assert started is not None and started.reason == "could not start"
    check(started.reason)


async def test_executor_errors_are_phrases() -> None:
    missing = await SubprocessExecutor(kubectl="/nonexistent/kubectl").run(("kubectl", "get", "pods"), timeout=5)
    assert missing.error == "cannot run /nonexistent/kubectl: No such file or directory (set ALERTPILOT_KUBECTL)"
    check(missing.error, {"tool": "/nonexistent/kubectl", "os": "No such file or directory"})
    other = await SubprocessExecutor().run(("/nonexistent/helm", "list"), timeout=5)
    assert other.error == "cannot run /nonexistent/helm: No such file or directory"
    check(other.error, {"tool": "/nonexistent/helm", "os": "No such file or directory"})
    empty = await SubprocessExecutor(kubectl="").run((), timeout=5)
    assert empty.error == "empty command" and last_line(empty) == "empty command"
    check(empty.error)
    slow = await SubprocessExecutor().run(("sleep", "5"), timeout=0.2)
    assert slow.timed_out and last_line(slow) == "timed out after 0.2 s (killed)"
    assert check(last_line(slow))["zh-CN"] == "0.2 秒后超时（已终止）"
    dry = await DryRunExecutor().run(("kubectl", "get", "pods"), timeout=5)
    assert dry.stdout == "dry run: not executed"
    check(dry.stdout)


def test_execution_errors_and_rollback_notes_nest() -> None:
    """What services/execution.py stores on an execution (error, rollback) and threads (note), as it builds them:
    the inner phrases are translated too."""
    revisions = phrase("the rollout history of %(target)s shows %(count)s revision; rolling back needs at least 2",
                       target="deployment/checkout", count="1")
    note = phrase("not rolled back: %(why)s", why=revisions)
    assert note == ("not rolled back: the rollout history of deployment/checkout shows 1 revision; "
                    "rolling back needs at least 2")  # what test_render pins too
    assert check(note, {"t": "deployment/checkout"})["zh-CN"] == (
        "未回滚：deployment/checkout 的滚动更新历史只有 1 个版本；回滚至少需要 2 个")
    none = phrase("the rollout history of %(target)s shows %(count)s revisions; rolling back needs at least 2",
                  target="deployment/checkout", count="0")
    assert none.endswith("shows 0 revisions; rolling back needs at least 2")
    check(phrase("not rolled back: %(why)s", why=none), {"t": "deployment/checkout"})
    unreadable = phrase("not rolled back: %(why)s", why=phrase(
        "cannot read the rollout history of %(target)s (%(reason)s)", target="deployment/api", reason="timeout"))
    assert check(unreadable, {"t": "deployment/api"})["zh-TW"] == (
        "未回滾：無法讀取 deployment/api 的滾動更新歷史（逾時）")
    kubectl_says = "error: timed out waiting for the condition"
    failed = phrase("verification failed: %(target)s: %(error)s", target="deployment/api", error=kubectl_says)
    assert failed == f"verification failed: deployment/api: {kubectl_says}"
    assert failed.startswith("verification failed")  # services/failures.py tells a verification failure by it
    check(failed, {"t": "deployment/api", "e": kubectl_says})
    killed = phrase("verification failed: %(target)s: %(error)s", target="deployment/api",
                    error=phrase("timed out after %(seconds)s s (killed)", seconds="150"))
    assert check(killed, {"t": "deployment/api"})["zh-CN"] == "验证失败：deployment/api：150 秒后超时（已终止）"
    blocked = phrase("not run: blocked by the policy: %(reason)s", reason=phrase("the policy does not allow it"))
    assert check(blocked)["zh-TW"] == "未執行：遭政策阻擋：政策不允許"
    check(phrase("not rolled back automatically: %(plan)s", plan=phrase("rollback failed: %(error)s",
                                                                        error=phrase("exit code %(code)s", code="1"))))
    undo = "kubectl -n shop rollout undo deployment/checkout"
    rolled = phrase("rolled back with %(command)s", command=undo)
    assert rolled == f"rolled back with {undo}"
    check(rolled, {"command": undo})
    check(phrase("dry run failed: %(error)s", error='Error from server (Forbidden): "api" is forbidden'),
          {"e": 'Error from server (Forbidden): "api" is forbidden'})
    crash = phrase("internal error: %(error)s", error="KeyError: 'spec'")
    check(crash, {"e": "KeyError: 'spec'"})
    for text in ("alertpilot stopped while this was running; it was not re-run", "the incident resolved before it ran",
                 "internal error", "blocked", "rollout did not converge"):
        check(phrase(text))


# --- the AI model: votes, tool calls, model errors -------------------------------------------------------


def test_votes_and_tool_call_refusals_of_the_analysis() -> None:
    sla = decision.vote_error("timeout", decision._sla_missed(30.0))
    assert sla == "timeout: no answer within the 30 s decision SLA"
    assert check(sla)["zh-CN"] == "超时：在 30 秒的决策 SLA 内无回应"
    model = phrase("no answer from %(name)s within %(seconds)ss", name="qwen2.5:7b", seconds="20")
    assert decision.vote_error("timeout", model) == "timeout: no answer from qwen2.5:7b within 20s"
    check(decision.vote_error("timeout", model), {"model": "qwen2.5:7b"})
    http = phrase("HTTP %(status)s from %(name)s: %(detail)s", status="503", name="qwen2.5:7b",
                  detail=phrase("(empty body)"))
    assert decision.vote_error("unavailable", http) == "unavailable: HTTP 503 from qwen2.5:7b: (empty body)"
    check(decision.vote_error("unavailable", http), {"model": "qwen2.5:7b"})
    check(decision.vote_error("invalid_output", phrase("internal error")))
    assert decision.vote_error("circuit_open", "x") == "circuit_open: x"  # no phrase for a reason votes never have
    assert _vote_json(Vote(PanelMember("m")), False)["error"] == "no answer"
    check("no answer")
    budget = _evidence(ToolCall(id="c1", name="kubectl_get", arguments={}), None)["refused"]
    assert budget == "tool-call budget used up"
    check(budget)


@pytest.mark.parametrize(
    ("raw", "offered", "english"),
    [
        ({"type": "bogus", "function": {"name": "kubectl_get"}}, {"kubectl_get"},
         "tool call type 'bogus' is not 'function'"),
        ({"function": {}}, {"kubectl_get"}, "the tool call names no function"),
        ({"function": {"name": "rm -rf"}}, {"kubectl_get"}, "'rm -rf' is not a valid function name"),
        ({"function": {"name": "shell"}}, {"kubectl_get", "kubectl_logs"},
         "unknown tool 'shell'; the tools are: kubectl_get, kubectl_logs"),
        ({"function": {"name": "shell"}}, set(), "unknown tool 'shell'; the tools are: none"),
        ({"function": {"name": "kubectl_get", "arguments": "{bad"}}, {"kubectl_get"},
         "arguments are not valid JSON (Expecting property name enclosed in double quotes at char 1): {bad"),
        ({"function": {"name": "kubectl_get", "arguments": "[1]"}}, {"kubectl_get"},
         "arguments must be a JSON object, not list"),
        ({"function": {"name": "kubectl_get", "arguments": "x" * 9000}}, {"kubectl_get"},
         "arguments are over 8192 characters"),
    ],
)
def test_unusable_tool_calls_say_why_in_every_language(raw: dict[str, Any], offered: set[str], english: str) -> None:
    call = llm._tool_call(raw, 0, frozenset(offered))
    assert call.error == english
    check(call.error, {"names": ["bogus", "rm -rf", "shell", *offered], "json": "Expecting property name enclosed in "
                       "double quotes", "text": "{bad", "type": "list", "kind": "'function'"})


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(trust_env=False) as client:
        yield client


async def test_tool_call_refusals_in_details_speak_every_language(http: httpx.AsyncClient) -> None:
    """The refusals Details shows (``refused``): nothing runs for any of them."""
    none = await Toolbox(policy=POLICY).call("kubectl_get", {"kind": "pods"})
    assert none.refused == "unknown or unavailable tool 'kubectl_get' (offered: none)"
    check(none.refused, {"tool": "'kubectl_get'"})
    box = Toolbox(policy=POLICY, kubectl=KubectlAccess(path="/nonexistent/kubectl"),
                  prometheus=HttpUpstream("http://127.0.0.1:9", http), clock=lambda: NOW)
    unknown = await box.call("shell", {})
    assert unknown.refused is not None and unknown.refused.startswith("unknown or unavailable tool 'shell' (offered: ")
    check(unknown.refused, {"tool": "'shell'", "tools": [", ".join(box.names)]})
    calls: list[tuple[str, Any, str, dict[str, Any]]] = [
        ("kubectl_get", {"kind": "nodes", "namespace": "shop"},
         "nodes are cluster-scoped: leave out the namespace", {}),
        ("kubectl_get", {"kind": "pods"}, "pods are namespaced: give a namespace", {}),
        ("kubectl_get", {"kind": "pods", "namespace": "shop", "name": "api", "selector": "app=api"},
         "give a name or a selector, not both", {}),
        ("kubectl_events", {"namespace": "shop", "for_kind": "pod"}, "for_kind and for_name go together", {}),
        ("kubectl_get", "{bad", "the arguments are not valid JSON", {}),
        ("kubectl_top", "[1]", "the arguments must be a JSON object", {}),
        ("kubectl_get", {"kind": "pods", "namespace": "shop", "verbose": True}, "unknown argument(s): verbose", {}),
        ("kubectl_logs", {"pod": "api"}, "missing argument(s): namespace", {}),
        ("kubectl_logs", {"pod": "api", "namespace": "shop", "tail": "x"}, "tail must be an integer", {}),
        ("kubectl_logs", {"pod": "api", "namespace": "shop", "tail": 0}, "tail must be between 1 and 500", {}),
        ("kubectl_logs", {"pod": "api", "namespace": "shop", "previous": "yes"}, "previous must be true or false", {}),
        ("kubectl_logs", {"pod": 7, "namespace": "shop"}, "pod must be a string", {}),
        ("kubectl_top", {"target": "disks"}, "target must be one of: pods, nodes", {}),
        ("kubectl_get", {"kind": "pods", "namespace": "shop", "name": "a b"},
         "name 'a b' is not allowed (names and values only, no flags or spaces)", {}),
        ("prometheus_query_range", {"query": "up", "start": "-30h"}, "the range is 30 h; at most 24 h", {}),
        ("prometheus_query_range", {"query": "up", "start": "-1590m"}, "the range is 26 h 30 min; at most 24 h", {}),
        ("prometheus_query_range", {"query": "up", "start": "now", "end": "-1h"}, "start must be before end", {}),
        ("prometheus_query", {"query": "up", "time": "yesterday"},
         "time: 'yesterday' is not RFC 3339, unix seconds, 'now' or like '-30m'",
         {"value": "'yesterday'", "kept": ["Unix", "'now'"]}),
        ("prometheus_query", {"query": ""}, "query must be 1–2000 characters", {}),
    ]
    for tool, arguments, english, data in calls:
        refused = (await box.call(tool, arguments)).refused
        if english.startswith("tail must be between"):
            assert refused is not None and refused.startswith("tail must be between 1 and ")
            english = refused
        if english.startswith("query must be"):
            assert refused is not None and refused.startswith("query must be 1–")
            english = refused
        assert refused == english, (tool, arguments)
        names = {"args": ["nodes", "pods", "verbose", "namespace", "tail", "previous", "pod", "target", "disks",
                          "pods, nodes", "name", "time", "query", "for_kind", "for_name", "true", "false"], **data}
        check(refused, names)
    secrets = await box.call("kubectl_get", {"kind": "secrets", "name": "db", "namespace": "prod", "output": "yaml"})
    assert secrets.refused is not None and secrets.refused.startswith("blast score ")
    summary = secrets.refused.split(": ", 1)[1]  # services/safety.py's score summary (its own phrases)
    for lang in CHINESE:
        translated = BOOKS[lang].translate(secrets.refused)
        assert translated.startswith("影响范围评分 " if lang == "zh-CN" else "影響範圍評分 ")
        assert english_left(translated, {"summary": [summary, BOOKS[lang].translate(summary)]}) == []


def test_range_refusal_matches_the_old_english() -> None:
    assert investigation._range_refusal(timedelta(hours=25, minutes=30)) == "the range is 25 h 30 min; at most 24 h"
    assert investigation._range_refusal(timedelta(hours=48, seconds=59)) == "the range is 48 h; at most 24 h"


# --- GitOps ------------------------------------------------------------------------------------------------


async def test_gitops_errors_shown_in_the_thread_speak_every_language(http: httpx.AsyncClient) -> None:
    client = GitOpsClient(http, provider="gitea", repo="ops/cluster", token="t0ken", timeout=2)
    with pytest.raises(GitOpsError) as empty:
        await client.create_issue("  ", "body")
    assert empty.value.reason == "issue title is empty"
    check(empty.value.reason)
    with pytest.raises(GitOpsError) as long:
        await client.create_issue("title", "x" * 70000)
    assert long.value.reason == "issue body is 70000 characters, over the 65536 limit"
    check(long.value.reason)
    refused = GitOpsClient(httpx.AsyncClient(base_url="http://127.0.0.1:9", trust_env=False), provider="github",
                           repo="ops/cluster", token="t0ken", timeout=2)
    with pytest.raises(GitOpsError) as unreachable:
        await refused.create_issue("title", "body")
    assert unreachable.value.reason.startswith("connection to github failed: ConnectError")
    detail = unreachable.value.reason.split("failed: ", 1)[1]
    check(unreachable.value.reason, {"provider": "github", "error": detail})
    for reason in (
        phrase("HTTP %(status)s from %(name)s: reply is not JSON: %(detail)s", status="200", name="gitea",
               detail="<html>"),
        phrase("HTTP %(status)s from %(name)s: reply has no html_url: %(detail)s", status="201", name="github",
               detail="{}"),
        phrase("HTTP %(status)s from %(name)s: reply is not an issue: %(detail)s", status="201", name="gitea",
               detail="[]"),
        phrase("HTTP %(status)s from %(name)s: %(detail)s", status="401", name="github", detail=phrase("(empty body)")),
        phrase("could not render the review: %(error)s", error="UndefinedError"),
        phrase("no answer from %(name)s within %(seconds)ss (%(error)s)", name="gitea", seconds="10",
               error="ReadTimeout"),
    ):
        check(reason, {"names": ["gitea", "github", "UndefinedError", "ReadTimeout", "html_url"]})


def review(lang: str, **overrides: Any) -> str:
    context = review_context(ref="INC-12", incident=incident(), proposal=proposal(**overrides),
                             approve_hint="/approve INC-12")
    return Renderer(ZoneInfo("UTC"), default_lang=lang).render(REVIEW_TEMPLATE, **context)


def test_the_review_issue_shows_what_alertpilot_wrote_in_its_language() -> None:
    rules = propose(facts("KubePodCrashLooping", {"deployment": "api"}, namespace="prod"))
    english = review("en", root_cause=rules.root_cause, reasoning=rules.reasoning, required_approvals=3)
    assert "> deployment/api is crashing or was OOM-killed in prod" in english
    assert "> Rule 'crash' matched alert KubePodCrashLooping" in english
    assert "needs **3 different approvers**." in english and "3 different approvers must approve" in english
    for lang, cause, reasoning, approvers in (
        ("zh-CN", "> prod 中的 deployment/api 正在崩溃或被 OOM 终止", "> 规则 'crash' 匹配了告警 KubePodCrashLooping",
         "3 位不同的审批人"),
        ("zh-TW", "> prod 中的 deployment/api 正在崩潰或遭 OOM 終止", "> 規則 'crash' 符合警報 KubePodCrashLooping",
         "3 位不同的核准者"),
    ):
        body = review(lang, root_cause=rules.root_cause, reasoning=rules.reasoning, required_approvals=3)
        assert cause in body and reasoning in body and approvers in body
        assert "matched alert" not in body and "is crashing" not in body
    everywhere = "kubectl delete pods --all -A"
    wide = review("zh-TW", command=everywhere, spec=parse_command(everywhere).to_json(), tier="blocked")
    assert "**命名空間：** `所有命名空間`" in wide and "→ 已阻擋 " in wide


def test_the_review_escapes_what_it_translated() -> None:
    """A phrase's values are data: the Markdown is neutralised after the translation, never before."""
    hostile = "@channel **boss** <img src=x> #12"
    for lang in ("en", *CHINESE):
        body = review(lang, root_cause=phrase("proposed by %(name)s", name=hostile), reasoning="")
        assert "@channel" not in body and "**boss**" not in body and "<img" not in body
        assert "@\u200bchannel \\*\\*boss\\*\\* &lt;img src=x&gt; #\u200b12" in body
