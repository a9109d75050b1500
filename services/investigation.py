"""Deep analysis (issue 12): read-only tools the AI model may call before it proposes a remediation.

Each tool is described to the model in the OpenAI ``tools`` format (``Tool.schema()``) and run by
``Toolbox.call(name, arguments)``, which never raises for anything the model sends: an unknown tool, bad
arguments, or a command the safety policy does not score as read-only is *refused* with a reason that
goes back to the model, and nothing runs.

- kubectl ``get``/``describe``/``logs``/``top``/``events``/``rollout history``: built as an argv (never a
  shell) from validated arguments, namespace-scoped (only cluster-scoped kinds go without a namespace),
  with ``--request-timeout``; every argv is assessed by the remediation policy first and runs only when
  it parses as read-only and scores 0 (``kubectl logs`` is scored 1 by the safety table, so its own
  allowance is what a read can weigh at worst: ``READ_ALLOWANCE``). It runs through
  ``SubprocessExecutor`` (configured binary, kubeconfig, context; a timeout kills the process group).
- Prometheus instant and range queries (``/api/v1/query``, ``/api/v1/query_range``), the range bounded.
- Alertmanager's alerts and silences (``/api/v2/alerts``, ``/api/v2/silences``).
- The knowledge base and past incidents, through the existing read services.

Only configured tools are offered (``Toolbox.definitions()``) and only offered tools can be called.
Results are summarised compactly and clipped: ``ToolResult.excerpt`` for the model, ``card_excerpt`` for
the incident card.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import shlex
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Protocol

import httpx
import structlog

from services.executors import SubprocessExecutor, excerpt
from services.phrases import phrase
from services.safety import BASE_SCORES, WORST_MULTIPLIER, Tier
from storage.clock import UTC, Clock, utcnow
from storage.tables import Incident

if TYPE_CHECKING:
    from services.knowledge import KnowledgeHit
    from services.policy import RemediationPolicy
    from services.queries import IncidentQueries
    from storage.db import Database

log = structlog.get_logger(__name__)

__all__ = [
    "CARD_LIMIT",
    "MODEL_LIMIT",
    "READ_ALLOWANCE",
    "HttpUpstream",
    "IncidentHistory",
    "KnowledgeSearch",
    "KubectlAccess",
    "PastIncidents",
    "Tool",
    "ToolResult",
    "Toolbox",
    "clip_head",
]

MODEL_LIMIT = 4000  # characters of a result the model sees
CARD_LIMIT = 300  # characters of a result the incident card shows
KUBECTL_TIMEOUT = 20.0  # seconds per kubectl call (the process group is killed after that)
REQUEST_TIMEOUT = 15  # kubectl --request-timeout, seconds: the API call gives up before the process is killed
HTTP_TIMEOUT = 10.0  # seconds per Prometheus / Alertmanager request
LOG_TAIL_DEFAULT = 100
LOG_TAIL_MAX = 500
QUERY_MAX = 2000  # characters of PromQL
RANGE_MAX = timedelta(hours=24)
RANGE_DEFAULT = timedelta(hours=1)
RANGE_POINTS_MAX = 500  # the step is raised so that a series never has more points than this
STEP_MIN = 1.0
SERIES_MAX = 40  # series (or alerts, silences) listed before "… and N more"
LABEL_VALUE_MAX = 80
SEARCH_LIMIT_MAX = 10

#: The most a read-only kubectl verb may score and still run. The investigation rule is "score 0"; the
#: safety table scores ``logs`` 1 (logs may hold what a listing does not), which the namespace multiplier
#: can raise to at most ceil(1 × 2) = 2. No other verb gets an allowance.
READ_ALLOWANCE: Mapping[str, int] = MappingProxyType({"logs": math.ceil(BASE_SCORES["logs"] * WORST_MULTIPLIER)})

_DNS_NAME = re.compile(r"^[a-z0-9](?:[-a-z0-9.]{0,251}[a-z0-9])?$")  # RFC 1123 subdomain (pods, deployments)
_NAMESPACE = re.compile(r"^[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?$")  # RFC 1123 label
_SELECTOR = re.compile(
    r"^!?[A-Za-z0-9]([A-Za-z0-9._/-]{0,252})(?:(?:=|==|!=)[A-Za-z0-9._-]{0,63})?"
    r"(?:,!?[A-Za-z0-9]([A-Za-z0-9._/-]{0,252})(?:(?:=|==|!=)[A-Za-z0-9._-]{0,63})?)*$"
)
_SINCE = re.compile(r"^[1-9]\d{0,4}[smh]$")
_MATCHER = re.compile(r'^[A-Za-z_][A-Za-z0-9_]*(?:=|!=|=~|!~)(?:"[^"\\]{0,200}"|[^"\s,{}]{0,200})$')
_RELATIVE = re.compile(r"^(?:now)?-(\d{1,6})([smhd])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}

# kind (as kubectl takes it) → namespaced?
_KINDS: Mapping[str, bool] = MappingProxyType(
    {
        "pods": True,
        "deployments": True,
        "statefulsets": True,
        "daemonsets": True,
        "replicasets": True,
        "jobs": True,
        "cronjobs": True,
        "services": True,
        "endpoints": True,
        "ingresses": True,
        "configmaps": True,
        "secrets": True,  # names and types only: `-o yaml|json` on secrets scores 40 and is refused
        "events": True,
        "horizontalpodautoscalers": True,
        "poddisruptionbudgets": True,
        "persistentvolumeclaims": True,
        "networkpolicies": True,
        "serviceaccounts": True,
        "nodes": False,
        "namespaces": False,
        "persistentvolumes": False,
        "storageclasses": False,
    }
)
_ROLLOUT_KINDS = ("deployment", "statefulset", "daemonset")
_EVENT_KINDS = ("pod", "deployment", "statefulset", "daemonset", "replicaset", "job", "cronjob", "service", "node",
                "persistentvolumeclaim", "horizontalpodautoscaler", "ingress")


# --- definitions and results -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Tool:
    """One tool as the model sees it. ``parameters`` is a JSON schema (object); ``Toolbox`` validates
    arguments against the subset it uses (type, enum, pattern, bounds, required, no extra keys)."""

    name: str
    description: str
    parameters: Mapping[str, Any]

    def schema(self) -> dict[str, Any]:
        """The OpenAI function-tool shape: ``{"type": "function", "function": {...}}``."""
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": _plain(self.parameters)},
        }


@dataclass(frozen=True)
class ToolResult:
    tool: str
    arguments: dict[str, Any]
    ok: bool
    excerpt: str  # for the model, at most MODEL_LIMIT characters
    card_excerpt: str  # for the card, at most CARD_LIMIT characters
    seconds: float
    refused: str | None = None  # why nothing ran (unknown tool, bad arguments, not read-only)
    command: str | None = None  # what ran (or was refused): the kubectl argv, the HTTP request

    @property
    def content(self) -> str:
        """The text for the ``tool`` message that answers the model's call."""
        if self.refused is not None:
            return f"refused: {self.refused}"
        return self.excerpt if self.ok else f"failed: {self.excerpt}"


class KnowledgeSearch(Protocol):
    """``KnowledgeService`` satisfies it."""

    async def search(self, query: str, *, limit: int = 5) -> list[KnowledgeHit]: ...


class IncidentHistory(Protocol):
    """Past incidents like one alert: ``PastIncidents`` implements it over the read services."""

    async def similar(self, *, alertname: str, service: str, exclude_id: int, limit: int) -> list[dict[str, Any]]: ...


class PastIncidents:
    """``IncidentHistory`` through ``IncidentQueries.history`` (the same list the incident card shows)."""

    def __init__(self, db: Database, queries: IncidentQueries) -> None:
        self._db, self._queries = db, queries

    async def similar(self, *, alertname: str, service: str, exclude_id: int, limit: int) -> list[dict[str, Any]]:
        probe = Incident(id=exclude_id, alertname=alertname, service=service)  # a probe, never stored
        async with self._db.read() as tx:
            items = await self._queries.history(tx, probe)
        return items[:limit]


@dataclass(frozen=True)
class KubectlAccess:
    """How to run kubectl (ALERTPILOT_KUBECTL, kubeconfig, context) and how long a call may take."""

    path: str = "kubectl"
    kubeconfig: str | None = None
    context: str | None = None
    timeout: float = KUBECTL_TIMEOUT
    request_timeout: int = REQUEST_TIMEOUT


@dataclass(frozen=True)
class HttpUpstream:
    """A read-only HTTP API (Prometheus, Alertmanager): its base URL and the injected client."""

    base_url: str
    client: httpx.AsyncClient
    timeout: float = HTTP_TIMEOUT

    def url(self, path: str) -> str:
        return self.base_url.rstrip("/") + path


class _Refused(Exception):
    def __init__(self, reason: str, command: str | None = None) -> None:
        super().__init__(reason)
        self.reason, self.command = reason, command


@dataclass
class _Outcome:
    ok: bool
    text: str
    command: str | None = None


@dataclass(frozen=True)
class _Entry:
    tool: Tool
    run: Callable[[dict[str, Any]], Awaitable[_Outcome]]


# --- schemas -----------------------------------------------------------------------------------------------

_NS = {"type": "string", "pattern": _NAMESPACE.pattern, "description": "the namespace"}
_NAME = {"type": "string", "pattern": _DNS_NAME.pattern, "maxLength": 253}
_SELECTOR_PROP = {"type": "string", "pattern": _SELECTOR.pattern, "maxLength": 500,
                  "description": "label selector, e.g. app=api,tier!=cache"}
_PROMQL = {"type": "string", "minLength": 1, "maxLength": QUERY_MAX, "description": "a PromQL expression"}
_TIME = {"type": "string", "maxLength": 40,
         "description": "RFC 3339 (2024-05-01T10:00:00Z), unix seconds, 'now' or relative like '-30m', '-2h'"}


def _obj(properties: Mapping[str, Any], required: Sequence[str] = ()) -> dict[str, Any]:
    return {"type": "object", "properties": dict(properties), "required": list(required),
            "additionalProperties": False}


# --- the toolbox -------------------------------------------------------------------------------------------


class Toolbox:
    """The read-only tools for one deployment: only those whose upstream is configured are offered."""

    def __init__(
        self,
        *,
        policy: RemediationPolicy,
        kubectl: KubectlAccess | None = None,
        prometheus: HttpUpstream | None = None,
        alertmanager: HttpUpstream | None = None,
        knowledge: KnowledgeSearch | None = None,
        incidents: IncidentHistory | None = None,
        clock: Clock = utcnow,
        model_limit: int = MODEL_LIMIT,
        card_limit: int = CARD_LIMIT,
    ) -> None:
        self._policy = policy
        self._kubectl = kubectl
        self._executor = None
        if kubectl is not None:
            # The executor keeps enough output for the model; the toolbox clips it (head for listings).
            self._executor = SubprocessExecutor(kubectl=kubectl.path, kubeconfig=kubectl.kubeconfig,
                                                context=kubectl.context, excerpt_head=model_limit * 4,
                                                excerpt_tail=model_limit)
        self._prometheus, self._alertmanager = prometheus, alertmanager
        self._knowledge, self._incidents = knowledge, incidents
        self._now = clock
        self._model_limit, self._card_limit = model_limit, card_limit
        self._entries: dict[str, _Entry] = {}
        if kubectl is not None:
            self._add_kubectl_tools()
        if prometheus is not None:
            self._add_prometheus_tools()
        if alertmanager is not None:
            self._add_alertmanager_tools()
        if knowledge is not None:
            self._add(Tool("knowledge_search", "Search the team's knowledge base (runbooks, notes of past incidents).",
                           _obj({"query": {"type": "string", "minLength": 1, "maxLength": 300},
                                 "limit": {"type": "integer", "minimum": 1, "maximum": SEARCH_LIMIT_MAX}},
                                ["query"])), self._knowledge_search)
        if incidents is not None:
            self._add(Tool("past_incidents", "Past incidents with the same alert name or service, newest first, "
                           "with the remediation proposed and its state.",
                           _obj({"alertname": {"type": "string", "minLength": 1, "maxLength": 200},
                                 "service": {"type": "string", "maxLength": 200},
                                 "exclude_incident_id": {"type": "integer", "minimum": 0},
                                 "limit": {"type": "integer", "minimum": 1, "maximum": SEARCH_LIMIT_MAX}},
                                ["alertname"])), self._past_incidents)

    # --- public ---------------------------------------------------------------------------------------------

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._entries)

    def definitions(self) -> list[dict[str, Any]]:
        """The offered tools in the OpenAI ``tools`` format."""
        return [entry.tool.schema() for entry in self._entries.values()]

    async def call(self, name: str, arguments: Mapping[str, Any] | str | None) -> ToolResult:
        """Run one tool call. Never raises (except on cancellation): refusals and failures are results."""
        started = time.monotonic()
        shown: dict[str, Any] = {}
        try:
            args = _arguments(arguments)
            shown = dict(args)
            entry = self._entries.get(name) if isinstance(name, str) else None
            if entry is None:
                shown_name = repr(str(name)[:60])
                raise _Refused(
                    phrase("unknown or unavailable tool %(name)s (offered: %(tools)s)", name=shown_name,
                           tools=", ".join(self._entries)) if self._entries
                    else phrase("unknown or unavailable tool %(name)s (offered: none)", name=shown_name)
                )
            _validate(entry.tool.parameters, args)
            outcome = await entry.run(args)
        except _Refused as refused:
            log.info("investigation_tool_refused", tool=str(name)[:60], reason=refused.reason)
            text = f"refused: {refused.reason}"
            return ToolResult(tool=str(name)[:60], arguments=shown, ok=False,
                              excerpt=clip_head(text, self._model_limit),
                              card_excerpt=clip_head(text, self._card_limit), seconds=_since(started),
                              refused=refused.reason, command=refused.command)
        except Exception as exc:  # a tool must never break the analysis: the model hears what failed
            log.exception("investigation_tool_failed", tool=name)
            outcome = _Outcome(False, f"{type(exc).__name__}: {exc}")
        log.info("investigation_tool_called", tool=name, ok=outcome.ok, seconds=_since(started))
        return ToolResult(tool=name, arguments=shown, ok=outcome.ok,
                          excerpt=clip_head(outcome.text, self._model_limit),
                          card_excerpt=clip_head(outcome.text, self._card_limit), seconds=_since(started),
                          command=outcome.command)

    # --- registration ---------------------------------------------------------------------------------------

    def _add(self, tool: Tool, run: Callable[[dict[str, Any]], Awaitable[_Outcome]]) -> None:
        self._entries[tool.name] = _Entry(tool, run)

    def _add_kubectl_tools(self) -> None:
        kinds = list(_KINDS)
        self._add(Tool("kubectl_get", "kubectl get: list resources of a kind (or one by name) in a namespace. "
                       "Cluster-scoped kinds (nodes, namespaces, persistentvolumes, storageclasses) take no namespace.",
                       _obj({"kind": {"type": "string", "enum": kinds}, "name": _NAME, "namespace": _NS,
                             "selector": _SELECTOR_PROP,
                             "output": {"type": "string", "enum": ["wide", "yaml", "json"]}},
                            ["kind"])), self._kubectl_get)
        self._add(Tool("kubectl_describe", "kubectl describe: details and recent events of resources.",
                       _obj({"kind": {"type": "string", "enum": kinds}, "name": _NAME, "namespace": _NS,
                             "selector": _SELECTOR_PROP}, ["kind"])), self._kubectl_describe)
        self._add(Tool("kubectl_logs", "kubectl logs: the last lines of a pod's container log.",
                       _obj({"pod": _NAME, "namespace": _NS,
                             "container": {"type": "string", "pattern": _NAMESPACE.pattern},
                             "previous": {"type": "boolean", "description": "the previous (crashed) container"},
                             "tail": {"type": "integer", "minimum": 1, "maximum": LOG_TAIL_MAX},
                             "since": {"type": "string", "pattern": _SINCE.pattern, "description": "e.g. 30m, 2h"}},
                            ["pod", "namespace"])), self._kubectl_logs)
        self._add(Tool("kubectl_top", "kubectl top: CPU and memory of pods (in a namespace) or nodes.",
                       _obj({"target": {"type": "string", "enum": ["pods", "nodes"]}, "name": _NAME, "namespace": _NS},
                            ["target"])), self._kubectl_top)
        self._add(Tool("kubectl_events", "kubectl events: recent events in a namespace, optionally for one object.",
                       _obj({"namespace": _NS, "for_kind": {"type": "string", "enum": list(_EVENT_KINDS)},
                             "for_name": _NAME},
                            ["namespace"])), self._kubectl_events)
        self._add(Tool("kubectl_rollout_history", "kubectl rollout history: the revisions of a workload.",
                       _obj({"kind": {"type": "string", "enum": list(_ROLLOUT_KINDS)}, "name": _NAME, "namespace": _NS,
                             "revision": {"type": "integer", "minimum": 1}}, ["kind", "name", "namespace"])),
                  self._kubectl_rollout_history)

    def _add_prometheus_tools(self) -> None:
        self._add(Tool("prometheus_query", "Prometheus instant query: each series' labels and value now (or at time).",
                       _obj({"query": _PROMQL, "time": _TIME}, ["query"])), self._prometheus_query)
        self._add(Tool("prometheus_query_range",
                       f"Prometheus range query (at most {int(RANGE_MAX.total_seconds() // 3600)} h, at most "
                       f"{RANGE_POINTS_MAX} points per series): each series' last value, min and max.",
                       _obj({"query": _PROMQL, "start": _TIME, "end": _TIME,
                             "step_seconds": {"type": "number", "minimum": STEP_MIN, "maximum": 86400}},
                            ["query"])), self._prometheus_query_range)

    def _add_alertmanager_tools(self) -> None:
        filters = {"type": "array", "maxItems": 10,
                   "items": {"type": "string", "pattern": _MATCHER.pattern, "maxLength": 250},
                   "description": 'matchers like alertname="KubePodCrashLooping" or namespace=~"shop.*"'}
        self._add(Tool("alertmanager_alerts", "Alertmanager's active alerts (not silenced or inhibited, unless asked).",
                       _obj({"filter": filters, "include_silenced": {"type": "boolean"}})), self._alertmanager_alerts)
        self._add(Tool("alertmanager_silences", "Alertmanager's silences (active by default).",
                       _obj({"filter": filters,
                             "state": {"type": "string", "enum": ["active", "pending", "expired", "all"]}})),
                  self._alertmanager_silences)

    # --- kubectl --------------------------------------------------------------------------------------------

    def _scope(self, kind: str, namespace: str | None) -> list[str]:
        if _KINDS[kind]:
            if not namespace:
                raise _Refused(phrase("%(kind)s are namespaced: give a namespace", kind=kind))
            return [f"--namespace={namespace}"]
        if namespace:
            raise _Refused(phrase("%(kind)s are cluster-scoped: leave out the namespace", kind=kind))
        return []

    async def _kubectl_get(self, a: dict[str, Any]) -> _Outcome:
        argv = ["get", a["kind"], *([a["name"]] if "name" in a else []), *self._scope(a["kind"], a.get("namespace"))]
        if "name" in a and "selector" in a:
            raise _Refused(phrase("give a name or a selector, not both"))
        if "selector" in a:
            argv.append(f"--selector={a['selector']}")
        if "output" in a:
            argv.append(f"--output={a['output']}")
        return await self._kubectl_run(argv)

    async def _kubectl_describe(self, a: dict[str, Any]) -> _Outcome:
        if "name" in a and "selector" in a:
            raise _Refused(phrase("give a name or a selector, not both"))
        argv = ["describe", a["kind"], *([a["name"]] if "name" in a else []),
                *self._scope(a["kind"], a.get("namespace"))]
        if "selector" in a:
            argv.append(f"--selector={a['selector']}")
        return await self._kubectl_run(argv)

    async def _kubectl_logs(self, a: dict[str, Any]) -> _Outcome:
        argv = ["logs", f"pod/{a['pod']}", f"--namespace={a['namespace']}", f"--tail={a.get('tail', LOG_TAIL_DEFAULT)}"]
        if "container" in a:
            argv.append(f"--container={a['container']}")
        if a.get("previous"):
            argv.append("--previous")
        if "since" in a:
            argv.append(f"--since={a['since']}")
        return await self._kubectl_run(argv)

    async def _kubectl_top(self, a: dict[str, Any]) -> _Outcome:
        target = a["target"]
        argv = ["top", "pod" if target == "pods" else "node", *([a["name"]] if "name" in a else [])]
        argv += self._scope(target, a.get("namespace"))
        return await self._kubectl_run(argv)

    async def _kubectl_events(self, a: dict[str, Any]) -> _Outcome:
        argv = ["events", f"--namespace={a['namespace']}"]
        if ("for_kind" in a) != ("for_name" in a):
            raise _Refused(phrase("for_kind and for_name go together"))
        if "for_kind" in a:
            argv.append(f"--for={a['for_kind']}/{a['for_name']}")
        return await self._kubectl_run(argv)

    async def _kubectl_rollout_history(self, a: dict[str, Any]) -> _Outcome:
        argv = ["rollout", "history", f"{a['kind']}/{a['name']}", f"--namespace={a['namespace']}"]
        if "revision" in a:
            argv.append(f"--revision={a['revision']}")
        return await self._kubectl_run(argv)

    async def _kubectl_run(self, words: list[str]) -> _Outcome:
        assert self._kubectl is not None and self._executor is not None
        argv = ("kubectl", *words, f"--request-timeout={self._kubectl.request_timeout}s")
        command = shlex.join(argv)
        self._check_read_only(argv, command)
        result = await self._executor.run(argv, timeout=self._kubectl.timeout)
        if result.ok:
            text = result.stdout.strip() or "(no output)"
            if result.stderr.strip():
                text += "\n[stderr] " + result.stderr.strip()
            return _Outcome(True, text, command)
        if result.error is not None:
            return _Outcome(False, result.error, command)
        status = "timed out" if result.timed_out else f"exit code {result.exit_code}"
        # The error is at the end of stderr: keep that first for the model.
        text = "\n".join(part for part in (status, result.stderr.strip(), result.stdout.strip()) if part)
        return _Outcome(False, text, command)

    def _check_read_only(self, argv: tuple[str, ...], command: str) -> None:
        """The remediation policy's verdict on the argv: it must parse as the same read-only kubectl command
        and score 0 (or the verb's READ_ALLOWANCE)."""
        assessment = self._policy.assess_command(command)
        spec = assessment.spec
        if assessment.tier is Tier.BLOCKED or spec is None:
            raise _Refused(phrase("the safety policy blocks it: %(reason)s",
                                  reason=assessment.blocked_reason or assessment.score.summary), command)
        if assessment.error is not None:
            raise _Refused(phrase("the safety policy could not score it (%(error)s)", error=str(assessment.error)),
                           command)
        if spec.tool != "kubectl" or spec.mutating or tuple(spec.argv) != argv:
            raise _Refused(phrase("not a read-only kubectl command (%(verb)s)", verb=spec.verb) if spec.verb
                           else phrase("not a read-only kubectl command (unknown verb)"), command)
        allowed = READ_ALLOWANCE.get(spec.verb, 0)
        if assessment.score.value > allowed:
            raise _Refused(phrase("blast score %(score)s > %(allowed)s: %(summary)s", score=str(assessment.score.value),
                                  allowed=str(allowed), summary=assessment.score.summary), command)

    # --- Prometheus -----------------------------------------------------------------------------------------

    async def _prometheus_query(self, a: dict[str, Any]) -> _Outcome:
        params = {"query": a["query"]}
        if "time" in a:
            params["time"] = _rfc3339(self._when(a["time"], "time"))
        return await self._prometheus_get("/api/v1/query", params)

    async def _prometheus_query_range(self, a: dict[str, Any]) -> _Outcome:
        end = self._when(a.get("end", "now"), "end")
        start = self._when(a["start"], "start") if "start" in a else end - RANGE_DEFAULT
        if start >= end:
            raise _Refused(phrase("start must be before end"))
        span = end - start
        if span > RANGE_MAX:
            raise _Refused(_range_refusal(span))
        seconds = span.total_seconds()
        step = float(a.get("step_seconds", max(STEP_MIN, seconds / 60)))
        step = max(step, math.ceil(seconds / RANGE_POINTS_MAX))  # bounded points per series
        params = {"query": a["query"], "start": _rfc3339(start), "end": _rfc3339(end), "step": f"{step:g}"}
        return await self._prometheus_get("/api/v1/query_range", params)

    async def _prometheus_get(self, path: str, params: dict[str, str]) -> _Outcome:
        assert self._prometheus is not None
        command = f"GET {path} {params['query']}"
        body, failure = await _get_json(self._prometheus, path, params)
        if failure is not None:
            return _Outcome(False, failure, command)
        if not isinstance(body, dict) or body.get("status") != "success":
            error = body.get("error") if isinstance(body, dict) else None
            kind = body.get("errorType") if isinstance(body, dict) else None
            return _Outcome(False, f"Prometheus error{f' ({kind})' if kind else ''}: {error or 'unexpected answer'}",
                            command)
        return _Outcome(True, _summarise_prometheus(body), command)

    def _when(self, value: str, what: str) -> datetime:
        text = value.strip().lower()
        now = self._now()
        if text == "now":
            return now
        relative = _RELATIVE.match(text)
        if relative:
            return now - timedelta(seconds=int(relative.group(1)) * _UNITS[relative.group(2)])
        if re.fullmatch(r"\d{9,11}(?:\.\d+)?", text):
            return datetime.fromtimestamp(float(text), UTC)
        try:
            parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise _Refused(phrase("%(what)s: %(value)s is not RFC 3339, unix seconds, 'now' or like '-30m'", what=what,
                                  value=repr(value[:40]))) from None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)

    # --- Alertmanager ---------------------------------------------------------------------------------------

    async def _alertmanager_alerts(self, a: dict[str, Any]) -> _Outcome:
        assert self._alertmanager is not None
        silenced = "true" if a.get("include_silenced") else "false"
        params: list[tuple[str, str]] = [("active", "true"), ("silenced", silenced), ("inhibited", silenced)]
        params += [("filter", matcher) for matcher in a.get("filter", [])]
        command = "GET /api/v2/alerts"
        body, failure = await _get_json(self._alertmanager, "/api/v2/alerts", params)
        if failure is not None:
            return _Outcome(False, failure, command)
        if not isinstance(body, list):
            return _Outcome(False, "Alertmanager: unexpected answer (not a list of alerts)", command)
        return _Outcome(True, _summarise_alerts(body), command)

    async def _alertmanager_silences(self, a: dict[str, Any]) -> _Outcome:
        assert self._alertmanager is not None
        params = [("filter", matcher) for matcher in a.get("filter", [])]
        command = "GET /api/v2/silences"
        body, failure = await _get_json(self._alertmanager, "/api/v2/silences", params)
        if failure is not None:
            return _Outcome(False, failure, command)
        if not isinstance(body, list):
            return _Outcome(False, "Alertmanager: unexpected answer (not a list of silences)", command)
        state = a.get("state", "active")
        wanted = [s for s in body if isinstance(s, dict) and (state == "all" or _silence_state(s) == state)]
        return _Outcome(True, _summarise_silences(wanted, state), command)

    # --- knowledge and history ------------------------------------------------------------------------------

    async def _knowledge_search(self, a: dict[str, Any]) -> _Outcome:
        assert self._knowledge is not None
        hits = await self._knowledge.search(a["query"], limit=a.get("limit", 5))
        if not hits:
            return _Outcome(True, "no knowledge-base entries match")
        lines = []
        for hit in hits:
            where = f" ({hit.incident_ref})" if hit.incident_ref else ""
            tags = f" [{', '.join(hit.tags)}]" if hit.tags else ""
            lines.append(f"#{hit.id} {hit.title}{where}{tags}: {hit.snippet}")
        return _Outcome(True, "\n".join(lines))

    async def _past_incidents(self, a: dict[str, Any]) -> _Outcome:
        assert self._incidents is not None
        items = await self._incidents.similar(alertname=a["alertname"], service=a.get("service", ""),
                                              exclude_id=a.get("exclude_incident_id", 0), limit=a.get("limit", 5))
        if not items:
            return _Outcome(True, "no past incidents like this one")
        lines = []
        for item in items:
            resolved = f", resolved {item.get('resolved_at')}" if item.get("resolved_at") else ""
            proposal = ""
            if item.get("command"):
                proposal = f"; proposed `{item['command']}` ({item.get('proposal_state') or 'no state'})"
            lines.append(f"{item.get('ref')} {item.get('title')} [{item.get('service') or '-'}] {item.get('status')}, "
                         f"opened {item.get('created_at')}{resolved}{proposal}")
        return _Outcome(True, "\n".join(lines))


# --- validation --------------------------------------------------------------------------------------------


def _arguments(arguments: Mapping[str, Any] | str | None) -> dict[str, Any]:
    if arguments is None or arguments == "":
        return {}
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except ValueError:
            raise _Refused(phrase("the arguments are not valid JSON")) from None
    if not isinstance(arguments, Mapping):
        raise _Refused(phrase("the arguments must be a JSON object"))
    return {str(key): value for key, value in arguments.items()}


def _validate(schema: Mapping[str, Any], args: dict[str, Any]) -> None:
    """The subset of JSON schema the tools use; the first problem is the refusal's reason."""
    properties: Mapping[str, Any] = schema.get("properties", {})
    extra = sorted(set(args) - set(properties))
    if extra:
        raise _Refused(phrase("unknown argument(s): %(names)s", names=", ".join(name[:40] for name in extra)))
    missing = [name for name in schema.get("required", ()) if name not in args]
    if missing:
        raise _Refused(phrase("missing argument(s): %(names)s", names=", ".join(missing)))
    for name, value in list(args.items()):
        if value is None and name not in schema.get("required", ()):
            del args[name]  # an explicit null is the same as leaving it out
            continue
        _check_value(name, properties[name], value)


def _check_value(name: str, prop: Mapping[str, Any], value: Any) -> None:
    kind = prop.get("type")
    if kind == "string":
        if not isinstance(value, str):
            raise _Refused(phrase("%(name)s must be a string", name=name))
        if len(value) < prop.get("minLength", 0) or len(value) > prop.get("maxLength", 10_000):
            raise _Refused(phrase("%(name)s must be %(min)s–%(max)s characters", name=name,
                                  min=str(prop.get("minLength", 0)), max=str(prop.get("maxLength", 10_000))))
        if "enum" in prop and value not in prop["enum"]:
            raise _Refused(phrase("%(name)s must be one of: %(values)s", name=name, values=", ".join(prop["enum"])))
        if "pattern" in prop and not re.fullmatch(prop["pattern"], value):
            raise _Refused(phrase("%(name)s %(value)s is not allowed (names and values only, no flags or spaces)",
                                  name=name, value=repr(value[:60])))
    elif kind in ("integer", "number"):
        wrong = kind == "integer" and not isinstance(value, int)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or wrong:
            raise _Refused(phrase("%(name)s must be an integer", name=name) if kind == "integer"
                           else phrase("%(name)s must be a number", name=name))
        if not math.isfinite(value) or value < prop.get("minimum", -math.inf) or value > prop.get("maximum", math.inf):
            raise _Refused(phrase("%(name)s must be between %(min)s and %(max)s", name=name,
                                  min=str(prop.get("minimum", "-∞")), max=str(prop.get("maximum", "∞"))))
    elif kind == "boolean":
        if not isinstance(value, bool):
            raise _Refused(phrase("%(name)s must be true or false", name=name))
    elif kind == "array":
        if not isinstance(value, list) or len(value) > prop.get("maxItems", 100):
            raise _Refused(phrase("%(name)s must be a list of at most %(max)s items", name=name,
                                  max=str(prop.get("maxItems", 100))))
        for item in value:
            _check_value(name, prop["items"], item)


# --- HTTP and summaries ------------------------------------------------------------------------------------


async def _get_json(upstream: HttpUpstream, path: str, params: Any) -> tuple[Any, str | None]:
    """(parsed JSON, None) or (the body when it was JSON, a failure text)."""
    try:
        async with asyncio.timeout(upstream.timeout):
            response = await upstream.client.get(upstream.url(path), params=params, timeout=upstream.timeout)
    except TimeoutError:
        return None, f"timed out after {upstream.timeout:g} s"
    except httpx.HTTPError as exc:
        return None, f"{type(exc).__name__}: {exc or 'request failed'}"
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status_code >= 400:
        if isinstance(body, dict) and body.get("error"):
            return body, f"HTTP {response.status_code} ({body.get('errorType', 'error')}): {body['error']}"
        return body, f"HTTP {response.status_code}: {response.text[:300]}"
    if body is None:
        return None, f"HTTP {response.status_code}: the answer is not JSON"
    return body, None


def _labels(metric: Mapping[str, Any]) -> str:
    name = str(metric.get("__name__", ""))
    pairs = [f'{k}="{_short(str(v), LABEL_VALUE_MAX)}"' for k, v in sorted(metric.items()) if k != "__name__"]
    return f"{name}{{{', '.join(pairs)}}}" if pairs or not name else name


def _summarise_prometheus(body: Mapping[str, Any]) -> str:
    data = body.get("data") or {}
    kind, result = data.get("resultType"), data.get("result")
    lines: list[str] = []
    if kind in ("scalar", "string") and isinstance(result, list) and len(result) == 2:
        lines.append(f"{kind}: {result[1]} @{_ts(result[0])}")
    elif kind == "vector" and isinstance(result, list):
        lines.append(f"{len(result)} series")
        for series in result[:SERIES_MAX]:
            ts, value = (series.get("value") or [None, "?"])[:2]
            lines.append(f"{_labels(series.get('metric') or {})} = {value} @{_ts(ts)}")
    elif kind == "matrix" and isinstance(result, list):
        lines.append(f"{len(result)} series")
        for series in result[:SERIES_MAX]:
            points = series.get("values") or []
            numbers = [_number(v) for _, v in points]
            finite = [n for n in numbers if n is not None and math.isfinite(n)]
            span = f", min {min(finite):g}, max {max(finite):g}" if finite else ""
            last = f"last {points[-1][1]} @{_ts(points[-1][0])}" if points else "no points"
            lines.append(f"{_labels(series.get('metric') or {})}: {last}{span} ({len(points)} points)")
    else:
        lines.append(f"unexpected result type {kind!r}")
    if isinstance(result, list) and kind in ("vector", "matrix") and len(result) > SERIES_MAX:
        lines.append(f"… and {len(result) - SERIES_MAX} more series")
    for warning in (body.get("warnings") or [])[:3]:
        lines.append(f"warning: {warning}")
    return "\n".join(lines)


def _summarise_alerts(alerts: list[Any]) -> str:
    lines = [f"{len(alerts)} alert(s)"]
    for alert in alerts[:SERIES_MAX]:
        if not isinstance(alert, dict):
            continue
        labels = dict(alert.get("labels") or {})
        name = labels.pop("alertname", "?")
        state = (alert.get("status") or {}).get("state", "?")
        summary = (alert.get("annotations") or {}).get("summary", "")
        extra = ", ".join(f"{k}={_short(str(v), 40)}" for k, v in sorted(labels.items())[:8])
        line = f"{name} [{state}] since {alert.get('startsAt', '?')} {{{extra}}}"
        lines.append(line + (f": {_short(summary, 160)}" if summary else ""))
    if len(alerts) > SERIES_MAX:
        lines.append(f"… and {len(alerts) - SERIES_MAX} more")
    return "\n".join(lines)


def _silence_state(silence: Mapping[str, Any]) -> str:
    return str((silence.get("status") or {}).get("state", ""))


def _summarise_silences(silences: list[dict[str, Any]], state: str) -> str:
    lines = [f"{len(silences)} silence(s) ({state})"]
    for silence in silences[:SERIES_MAX]:
        matchers = []
        for m in silence.get("matchers") or []:
            op = ("!" if m.get("isEqual") is False else "=") + ("~" if m.get("isRegex") else "")
            op = {"=": "=", "!": "!=", "=~": "=~", "!~": "!~"}.get(op, op)
            matchers.append(f"{m.get('name')}{op}\"{_short(str(m.get('value', '')), 60)}\"")
        comment = _short(str(silence.get("comment", "")), 120)
        lines.append(f"{silence.get('id', '?')} [{_silence_state(silence)}] {{{', '.join(matchers)}}} "
                     f"by {silence.get('createdBy', '?')} until {silence.get('endsAt', '?')}: {comment}")
    if len(silences) > SERIES_MAX:
        lines.append(f"… and {len(silences) - SERIES_MAX} more")
    return "\n".join(lines)


# --- small helpers -----------------------------------------------------------------------------------------


def clip_head(text: str, limit: int) -> str:
    """At most ``limit`` characters: listings keep their start (the header and first rows) and the last
    few lines, with a marker saying how much was left out."""
    text = text.strip()
    if len(text) <= limit:
        return text
    if limit < 120:
        return text[: limit - 1].rstrip() + "…"
    tail = limit // 5
    head = limit - tail - 60  # the marker's room
    clipped = excerpt(text, head, tail)
    return clipped if len(clipped) <= limit else text[: limit - 1] + "…"


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _number(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _ts(value: Any) -> str:
    number = _number(value)
    if number is None:
        return "?"
    return datetime.fromtimestamp(number, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _rfc3339(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _range_refusal(span: timedelta) -> str:
    """The refusal of a range longer than RANGE_MAX (whole hours): "the range is 25 h 30 min; at most 24 h"."""
    hours, minutes = divmod(int(span.total_seconds()) // 60, 60)
    limit = str(int(RANGE_MAX.total_seconds() // 3600))
    if minutes:
        return phrase("the range is %(hours)s h %(minutes)s min; at most %(limit)s h", hours=str(hours),
                      minutes=str(minutes), limit=limit)
    return phrase("the range is %(hours)s h; at most %(limit)s h", hours=str(hours), limit=limit)


def _since(started: float) -> float:
    return round(time.monotonic() - started, 3)


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value
