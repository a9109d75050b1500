"""The rule engine: local keyword rules that always give an answer (DESIGN §1.3c).

Rules are data (the table below, also in the README): the first rule whose keywords appear in the
alert's name, summary or description wins; the default is a restart. Proposals from rules never claim
an AI confidence.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from services.phrases import N_, phrase
from services.ports import IncidentFacts, ProposalDraft


@dataclass(frozen=True)
class Rule:
    category: str
    keywords: tuple[str, ...]
    action: str  # restart | scale | undo | delete_pod
    risk: str
    root_cause: str  # a phrase (services/phrases.py): %(workload)s, %(namespace)s are filled in


RULES: tuple[Rule, ...] = (
    Rule(
        "crash",
        ("crashloop", "crash", "oomkill", "oom", "panic", "restarting", "backoff"),
        "restart",
        "medium",
        N_("%(workload)s is crashing or was OOM-killed in %(namespace)s"),
    ),
    Rule(
        "error_rate",
        ("errorrate", "error rate", "error_rate", "5xx", "higherror", "errors", "failure rate", "exception"),
        "undo",
        "medium",
        N_("error rate spike on %(workload)s in %(namespace)s, likely from the latest rollout"),
    ),
    Rule(
        "latency",
        ("latency", "slow", "p99", "p95", "response time", "duration", "timeout"),
        "scale",
        "low",
        N_("%(workload)s in %(namespace)s is slow; it is probably short of capacity"),
    ),
    Rule(
        "resource_exhaustion",
        ("cpu", "memory", "throttl", "saturat", "exhaust", "pressure", "backlog", "connections", "queue"),
        "scale",
        "low",
        N_("%(workload)s in %(namespace)s is running out of resources"),
    ),
    Rule(
        "storage",
        ("disk", "filesystem", "volume", "inode", "storage"),
        "restart",
        "medium",
        N_("storage on %(workload)s in %(namespace)s is nearly full; a restart releases temporary files and logs"),
    ),
)
DEFAULT_RULE = Rule("unknown", (), "restart", "medium", N_("no specific rule matched %(workload)s in %(namespace)s"))
DEFAULT_SCALE_REPLICAS = 3

# The reasoning of a rules proposal, one whole sentence per case (a phrase, services/phrases.py): (a rule
# matched, no workload label, a scale) → the message id.
_REASONING: dict[tuple[bool, bool, bool], str] = {
    (True, False, False): N_("Rule '%(rule)s' matched alert %(alert)s"),
    (True, True, False): N_(
        "Rule '%(rule)s' matched alert %(alert)s; no workload label (deployment, statefulset, service, app), "
        "so the target is a guess to check"
    ),
    (True, False, True): N_(
        "Rule '%(rule)s' matched alert %(alert)s; scale target %(replicas)s replicas assumes the current count is lower"
    ),
    (True, True, True): N_(
        "Rule '%(rule)s' matched alert %(alert)s; no workload label (deployment, statefulset, service, app), "
        "so the target is a guess to check; scale target %(replicas)s replicas assumes the current count is lower"
    ),
    (False, False, False): N_("No rule matched alert %(alert)s; a restart is the default first step"),
    (False, True, False): N_(
        "No rule matched alert %(alert)s; a restart is the default first step; no workload label (deployment, "
        "statefulset, service, app), so the target is a guess to check"
    ),
    (False, False, True): N_(
        "No rule matched alert %(alert)s; a restart is the default first step; scale target %(replicas)s replicas "
        "assumes the current count is lower"
    ),
    (False, True, True): N_(
        "No rule matched alert %(alert)s; a restart is the default first step; no workload label (deployment, "
        "statefulset, service, app), so the target is a guess to check; scale target %(replicas)s replicas assumes "
        "the current count is lower"
    ),
}

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
    reasoning = phrase(
        _REASONING[(bool(rule.keywords), workload is None, rule.action == "scale")],
        rule=rule.category, alert=facts.alertname, replicas=str(DEFAULT_SCALE_REPLICAS),
    )
    return ProposalDraft(
        source="rules",
        category=rule.category,
        root_cause=phrase(rule.root_cause, workload=target_desc, namespace=namespace),
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
