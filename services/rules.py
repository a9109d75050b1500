"""The rule engine: local keyword rules that always give an answer (DESIGN §1.3c).

Rules are data (the table below, also in the README): the first rule whose keywords appear in the
alert's name, summary or description wins; the default is a restart. Proposals from rules never claim
an AI confidence.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from services.ports import IncidentFacts, ProposalDraft


@dataclass(frozen=True)
class Rule:
    category: str
    keywords: tuple[str, ...]
    action: str  # restart | scale | undo | delete_pod
    risk: str
    root_cause: str  # {workload}, {namespace} are filled in


RULES: tuple[Rule, ...] = (
    Rule(
        "crash",
        ("crashloop", "crash", "oomkill", "oom", "panic", "restarting", "backoff"),
        "restart",
        "medium",
        "{workload} is crashing or was OOM-killed in {namespace}",
    ),
    Rule(
        "error_rate",
        ("errorrate", "error rate", "error_rate", "5xx", "higherror", "errors", "failure rate", "exception"),
        "undo",
        "medium",
        "error rate spike on {workload} in {namespace}, likely from the latest rollout",
    ),
    Rule(
        "latency",
        ("latency", "slow", "p99", "p95", "response time", "duration", "timeout"),
        "scale",
        "low",
        "{workload} in {namespace} is slow; it is probably short of capacity",
    ),
    Rule(
        "resource_exhaustion",
        ("cpu", "memory", "throttl", "saturat", "exhaust", "pressure", "backlog", "connections", "queue"),
        "scale",
        "low",
        "{workload} in {namespace} is running out of resources",
    ),
    Rule(
        "storage",
        ("disk", "filesystem", "volume", "inode", "storage"),
        "restart",
        "medium",
        "storage on {workload} in {namespace} is nearly full; a restart releases temporary files and logs",
    ),
)
DEFAULT_RULE = Rule("unknown", (), "restart", "medium", "no specific rule matched {workload} in {namespace}")
DEFAULT_SCALE_REPLICAS = 3

_WORKLOAD_LABELS = (
    ("deployment", "deployment"),
    ("statefulset", "statefulset"),
    ("daemonset", "daemonset"),
    ("service", "deployment"),
    ("app", "deployment"),
    ("job_name", "job"),
)
_SAFE_NAME = re.compile(r"[^a-z0-9.-]+")
_SAFE_LABEL = re.compile(r"[^a-z0-9-]+")


def match_rule(facts: IncidentFacts) -> Rule:
    haystack = " ".join(
        [
            facts.alertname,
            _split_camel(facts.alertname),
            facts.annotations.get("summary", ""),
            facts.annotations.get("description", ""),
        ]
    ).lower()
    for rule in RULES:
        if any(keyword in haystack for keyword in rule.keywords):
            return rule
    return DEFAULT_RULE


def workload_of(labels: dict[str, str]) -> tuple[str, str] | None:
    """(kind, name) of the Kubernetes workload the labels point at, if any."""
    for label, kind in _WORKLOAD_LABELS:
        if labels.get(label):
            return kind, k8s_name(labels[label])
    return None


def k8s_name(value: str, *, dots: bool = True) -> str:
    """A label value made safe as a Kubernetes name (RFC 1123; never any shell syntax). Namespaces are
    DNS labels: no dots."""
    pattern = _SAFE_NAME if dots else _SAFE_LABEL
    cleaned = pattern.sub("-", value.lower()).strip("-.")[:63].strip("-.")
    return cleaned or "unknown"


def propose(facts: IncidentFacts) -> ProposalDraft:
    rule = match_rule(facts)
    namespace = k8s_name(facts.namespace or facts.labels.get("namespace", "") or "default", dots=False)
    workload = workload_of(facts.labels)
    pod = facts.labels.get("pod")
    if workload is None and pod:
        target_desc = f"pod/{k8s_name(pod)}"
    elif workload is None:
        target_desc = f"deployment/{k8s_name(facts.alertname)}"
    else:
        target_desc = f"{workload[0]}/{workload[1]}"
    command = _command(rule.action, namespace, target_desc, pod)
    reasoning = (
        f"Rule '{rule.category}' matched alert {facts.alertname}"
        if rule.keywords
        else f"No rule matched alert {facts.alertname}; a restart is the default first step"
    )
    if workload is None:
        reasoning += "; no workload label (deployment, statefulset, service, app), so the target is a guess to check"
    if rule.action == "scale":
        reasoning += f"; scale target {DEFAULT_SCALE_REPLICAS} replicas assumes the current count is lower"
    return ProposalDraft(
        source="rules",
        category=rule.category,
        root_cause=rule.root_cause.format(workload=target_desc, namespace=namespace),
        command=command,
        risk=rule.risk,
        reasoning=reasoning,
    )


def _command(action: str, namespace: str, target: str, pod: str | None) -> str:
    if target.startswith("pod/"):
        return f"kubectl -n {namespace} delete {target}"
    if action == "scale":
        return f"kubectl -n {namespace} scale {target} --replicas={DEFAULT_SCALE_REPLICAS}"
    if action == "undo":
        return f"kubectl -n {namespace} rollout undo {target}"
    return f"kubectl -n {namespace} rollout restart {target}"


def _split_camel(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", name)
