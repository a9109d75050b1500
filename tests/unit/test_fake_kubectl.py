"""Tests of the fake ``kubectl`` executable (tests/fakes/kubectl.py), driven as a real subprocess."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.fakes.kubectl import DEFAULT_TRANSIENT_ERROR, FakeKubectl


@pytest.fixture
def fake(tmp_path: Path) -> FakeKubectl:
    """An installed fake with no rules."""
    return FakeKubectl(tmp_path / "kubectl").install()


def run(fake: FakeKubectl, *args: str, timeout: float = 10) -> subprocess.CompletedProcess[str]:
    """Run the installed executable by its absolute path."""
    return subprocess.run([str(fake.path), *args], capture_output=True, text=True, timeout=timeout, check=False)


def test_install_writes_an_executable_in_its_own_bin_dir(fake: FakeKubectl) -> None:
    """The executable is named kubectl, is mode 0o755 and is alone in bin_dir."""
    assert fake.path == fake.bin_dir / "kubectl"
    assert fake.path.stat().st_mode & 0o777 == 0o755
    assert [p.name for p in fake.bin_dir.iterdir()] == ["kubectl"]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["rollout", "status", "deployment/api"], 'deployment "api" successfully rolled out\n'),
        (["rollout", "undo", "deployment/api"], "deployment.apps/api rolled back\n"),
        (["rollout", "restart", "deployment/api"], "deployment.apps/api restarted\n"),
        (["scale", "deployment/api", "--replicas=5"], "deployment.apps/api scaled\n"),
        (["get", "deployment/api", "-o", "jsonpath={.spec.replicas}"], "3"),
        (["rollout", "restart", "deployment/api", "--dry-run=server"],
         "deployment.apps/api restarted (server dry run)\n"),
        (["rollout", "undo", "deploy/web", "--dry-run=server"], "deployment.apps/web rolled back (server dry run)\n"),
        (["version"], "ok\n"),
        (["rollout", "history", "statefulset/db"],
         "statefulset.apps/db\nREVISION  CHANGE-CAUSE\n1         <none>\n2         <none>\n3         <none>\n"),
    ],
)
def test_default_success_outputs(fake: FakeKubectl, args: list[str], expected: str) -> None:
    """With no rule, each verb answers kubectl-like text and exits 0."""
    result = run(fake, *args)
    assert (result.returncode, result.stdout, result.stderr) == (0, expected, "")


@pytest.mark.parametrize(
    "prefix",
    [
        ["--kubeconfig=/etc/kube/config", "--context=prod", "-n", "shop"],
        ["--kubeconfig", "/etc/kube/config", "--namespace=shop"],
        ["--namespace", "shop", "--context", "prod/eu"],
    ],
)
def test_global_flags_do_not_break_parsing(fake: FakeKubectl, prefix: list[str]) -> None:
    """Global flags, with values joined or separate, are not taken for the verb or the resource."""
    result = run(fake, *prefix, "rollout", "status", "deployment/api", "--timeout", "60s")
    assert result.stdout == 'deployment "api" successfully rolled out\n'
    result = run(fake, "rollout", "restart", "deployment/api", *prefix)
    assert result.stdout == "deployment.apps/api restarted\n"


def test_calls_are_recorded_without_argv0_and_in_order(fake: FakeKubectl) -> None:
    """calls lists every argv minus the program name; calls_matching filters by substring."""
    run(fake, "--context=prod", "rollout", "status", "deployment/api")
    run(fake, "version")
    run(fake, "rollout", "restart", "deployment/api")
    assert fake.calls == [
        ["--context=prod", "rollout", "status", "deployment/api"],
        ["version"],
        ["rollout", "restart", "deployment/api"],
    ]
    assert fake.calls_matching("rollout") == [fake.calls[0], fake.calls[2]]
    assert fake.calls_matching("prod rollout status") == [fake.calls[0]]


def test_transient_failures_then_success(fake: FakeKubectl) -> None:
    """The first N matching invocations fail like an unreachable API server, then the rule's behaviour."""
    fake.on("rollout restart", transient=2)
    for _ in range(2):
        result = run(fake, "rollout", "restart", "deployment/api")
        assert (result.returncode, result.stdout) == (1, "")
        assert result.stderr == DEFAULT_TRANSIENT_ERROR + "\n"
    result = run(fake, "rollout", "restart", "deployment/api")
    assert (result.returncode, result.stdout, result.stderr) == (0, "deployment.apps/api restarted\n", "")


def test_transient_with_custom_error_then_fail(fake: FakeKubectl) -> None:
    """After the transient failures the rule's fail applies."""
    fake.on("rollout undo", transient=1, transient_error="error: etcdserver: request timed out",
            fail="error: no rollout history found", exit_code=3)
    first, second = run(fake, "rollout", "undo", "deployment/api"), run(fake, "rollout", "undo", "deployment/api")
    assert (first.returncode, first.stderr) == (1, "error: etcdserver: request timed out\n")
    assert (second.returncode, second.stderr) == (3, "error: no rollout history found\n")


def test_fail_with_exit_code(fake: FakeKubectl) -> None:
    """fail prints to stderr and exits with exit_code; other invocations are untouched."""
    fake.on("scale", fail='Error from server (NotFound): deployments.apps "api" not found', exit_code=2)
    result = run(fake, "scale", "deployment/api", "--replicas=2")
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == 'Error from server (NotFound): deployments.apps "api" not found\n'
    assert run(fake, "version").returncode == 0


def test_last_matching_rule_wins(fake: FakeKubectl) -> None:
    """A later rule overrides an earlier one for the invocations both match."""
    fake.on("rollout", stdout="first\n").on("rollout status", stdout="second\n")
    assert run(fake, "rollout", "status", "deployment/api").stdout == "second\n"
    assert run(fake, "rollout", "history", "deployment/api").stdout == "first\n"
    fake.on("rollout", stdout="third\n")
    assert run(fake, "rollout", "status", "deployment/api").stdout == "third\n"


def test_revisions_and_replicas(fake: FakeKubectl) -> None:
    """revisions sizes the history table; replicas answers get like jsonpath, without a newline."""
    fake.on("rollout history", revisions=2).on("get", replicas=7)
    result = run(fake, "-n", "shop", "rollout", "history", "deployment/api")
    assert result.stdout == "deployment.apps/api\nREVISION  CHANGE-CAUSE\n1         <none>\n2         <none>\n"
    result = run(fake, "get", "deployment/api", "-o", "jsonpath={.spec.replicas}")
    assert (result.returncode, result.stdout) == (0, "7")


def test_unparseable_resource_falls_back(fake: FakeKubectl) -> None:
    """Without a kind/name argument the history table is headed deployment.apps/api."""
    fake.on("rollout history", revisions=1)
    assert run(fake, "rollout", "history").stdout.splitlines()[0] == "deployment.apps/api"


def test_hang_is_recorded_and_killed_by_the_caller(fake: FakeKubectl) -> None:
    """A hanging invocation never answers, but its call is already recorded."""
    fake.on("rollout status", hang=True)
    with pytest.raises(subprocess.TimeoutExpired):
        run(fake, "rollout", "status", "deployment/api", timeout=1)
    assert fake.calls == [["rollout", "status", "deployment/api"]]


def test_runs_through_path(fake: FakeKubectl) -> None:
    """With bin_dir first on PATH, plain "kubectl" is the fake."""
    env = {**os.environ, "PATH": f"{fake.bin_dir}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(["kubectl", "version"], capture_output=True, text=True, timeout=10, env=env, check=False)
    assert (result.returncode, result.stdout) == (0, "ok\n")
    assert fake.calls == [["version"]]


def test_reset_and_reinstall_forget_everything(fake: FakeKubectl) -> None:
    """reset drops rules, calls and transient counters; install does the same."""
    fake.on("version", transient=1)
    assert run(fake, "version").returncode == 1
    fake.reset()
    assert fake.calls == []
    fake.on("version", transient=1)
    assert run(fake, "version").returncode == 1, "the counter starts again from zero"
    fake.install()
    assert fake.calls == []
    assert run(fake, "version").returncode == 0
