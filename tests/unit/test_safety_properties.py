"""services/safety.py, property-based: hard rules always score 100, scores stay in 0–100, penalty flags
never lower a score, tiers are monotonic in the score, and assess never raises."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from services.safety import (
    NamespacePolicy,
    Tier,
    assess,
    blast_radius,
    parse_command,
    tier_for,
)

POLICY = NamespacePolicy()
KUBECTL = frozenset({"kubectl"})
MANY_TOOLS = frozenset({"kubectl", "psql", "ssh", "systemctl", "docker"})
TIER_ORDER = {Tier.AUTO: 0, Tier.ONE: 1, Tier.TWO: 2, Tier.BLOCKED: 3}

FAST = settings(max_examples=200, deadline=None)

names = st.from_regex(r"[a-z][a-z0-9-]{0,14}[a-z0-9]", fullmatch=True)
namespaces = st.sampled_from(["prod", "production", "shop-prod", "kube-system", "dev", "x-dev", "staging", "default"])
whitespace = st.sampled_from([" ", "  ", "\t", " \t "])


def casing(word: str) -> st.SearchStrategy[str]:
    return st.sampled_from([word, word.upper(), word.capitalize()])


namespace_flags = st.one_of(
    st.just([]),
    namespaces.map(lambda ns: ["-n", ns]),
    namespaces.map(lambda ns: [f"--namespace={ns}"]),
    namespaces.map(lambda ns: ["--namespace", ns]),
    namespaces.map(lambda ns: [f"-n{ns}"]),
)
harmless_flags = st.lists(
    st.sampled_from(["--wait", "--ignore-not-found", "-o name", "--timeout=30s", "--dry-run=server", "-v=2"]),
    max_size=3,
).map(lambda flags: " ".join(flags).split())
penalty_flags = st.sampled_from(
    ["--force", "--grace-period=0", "--now", "-A", "--all-namespaces", "--cascade=orphan", "--all"]
)


def join(parts: list[str], sep: str) -> str:
    return sep.join(part for part in parts if part)


# --- hard rules --------------------------------------------------------------------------------------

hard_kinds = st.sampled_from(
    [
        "ns",
        "namespace",
        "namespaces",
        "pv",
        "persistentvolume",
        "pvc",
        "persistentvolumeclaims",
        "clusterrole",
        "clusterrolebindings",
        "crd",
        "customresourcedefinitions.apiextensions.k8s.io",
        "node",
        "no",
        "all",
    ]
)


@st.composite
def hard_kubectl_deletes(draw: st.DrawFn) -> str:
    kind = draw(hard_kinds.flatmap(casing))
    name = draw(names)
    target = draw(st.sampled_from([[kind, name], [f"{kind}/{name}"], [f"pods,{kind}", name]]))
    before = draw(namespace_flags)
    after = draw(harmless_flags)
    quote = draw(st.sampled_from(["", "'", '"']))
    target = [f"{quote}{target[0]}{quote}", *target[1:]]
    return join(["kubectl", *before, "delete", *target, *after], draw(whitespace))


@st.composite
def all_deletes(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(["pods", "deploy", "svc", "cm", "jobs", "secrets"]))
    flag = draw(st.sampled_from(["--all", "--all=true", "--all=True"]))
    parts = ["kubectl", *draw(namespace_flags), "delete", kind, flag, *draw(harmless_flags)]
    if draw(st.booleans()):
        parts.append("-A")
    return join(parts, draw(whitespace))


text_cores = st.sampled_from(
    [
        ["rm", "-rf", "/"],
        ["rm", "-fr", "/var"],
        ["rm", "-r", "-f", "/data"],
        ["/bin/rm", "--recursive", "x"],
        ["mkfs.ext4", "/dev/sdb"],
        ["mkfs", "-t", "xfs", "/dev/sdc"],
        ["dd", "if=/dev/zero", "of=/dev/sda"],
        ["shutdown", "-h", "now"],
        ["reboot"],
        ["poweroff"],
    ]
)


@st.composite
def hard_exec_commands(draw: st.DrawFn) -> str:
    core = draw(text_cores)
    pod = draw(names)
    prefix = draw(st.sampled_from([["exec", pod, "--"], ["exec", "-it", pod, "-c", "app", "--"], ["exec", pod]]))
    return join(["kubectl", *draw(namespace_flags), *prefix, *core], draw(whitespace))


@st.composite
def sql_commands(draw: st.DrawFn) -> str:
    verb = draw(st.sampled_from(["DROP TABLE", "drop database", "Drop Schema", "TRUNCATE"]))
    table = draw(names)
    quote = draw(st.sampled_from(["'", '"']))
    gap = draw(st.sampled_from([" ", "  ", "\t", " /**/ "]))
    sql = verb.replace(" ", gap) + " " + table
    return f"psql -h db -c {quote}{sql}{quote}"


@FAST
@given(command=st.one_of(hard_kubectl_deletes(), all_deletes(), hard_exec_commands(), sql_commands()))
def test_hard_rules_always_score_100(command: str) -> None:
    for tools in (KUBECTL, MANY_TOOLS):
        result = assess(command, policy=POLICY, allowed_tools=tools, auto_enabled=True, trusted=True)
        assert result.score.value == 100, (command, result.score.summary)
        assert result.tier is Tier.BLOCKED
        assert result.blocked_reason


@FAST
@given(command=st.one_of(hard_kubectl_deletes(), all_deletes()))
def test_hard_kubectl_deletes_parse_and_name_the_rule(command: str) -> None:
    score = blast_radius(parse_command(command), POLICY)
    assert score.value == 100
    assert score.hard_rule


# --- ranges ------------------------------------------------------------------------------------------

kubectl_verbs = st.sampled_from(
    [
        ["get", "pods"],
        ["describe", "deploy/api"],
        ["logs", "api-0"],
        ["rollout", "restart", "deploy/api"],
        ["rollout", "undo", "sts/db"],
        ["rollout", "restart", "deployment"],
        ["scale", "deploy/api", "--replicas=3"],
        ["scale", "deploy/api", "--replicas=0"],
        ["set", "image", "deploy/api", "api=repo/api:2"],
        ["set", "env", "deploy/api", "A=1"],
        ["patch", "deploy", "api", "-p", "{}"],
        ["apply", "-f", "x.yaml"],
        ["replace", "-f", "x.yaml"],
        ["delete", "pod", "api-0"],
        ["delete", "pod", "a", "b"],
        ["delete", "pods", "-l", "app=x"],
        ["delete", "deployment", "api"],
        ["delete", "statefulset", "db"],
        ["delete", "secret", "s"],
        ["delete", "-f", "x.yaml"],
        ["annotate", "pod", "x", "a=b"],
        ["label", "pod", "x", "a=b"],
        ["cordon", "node-1"],
        ["uncordon", "node-1"],
        ["drain", "node-1", "--ignore-daemonsets"],
        ["exec", "api-0", "--", "date"],
        ["taint", "nodes", "node-1", "k=v:NoSchedule"],
    ]
)


@st.composite
def kubectl_commands(draw: st.DrawFn) -> list[str]:
    return ["kubectl", *draw(namespace_flags), *draw(kubectl_verbs), *draw(harmless_flags)]


@FAST
@given(text=st.text(max_size=300))
def test_score_in_range_and_assess_never_raises_for_any_text(text: str) -> None:
    for tools in (KUBECTL, MANY_TOOLS):
        result = assess(text, policy=POLICY, allowed_tools=tools, auto_enabled=True, trusted=True)
        assert 0 <= result.score.value <= 100
        assert result.error is None, result.error
        assert result.tier is tier_for(result.score.value, auto_enabled=True, trusted=True)


@FAST
@given(rest=st.lists(st.text(alphabet=st.characters(codec="ascii"), max_size=12), max_size=8))
def test_assess_never_raises_for_kubectl_with_junk_arguments(rest: list[str]) -> None:
    command = " ".join(["kubectl", *rest])
    result = assess(command, policy=POLICY, allowed_tools=KUBECTL, auto_enabled=True, trusted=True)
    assert 0 <= result.score.value <= 100
    assert result.error is None, result.error


@FAST
@given(parts=kubectl_commands(), extra=st.lists(penalty_flags, max_size=4))
def test_score_in_range_for_generated_kubectl(parts: list[str], extra: list[str]) -> None:
    result = assess(
        " ".join(parts + extra), policy=POLICY, allowed_tools=KUBECTL, auto_enabled=False, trusted=False
    )
    assert 0 <= result.score.value <= 100
    assert result.error is None
    assert result.tier is not Tier.AUTO


# --- penalties are monotonic -------------------------------------------------------------------------


@FAST
@given(parts=kubectl_commands(), flag=penalty_flags, current=st.none() | st.integers(0, 10))
def test_adding_a_penalty_flag_never_lowers_the_score(parts: list[str], flag: str, current: int | None) -> None:
    before = assess(
        " ".join(parts), policy=POLICY, allowed_tools=KUBECTL, auto_enabled=True, trusted=True, current_replicas=current
    )
    after = assess(
        " ".join([*parts, flag]),
        policy=POLICY,
        allowed_tools=KUBECTL,
        auto_enabled=True,
        trusted=True,
        current_replicas=current,
    )
    assert after.score.value >= before.score.value, (before.score.summary, after.score.summary)


@FAST
@given(parts=kubectl_commands())
def test_a_selector_on_delete_never_lowers_the_score(parts: list[str]) -> None:
    if "delete" not in parts:
        parts = ["kubectl", "delete", "pods"]
    before = assess(" ".join(parts), policy=POLICY, allowed_tools=KUBECTL, auto_enabled=True, trusted=True)
    after = assess(" ".join([*parts, "-l", "app=x"]), policy=POLICY, allowed_tools=KUBECTL, auto_enabled=True, trusted=True)
    assert after.score.value >= before.score.value


# --- tiers are monotonic -----------------------------------------------------------------------------


@FAST
@given(a=st.integers(-20, 150), b=st.integers(-20, 150), auto_enabled=st.booleans(), trusted=st.booleans())
def test_tier_is_monotonic_in_score(a: int, b: int, auto_enabled: bool, trusted: bool) -> None:
    low, high = sorted((a, b))
    low_tier = tier_for(low, auto_enabled=auto_enabled, trusted=trusted)
    high_tier = tier_for(high, auto_enabled=auto_enabled, trusted=trusted)
    assert TIER_ORDER[low_tier] <= TIER_ORDER[high_tier]
    if not (auto_enabled and trusted):
        assert Tier.AUTO not in (low_tier, high_tier)
