"""A fake ``kubectl`` executable for tests, scripted from the test process through files.

The application runs ``kubectl`` with ``asyncio.create_subprocess_exec`` (never a shell), resolved on PATH
or given as an absolute path. ``FakeKubectl`` writes a real executable named ``kubectl`` whose shebang is
the running interpreter, so it needs no environment variables and works inside the venv::

    fake = FakeKubectl(tmp_path / "kubectl").install()
    fake.on("rollout restart", transient=1)          # first restart fails like an unreachable API server
    fake.on("rollout undo", fail="error: no rollout history found", exit_code=1)
    env = {**os.environ, "PATH": f"{fake.bin_dir}{os.pathsep}{os.environ['PATH']}"}
    ...
    assert fake.calls_matching("rollout restart") == [[..., "rollout", "restart", "deployment/api"], ...]

State lives in ``directory/state``: ``rules.json`` (rules in the order added), ``calls.jsonl`` (one JSON
argv per invocation, without argv[0], written before acting so a hang is still recorded) and
``count-<rule index>`` (how often a rule has acted, for ``transient``).

A rule's ``match`` is a substring of the invocation's arguments joined by single spaces; the LAST added
rule that matches wins. It acts in this order: ``hang`` sleeps until killed; ``transient=N`` makes its
first N invocations print ``transient_error`` to stderr and exit 1; ``fail`` prints its message to stderr
and exits ``exit_code``; ``stdout`` is written verbatim, exit 0; ``revisions=K`` answers ``rollout history``
with K revisions; ``replicas=R`` answers ``get`` with ``R`` (no newline, like jsonpath). Anything else
gets the defaults: kubectl-like success text, exit 0 (see ``_default``).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_TRANSIENT_ERROR = "Unable to connect to the server: dial tcp 127.0.0.1:6443: connect: connection refused"
# Flags whose value may come as the next argument; that value is not a positional word nor a resource.
_VALUE_FLAGS = {"-n", "--namespace", "--context", "--kubeconfig", "--cluster", "--user", "-s", "--server",
                "--token", "-o", "--output", "-l", "--selector", "--to-revision", "--replicas", "--timeout"}
_APPS_KINDS = {"deploy": "deployment", "deployment": "deployment", "deployments": "deployment",
               "sts": "statefulset", "statefulset": "statefulset", "statefulsets": "statefulset",
               "ds": "daemonset", "daemonset": "daemonset", "daemonsets": "daemonset",
               "rs": "replicaset", "replicaset": "replicaset", "replicasets": "replicaset"}
_PAST = {"restart": "restarted", "undo": "rolled back", "scale": "scaled", "delete": "deleted",
         "patch": "patched", "annotate": "annotated", "label": "labeled", "apply": "configured"}


class FakeKubectl:
    """A scriptable ``kubectl`` on disk: ``bin_dir`` goes first on PATH, or ``path`` into settings."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.bin_dir = self.directory / "bin"
        self.path = self.bin_dir / "kubectl"
        self.state_dir = self.directory / "state"
        self.bin_dir.mkdir(parents=True, exist_ok=True)
        self.state_dir.mkdir(parents=True, exist_ok=True)

    def install(self) -> FakeKubectl:
        """Write the executable (mode 0o755) and start from empty state."""
        self.path.write_text(
            f"#!{sys.executable}\n"
            "import sys\n"
            f"sys.path.insert(0, {str(REPO_ROOT)!r})\n"
            "from tests.fakes.kubectl import main\n"
            f"sys.exit(main({str(self.state_dir)!r}))\n"
        )
        self.path.chmod(0o755)
        self.reset()
        return self

    def on(self, match: str, *, transient: int = 0, transient_error: str = DEFAULT_TRANSIENT_ERROR,
           fail: str | None = None, exit_code: int = 1, hang: bool = False, stdout: str | None = None,
           revisions: int | None = None, replicas: int | None = None) -> FakeKubectl:
        """Add a rule for invocations whose joined arguments contain ``match``; later rules win."""
        rules_file = self.state_dir / "rules.json"
        rules = json.loads(rules_file.read_text()) if rules_file.exists() else []
        rules.append({"match": match, "transient": transient, "transient_error": transient_error,
                      "fail": fail, "exit_code": exit_code, "hang": hang, "stdout": stdout,
                      "revisions": revisions, "replicas": replicas})
        rules_file.write_text(json.dumps(rules))
        return self

    @property
    def calls(self) -> list[list[str]]:
        """Every invocation's argv without argv[0], in order."""
        calls_file = self.state_dir / "calls.jsonl"
        if not calls_file.exists():
            return []
        return [json.loads(line) for line in calls_file.read_text().splitlines() if line]

    def calls_matching(self, match: str) -> list[list[str]]:
        """The recorded invocations whose joined arguments contain ``match``."""
        return [argv for argv in self.calls if match in " ".join(argv)]

    def running(self) -> list[int]:
        """PIDs of live processes running this fake (Linux /proc; [] elsewhere)."""
        found: list[int] = []
        proc = Path("/proc")
        for entry in proc.iterdir() if proc.is_dir() else ():
            if not entry.name.isdigit():
                continue
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:  # gone meanwhile, or not ours to read
                continue
            if str(self.path).encode() in cmdline.split(b"\0"):
                found.append(int(entry.name))
        return found

    def kill_running(self) -> None:
        """Kill leftovers (a hanging fake whose caller was killed with SIGKILL keeps running)."""
        for pid in self.running():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def reset(self) -> None:
        """Forget rules, calls and transient counters."""
        for item in self.state_dir.iterdir():
            if item.name in ("rules.json", "calls.jsonl") or item.name.startswith("count-"):
                item.unlink()


def _positionals(args: list[str]) -> list[str]:
    """The arguments that are neither flags nor the values of flags given as separate arguments."""
    words: list[str] = []
    skip = False
    for arg in args:
        if skip:
            skip = False
        elif arg.startswith("-"):
            skip = "=" not in arg and arg in _VALUE_FLAGS
        else:
            words.append(arg)
    return words


def _resource(words: list[str]) -> tuple[str, str]:
    """(kind, name) from the first positional argument with a "/", e.g. ``deployment/api``."""
    for word in words:
        if "/" in word:
            kind, _, name = word.partition("/")
            if kind and name:
                return _APPS_KINDS.get(kind.split(".")[0].lower(), kind.split(".")[0]), name
    return "deployment", "api"


def _qualified(kind: str, name: str) -> str:
    """``deployment.apps/api`` for the apps kinds, ``kind/name`` otherwise."""
    return f"{kind}.apps/{name}" if kind in _APPS_KINDS.values() else f"{kind}/{name}"


def _history(kind: str, name: str, revisions: int) -> str:
    """A ``kubectl rollout history`` table with revisions 1..K."""
    rows = "".join(f"{n:<10}<none>\n" for n in range(1, revisions + 1))
    return f"{_qualified(kind, name)}\nREVISION  CHANGE-CAUSE\n{rows}"


def _default(args: list[str], words: list[str]) -> str:
    """kubectl-like success output for an invocation no rule answers."""
    kind, name = _resource(words)
    verb = words[1] if words[:1] == ["rollout"] and len(words) > 1 else (words[0] if words else "")
    if "--dry-run=server" in args:
        return f"{_qualified(kind, name)} {_PAST.get(verb, 'configured')} (server dry run)\n"
    if words[:2] == ["rollout", "status"]:
        return f'{kind} "{name}" successfully rolled out\n'
    if words[:2] == ["rollout", "history"]:
        return _history(kind, name, 3)
    if words[:1] == ["rollout"] and verb in ("undo", "restart"):
        return f"{_qualified(kind, name)} {_PAST[verb]}\n"
    if words[:1] == ["get"] and any("jsonpath" in arg for arg in args):
        return "3"
    if words[:1] == ["scale"]:
        return f"{_qualified(kind, name)} scaled\n"
    return "ok\n"


def _act(rule: dict[str, Any], index: int, state: Path, args: list[str], words: list[str]) -> int:
    """Carry out the winning rule; returns the exit code."""
    if rule["hang"]:
        time.sleep(3600)
        return 0
    if rule["transient"] > 0:
        counter = state / f"count-{index}"
        count = int(counter.read_text()) if counter.exists() else 0
        counter.write_text(str(count + 1))
        if count < rule["transient"]:
            sys.stderr.write(rule["transient_error"].rstrip("\n") + "\n")
            return 1
    if rule["fail"] is not None:
        sys.stderr.write(rule["fail"].rstrip("\n") + "\n")
        return rule["exit_code"]
    if rule["stdout"] is not None:
        sys.stdout.write(rule["stdout"])
    elif rule["revisions"] is not None and words[:2] == ["rollout", "history"]:
        sys.stdout.write(_history(*_resource(words), rule["revisions"]))
    elif rule["replicas"] is not None and words[:1] == ["get"]:
        sys.stdout.write(str(rule["replicas"]))
    else:
        sys.stdout.write(_default(args, words))
    return 0


def main(state_dir: str) -> int:
    """Entry point of the installed executable: record the call, then answer it."""
    state = Path(state_dir)
    args = sys.argv[1:]
    with open(state / "calls.jsonl", "a", encoding="utf-8") as log:
        log.write(json.dumps(args) + "\n")
        log.flush()
    rules_file = state / "rules.json"
    rules = json.loads(rules_file.read_text()) if rules_file.exists() else []
    joined, words = " ".join(args), _positionals(args)
    for index in range(len(rules) - 1, -1, -1):
        if rules[index]["match"] in joined:
            code = _act(rules[index], index, state, args, words)
            break
    else:
        sys.stdout.write(_default(args, words))
        code = 0
    sys.stdout.flush()
    return code
