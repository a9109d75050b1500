"""services/investigation.py: the read-only tools of deep analysis, against the fake kubectl (a real
process), the fake Prometheus and a small fake Alertmanager (aiohttp on 127.0.0.1)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web

from services.investigation import (
    CARD_LIMIT,
    MODEL_LIMIT,
    HttpUpstream,
    KubectlAccess,
    Toolbox,
    clip_head,
)
from services.knowledge import KnowledgeHit
from services.policy import RemediationPolicy
from services.safety import NamespacePolicy
from tests.fakes.kubectl import FakeKubectl
from tests.fakes.loopback import LoopbackServer
from tests.fakes.prometheus import FakePrometheus

POLICY = RemediationPolicy(
    namespaces=NamespacePolicy(), allowed_tools=frozenset({"kubectl"}), auto_enabled=False, min_confidence=0.65
)
NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
KUBECTL_TOOLS = {"kubectl_get", "kubectl_describe", "kubectl_logs", "kubectl_top", "kubectl_events",
                 "kubectl_rollout_history"}


class FakeAlertmanager(LoopbackServer):
    """Alertmanager's /api/v2/alerts and /api/v2/silences with canned answers; records query strings."""

    def __init__(self, alerts: list[dict[str, Any]], silences: list[dict[str, Any]]) -> None:
        super().__init__()
        self.alerts, self.silences = alerts, silences
        self.requests: list[tuple[str, list[tuple[str, str]]]] = []

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append((request.path, list(request.query.items())))
        if request.method == "GET" and request.path == "/api/v2/alerts":
            return web.json_response(self.alerts)
        if request.method == "GET" and request.path == "/api/v2/silences":
            return web.json_response(self.silences)
        return web.json_response({"message": "not found"}, status=404)


class FakeKnowledge:
    def __init__(self) -> None:
        self.queries: list[tuple[str, int]] = []

    async def search(self, query: str, *, limit: int = 5) -> list[KnowledgeHit]:
        self.queries.append((query, limit))
        return [KnowledgeHit(id=7, title="Payments OOM", snippet="raise the memory limit to 1Gi", tags=("oom",),
                             category="runbook", services=("payments",), source="note", incident_ref="INC-3",
                             created_at=NOW)]


class FakeHistory:
    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    async def similar(self, *, alertname: str, service: str, exclude_id: int, limit: int) -> list[dict[str, Any]]:
        self.calls.append({"alertname": alertname, "service": service, "exclude_id": exclude_id, "limit": limit})
        return [{"ref": "INC-3", "title": alertname, "service": service, "status": "resolved",
                 "created_at": "2024-04-01T10:00:00+00:00", "resolved_at": "2024-04-01T10:20:00+00:00",
                 "proposal_state": "executed", "command": "kubectl rollout restart deployment/api -n shop"}]


@pytest.fixture
def kubectl(tmp_path: Path) -> FakeKubectl:
    return FakeKubectl(tmp_path / "k").install()


@pytest.fixture
async def prom() -> AsyncIterator[FakePrometheus]:
    async with FakePrometheus() as fake:
        yield fake


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(trust_env=False) as client:
        yield client


def kube_box(fake: FakeKubectl, **access: Any) -> Toolbox:
    return Toolbox(policy=POLICY, kubectl=KubectlAccess(path=str(fake.path), **access), clock=lambda: NOW)


# --- offering --------------------------------------------------------------------------------------------


def test_toolbox_offers_only_configured_tools(kubectl: FakeKubectl, http: httpx.AsyncClient) -> None:
    """Nothing configured: nothing offered; each upstream adds its own tools, in the OpenAI shape."""
    assert Toolbox(policy=POLICY).definitions() == []
    box = kube_box(kubectl)
    assert set(box.names) == KUBECTL_TOOLS
    full = Toolbox(policy=POLICY, kubectl=KubectlAccess(path=str(kubectl.path)),
                   prometheus=HttpUpstream("http://prom", http), alertmanager=HttpUpstream("http://am", http),
                   knowledge=FakeKnowledge(), incidents=FakeHistory())
    assert set(full.names) == KUBECTL_TOOLS | {"prometheus_query", "prometheus_query_range", "alertmanager_alerts",
                                              "alertmanager_silences", "knowledge_search", "past_incidents"}
    for definition in full.definitions():
        assert definition["type"] == "function"
        function = definition["function"]
        assert set(function) == {"name", "description", "parameters"}
        assert function["parameters"]["type"] == "object"
        assert function["parameters"]["additionalProperties"] is False


async def test_toolbox_refuses_a_tool_that_is_not_configured(kubectl: FakeKubectl) -> None:
    box = Toolbox(policy=POLICY, knowledge=FakeKnowledge())
    result = await box.call("kubectl_get", {"kind": "pods", "namespace": "shop"})
    assert not result.ok and result.refused and "unknown or unavailable tool" in result.refused
    assert kubectl.calls == []


# --- kubectl -----------------------------------------------------------------------------------------------


async def test_kubectl_get_runs_a_namespaced_argv_with_request_timeout(kubectl: FakeKubectl) -> None:
    kubectl.on("get pods", stdout="NAME    READY   STATUS\napi-1   0/1     CrashLoopBackOff\n")
    box = Toolbox(policy=POLICY, kubectl=KubectlAccess(path=str(kubectl.path), kubeconfig="/etc/kube/config",
                                                      context="prod"))
    result = await box.call("kubectl_get", {"kind": "pods", "namespace": "shop", "selector": "app=api"})
    assert result.ok and result.refused is None
    assert "CrashLoopBackOff" in result.excerpt and "CrashLoopBackOff" in result.card_excerpt
    assert kubectl.calls == [["--kubeconfig=/etc/kube/config", "--context=prod", "get", "pods", "--namespace=shop",
                              "--selector=app=api", "--request-timeout=15s"]]
    assert result.command == "kubectl get pods --namespace=shop --selector=app=api --request-timeout=15s"
    assert result.seconds >= 0


async def test_kubectl_cluster_scoped_kinds_take_no_namespace(kubectl: FakeKubectl) -> None:
    box = kube_box(kubectl)
    assert (await box.call("kubectl_get", {"kind": "nodes"})).ok
    assert kubectl.calls == [["get", "nodes", "--request-timeout=15s"]]
    refused = await box.call("kubectl_get", {"kind": "nodes", "namespace": "shop"})
    assert refused.refused and "cluster-scoped" in refused.refused
    missing = await box.call("kubectl_get", {"kind": "pods"})
    assert missing.refused and "namespace" in missing.refused
    assert len(kubectl.calls) == 1


@pytest.mark.parametrize(
    ("tool", "arguments", "argv"),
    [
        ("kubectl_describe", {"kind": "deployments", "name": "api", "namespace": "prod"},
         ["describe", "deployments", "api", "--namespace=prod"]),
        ("kubectl_logs", {"pod": "api-1", "namespace": "kube-system", "container": "app", "previous": True,
                          "tail": 50, "since": "30m"},
         ["logs", "pod/api-1", "--namespace=kube-system", "--tail=50", "--container=app", "--previous",
          "--since=30m"]),
        ("kubectl_logs", {"pod": "api-1", "namespace": "shop"}, ["logs", "pod/api-1", "--namespace=shop", "--tail=100"]),
        ("kubectl_top", {"target": "pods", "namespace": "shop"}, ["top", "pod", "--namespace=shop"]),
        ("kubectl_top", {"target": "nodes"}, ["top", "node"]),
        ("kubectl_events", {"namespace": "shop", "for_kind": "pod", "for_name": "api-1"},
         ["events", "--namespace=shop", "--for=pod/api-1"]),
        ("kubectl_rollout_history", {"kind": "deployment", "name": "api", "namespace": "shop", "revision": 2},
         ["rollout", "history", "deployment/api", "--namespace=shop", "--revision=2"]),
    ],
)
async def test_kubectl_tools_build_read_only_argvs(kubectl: FakeKubectl, tool: str, arguments: dict[str, Any],
                                                   argv: list[str]) -> None:
    result = await kube_box(kubectl).call(tool, arguments)
    assert result.ok, result.content
    assert kubectl.calls == [[*argv, "--request-timeout=15s"]]


async def test_kubectl_rollout_history_output_reaches_the_model(kubectl: FakeKubectl) -> None:
    result = await kube_box(kubectl).call("kubectl_rollout_history",
                                          {"kind": "deployment", "name": "api", "namespace": "shop"})
    assert result.ok and "REVISION" in result.excerpt


async def test_kubectl_failure_is_a_failed_result_with_the_error(kubectl: FakeKubectl) -> None:
    kubectl.on("get pods", fail='Error from server (NotFound): pods "nope" not found', exit_code=1)
    result = await kube_box(kubectl).call("kubectl_get", {"kind": "pods", "name": "nope", "namespace": "shop"})
    assert not result.ok and result.refused is None
    assert result.excerpt.startswith("exit code 1") and "not found" in result.excerpt
    assert result.content.startswith("failed: ")


async def test_kubectl_secret_values_are_refused_by_the_safety_policy(kubectl: FakeKubectl) -> None:
    """`get secrets -o yaml` is not score 0 (it posts credentials): refused, nothing runs."""
    result = await kube_box(kubectl).call("kubectl_get", {"kind": "secrets", "name": "db", "namespace": "prod",
                                                          "output": "yaml"})
    assert not result.ok and result.refused and "blast score" in result.refused
    assert result.command and "--output=yaml" in result.command
    assert kubectl.calls == []
    listing = await kube_box(kubectl).call("kubectl_get", {"kind": "secrets", "namespace": "prod"})
    assert listing.ok  # names and types only: score 0


@pytest.mark.parametrize(
    ("tool", "arguments", "reason"),
    [
        ("kubectl_delete", {"kind": "pods", "name": "api-1", "namespace": "shop"}, "unknown or unavailable tool"),
        ("kubectl_scale", {"name": "api", "replicas": 0}, "unknown or unavailable tool"),
        ("kubectl_get", {"kind": "pods delete", "namespace": "shop"}, "kind must be one of"),
        ("kubectl_get", {"kind": "pods", "name": "api --kubeconfig=/tmp/x", "namespace": "shop"}, "not allowed"),
        ("kubectl_get", {"kind": "pods", "name": "-o=yaml", "namespace": "shop"}, "not allowed"),
        ("kubectl_get", {"kind": "pods", "namespace": "--all-namespaces"}, "not allowed"),
        ("kubectl_get", {"kind": "pods", "namespace": "shop;rm"}, "not allowed"),
        ("kubectl_get", {"kind": "pods", "namespace": "shop", "selector": "app=api --force"}, "not allowed"),
        ("kubectl_get", {"kind": "pods", "namespace": "shop", "output": "jsonpath={.x}"}, "output must be one of"),
        ("kubectl_get", {"kind": "pods", "namespace": "shop", "verb": "delete"}, "unknown argument(s): verb"),
        ("kubectl_get", {"namespace": "shop"}, "missing argument(s): kind"),
        ("kubectl_logs", {"pod": "api-1", "namespace": "shop", "tail": 10_000}, "tail must be between"),
        ("kubectl_logs", {"pod": "api-1", "namespace": "shop", "tail": True}, "tail must be an integer"),
        ("kubectl_logs", {"pod": "api-1", "namespace": "shop", "since": "1h --follow"}, "not allowed"),
        ("kubectl_logs", {"pod": "api-1", "namespace": "shop", "previous": "yes"}, "previous must be true or false"),
        ("kubectl_rollout_history", {"kind": "deployment", "name": "api", "namespace": "shop", "revision": "1; x"},
         "revision must be an integer"),
        ("kubectl_events", {"namespace": "shop", "for_kind": "pod"}, "go together"),
    ],
)
async def test_kubectl_bad_calls_are_refused_and_nothing_runs(kubectl: FakeKubectl, tool: str,
                                                              arguments: dict[str, Any], reason: str) -> None:
    result = await kube_box(kubectl).call(tool, arguments)
    assert not result.ok and result.refused is not None and reason in result.refused, result.refused
    assert result.content == f"refused: {result.refused}"
    assert kubectl.calls == []


async def test_arguments_may_come_as_the_models_json_string(kubectl: FakeKubectl) -> None:
    box = kube_box(kubectl)
    assert (await box.call("kubectl_top", '{"target": "nodes"}')).ok
    bad = await box.call("kubectl_top", "{not json")
    assert bad.refused == "the arguments are not valid JSON"
    assert (await box.call("kubectl_top", "[1]")).refused == "the arguments must be a JSON object"


async def test_kubectl_output_is_truncated_for_the_model_and_the_card(kubectl: FakeKubectl) -> None:
    rows = "".join(f"pod-{n:05d}   1/1   Running   0   5d\n" for n in range(2000))
    kubectl.on("get pods", stdout="NAME   READY   STATUS   RESTARTS   AGE\n" + rows)
    result = await kube_box(kubectl).call("kubectl_get", {"kind": "pods", "namespace": "shop"})
    assert result.ok
    assert len(result.excerpt) <= MODEL_LIMIT and len(result.card_excerpt) <= CARD_LIMIT
    assert result.excerpt.startswith("NAME   READY") and "characters left out" in result.excerpt
    assert result.excerpt.rstrip().endswith("pod-01999   1/1   Running   0   5d")


async def test_kubectl_timeout_kills_the_call(kubectl: FakeKubectl) -> None:
    kubectl.on("logs", hang=True)
    box = kube_box(kubectl, timeout=0.5)
    result = await box.call("kubectl_logs", {"pod": "api-1", "namespace": "shop"})
    assert not result.ok and result.refused is None
    assert result.excerpt.startswith("timed out") and result.seconds < 10
    for _ in range(100):
        if not kubectl.running():
            break
        await asyncio.sleep(0.05)
    assert kubectl.running() == []


def test_clip_head_bounds() -> None:
    assert clip_head("short", 10) == "short"
    assert len(clip_head("x" * 500, 50)) == 50
    long = "\n".join(f"line {n}" for n in range(3000))
    clipped = clip_head(long, MODEL_LIMIT)
    assert len(clipped) <= MODEL_LIMIT and clipped.startswith("line 0") and clipped.endswith("line 2999")


# --- Prometheus --------------------------------------------------------------------------------------------


def prom_box(prom: FakePrometheus, http: httpx.AsyncClient, **kwargs: Any) -> Toolbox:
    return Toolbox(policy=POLICY, prometheus=HttpUpstream(prom.base_url, http, **kwargs), clock=lambda: NOW)


async def test_prometheus_instant_query_summarises_series(prom: FakePrometheus, http: httpx.AsyncClient) -> None:
    prom.on('rate(http_requests_total{code="500"}[5m])',
            vector=[({"__name__": "x", "job": "api", "pod": "api-1"}, "0.25"), ({"job": "web"}, "0")],
            warnings=["partial data"])
    result = await prom_box(prom, http).call("prometheus_query",
                                             {"query": 'rate(http_requests_total{code="500"}[5m])'})
    assert result.ok, result.content
    lines = result.excerpt.splitlines()
    assert lines[0] == "2 series"
    assert lines[1].startswith('x{job="api", pod="api-1"} = 0.25 @')
    assert lines[2].startswith('{job="web"} = 0 @')
    assert lines[3] == "warning: partial data"
    assert prom.requests[-1].path == "/api/v1/query"


async def test_prometheus_instant_query_at_a_relative_time(prom: FakePrometheus, http: httpx.AsyncClient) -> None:
    await prom_box(prom, http).call("prometheus_query", {"query": "up", "time": "-30m"})
    assert prom.requests[-1].params["time"] == "2024-05-01T11:30:00.000000Z"


async def test_prometheus_range_query_is_bounded(prom: FakePrometheus, http: httpx.AsyncClient) -> None:
    prom.on("up", matrix=[({"job": "api"}, [(1714557600, "1"), (1714557660, "0"), (1714557720, "1")])])
    box = prom_box(prom, http)
    result = await box.call("prometheus_query_range", {"query": "up", "start": "-2h", "step_seconds": 1})
    assert result.ok
    assert '{job="api"}: last 1 @2024-05-01T10:02:00Z, min 0, max 1 (3 points)' in result.excerpt
    params = prom.requests[-1].params
    assert prom.requests[-1].path == "/api/v1/query_range"
    assert params["start"] == "2024-05-01T10:00:00.000000Z" and params["end"] == "2024-05-01T12:00:00.000000Z"
    assert float(params["step"]) >= 7200 / 500  # at most 500 points per series
    too_long = await box.call("prometheus_query_range", {"query": "up", "start": "-3d"})
    assert too_long.refused and "at most 24 h" in too_long.refused
    backwards = await box.call("prometheus_query_range", {"query": "up", "start": "now", "end": "-1h"})
    assert backwards.refused == "start must be before end"
    garbage = await box.call("prometheus_query_range", {"query": "up", "start": "yesterday"})
    assert garbage.refused and "not RFC 3339" in garbage.refused
    assert len(prom.requests) == 1


async def test_prometheus_errors_are_failed_results(prom: FakePrometheus, http: httpx.AsyncClient) -> None:
    prom.fail("rate(", status=400, error_type="bad_data", error="1:6: parse error: unclosed left parenthesis")
    result = await prom_box(prom, http).call("prometheus_query", {"query": "rate("})
    assert not result.ok and result.refused is None
    assert result.excerpt == "HTTP 400 (bad_data): 1:6: parse error: unclosed left parenthesis"


async def test_prometheus_timeout_is_a_failed_result(prom: FakePrometheus, http: httpx.AsyncClient) -> None:
    prom.hang_next()
    result = await prom_box(prom, http, timeout=0.3).call("prometheus_query", {"query": "up"})
    assert not result.ok and result.excerpt == "timed out after 0.3 s"


async def test_prometheus_unreachable_is_a_failed_result(http: httpx.AsyncClient) -> None:
    box = Toolbox(policy=POLICY, prometheus=HttpUpstream("http://127.0.0.1:9", http))
    result = await box.call("prometheus_query", {"query": "up"})
    assert not result.ok and result.excerpt.startswith("ConnectError")


async def test_prometheus_query_is_validated(prom: FakePrometheus, http: httpx.AsyncClient) -> None:
    box = prom_box(prom, http)
    assert (await box.call("prometheus_query", {"query": ""})).refused
    assert (await box.call("prometheus_query", {"query": "x" * 5000})).refused
    assert (await box.call("prometheus_query", {"query": 1})).refused == "query must be a string"
    assert prom.requests == []


# --- Alertmanager ------------------------------------------------------------------------------------------


ALERTS = [{"labels": {"alertname": "KubePodCrashLooping", "namespace": "shop", "severity": "critical"},
           "annotations": {"summary": "api-1 is crash looping"}, "status": {"state": "active"},
           "startsAt": "2024-05-01T11:50:00Z"}]
SILENCES = [
    {"id": "s1", "status": {"state": "active"}, "createdBy": "alice", "comment": "maintenance",
     "endsAt": "2024-05-01T14:00:00Z",
     "matchers": [{"name": "namespace", "value": "batch", "isRegex": False, "isEqual": True}]},
    {"id": "s2", "status": {"state": "expired"}, "createdBy": "bob", "comment": "old", "endsAt": "2024-04-01T00:00:00Z",
     "matchers": [{"name": "alertname", "value": "Disk.*", "isRegex": True, "isEqual": True}]},
]


async def test_alertmanager_alerts_and_silences(http: httpx.AsyncClient) -> None:
    async with FakeAlertmanager(ALERTS, SILENCES) as am:
        box = Toolbox(policy=POLICY, alertmanager=HttpUpstream(am.base_url, http))
        alerts = await box.call("alertmanager_alerts", {"filter": ['namespace="shop"']})
        assert alerts.ok
        assert alerts.excerpt.splitlines() == [
            "1 alert(s)",
            "KubePodCrashLooping [active] since 2024-05-01T11:50:00Z {namespace=shop, severity=critical}: "
            "api-1 is crash looping",
        ]
        path, query = am.requests[-1]
        assert path == "/api/v2/alerts"
        assert ("filter", 'namespace="shop"') in query and ("active", "true") in query and ("silenced", "false") in query
        active = await box.call("alertmanager_silences", {})
        assert active.ok and active.excerpt.splitlines() == [
            "1 silence(s) (active)",
            's1 [active] {namespace="batch"} by alice until 2024-05-01T14:00:00Z: maintenance',
        ]
        every = await box.call("alertmanager_silences", {"state": "all"})
        assert 's2 [expired] {alertname=~"Disk.*"}' in every.excerpt
        bad = await box.call("alertmanager_alerts", {"filter": ["namespace=shop --all"]})
        assert bad.refused and "not allowed" in bad.refused
        assert len(am.requests) == 3


async def test_alertmanager_http_error_is_a_failed_result(http: httpx.AsyncClient) -> None:
    async with FakeAlertmanager(ALERTS, SILENCES) as am:
        box = Toolbox(policy=POLICY, alertmanager=HttpUpstream(am.base_url + "/wrong", http))
        result = await box.call("alertmanager_alerts", {})
        assert not result.ok and result.excerpt.startswith("HTTP 404")


# --- knowledge base and past incidents ----------------------------------------------------------------------


async def test_knowledge_search_and_past_incidents() -> None:
    kb, history = FakeKnowledge(), FakeHistory()
    box = Toolbox(policy=POLICY, knowledge=kb, incidents=history)
    hits = await box.call("knowledge_search", {"query": "payments oom", "limit": 3})
    assert hits.ok and hits.excerpt == "#7 Payments OOM (INC-3) [oom]: raise the memory limit to 1Gi"
    assert kb.queries == [("payments oom", 3)]
    past = await box.call("past_incidents", {"alertname": "KubePodCrashLooping", "service": "api",
                                             "exclude_incident_id": 12})
    assert past.ok and past.excerpt.startswith("INC-3 KubePodCrashLooping [api] resolved")
    assert "proposed `kubectl rollout restart deployment/api -n shop` (executed)" in past.excerpt
    assert history.calls == [{"alertname": "KubePodCrashLooping", "service": "api", "exclude_id": 12, "limit": 5}]
    assert (await box.call("knowledge_search", {"query": "x", "limit": 100})).refused
