"""Playbooks without a database: parsing and its errors, similarity, matchers, command rendering."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.errors import InvalidPlaybooks
from services.playbooks import (
    MATCH_THRESHOLD,
    Matcher,
    PlaybookSpec,
    Step,
    Symptoms,
    is_match,
    load_playbooks_file,
    parse_playbooks,
    render_command,
    similarity,
    words,
)
from services.ports import IncidentFacts

ROOT = Path(__file__).resolve().parents[2]

GOOD = """
playbooks:
  - name: api-crashloop
    description: Restart the API when its pods crash-loop
    root_cause: "{workload} in {namespace} is crash-looping"
    category: crash
    risk: High
    symptoms:
      alertnames: [KubePodCrashLooping]
      services: [api, "api-*"]
      severities: [Critical, warning]
      matchers: ['namespace="prod"', 'pod=~"api-.*"', 'env!="dev"']
    steps:
      - name: restart
        command: kubectl -n {namespace} rollout restart deployment/{label.deployment}
      - name: wait
        command: kubectl -n {namespace} rollout status deployment/{label.deployment} --timeout=120s
  - name: disk.cleanup_2
    symptoms:
      matchers: [alertname=DiskFull]
    steps:
      - command: "  kubectl -n {namespace} rollout restart {workload}  "
"""


def facts(
    alertname: str = "KubePodCrashLooping",
    *,
    severity: str = "critical",
    service: str = "api",
    namespace: str = "prod",
    **labels: str,
) -> IncidentFacts:
    return IncidentFacts(
        incident_id=1,
        alertname=alertname,
        severity=severity,
        service=service,
        namespace=namespace,
        labels={"pod": "api-7d9f-x2", "deployment": "api", **labels},
        annotations={},
    )


def one(yaml_body: str) -> PlaybookSpec:
    [spec] = parse_playbooks(yaml_body, "pb.yaml")
    return spec


def error_of(yaml_body: str, source: str = "pb.yaml") -> str:
    with pytest.raises(InvalidPlaybooks) as caught:
        parse_playbooks(yaml_body, source)
    return str(caught.value)


def playbook(**parts: str) -> str:
    """A one-playbook document with each part (YAML text, indented below the item) replaceable."""
    body = {
        "name": "name: demo",
        "symptoms": "symptoms:\n      alertnames: [DiskFull]",
        "steps": "steps:\n      - name: restart\n        command: kubectl -n {namespace} rollout restart {workload}",
    }
    body.update(parts)
    lines = [v for v in body.values() if v]
    return "playbooks:\n  - " + "\n    ".join(lines) + "\n"


# --- parsing --------------------------------------------------------------------------------------------


def test_parse_playbooks_reads_every_field() -> None:
    first, second = parse_playbooks(GOOD, "pb.yaml")
    assert first.name == "api-crashloop"
    assert first.description == "Restart the API when its pods crash-loop"
    assert (first.category, first.risk) == ("crash", "high")
    assert first.root_cause == "{workload} in {namespace} is crash-looping"
    assert first.symptoms.alertnames == ("KubePodCrashLooping",)
    assert first.symptoms.services == ("api", "api-*")
    assert first.symptoms.severities == ("critical", "warning")
    assert [(m.label, m.op, m.value) for m in first.symptoms.matchers] == [
        ("namespace", "=", "prod"),
        ("pod", "=~", "api-.*"),
        ("env", "!=", "dev"),
    ]
    assert first.steps == (
        Step("restart", "kubectl -n {namespace} rollout restart deployment/{label.deployment}"),
        Step("wait", "kubectl -n {namespace} rollout status deployment/{label.deployment} --timeout=120s"),
    )
    # defaults: no description, category or root cause, medium risk, steps named by position, trimmed
    assert (second.name, second.description, second.category, second.risk, second.root_cause) == (
        "disk.cleanup_2", "", "", "medium", ""
    )
    assert second.steps == (Step("step-1", "kubectl -n {namespace} rollout restart {workload}"),)


def test_parse_playbooks_of_an_empty_file_is_empty() -> None:
    assert parse_playbooks("", "pb.yaml") == []
    assert parse_playbooks("# nothing yet\n", "pb.yaml") == []
    assert parse_playbooks("playbooks: []\n", "pb.yaml") == []
    assert parse_playbooks("playbooks:\n", "pb.yaml") == []


def test_parse_playbooks_accepts_one_string_for_a_list() -> None:
    spec = one(playbook(symptoms="symptoms:\n      alertnames: DiskFull"))
    assert spec.symptoms.alertnames == ("DiskFull",)


def test_symptoms_round_trip_through_json() -> None:
    spec = one(GOOD.split("  - name: disk")[0])
    stored = spec.symptoms.to_json()
    assert stored["matchers"] == ['namespace="prod"', 'pod=~"api-.*"', 'env!="dev"']
    assert Symptoms.from_json(stored) == spec.symptoms


@pytest.mark.parametrize(
    ("yaml_body", "expected"),
    [
        (playbook(name=""), "pb.yaml: playbooks[0]: name: Field required"),
        (playbook(name="name: 'has space'"), "pb.yaml: playbook 'has space': name: use only letters"),
        (playbook(name=f"name: {'x' * 81}"), "name: longer than 80 characters"),
        (playbook(name="name: 42"), "pb.yaml: playbooks[0]: name: Input should be a valid string"),
        (playbook(symptoms=""), "pb.yaml: playbook 'demo': symptoms: Field required"),
        (
            playbook(symptoms="symptoms:\n      services: [api]"),
            "pb.yaml: playbook 'demo': symptoms: give alertnames or matchers",
        ),
        (
            playbook(symptoms="symptoms:\n      alertnames: [A]\n      labels: [x]"),
            "pb.yaml: playbook 'demo': symptoms.labels: Extra inputs are not permitted",
        ),
        (
            playbook(symptoms="symptoms:\n      matchers: ['namespace=\"prod\"', 'pod=~\"api-(\"']"),
            "pb.yaml: playbook 'demo': symptoms.matchers[1]: 'pod=~\"api-(\"': invalid regular expression",
        ),
        (
            playbook(symptoms="symptoms:\n      matchers: ['namespace prod']"),
            "pb.yaml: playbook 'demo': symptoms.matchers[0]: 'namespace prod' is not a matcher",
        ),
        (
            playbook(symptoms="symptoms:\n      matchers: ['namespace=\"prod']"),
            "pb.yaml: playbook 'demo': symptoms.matchers[0]: '\"prod': the quoted value is not closed",
        ),
        (playbook(steps="steps: []"), "pb.yaml: playbook 'demo': steps: give at least one step"),
        (playbook(steps=""), "pb.yaml: playbook 'demo': steps: Field required"),
        (
            playbook(steps="steps:\n" + "      - command: kubectl get pods\n" * 21),
            "pb.yaml: playbook 'demo': steps: at most 20 steps",
        ),
        (
            playbook(steps="steps:\n      - name: a\n        command: '   '"),
            "pb.yaml: playbook 'demo': steps[0].command: must not be empty",
        ),
        (
            playbook(steps="steps:\n      - name: a\n        command: \"kubectl get pods\\nrm -rf /\""),
            "pb.yaml: playbook 'demo': steps[0].command: must be a single line",
        ),
        (
            playbook(steps=f"steps:\n      - name: a\n        command: kubectl {'x' * 500}"),
            "pb.yaml: playbook 'demo': steps[0].command: longer than 500 characters",
        ),
        (
            playbook(steps="steps:\n      - command: kubectl get pods\n      - command: kubectl -n {ns} get pods"),
            "pb.yaml: playbook 'demo': steps[1].command: unknown placeholder {ns}",
        ),
        (
            playbook(steps="steps:\n      - command: kubectl get {__class__.__mro__}"),
            "steps[0].command: unknown placeholder {__class__.__mro__}",
        ),
        (
            playbook(steps="steps:\n      - name: a\n        cmd: kubectl get pods"),
            "pb.yaml: playbook 'demo': steps[0].command: Field required",
        ),
        (
            playbook(risk="risk: extreme"),
            "pb.yaml: playbook 'demo': risk: Input should be 'low', 'medium' or 'high'",
        ),
        (
            playbook(root_cause="root_cause: '{service} broke in {cluster}'"),
            "pb.yaml: playbook 'demo': root_cause: unknown placeholder {cluster}",
        ),
        (playbook(owner="owner: me"), "pb.yaml: playbook 'demo': owner: Extra inputs are not permitted"),
        ("playbooks:\n  - just a string\n", "pb.yaml: playbooks[0]: expected a mapping"),
        ("playbooks: {name: x}\n", "pb.yaml: playbooks: expected a list"),
        ("- name: x\n", "pb.yaml: expected a mapping with a 'playbooks' list"),
        ("playbook: []\n", "pb.yaml: unknown top-level key(s) playbook"),
        ("playbooks: [\n", "pb.yaml: not valid YAML: line 2"),
    ],
)
def test_parse_playbooks_errors_name_file_playbook_and_field(yaml_body: str, expected: str) -> None:
    assert expected in error_of(yaml_body)


def test_parse_playbooks_rejects_a_duplicate_name() -> None:
    body = playbook() + playbook().removeprefix("playbooks:\n")
    assert error_of(body, "/etc/pb.yaml") == "/etc/pb.yaml: playbook 'demo': name: duplicate (also playbooks[0])"


def test_parse_playbooks_names_the_playbook_by_index_after_good_ones() -> None:
    body = playbook() + "  - symptoms: {alertnames: [A]}\n    steps: [{command: kubectl get pods}]\n"
    assert error_of(body).startswith("pb.yaml: playbooks[1]: name: Field required")


def test_load_playbooks_file_reads_the_file_and_names_a_missing_one(tmp_path: Path) -> None:
    path = tmp_path / "pb.yaml"
    path.write_text(GOOD)
    assert [s.name for s in load_playbooks_file(str(path))] == ["api-crashloop", "disk.cleanup_2"]
    missing = tmp_path / "nope.yaml"
    with pytest.raises(InvalidPlaybooks, match=rf"^{missing}: cannot read: No such file"):
        load_playbooks_file(str(missing))
    path.write_text("playbooks:\n  - name: x\n")
    with pytest.raises(InvalidPlaybooks, match=rf"^{path}: playbook 'x': symptoms: Field required"):
        load_playbooks_file(str(path))


def test_load_playbooks_file_names_a_directory_or_binary_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidPlaybooks, match=rf"^{tmp_path}: cannot read"):
        load_playbooks_file(str(tmp_path))
    binary = tmp_path / "pb.yaml"
    binary.write_bytes(b"\xff\xfe\x00playbooks")
    with pytest.raises(InvalidPlaybooks, match=rf"^{binary}: not UTF-8"):
        load_playbooks_file(str(binary))


def test_the_example_playbooks_file_is_valid() -> None:
    specs = load_playbooks_file(str(ROOT / "examples" / "playbooks.yaml"))
    assert 3 <= len(specs) <= 4
    assert all(s.description and s.root_cause for s in specs)


# --- similarity -----------------------------------------------------------------------------------------


FULL = Symptoms(
    alertnames=("KubePodCrashLooping",),
    services=("api",),
    severities=("critical",),
    matchers=(Matcher.parse('namespace="prod"'), Matcher.parse('pod=~"api-.*"')),
)


def test_similarity_is_one_when_all_four_components_match() -> None:
    assert similarity(FULL, facts()) == 1.0
    assert is_match(similarity(FULL, facts()), executions=0, successes=0)


def test_similarity_without_the_service_is_080_and_does_not_match() -> None:
    score = similarity(FULL, facts(service="billing", deployment="billing"))
    assert score == pytest.approx(0.80)
    assert score < MATCH_THRESHOLD and not is_match(score, executions=0, successes=0)


def test_similarity_of_an_alertname_only_playbook_with_the_exact_name_is_one() -> None:
    assert similarity(Symptoms(alertnames=("KubePodCrashLooping",)), facts()) == 1.0
    assert similarity(Symptoms(alertnames=("kubepodcrashlooping",)), facts()) == 1.0  # case-insensitive


def test_similarity_counts_only_the_components_given() -> None:
    severity_wrong = facts(severity="info")
    # alertname + severity: (0.45 + 0) / 0.55
    assert similarity(Symptoms(alertnames=("KubePod*",), severities=("critical",)), severity_wrong) == pytest.approx(
        0.45 / 0.55, abs=1e-6
    )
    # matchers only: the fraction that holds
    symptoms = Symptoms(matchers=(Matcher.parse("namespace=prod"), Matcher.parse("pod=db-0")))
    assert similarity(symptoms, facts()) == 0.5


def test_similarity_alertname_globs_match_case_insensitively() -> None:
    assert similarity(Symptoms(alertnames=("kube*crash*",)), facts()) == 1.0
    assert similarity(Symptoms(alertnames=("Disk*", "KubePod?rashLooping")), facts()) == 1.0
    assert similarity(Symptoms(alertnames=("Kube[PQ]od*",)), facts()) == 1.0
    assert similarity(Symptoms(alertnames=("Disk*",)), facts()) == 0.0  # a glob gives no partial credit


def test_similarity_alertname_falls_back_to_word_jaccard() -> None:
    assert words("KubePodCrashLooping") == {"kube", "pod", "crash", "looping"}
    assert words("HTTPServerError") == {"http", "server", "error"}
    assert words("node_disk-full") == {"node", "disk", "full"}
    # {kube, pod, crash, looping} vs {kube, pod, crashing}: 2 shared of 5
    assert similarity(Symptoms(alertnames=("KubePodCrashing",)), facts()) == pytest.approx(0.4)
    # the best pattern counts: {kube, pod, crash} is 3 of 4
    assert similarity(Symptoms(alertnames=("DiskFull", "KubePodCrash")), facts()) == pytest.approx(0.75)
    assert similarity(Symptoms(alertnames=("DiskFull",)), facts()) == 0.0


def test_similarity_service_comes_from_facts_or_service_or_app_label() -> None:
    symptoms = Symptoms(alertnames=("KubePodCrashLooping",), services=("api-*",))
    assert similarity(symptoms, facts(service="api-gateway")) == 1.0
    assert similarity(symptoms, facts(service="", app="API-web")) == 1.0
    assert similarity(symptoms, facts(service="billing")) == pytest.approx(0.45 / 0.65, abs=1e-6)
    assert similarity(symptoms, facts(service="")) == pytest.approx(0.45 / 0.65, abs=1e-6)


def test_similarity_severity_is_case_insensitive() -> None:
    symptoms = Symptoms(alertnames=("KubePodCrashLooping",), severities=("critical",))
    assert similarity(symptoms, facts(severity="CRITICAL")) == 1.0
    assert similarity(symptoms, facts(severity="warning")) == pytest.approx(0.45 / 0.55, abs=1e-6)


@pytest.mark.parametrize(
    ("matcher", "labels", "holds"),
    [
        ('namespace="prod"', {}, True),  # filled from facts.namespace
        ("namespace=staging", {}, False),
        ('env="prod"', {"env": "prod"}, True),
        ('env="prod"', {"env": "production"}, False),  # equality is exact
        ('env!="dev"', {"env": "prod"}, True),
        ('env!="dev"', {"env": "dev"}, False),
        ('env!="dev"', {}, True),  # a missing label is "" (Alertmanager)
        ('env=""', {}, True),
        ("env=", {"env": "x"}, False),
        ('pod=~"api-.*"', {}, True),  # facts pod api-7d9f-x2
        ('pod=~"api"', {}, False),  # anchored at both ends
        ('pod=~"7d9f"', {}, False),
        ('pod!~"db-.*"', {}, True),
        ('pod!~"api-.*"', {}, False),
        ('zone=~".*"', {}, True),  # a missing label is "", which .* matches
        ('zone=~".+"', {}, False),
        ('zone!~".+"', {}, True),
        ('alertname="KubePodCrashLooping"', {}, True),  # filled from facts
        ('severity=~"crit.*"', {}, True),
        ('  team  =~  "a|b"  ', {"team": "b"}, True),  # spaces around the parts
        (r'msg="say \"hi\""', {"msg": 'say "hi"'}, True),  # escaped quotes
    ],
)
def test_matchers_follow_alertmanager_semantics(matcher: str, labels: dict[str, str], holds: bool) -> None:
    parsed = Matcher.parse(matcher)
    assert parsed.holds({**facts_labels(), **labels}) is holds
    assert similarity(Symptoms(matchers=(parsed,)), facts(**labels)) == (1.0 if holds else 0.0)


def facts_labels() -> dict[str, str]:
    from services.playbooks import incident_labels

    return incident_labels(facts())


def test_matcher_prints_in_a_form_that_parses_back() -> None:
    for text in ('env!="dev"', 'pod=~"api-.*"', r'msg="a \"b\" \\ c"', "x="):
        parsed = Matcher.parse(text)
        assert Matcher.parse(str(parsed)) == parsed


@pytest.mark.parametrize(
    ("executions", "successes", "matches"),
    [(0, 0, True), (10, 9, True), (10, 8, True), (10, 7, False), (35, 28, True), (1, 0, False)],
)
def test_is_match_gates_on_success_rate(executions: int, successes: int, matches: bool) -> None:
    assert is_match(0.9, executions, successes) is matches
    assert not is_match(0.84, executions, successes)


# --- rendering ------------------------------------------------------------------------------------------


def test_render_command_fills_every_placeholder() -> None:
    template = (
        "kubectl -n {namespace} rollout restart {workload} # {service} {alertname} {severity} {pod} {label.deployment}"
    )
    assert render_command(template, facts()) == (
        "kubectl -n prod rollout restart deployment/api # api kubepodcrashlooping critical api-7d9f-x2 api"
    )


def test_render_command_sanitises_label_values() -> None:
    hostile = facts(deployment="; rm -rf /", namespace="prod; reboot", app="x")
    rendered = render_command("kubectl -n {namespace} rollout restart deployment/{label.deployment}", hostile)
    assert rendered == "kubectl -n prod-reboot rollout restart deployment/rm--rf"
    rendered = render_command("kubectl delete pod {label.victim}", facts(victim="a --all -A $(id) `x` | y && z"))
    assert rendered is not None
    victim = rendered.removeprefix("kubectl delete pod ")
    assert " " not in victim and not victim.startswith("-")  # one argument, never a flag
    assert set(victim) <= set("abcdefghijklmnopqrstuvwxyz0123456789.-")
    assert render_command("{label.x}", facts(x="My.Host.Example")) == "my.host.example"
    assert render_command("{namespace}", facts(namespace="team.prod")) == "team-prod"  # no dots in namespaces


def test_render_command_without_a_value_gives_none() -> None:
    assert render_command("kubectl -n {namespace} get pods", facts(namespace="")) is None
    assert render_command("kubectl get deploy/{label.missing}", facts()) is None
    assert render_command("kubectl get deploy/{label.empty}", facts(empty="")) is None
    assert render_command("kubectl get deploy/{label.junk}", facts(junk=" ;|&  ")) is None  # nothing name-like
    no_workload = IncidentFacts(1, "X", "warning", "", "prod", {}, {})
    assert render_command("kubectl rollout restart {workload}", no_workload) is None
    assert render_command("kubectl delete pod {pod}", no_workload) is None


def test_render_command_refuses_unknown_and_attribute_placeholders() -> None:
    assert render_command("echo {foo}", facts()) is None
    assert render_command("echo {namespace.__class__}", facts()) is None
    assert render_command("echo {label.a.b}", facts()) is None
    assert render_command("kubectl get pods", facts()) == "kubectl get pods"


def test_render_command_uses_labels_when_facts_lack_them() -> None:
    sparse = IncidentFacts(1, "X", "", "", "", {"namespace": "web", "service": "shop", "severity": "High"}, {})
    assert render_command("{namespace} {service} {severity} {workload}", sparse) == "web shop high deployment/shop"
