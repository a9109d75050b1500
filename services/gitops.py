"""GitOps review of a two-approver remediation: an issue on Gitea or GitHub that records what is about to
be approved in the chat (incident, command, target state, score breakdown, constraints, dry run, rollback
plan, diagnosis, how to approve). The issue's web link goes on the card.

The review is advisory: approval happens in the chat only, and a failure here must never block it. So
``GitOpsReviewer.open_review`` raises nothing but ``GitOpsError`` (the caller notes it in the thread).

Three parts:

* ``GitOpsClient`` POSTs one issue through an injected ``httpx.AsyncClient`` whose ``base_url`` is
  ``ALERTPILOT_GITOPS_URL`` (Gitea: the server root, ``https://gitea.example.com``; GitHub:
  ``https://api.github.com``, or ``https://host/api/v3`` for GitHub Enterprise). Paths are relative.
  Every failure becomes ``GitOpsError``; the token never appears in a message or a log line.
* ``review_context`` is pure: JSON-safe incident and proposal dicts in, the template context out.
* ``GitOpsReviewer`` renders ``templates/gitops/review.md.j2`` through a render callable (the composition
  root passes ``Renderer.render``; services never import jinja2) and opens the issue.

Escaping. ``templates/**/*.md.j2`` are rendered without autoescape (bot/render.py escapes ``*.html.j2``
only), so every value is made safe before it is inserted, after clipping it (clip first, then escape: an
entity is never cut in half):

* keys ending in ``_md`` are ready-to-insert Markdown: text through ``md_text`` (``&<>`` to HTML entities,
  Markdown punctuation backslash-escaped, ``@`` and ``#<digit>`` broken with a zero-width space so nobody
  is pinged and no issue is cross-referenced) or an inline code span through ``md_code``;
* keys ending in ``_quote`` are ``md_text`` as a blockquote (alert text: data, not markup);
* ``tier``, ``target_namespace``, ``score_reasons``, ``constraints``, ``rollback_description``, ``root_cause``
  and ``reasoning`` may be text alertpilot wrote (services/phrases.py), shown in the review's language: they
  are clipped here but not escaped, and the template escapes them itself after translating them
  (``{{ constraint|phrase|md_inline }}``; the filters ``md_inline``, ``md_quote`` and ``md_code`` are these
  functions, registered by bot/render.py). The template never inserts them any other way;
* ``command``, ``target_state_json``, ``dry_run_command`` and ``rollback_command`` are raw, for fenced code
  blocks only, between ``fence``: a run of backticks longer than any run inside them, so no content can
  close the block early.
"""

from __future__ import annotations

import asyncio
import html
import json
import re
import shlex
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import httpx
import structlog

from services.errors import AlertpilotError
from services.phrases import phrase
from services.views import clip

log = structlog.get_logger(__name__)

__all__ = [
    "LIMITS",
    "MAX_ISSUE_BODY_CHARS",
    "PROVIDERS",
    "REVIEW_LABELS",
    "REVIEW_TEMPLATE",
    "TITLE_LIMIT",
    "GitOpsClient",
    "GitOpsError",
    "GitOpsReviewer",
    "Provider",
    "md_code",
    "md_fence",
    "md_inline",
    "md_quote",
    "md_text",
    "review_context",
    "review_title",
]

Provider = Literal["gitea", "github"]
PROVIDERS: tuple[str, ...] = ("gitea", "github")
REVIEW_TEMPLATE = "gitops/review.md.j2"
REVIEW_LABELS: tuple[str, ...] = ("alertpilot", "remediation-review")
TITLE_LIMIT = 200
MAX_ISSUE_BODY_CHARS = 65536  # GitHub's limit on an issue body; Gitea accepts more
MAX_REPLY_BYTES = 1024 * 1024
_ERROR_BODY_BYTES = 4096  # of an error answer, enough for the snippet
_SNIPPET_CHARS = 200
_OK_STATUSES = frozenset({200, 201})
_REPO_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
_GITHUB_HEADERS = {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28"}

#: Characters per field, applied before escaping. ``command`` is the safety parser's own limit, so the
#: review shows exactly what would run.
LIMITS: Mapping[str, int] = {
    "ref": 40,
    "alertname": 200,
    "service": 120,
    "namespace": 120,
    "severity": 40,
    "started_at": 60,
    "summary": 1000,
    "command": 4000,
    "verb": 60,
    "kind": 120,
    "name": 253,
    "target_state_json": 2000,
    "reason": 200,
    "reasons": 12,  # items
    "constraint": 200,
    "constraints": 12,  # items
    "dry_run_command": 4200,
    "rollback_command": 1000,
    "rollback_description": 300,
    "root_cause": 2000,
    "reasoning": 2000,
    "source": 40,
    "model": 120,
    "approve_hint": 80,
}

class GitOpsError(AlertpilotError):
    """The review issue could not be created. ``reason`` is safe to show in the chat (no token)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# --- the forge client --------------------------------------------------------------------------------


class GitOpsClient:
    """Creates issues on one repository of a Gitea or GitHub server."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        provider: Provider,
        repo: str,
        token: str,
        timeout: float = 10,
    ) -> None:
        if provider not in PROVIDERS:
            raise ValueError(f"provider must be one of {', '.join(PROVIDERS)}, not {provider!r}")
        owner, sep, name = repo.strip().partition("/")
        if not sep or not _valid_repo_part(owner) or not _valid_repo_part(name):
            raise ValueError(f"repo must be owner/name (letters, digits, '-', '_', '.'), not {repo!r}")
        if not token or token != token.strip() or any(c in token for c in "\r\n"):
            raise ValueError("token must be a non-empty string without surrounding whitespace")
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self.provider: Provider = provider
        self.repo = f"{owner}/{name}"
        self._client = client
        self._token = token
        self._timeout = timeout
        self._path = (
            f"api/v1/repos/{owner}/{name}/issues" if provider == "gitea" else f"repos/{owner}/{name}/issues"
        )  # relative: joined onto the client's base_url (which may carry a path, e.g. /api/v3)

    async def create_issue(self, title: str, body: str, labels: Sequence[str] = ()) -> str:
        """Open an issue; return its web URL (``html_url``). Raises ``GitOpsError``."""
        title = title.strip()
        if not title:
            raise GitOpsError(phrase("issue title is empty"))
        if len(body) > MAX_ISSUE_BODY_CHARS:
            raise GitOpsError(phrase("issue body is %(size)s characters, over the %(limit)s limit", size=str(len(body)),
                                     limit=str(MAX_ISSUE_BODY_CHARS)))
        payload: dict[str, Any] = {"title": title, "body": body}
        if self.provider == "github":
            headers = {**_GITHUB_HEADERS, "Authorization": f"Bearer {self._token}"}
            if labels:
                payload["labels"] = list(labels)  # created on the fly; dropped silently without push access
        else:
            # Gitea's CreateIssueOption takes label *ids*, which would need a lookup (and the labels to
            # exist) first: the issue is opened without labels.
            headers = {"Accept": "application/json", "Authorization": f"token {self._token}"}

        loop = asyncio.get_running_loop()
        started = loop.time()
        status: int | None = None
        try:
            try:
                async with asyncio.timeout(self._timeout):
                    status, raw = await self._post(payload, headers)
            except TimeoutError as exc:
                raise GitOpsError(phrase("no answer from %(name)s within %(seconds)ss", name=self.provider,
                                         seconds=f"{self._timeout:g}")) from exc
            except httpx.TimeoutException as exc:
                raise GitOpsError(phrase("no answer from %(name)s within %(seconds)ss (%(error)s)", name=self.provider,
                                         seconds=f"{self._timeout:g}", error=type(exc).__name__)) from exc
            except (httpx.HTTPError, httpx.InvalidURL, httpx.StreamError, OSError) as exc:
                detail = self._redact(" ".join(str(exc).split()))
                raise GitOpsError(phrase(
                    "connection to %(name)s failed: %(error)s", name=self.provider,
                    error=type(exc).__name__ + (f": {detail}" if detail else ""),
                )) from exc
            if status not in _OK_STATUSES:
                raise GitOpsError(phrase("HTTP %(status)s from %(name)s: %(detail)s", status=str(status),
                                         name=self.provider, detail=self._snippet(raw)))
            url, number = self._parse(status, raw)
        except GitOpsError as exc:
            log.warning(
                "gitops_issue_failed",
                provider=self.provider,
                repo=self.repo,
                status=status,
                latency_ms=round((loop.time() - started) * 1000),
                error=exc.reason,
            )
            raise
        log.info(
            "gitops_issue_created",
            provider=self.provider,
            repo=self.repo,
            status=status,
            number=number,
            url=url,
            latency_ms=round((loop.time() - started) * 1000),
        )
        return url

    async def _post(self, payload: dict[str, Any], headers: dict[str, str]) -> tuple[int, bytes]:
        async with self._client.stream(
            "POST", self._path, json=payload, headers=headers, timeout=httpx.Timeout(self._timeout)
        ) as response:
            ok = response.status_code in _OK_STATUSES
            raw = await _read_capped(response, MAX_REPLY_BYTES if ok else _ERROR_BODY_BYTES)
            return response.status_code, raw

    def _parse(self, status: int, raw: bytes) -> tuple[str, int | None]:
        try:
            reply = json.loads(raw)
        except ValueError:
            raise GitOpsError(phrase("HTTP %(status)s from %(name)s: reply is not JSON: %(detail)s", status=str(status),
                                     name=self.provider, detail=self._snippet(raw))) from None
        if not isinstance(reply, dict):
            raise GitOpsError(phrase("HTTP %(status)s from %(name)s: reply is not an issue: %(detail)s",
                                     status=str(status), name=self.provider, detail=self._snippet(raw)))
        url = reply.get("html_url")
        if not isinstance(url, str) or not url.startswith(("https://", "http://")) or any(c.isspace() for c in url):
            raise GitOpsError(phrase("HTTP %(status)s from %(name)s: reply has no html_url: %(detail)s",
                                     status=str(status), name=self.provider, detail=self._snippet(raw)))
        number = reply.get("number")
        return url, number if _is_int(number) else None

    def _snippet(self, raw: bytes) -> str:
        text = " ".join(raw.decode("utf-8", errors="replace").split())
        text = (text[:_SNIPPET_CHARS] + "…") if len(text) > _SNIPPET_CHARS else (text or phrase("(empty body)"))
        return self._redact(text)

    def _redact(self, text: str) -> str:
        return text.replace(self._token, "***")


def _valid_repo_part(part: str) -> bool:
    return bool(_REPO_PART.fullmatch(part)) and part not in (".", "..") and not part.endswith(".git")


async def _read_capped(response: httpx.Response, limit: int) -> bytes:
    """At most ``limit`` bytes of the (decoded) body; the rest is left unread."""
    buf = bytearray()
    async for chunk in response.aiter_bytes():
        buf += chunk
        if len(buf) >= limit:
            return bytes(buf[:limit])
    return bytes(buf)


# --- Markdown helpers (pure) -------------------------------------------------------------------------

_MD_PUNCT = re.compile(r"([\\`*_\[\]|~])")
_LINE_MARKER = re.compile(r"^([ \t]*)([#+=-])", re.MULTILINE)
_LINE_ORDERED = re.compile(r"^([ \t]*\d{1,9})([.)])", re.MULTILINE)
_ISSUE_REF = re.compile(r"#(?=\d)")
_BACKTICKS = re.compile(r"`+")
_NEWLINES = re.compile(r"\r\n?|[\u2028\u2029\x85\x0b\x0c]")
_ZWSP = "\u200b"


def md_text(text: str | None) -> str:
    """Plain text as inert Markdown: renders as the same characters, with no markup, HTML, links, images,
    mentions (``@`` gets a zero-width space) or issue references (``#12`` likewise)."""
    text = _NEWLINES.sub("\n", text or "")
    text = _MD_PUNCT.sub(r"\\\1", text)
    text = html.escape(text, quote=False)  # & < > → entities (after the backslashes: entities have none)
    text = text.replace("@", "@" + _ZWSP)
    text = _ISSUE_REF.sub("#" + _ZWSP, text)
    text = _LINE_MARKER.sub(r"\1\\\2", text)  # no heading, list item or setext underline at a line start
    return _LINE_ORDERED.sub(r"\1\\\2", text)


def md_inline(text: str | None, limit: int | None = None) -> str:
    """One line of inert Markdown, clipped to ``limit`` characters first (None: as it is); "—" when empty."""
    return md_text(_line(text, limit)) or "—"


def md_quote(text: str | None, limit: int | None = None) -> str:
    """Inert Markdown as a blockquote, every line prefixed, so nothing can leave the quote; clipped first (to
    ``limit`` characters; None: as it is)."""
    body = md_text(_block(text, limit))
    if not body:
        return "> —"
    return "\n".join(f"> {line}".rstrip() for line in body.split("\n"))


def md_code(text: str | None, limit: int | None = 200) -> str:
    """An inline code span holding ``text`` verbatim (collapsed to one line), whatever backticks it has."""
    text = _line(text, limit)
    if not text:
        return "—"
    ticks = "`" * (_longest_backtick_run(text) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{ticks}{pad}{text}{pad}{ticks}"


def md_fence(*contents: str) -> str:
    """A code fence (at least three backticks) longer than any backtick run in ``contents``."""
    return "`" * max(3, max((_longest_backtick_run(c) for c in contents), default=0) + 1)


def _longest_backtick_run(text: str) -> int:
    return max((len(m) for m in _BACKTICKS.findall(text)), default=0)


def _line(text: str | None, limit: int | None) -> str:
    """``text`` on one line (whitespace runs collapsed), clipped to ``limit`` characters unless None."""
    text = " ".join((text or "").split())
    return text if limit is None else clip(text, limit)


def _block(text: str | None, limit: int | None) -> str:
    """``text`` with its newlines normalised, clipped to ``limit`` characters unless None."""
    text = _NEWLINES.sub("\n", text or "")
    return text if limit is None else clip(text, limit)


def _code_block_text(text: str | None, limit: int) -> str:
    """Raw content for a fenced block: newlines normalised, clipped, never empty."""
    return clip(_NEWLINES.sub("\n", text or ""), limit) or "—"


# --- the review --------------------------------------------------------------------------------------


def review_context(
    *, ref: str, incident: Mapping[str, Any], proposal: Mapping[str, Any], approve_hint: str
) -> dict[str, Any]:
    """The context of ``templates/gitops/review.md.j2`` (see the module docstring for the key suffixes).

    ``incident``: ref, alertname, service, namespace, severity, started_at (ISO 8601 string), summary.
    ``proposal``: command, root_cause, reasoning, source, model, blast_score, tier, required_approvals,
    score_reasons (list), rollback_plan, spec (``RemediationSpec.to_json()``, or None). Missing keys and
    None values render as "—"; nothing here raises on odd input.
    """
    spec = proposal.get("spec") if isinstance(proposal.get("spec"), Mapping) else {}
    rollback = spec.get("rollback") if isinstance(spec.get("rollback"), Mapping) else {}

    command = _code_block_text(_str(proposal.get("command")), LIMITS["command"])
    target_state = spec.get("target_state")
    target_state_json = _code_block_text(
        json.dumps(target_state, indent=2, sort_keys=True, ensure_ascii=False, default=str) if target_state else "",
        LIMITS["target_state_json"],
    )
    dry_argv = spec.get("dry_run_argv")
    dry_run_command = _code_block_text(
        shlex.join(str(a) for a in dry_argv) if isinstance(dry_argv, list | tuple) and dry_argv else "",
        LIMITS["dry_run_command"],
    )
    # The spec's rollback when there is one; else the stored plan, which may be a command or a sentence: shown
    # as text.
    rollback_command = _code_block_text(_str(rollback.get("command")), LIMITS["rollback_command"])
    rollback_description = _str(rollback.get("description")) if rollback else _str(proposal.get("rollback_plan"))

    resources = _str_list(spec.get("resources"))
    kind, name = _str(spec.get("kind")), _str(spec.get("name"))
    target = ", ".join(resources) or (f"{kind}/{name}" if kind and name else kind)

    blast_score = proposal.get("blast_score")
    required = proposal.get("required_approvals")
    required = required if _is_int(required) and required > 0 else 2
    tier = _str(proposal.get("tier"))
    reasons = _str_list(proposal.get("score_reasons"))[: LIMITS["reasons"]]
    constraints = _str_list(spec.get("constraints"))[: LIMITS["constraints"]]
    hint = approve_hint or f"/approve {ref}"

    return {
        "ref_md": md_inline(ref, LIMITS["ref"]),
        "alertname_md": md_inline(_str(incident.get("alertname")), LIMITS["alertname"]),
        "service_md": md_inline(_str(incident.get("service")), LIMITS["service"]),
        "namespace_md": md_inline(_str(incident.get("namespace")), LIMITS["namespace"]),
        "severity_md": md_inline(_str(incident.get("severity")), LIMITS["severity"]),
        "started_at_md": md_inline(_str(incident.get("started_at")), LIMITS["started_at"]),
        "summary_quote": md_quote(_str(incident.get("summary")), LIMITS["summary"]),
        "fence": md_fence(command, target_state_json, dry_run_command, rollback_command),
        "command": command,
        "verb_md": md_code(_str(spec.get("verb")), LIMITS["verb"]),
        "target_md": md_code(target, LIMITS["kind"] + LIMITS["name"]),
        # "all namespaces" is the template's (in the review's language); a namespace is shown in a code span
        "all_namespaces": bool(spec.get("all_namespaces")),
        "target_namespace": _line(_str(spec.get("namespace")), LIMITS["namespace"]),
        "target_state_json": target_state_json,
        "blast_score": blast_score if _is_int(blast_score) else "—",
        "tier": _line(tier, 40),  # a tier's name (auto, one_approver, …): the template words it
        "required_approvals": required,
        "score_reasons": [_line(r, LIMITS["reason"]) for r in reasons],
        "constraints": [_line(c, LIMITS["constraint"]) for c in constraints],
        "dry_run_required": bool(spec.get("dry_run_required")),
        "dry_run_command": dry_run_command,
        "has_dry_run_command": bool(isinstance(dry_argv, list | tuple) and dry_argv),
        "rollback_kind_md": md_inline(_str(rollback.get("kind")), 40),
        "rollback_description": _line(rollback_description, LIMITS["rollback_description"]),
        "rollback_command": rollback_command,
        "has_rollback_command": rollback_command != "—",
        "root_cause": _block(_str(proposal.get("root_cause")), LIMITS["root_cause"]),
        "reasoning": _block(_str(proposal.get("reasoning")), LIMITS["reasoning"]),
        "source_md": md_inline(_str(proposal.get("source")), LIMITS["source"]),
        "model_md": md_inline(_str(proposal.get("model")), LIMITS["model"]),
        "has_model": bool(_str(proposal.get("model"))),
        "approve_hint_md": md_code(hint, LIMITS["approve_hint"]),
    }


def review_title(*, ref: str, command: str, blast_score: Any) -> str:
    """``[alertpilot] INC-12: approve <command> (blast radius 82)``, at most ``TITLE_LIMIT`` characters:
    the command is clipped so that the score stays visible."""
    head = f"[alertpilot] {' '.join(ref.split())}: approve "
    tail = f" (blast radius {blast_score})" if _is_int(blast_score) else ""
    room = max(TITLE_LIMIT - len(head) - len(tail), 1)
    return clip(head + clip(" ".join(command.split()), room) + tail, TITLE_LIMIT)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _str(value: Any) -> str:
    return "" if value is None else str(value)


def _str_list(value: Any) -> list[str]:
    if not isinstance(value, list | tuple):
        return []
    return [str(v) for v in value if v is not None and str(v).strip()]


class GitOpsReviewer:
    """Opens the review issue of a two-approver proposal."""

    def __init__(self, client: GitOpsClient, render: Callable[..., str]) -> None:
        self._client = client
        self._render = render

    async def open_review(
        self, *, ref: str, incident: Mapping[str, Any], proposal: Mapping[str, Any], approve_hint: str | None = None
    ) -> str:
        """Render and open the issue; return its web URL. Raises ``GitOpsError`` only (a template or context
        bug included), so the caller can note the failure and carry on with the chat approval."""
        try:
            context = review_context(
                ref=ref, incident=incident, proposal=proposal, approve_hint=approve_hint or f"/approve {ref}"
            )
            body = self._render(REVIEW_TEMPLATE, **context)
            command, score = _str(proposal.get("command")), proposal.get("blast_score")
            title = review_title(ref=ref, command=command, blast_score=score)
        except Exception as exc:  # never let a rendering bug escape as anything but GitOpsError
            log.exception("gitops_review_render_failed", ref=ref)
            raise GitOpsError(phrase("could not render the review: %(error)s", error=type(exc).__name__)) from exc
        url = await self._client.create_issue(title, body, REVIEW_LABELS)
        log.info("gitops_review_opened", ref=ref, url=url, provider=self._client.provider, repo=self._client.repo)
        return url
