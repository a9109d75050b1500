"""services/executors.py: retry classification, excerpts, the dry-run executor, and the subprocess
executor driven against the fake kubectl (tests/fakes/kubectl.py) as a real process."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from services.executors import (
    EXCERPT_HEAD,
    EXCERPT_TAIL,
    READ_LIMIT,
    DryRunExecutor,
    Failure,
    FailureKind,
    SubprocessExecutor,
    classify,
    excerpt,
)
from services.ports import CommandResult
from tests.fakes.kubectl import FakeKubectl

TRANSIENT, PERMANENT = FailureKind.TRANSIENT, FailureKind.PERMANENT
NOT_FOUND = 'Error from server (NotFound): deployments.apps "api" not found'


def failed(stderr: str = "", *, stdout: str = "", exit_code: int | None = 1, timed_out: bool = False,
           error: str | None = None) -> CommandResult:
    """A failed kubectl result with the given output."""
    return CommandResult(argv=("kubectl",), exit_code=exit_code, stdout=stdout, stderr=stderr, duration_ms=1,
                         timed_out=timed_out, error=error)


@pytest.fixture
def fake(tmp_path: Path) -> FakeKubectl:
    """An installed fake kubectl with no rules."""
    return FakeKubectl(tmp_path / "k").install()


@pytest.fixture
def executor(fake: FakeKubectl) -> SubprocessExecutor:
    """A subprocess executor running the fake by its absolute path."""
    return SubprocessExecutor(kubectl=str(fake.path))


async def wait_for_calls(fake: FakeKubectl, count: int = 1) -> None:
    """Poll until the fake has recorded ``count`` invocations (it records before acting)."""
    for _ in range(200):
        if len(fake.calls) >= count:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"the fake recorded {fake.calls!r}, expected {count} call(s)")


# --- classify: the retry table ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stderr", "reason"),
    [
        ("Unable to connect to the server: connection refused", "connection refused"),
        ("read tcp 10.0.0.2:50000->10.0.0.1:443: read: connection reset by peer", "connection reset"),
        ("Unable to connect to the server: net/http: TLS handshake: i/o timeout", "timeout"),
        ("Unable to connect to the server: net/http: request canceled (Client.Timeout exceeded)", "timeout"),
        ("error: context deadline exceeded", "timeout"),
        ("error: write /tmp/kubeconfig.lock: input/output error", "i/o error"),
        ("dial tcp: lookup api.cluster.local: Temporary failure in name resolution", "temporary failure"),
        ("Error from server (ServiceUnavailable): the server is currently unable to handle the request "
         "(Service Unavailable)", "service unavailable"),
        ("error: the server responded with the status code 503 but did not return more information",
         "service unavailable"),
        ("Error from server (TooManyRequests): Too Many Requests", "too many requests"),
        ("error: the server responded with the status code 429", "too many requests"),
        ("Unable to connect to the server: dial tcp 10.0.0.1:443: connect: no route to host", "dial tcp"),
        ("error: unexpected EOF", "EOF"),
    ],
)
def test_classify_transient_markers(stderr: str, reason: str) -> None:
    """Each transient marker makes a failure retryable, labelled by the marker found."""
    failure = classify(failed(stderr))
    assert failure == Failure(TRANSIENT, reason)
    assert failure.transient


@pytest.mark.parametrize(
    ("stderr", "reason"),
    [
        (NOT_FOUND, "not found"),
        ('Error from server (Forbidden): deployments.apps "api" is forbidden: User "bot" cannot patch', "forbidden"),
        ("error: open /etc/kube/config: permission denied", "permission denied"),
        ("error: You must be logged in to the server (Unauthorized)", "unauthorized"),
        ('Error from server (AlreadyExists): deployments.apps "api" AlreadyExists', "already exists"),
        ('Error from server (AlreadyExists): deployments.apps "api" already exists', "already exists"),
        ('The Deployment "api" is invalid: spec.replicas: must be greater than or equal to 0', "invalid"),
        ("spec.selector: field is immutable", "immutable"),
    ],
)
def test_classify_permanent_markers(stderr: str, reason: str) -> None:
    """Each permanent marker stops retries, labelled by the marker found."""
    failure = classify(failed(stderr))
    assert failure == Failure(PERMANENT, reason)
    assert not failure.transient


@pytest.mark.parametrize(
    "result",
    [
        failed("Unable to connect to the server: dial tcp 10.0.0.1:443: connect: connection refused\n" + NOT_FOUND),
        failed(stdout=NOT_FOUND, stderr="error: unexpected EOF"),  # markers are looked for in stdout as well
        failed("Error from server (Service Unavailable) 503: deployments.apps \"api\" not found"),
    ],
)
def test_classify_permanent_wins_over_transient(result: CommandResult) -> None:
    """A permanent marker anywhere wins over any transient marker."""
    assert classify(result) == Failure(PERMANENT, "not found")


def test_classify_permanent_wins_over_a_timeout() -> None:
    """A timed-out attempt whose output says Forbidden is not retried."""
    result = failed('Error from server (Forbidden): pods "api-1" is forbidden', exit_code=None, timed_out=True)
    assert classify(result) == Failure(PERMANENT, "forbidden")


def test_classify_unknown_error_is_permanent_with_its_exit_code() -> None:
    """An error nobody recognises is not retried blindly."""
    assert classify(failed('error: unknown command "frobnicate" for "kubectl"')) == Failure(PERMANENT, "exit code 1")
    assert classify(failed("", exit_code=2)) == Failure(PERMANENT, "exit code 2")


def test_classify_success_is_none() -> None:
    """A successful result has no failure, whatever its output says."""
    ok = CommandResult(argv=("kubectl",), exit_code=0, stdout="connection refused", stderr=NOT_FOUND, duration_ms=1)
    assert ok.ok
    assert classify(ok) is None


def test_classify_timeout_is_transient() -> None:
    """A killed-at-timeout attempt is worth retrying."""
    result = failed("timed out after 30 s (killed)", exit_code=None, timed_out=True)
    assert classify(result) == Failure(TRANSIENT, "timeout")


def test_classify_spawn_error_is_permanent() -> None:
    """A binary that cannot be started will not start on the next attempt either."""
    result = failed("", exit_code=None, error="cannot run kubectl: No such file or directory")
    assert classify(result) == Failure(PERMANENT, "could not start")


@pytest.mark.parametrize(
    "stderr",
    [
        "error: user geoffrey has no access",  # "eof" inside a word is not EOF
        "error: port 15030 is already allocated",  # "503" inside a number is not HTTP 503
        "error: resource version 14290 is too old",  # nor "429"
        "error: 5033 objects",
        "Traceback: EOFError",
    ],
)
def test_classify_numeric_and_eof_markers_need_word_boundaries(stderr: str) -> None:
    """503, 429 and EOF only count as whole words: these are unknown errors, hence permanent."""
    assert classify(failed(stderr)) == Failure(PERMANENT, "exit code 1")


@pytest.mark.parametrize(
    "stderr",
    ["CONNECTION REFUSED", "Connection   Refused", "UNEXPECTED eof"],
)
def test_classify_markers_ignore_case_and_spacing(stderr: str) -> None:
    """Markers match case-insensitively and across runs of whitespace."""
    assert classify(failed(stderr)).kind is TRANSIENT


def test_classify_timeout_marker_needs_word_boundaries() -> None:
    """"runtime output" is not a timeout: the unknown error should stay permanent."""
    assert classify(failed("error: cannot parse runtime output")) == Failure(PERMANENT, "exit code 1")


def test_classify_permanent_markers_need_word_boundaries() -> None:
    """A transient error that mentions "invalidated" must still be retried."""
    result = failed("token cache invalidated; Unable to connect to the server: connection refused")
    assert classify(result) == Failure(TRANSIENT, "connection refused")


# --- excerpt ------------------------------------------------------------------------------------


def test_excerpt_short_text_unchanged() -> None:
    """Text up to head + tail (+ a little slack) is returned whole, only stripped."""
    assert excerpt("deployment.apps/api scaled") == "deployment.apps/api scaled"
    assert excerpt("  padded\n") == "padded"
    exact = "y" * (EXCERPT_HEAD + EXCERPT_TAIL + 20)
    assert excerpt(exact) == exact


def test_excerpt_long_text_keeps_head_and_tail() -> None:
    """A long text keeps its start and its end and says how much was left out."""
    text = "H" * 5000 + "M" * 5000 + "T" * 5000
    cut = excerpt(text, head=100, tail=200)
    assert cut.startswith("H" * 100 + "\n")
    assert cut.endswith("\n" + "T" * 200)
    assert "M" not in cut
    assert f"({len(text) - 300} characters left out)" in cut
    assert len(cut) < 400


def test_excerpt_defaults_keep_more_of_the_end() -> None:
    """With the default bounds the head is EXCERPT_HEAD and the tail EXCERPT_TAIL characters."""
    text = "".join(f"{n:06d}\n" for n in range(5000)).strip()
    head, _, rest = excerpt(text).partition("\n… (")
    count, _, tail = rest.partition(" characters left out) …\n")
    assert text.startswith(head) and len(head) <= EXCERPT_HEAD
    assert text.endswith(tail) and len(tail) <= EXCERPT_TAIL
    assert int(count) == len(text) - EXCERPT_HEAD - EXCERPT_TAIL


# --- DryRunExecutor -----------------------------------------------------------------------------


async def test_dry_run_executor_runs_nothing(fake: FakeKubectl, monkeypatch: pytest.MonkeyPatch) -> None:
    """The result is an ok dry run with the argv unchanged, and no kubectl was started."""
    monkeypatch.setenv("PATH", f"{fake.bin_dir}{os.pathsep}{os.environ['PATH']}")
    argv = ("kubectl", "-n", "prod", "rollout", "restart", "deployment/api")
    executor = DryRunExecutor()
    result = await executor.run(argv, timeout=5)
    assert executor.dry_run and executor.name == "dry-run"
    assert result.ok and result.dry_run
    assert result.argv == argv
    assert (result.exit_code, result.timed_out, result.error) == (0, False, None)
    assert classify(result) is None
    assert fake.calls == []


# --- SubprocessExecutor: command_line -----------------------------------------------------------


def test_subprocess_executor_command_line_adds_kubeconfig_and_context() -> None:
    """The configured binary replaces argv[0]; --kubeconfig and --context come right after it."""
    executor = SubprocessExecutor(kubectl="/opt/bin/kubectl", kubeconfig="/etc/kube/config", context="prod-eu")
    assert executor.command_line(("kubectl", "-n", "prod", "rollout", "restart", "deployment/api")) == (
        "/opt/bin/kubectl", "--kubeconfig=/etc/kube/config", "--context=prod-eu",
        "-n", "prod", "rollout", "restart", "deployment/api",
    )


def test_subprocess_executor_command_line_without_kubeconfig_or_context() -> None:
    """Unset kubeconfig and context add nothing; only the binary is replaced."""
    executor = SubprocessExecutor(kubectl="/opt/bin/kubectl", context="only-context")
    assert executor.command_line(("kubectl", "get", "pods")) == ("/opt/bin/kubectl", "--context=only-context",
                                                                  "get", "pods")
    assert SubprocessExecutor().command_line(("kubectl", "version")) == ("kubectl", "version")


def test_subprocess_executor_command_line_leaves_other_tools_untouched() -> None:
    """Another tool's argv runs as given, without kubectl flags."""
    executor = SubprocessExecutor(kubectl="/opt/bin/kubectl", kubeconfig="/etc/kube/config", context="prod")
    assert executor.command_line(("helm", "rollback", "api", "3")) == ("helm", "rollback", "api", "3")
    assert executor.command_line(("/usr/bin/kubectl", "get", "pods")) == ("/usr/bin/kubectl", "get", "pods")
    assert executor.command_line(()) == ()


# --- SubprocessExecutor: running the fake kubectl -----------------------------------------------


async def test_subprocess_executor_passes_argv_as_data_not_shell(
    fake: FakeKubectl, executor: SubprocessExecutor, tmp_path: Path
) -> None:
    """Shell syntax in an argument reaches kubectl verbatim and is never interpreted."""
    pwned, pwned_too = tmp_path / "pwned-subst", tmp_path / "pwned-backtick"
    payload = f"note=$(touch {pwned}); rm -rf x; `touch {pwned_too}`; `id`"
    argv = ("kubectl", "-n", "prod", "annotate", "deployment/api", payload)
    result = await executor.run(argv, timeout=30)
    assert result.ok, result
    assert fake.calls == [["-n", "prod", "annotate", "deployment/api", payload]]
    assert result.argv == (str(fake.path), *argv[1:])
    assert not pwned.exists()
    assert not pwned_too.exists()


async def test_subprocess_executor_success(fake: FakeKubectl, executor: SubprocessExecutor) -> None:
    """A successful run: exit 0, ok, stdout captured, argv is the executed line."""
    fake.on("scale", stdout="deployment.apps/api scaled\n")
    result = await executor.run(("kubectl", "-n", "prod", "scale", "deployment/api", "--replicas=5"), timeout=30)
    assert result.exit_code == 0
    assert result.ok and not result.dry_run and not result.timed_out and result.error is None
    assert result.stdout == "deployment.apps/api scaled"
    assert result.stderr == ""
    assert result.argv == (str(fake.path), "-n", "prod", "scale", "deployment/api", "--replicas=5")
    assert result.duration_ms >= 0
    assert classify(result) is None


async def test_subprocess_executor_adds_kubeconfig_and_context_to_the_process(fake: FakeKubectl) -> None:
    """The flags from command_line are what the process receives."""
    executor = SubprocessExecutor(kubectl=str(fake.path), kubeconfig="/etc/kube/config", context="prod")
    result = await executor.run(("kubectl", "get", "deployment/api", "-o", "jsonpath={.spec.replicas}"), timeout=30)
    assert result.ok and result.stdout == "3"
    assert fake.calls == [["--kubeconfig=/etc/kube/config", "--context=prod",
                           "get", "deployment/api", "-o", "jsonpath={.spec.replicas}"]]


async def test_subprocess_executor_resolves_kubectl_on_path(fake: FakeKubectl, monkeypatch: pytest.MonkeyPatch) -> None:
    """With the default binary name, kubectl is found on PATH."""
    monkeypatch.setenv("PATH", f"{fake.bin_dir}{os.pathsep}{os.environ['PATH']}")
    result = await SubprocessExecutor().run(("kubectl", "rollout", "restart", "deployment/api"), timeout=30)
    assert result.ok, result
    assert result.argv == ("kubectl", "rollout", "restart", "deployment/api")
    assert result.stdout == "deployment.apps/api restarted"
    assert fake.calls == [["rollout", "restart", "deployment/api"]]


async def test_subprocess_executor_permanent_failure(fake: FakeKubectl, executor: SubprocessExecutor) -> None:
    """A failing kubectl: its exit code and stderr are in the result, classified permanent."""
    fake.on("scale", fail=NOT_FOUND, exit_code=1)
    result = await executor.run(("kubectl", "-n", "prod", "scale", "deployment/api", "--replicas=5"), timeout=30)
    assert result.exit_code == 1
    assert not result.ok and not result.timed_out and result.error is None
    assert NOT_FOUND in result.stderr
    assert classify(result) == Failure(PERMANENT, "not found")


async def test_subprocess_executor_transient_failure(fake: FakeKubectl, executor: SubprocessExecutor) -> None:
    """The fake's unreachable-API-server error is classified transient, then the retry succeeds."""
    fake.on("rollout restart", transient=1)
    argv = ("kubectl", "rollout", "restart", "deployment/api")
    first = await executor.run(argv, timeout=30)
    assert first.exit_code == 1
    assert classify(first) == Failure(TRANSIENT, "connection refused")
    second = await executor.run(argv, timeout=30)
    assert second.ok and classify(second) is None


async def test_subprocess_executor_kills_at_timeout(fake: FakeKubectl, executor: SubprocessExecutor) -> None:
    """A hanging kubectl is killed at the timeout; the result says so and the process is gone."""
    fake.on("rollout status", hang=True)
    result = await executor.run(("kubectl", "rollout", "status", "deployment/api"), timeout=1.0)
    assert result.timed_out
    assert result.exit_code is None
    assert not result.ok
    assert "timed out after 1 s" in result.stderr
    assert classify(result) == Failure(TRANSIENT, "timeout")
    assert fake.calls == [["rollout", "status", "deployment/api"]]
    assert fake.running() == []


async def test_subprocess_executor_bounds_output(fake: FakeKubectl, executor: SubprocessExecutor) -> None:
    """A huge stdout is read to the end (the process does not block) but only an excerpt is kept."""
    size = READ_LIMIT + 50_000
    fake.on("get", stdout="x" * size)
    result = await executor.run(("kubectl", "get", "pods", "-A"), timeout=30)
    assert result.ok, result.stderr
    assert len(result.stdout) < EXCERPT_HEAD + EXCERPT_TAIL + 200
    assert "left out" in result.stdout
    assert "(50000 more bytes not kept)" in result.stdout


async def test_subprocess_executor_spawn_failure(tmp_path: Path) -> None:
    """A missing binary: no exit code, an error naming the setting to fix, classified permanent."""
    missing = tmp_path / "missing-kubectl"
    result = await SubprocessExecutor(kubectl=str(missing)).run(("kubectl", "get", "pods"), timeout=30)
    assert result.exit_code is None
    assert not result.ok and not result.timed_out
    assert result.error is not None
    assert "cannot run" in result.error
    assert str(missing) in result.error
    assert "ALERTPILOT_KUBECTL" in result.error
    assert result.argv == (str(missing), "get", "pods")
    assert classify(result) == Failure(PERMANENT, "could not start")


async def test_subprocess_executor_spawn_failure_of_another_tool_has_no_kubectl_hint(tmp_path: Path) -> None:
    """The ALERTPILOT_KUBECTL hint is only given for kubectl."""
    result = await SubprocessExecutor().run((str(tmp_path / "no-such-tool"), "--version"), timeout=30)
    assert result.error is not None and "cannot run" in result.error
    assert "ALERTPILOT_KUBECTL" not in result.error


async def test_subprocess_executor_cancellation_kills_the_process(
    fake: FakeKubectl, executor: SubprocessExecutor
) -> None:
    """Cancelling a run kills its process before the CancelledError propagates."""
    fake.on("rollout status", hang=True)
    task = asyncio.create_task(executor.run(("kubectl", "rollout", "status", "deployment/api"), timeout=60))
    await wait_for_calls(fake)
    assert not task.done()
    assert fake.running(), "the hanging fake should be running before the cancel"
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert task.cancelled()
    assert fake.running() == []


async def test_subprocess_executor_empty_argv_is_a_failed_result() -> None:
    """An empty argv cannot start anything; that is a result, not an exception."""
    result = await SubprocessExecutor().run((), timeout=5)
    assert result.exit_code is None and result.error is not None
