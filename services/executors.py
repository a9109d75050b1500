"""Executors (the ``Executor`` port) and the retry classification of their failures.

- ``DryRunExecutor`` (the default) runs nothing: every result says what would have run, marked dry run.
- ``SubprocessExecutor`` runs the argv with ``asyncio.create_subprocess_exec`` — never a shell, the argv is
  data built from the RemediationSpec — with the configured kubectl binary, kubeconfig and context, a
  per-attempt timeout (the whole process group is killed), and output captured up to a bound.

``classify`` decides whether a failed attempt is worth retrying: only transient errors are, and a
permanent marker anywhere in the output always wins over a transient one.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import time
from dataclasses import dataclass
from enum import StrEnum

from services.phrases import N_, phrase
from services.ports import CommandResult

READ_LIMIT = 256 * 1024  # bytes kept per stream; the rest is read and dropped (the process must not block)
EXCERPT_HEAD = 1000
EXCERPT_TAIL = 2500  # errors come last: keep more of the end
KILL_GRACE_SECONDS = 5.0

# Markers are matched case-insensitively on whole words in stderr and stdout (DESIGN §1.7). The label is the
# failure's reason: a keyword (templates key their explanations on it) and a phrase (services/phrases.py).
PERMANENT_MARKERS = (
    (N_("not found"), r"not\s+found|notfound"),
    (N_("forbidden"), r"forbidden"),
    (N_("permission denied"), r"permission\s+denied"),
    (N_("unauthorized"), r"unauthori[sz]ed"),
    (N_("already exists"), r"already\s+exists|alreadyexists"),
    (N_("invalid"), r"invalid"),
    (N_("immutable"), r"immutable"),
)
TRANSIENT_MARKERS = (
    (N_("connection refused"), r"connection\s+refused"),
    (N_("connection reset"), r"connection\s+reset(?:\s+by\s+peer)?"),
    (N_("timeout"), r"time[d\s-]*outs?|deadline\s+exceeded"),
    (N_("i/o error"), r"i/o\s+(?:error|timeout)|input/output\s+error"),
    (N_("temporary failure"), r"temporary\s+failure|temporarily\s+unavailable|try\s+again"),
    (N_("service unavailable"), r"service\s+unavailable|503"),
    (N_("too many requests"), r"too\s+many\s+requests|429"),
    (N_("dial tcp"), r"dial\s+tcp"),
    (N_("EOF"), r"eof"),
)

def _whole_words(pattern: str) -> re.Pattern[str]:
    return re.compile(rf"(?<!\w)(?:{pattern})(?!\w)", re.IGNORECASE)


_PERMANENT = [(label, _whole_words(pattern)) for label, pattern in PERMANENT_MARKERS]
_TRANSIENT = [(label, _whole_words(pattern)) for label, pattern in TRANSIENT_MARKERS]


class FailureKind(StrEnum):
    TRANSIENT = "transient"
    PERMANENT = "permanent"


@dataclass(frozen=True)
class Failure:
    kind: FailureKind
    reason: str  # the marker found ("timeout", "not found"), or "exit code 2", "could not start"

    @property
    def transient(self) -> bool:
        return self.kind is FailureKind.TRANSIENT


def classify(result: CommandResult) -> Failure | None:
    """None for a success; else whether the failure is transient (retry) or permanent (stop), and why.
    A permanent marker wins over everything; a timeout is transient; an unknown error is permanent (a
    failure nobody recognises is not retried blindly)."""
    if result.ok:
        return None
    text = f"{result.stderr}\n{result.stdout}\n{result.error or ''}"
    for label, pattern in _PERMANENT:
        if pattern.search(text):
            return Failure(FailureKind.PERMANENT, label)
    if result.error is not None:
        return Failure(FailureKind.PERMANENT, N_("could not start"))
    if result.timed_out:
        return Failure(FailureKind.TRANSIENT, N_("timeout"))
    for label, pattern in _TRANSIENT:
        if pattern.search(text):
            return Failure(FailureKind.TRANSIENT, label)
    return Failure(FailureKind.PERMANENT, phrase("exit code %(code)s", code=str(result.exit_code)))


def excerpt(text: str, head: int = EXCERPT_HEAD, tail: int = EXCERPT_TAIL) -> str:
    """The start and the end of a long output (the end holds the error), marked where it was cut."""
    text = text.strip()
    if len(text) <= head + tail + 20:
        return text
    return f"{text[:head].rstrip()}\n… ({len(text) - head - tail} characters left out) …\n{text[-tail:].lstrip()}"


class DryRunExecutor:
    """Runs nothing. Each result is a success that says the command was not executed."""

    name = "dry-run"
    dry_run = True

    async def run(self, argv: tuple[str, ...], *, timeout: float) -> CommandResult:
        return CommandResult(argv=tuple(argv), exit_code=0, stdout=phrase("dry run: not executed"), stderr="",
                             duration_ms=0, dry_run=True)


class SubprocessExecutor:
    """Runs commands as processes (no shell). ``kubectl`` in an argv is replaced by the configured binary,
    with ``--kubeconfig`` and ``--context`` added when configured; other allow-listed tools run by name."""

    name = "kubectl"
    dry_run = False

    def __init__(self, *, kubectl: str = "kubectl", kubeconfig: str | None = None, context: str | None = None,
                 excerpt_head: int = EXCERPT_HEAD, excerpt_tail: int = EXCERPT_TAIL) -> None:
        self._kubectl, self._kubeconfig, self._context = kubectl, kubeconfig, context
        self._head, self._tail = excerpt_head, excerpt_tail  # how much output a result keeps (see ``excerpt``)

    def command_line(self, argv: tuple[str, ...]) -> tuple[str, ...]:
        """The argv as it will be executed."""
        if not argv or argv[0] != "kubectl":
            return tuple(argv)
        extra: list[str] = []
        if self._kubeconfig:
            extra.append(f"--kubeconfig={self._kubeconfig}")
        if self._context:
            extra.append(f"--context={self._context}")
        return (self._kubectl, *extra, *argv[1:])

    async def run(self, argv: tuple[str, ...], *, timeout: float) -> CommandResult:
        line = self.command_line(argv)
        started = time.monotonic()
        if not line:
            return CommandResult(argv=(), exit_code=None, stdout="", stderr="", duration_ms=0,
                                 error=phrase("empty command"))
        try:
            process = await asyncio.create_subprocess_exec(
                *line,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,  # its own process group: a timeout kills whatever it started too
            )
        except OSError as exc:
            why = str(exc.strerror or exc)
            if argv and argv[0] == "kubectl":
                error = phrase("cannot run %(tool)s: %(error)s (set ALERTPILOT_KUBECTL)", tool=line[0], error=why)
            else:
                error = phrase("cannot run %(tool)s: %(error)s", tool=line[0], error=why)
            return CommandResult(
                argv=line, exit_code=None, stdout="", stderr="", duration_ms=_ms(started), error=error,
            )
        assert process.stdout is not None and process.stderr is not None
        reads = asyncio.gather(_read_capped(process.stdout), _read_capped(process.stderr))
        timed_out = False
        try:
            async with asyncio.timeout(timeout):
                out, err = await asyncio.shield(reads)  # a timeout must not cancel the readers
                await process.wait()
        except TimeoutError:
            timed_out = True
            await _kill(process)
            out, err = await _drain(reads)
        except asyncio.CancelledError:  # shutting down: never leave the command running unobserved
            await _kill(process)
            with contextlib.suppress(BaseException):
                await _drain(reads)
            raise
        stderr = _decode(err)
        if timed_out:
            stderr = (stderr + "\n" if stderr else "") + phrase("timed out after %(seconds)s s (killed)",
                                                                 seconds=f"{timeout:g}")
        return CommandResult(
            argv=line,
            exit_code=None if timed_out else process.returncode,
            stdout=excerpt(_decode(out), self._head, self._tail),
            stderr=excerpt(stderr, self._head, self._tail),
            duration_ms=_ms(started),
            timed_out=timed_out,
        )


async def _read_capped(stream: asyncio.StreamReader) -> bytes:
    kept = bytearray()
    dropped = 0
    while chunk := await stream.read(65536):
        room = READ_LIMIT - len(kept)
        kept += chunk[:room]
        dropped += max(0, len(chunk) - room)
    if dropped:
        kept += f"\n… ({dropped} more bytes not kept)".encode()
    return bytes(kept)


async def _kill(process: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        process.kill()
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(KILL_GRACE_SECONDS):
            await process.wait()


async def _drain(reads: asyncio.Future[list[bytes]]) -> tuple[bytes, bytes]:
    """What the killed process had written (its pipes close when it dies)."""
    try:
        async with asyncio.timeout(KILL_GRACE_SECONDS):
            out, err = await reads
    except TimeoutError:  # a grandchild outside the group still holds a pipe open
        reads.cancel()
        return b"", b""
    return out, err


def _decode(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


def _ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)
