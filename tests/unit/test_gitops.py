"""GitOps review issues: GitOpsClient against FakeGitForge over loopback (both providers), and the review's
Markdown through the real renderer (templates/gitops/review.md.j2)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from structlog.testing import capture_logs

from bot.render import Renderer
from services.errors import AlertpilotError
from services.gitops import (
    REVIEW_LABELS,
    REVIEW_TEMPLATE,
    TITLE_LIMIT,
    GitOpsClient,
    GitOpsError,
    GitOpsReviewer,
    md_code,
    md_fence,
    md_text,
    review_context,
    review_title,
)
from services.safety import parse_command
from tests.fakes.gitforge import FakeGitForge

TOKEN = "s3cr3t-forge-token-0123456789"
REPO = "ops/cluster"
COMMAND = "kubectl -n prod delete deployment api"
HEADINGS = (
    "### Incident",
    "### Proposed command",
    "### Target state",
    "### Blast radius",
    "### Constraints",
    "### Dry run",
    "### Rollback plan",
    "### Diagnosis",
    "### How to approve",
)

MakeClient = Callable[..., GitOpsClient]


def incident(**overrides: Any) -> dict[str, Any]:
    return {
        "ref": "INC-12",
        "alertname": "KubePodCrashLooping",
        "service": "api",
        "namespace": "prod",
        "severity": "critical",
        "started_at": "2026-11-24T00:30:00+00:00",
        "summary": "Pod api-7d9 is crash looping (exit 137).",
    } | overrides


def proposal(command: str = COMMAND, **overrides: Any) -> dict[str, Any]:
    spec = parse_command(command if "spec" not in overrides else "kubectl get pods")
    return {
        "command": command,
        "root_cause": "The api container is OOM-killed after the last rollout.",
        "reasoning": "Memory grew with the new cache; deleting the deployment stops the crash loop.",
        "source": "ai",
        "model": "qwen2.5:7b",
        "blast_score": 82,
        "tier": "two_approvers",
        "required_approvals": 2,
        "score_reasons": ["delete deployment 60", "× prod 1.5", "= 90"],
        "rollback_plan": spec.rollback.command or spec.rollback.description,
        "spec": spec.to_json(),
    } | overrides


@pytest.fixture
def render() -> Callable[..., str]:
    return Renderer(ZoneInfo("UTC")).render


@pytest.fixture(params=["gitea", "github"])
async def forge(request: pytest.FixtureRequest) -> AsyncIterator[FakeGitForge]:
    async with FakeGitForge(request.param, token=TOKEN) as fake:
        yield fake


@pytest.fixture
async def http(forge: FakeGitForge) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=forge.base_url, trust_env=False) as client:
        yield client


@pytest.fixture
def make_client(forge: FakeGitForge, http: httpx.AsyncClient) -> MakeClient:
    def make(*, token: str = TOKEN, timeout: float = 2.0, repo: str = REPO) -> GitOpsClient:
        return GitOpsClient(http, provider=forge.provider, repo=repo, token=token, timeout=timeout)  # type: ignore[arg-type]

    return make


def assert_no_token(text: str) -> None:
    assert TOKEN not in text


# --- request shapes ----------------------------------------------------------------------------------


async def test_gitops_gitea_request_shape() -> None:
    async with (
        FakeGitForge("gitea", token=TOKEN) as fake,
        httpx.AsyncClient(base_url=fake.base_url, trust_env=False) as http,
    ):
        client = GitOpsClient(http, provider="gitea", repo=REPO, token=TOKEN)
        url = await client.create_issue("the title", "the body", REVIEW_LABELS)

    assert url == f"{fake.root_url}/ops/cluster/issues/1"
    [request] = fake.requests
    assert (request.method, request.path, request.status) == ("POST", "/api/v1/repos/ops/cluster/issues", 201)
    assert request.headers["Authorization"] == f"token {TOKEN}"
    assert request.headers["Content-Type"] == "application/json"
    assert request.json == {"title": "the title", "body": "the body"}  # Gitea labels need ids: none sent


async def test_gitops_github_request_shape() -> None:
    async with (
        FakeGitForge("github", token=TOKEN) as fake,
        httpx.AsyncClient(base_url=fake.base_url, trust_env=False) as http,
    ):
        client = GitOpsClient(http, provider="github", repo=REPO, token=TOKEN)
        url = await client.create_issue("the title", "the body", REVIEW_LABELS)

    assert url == f"{fake.root_url}/ops/cluster/issues/1"
    [request] = fake.requests
    assert (request.method, request.path, request.status) == ("POST", "/repos/ops/cluster/issues", 201)
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert request.headers["Accept"] == "application/vnd.github+json"
    assert request.headers["X-GitHub-Api-Version"] == "2022-11-28"
    assert request.json == {"title": "the title", "body": "the body", "labels": ["alertpilot", "remediation-review"]}


@pytest.mark.parametrize(("provider", "prefix"), [("github", "/api/v3"), ("gitea", "/git")])
async def test_gitops_base_url_with_a_path(provider: str, prefix: str) -> None:
    """GitHub Enterprise (https://host/api/v3) and a Gitea behind a sub-path: the issue path is relative."""
    async with (
        FakeGitForge(provider, token=TOKEN, prefix=prefix) as fake,  # type: ignore[arg-type]
        httpx.AsyncClient(base_url=fake.base_url, trust_env=False) as http,
    ):
        client = GitOpsClient(http, provider=provider, repo=REPO, token=TOKEN)  # type: ignore[arg-type]
        await client.create_issue("t", "b")

    assert fake.requests[0].path.startswith(prefix + "/")
    assert fake.requests[0].status == 201


async def test_gitops_each_issue_gets_its_own_url(forge: FakeGitForge, make_client: MakeClient) -> None:
    client = make_client()
    with capture_logs() as logs:
        first = await client.create_issue("one", "b")
        second = await client.create_issue("two", "b")

    assert (first, second) == (f"{forge.root_url}/ops/cluster/issues/1", f"{forge.root_url}/ops/cluster/issues/2")
    created = [e for e in logs if e["event"] == "gitops_issue_created"]
    assert [e["number"] for e in created] == [1, 2]
    assert all(e["provider"] == forge.provider and e["repo"] == REPO for e in created)


# --- failures ----------------------------------------------------------------------------------------


async def test_gitops_http_500_is_a_gitops_error(forge: FakeGitForge, make_client: MakeClient) -> None:
    forge.fail_next(500, "x" * 1000)
    with capture_logs() as logs, pytest.raises(GitOpsError) as caught:
        await make_client().create_issue("t", "b")

    message = str(caught.value)
    assert message.startswith(f"HTTP 500 from {forge.provider}: ")
    assert "x" * 200 + "…" in message and "x" * 201 not in message  # the first 200 characters of the body
    assert isinstance(caught.value, AlertpilotError)
    assert caught.value.reason == message
    [failed] = [e for e in logs if e["event"] == "gitops_issue_failed"]
    assert failed["status"] == 500 and failed["log_level"] == "warning"


async def test_gitops_wrong_token_is_401(forge: FakeGitForge, make_client: MakeClient) -> None:
    with pytest.raises(GitOpsError, match="HTTP 401") as caught:
        await make_client(token="wrong-token").create_issue("t", "b")

    assert forge.requests[-1].status == 401
    assert "wrong-token" not in str(caught.value)


async def test_gitops_token_echoed_by_the_server_is_redacted(forge: FakeGitForge, make_client: MakeClient) -> None:
    forge.fail_next(403, {"message": f"token {TOKEN} lacks scope"})
    with capture_logs() as logs, pytest.raises(GitOpsError, match="HTTP 403") as caught:
        await make_client().create_issue("t", "b")

    assert_no_token(str(caught.value))
    assert "***" in str(caught.value)
    assert_no_token(repr(logs))


async def test_gitops_timeout(forge: FakeGitForge, make_client: MakeClient) -> None:
    forge.hang_next()
    with capture_logs() as logs, pytest.raises(GitOpsError, match="no answer from .* within 0.3s") as caught:
        await make_client(timeout=0.3).create_issue("t", "b")

    assert_no_token(str(caught.value))
    assert_no_token(repr(logs))


async def test_gitops_connection_reset(forge: FakeGitForge, make_client: MakeClient) -> None:
    forge.reset_next()
    with pytest.raises(GitOpsError, match="connection to .* failed") as caught:
        await make_client().create_issue("t", "b")

    assert_no_token(str(caught.value))


async def test_gitops_connection_refused() -> None:
    async with FakeGitForge("github", token=TOKEN) as fake:
        base = fake.base_url
    async with httpx.AsyncClient(base_url=base, trust_env=False) as http:
        client = GitOpsClient(http, provider="github", repo=REPO, token=TOKEN, timeout=2)
        with pytest.raises(GitOpsError, match="connection to github failed: ConnectError") as caught:
            await client.create_issue("t", "b")

    assert_no_token(str(caught.value))


@pytest.mark.parametrize(
    ("status", "body", "match"),
    [
        (201, "<html>proxy login</html>", "reply is not JSON: <html>proxy login</html>"),
        (201, ["not", "an", "issue"], "reply is not an issue"),
        (201, {"number": 7}, "reply has no html_url"),
        (200, {"number": 7, "html_url": "javascript:alert(1)"}, "reply has no html_url"),
        (302, "", r"HTTP 302 from \w+: \(empty body\)"),
    ],
)
async def test_gitops_bad_replies(
    forge: FakeGitForge, make_client: MakeClient, status: int, body: Any, match: str
) -> None:
    forge.fail_next(status, body)
    with pytest.raises(GitOpsError, match=match) as caught:
        await make_client().create_issue("t", "b")

    assert_no_token(str(caught.value))


async def test_gitops_unknown_repo_is_404(forge: FakeGitForge, make_client: MakeClient) -> None:
    with pytest.raises(GitOpsError, match="HTTP 404"):
        await make_client(repo="ops/other").create_issue("t", "b")


async def test_gitops_oversized_body_is_refused_without_a_request(forge: FakeGitForge, make_client: MakeClient) -> None:
    with pytest.raises(GitOpsError, match="over the 65536 limit"):
        await make_client().create_issue("t", "b" * 70_000)

    assert forge.requests == []


@pytest.mark.parametrize(
    "repo", ["cluster", "ops/", "/cluster", "ops/cluster/extra", "ops/../x", "ops/..", "ops/clu ster", "o?p/x", ""]
)
def test_gitops_repo_must_be_owner_slash_name(repo: str) -> None:
    http = httpx.AsyncClient(base_url="http://127.0.0.1:9", trust_env=False)
    with pytest.raises(ValueError, match="owner/name"):
        GitOpsClient(http, provider="github", repo=repo, token=TOKEN)


def test_gitops_client_validates_provider_token_and_timeout() -> None:
    http = httpx.AsyncClient(base_url="http://127.0.0.1:9", trust_env=False)
    with pytest.raises(ValueError, match="provider"):
        GitOpsClient(http, provider="gitlab", repo=REPO, token=TOKEN)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="token"):
        GitOpsClient(http, provider="gitea", repo=REPO, token="")
    with pytest.raises(ValueError, match="timeout"):
        GitOpsClient(http, provider="gitea", repo=REPO, token=TOKEN, timeout=0)
    assert GitOpsClient(http, provider="gitea", repo="my-org/infra.config", token=TOKEN).repo == "my-org/infra.config"


# --- the review --------------------------------------------------------------------------------------


def rendered(render: Callable[..., str], **proposal_overrides: Any) -> str:
    ctx = review_context(
        ref="INC-12", incident=incident(), proposal=proposal(**proposal_overrides), approve_hint="/approve INC-12"
    )
    return render(REVIEW_TEMPLATE, **ctx)


def test_gitops_review_has_every_section(render: Callable[..., str]) -> None:
    body = rendered(render)

    positions = [body.index(heading) for heading in HEADINGS]
    assert positions == sorted(positions)
    assert "**Alert:** KubePodCrashLooping" in body
    assert "**Service / namespace:** api / prod" in body
    assert "**Severity:** critical" in body
    assert "**Since:** 2026-11-24T00:30:00+00:00" in body
    assert "> Pod api-7d9 is crash looping (exit 137)." in body
    assert f"```sh\n{COMMAND}\n```" in body
    assert "`delete` on `deployment/api`" in body
    assert '"deleted": [\n    "deployment/api"\n  ]' in body
    assert "**82** / 100 → two different approvers (2 required)" in body
    assert "- `delete deployment 60`\n- `× prod 1.5`\n- `= 90`" in body
    assert "- namespace prod only" in body
    assert f"```sh\n{COMMAND} --dry-run=server\n```" in body
    assert "**Plan:** deleted objects must be recreated from their manifests" in body
    assert "> The api container is OOM-killed after the last rollout." in body
    assert "Written by ai (qwen2.5:7b)" in body
    assert (
        "Two different approvers must approve in the chat: press ✅ Approve on the card or send `/approve INC-12`. "
        "This issue is for review and audit; closing it does not approve or reject."
    ) in body


def test_gitops_review_rollback_command_in_a_code_block(render: Callable[..., str]) -> None:
    body = rendered(render, command="kubectl -n prod set image deployment/api api=img:2")

    assert "```sh\nkubectl -n prod rollout undo deployment/api\n```" in body
    assert "**Kind:** rollout\\_undo" in body


def test_gitops_review_fence_is_longer_than_backticks_in_the_command(render: Callable[..., str]) -> None:
    command = "kubectl -n prod annotate deployment api note='````\n# pwned\n````'"
    ctx = review_context(
        ref="INC-12", incident=incident(), proposal=proposal(spec=None, command=command), approve_hint=""
    )
    body = render(REVIEW_TEMPLATE, **ctx)

    assert ctx["fence"] == "`````"
    assert f"`````sh\n{command}\n`````" in body
    assert re.search(r"^# pwned$", body, re.MULTILINE)  # present, but only inside the fence
    lines = body.split("\n")
    opened = lines.index("`````sh")
    assert lines[opened + 1 : opened + 4] == command.split("\n")
    assert lines[opened + 4] == "`````"


def test_gitops_review_neutralises_model_text(render: Callable[..., str]) -> None:
    hostile = (
        "<script>alert(1)</script> &amp; @channel @ops-team see #12\n"
        "```\n</details><img src=x onerror=alert(1)>\n```\n"
        "# Approved\n- [x] ![pixel](https://evil.example/p.png) [click](javascript:alert(1))"
    )
    body = rendered(render, root_cause=hostile, reasoning=hostile)

    assert "<script>" not in body and "<img" not in body and "</details>" not in body
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp;amp;" in body
    assert "@channel" not in body and "@ops-team" not in body
    assert "@\u200bchannel" in body and "#\u200b12" in body
    assert "\n```\n</details>" not in body
    assert "> \\`\\`\\`" in body  # backticks escaped, inside the quote
    assert "> \\# Approved" in body and "> \\- \\[x\\] !\\[pixel\\]" in body
    assert "](javascript:" not in body.replace("\\](javascript:", "")
    diagnosis = body[body.index("### Diagnosis") : body.index("### How to approve")]
    quoted = [line for line in diagnosis.split("\n") if line.startswith(">")]
    assert len(quoted) == 2 * len(hostile.split("\n"))  # every model line stays inside a blockquote


def test_gitops_review_neutralises_alert_text(render: Callable[..., str]) -> None:
    ctx = review_context(
        ref="INC-12",
        incident=incident(alertname="<b>X</b>\n## boom", service="@here", summary="line\n---\n<iframe>"),
        proposal=proposal(),
        approve_hint="/approve INC-12",
    )
    body = render(REVIEW_TEMPLATE, **ctx)

    assert "**Alert:** &lt;b&gt;X&lt;/b&gt; ## boom\n" in body  # one line: no heading
    assert "@\u200bhere" in body
    assert "> line\n> \\---\n> &lt;iframe&gt;" in body  # no setext heading or thematic break


def test_gitops_review_clips_free_text(render: Callable[..., str]) -> None:
    ctx = review_context(
        ref="INC-12",
        incident=incident(summary="s" * 5000),
        proposal=proposal(root_cause="r" * 5000, reasoning="w" * 5000),
        approve_hint="/approve INC-12",
    )

    assert ctx["root_cause"] == "r" * 1999 + "…"  # clipped here, quoted (after translation) by the template
    assert ctx["reasoning"] == "w" * 1999 + "…"
    assert ctx["summary_quote"] == "> " + "s" * 999 + "…"
    body = render(REVIEW_TEMPLATE, **ctx)
    assert "\n> " + "r" * 1999 + "…\n" in body and "\n> " + "w" * 1999 + "…\n" in body
    assert len(body) < 10_000


def test_gitops_review_survives_missing_fields(render: Callable[..., str]) -> None:
    ctx = review_context(ref="INC-3", incident={}, proposal={"command": "kubectl get pods"}, approve_hint="")
    body = render(REVIEW_TEMPLATE, **ctx)

    for heading in HEADINGS:
        assert heading in body
    assert "`/approve INC-3`" in body
    assert "- no breakdown recorded" in body and "- none recorded" in body


def test_gitops_markdown_helpers() -> None:
    assert md_text("a_b *c* [d](e) `f` | ~g~ \\") == "a\\_b \\*c\\* \\[d\\](e) \\`f\\` \\| \\~g\\~ \\\\"
    assert md_text("1. one\n+ two\n=\n  # three") == "1\\. one\n\\+ two\n\\=\n  \\# three"
    assert md_text("x@y.z <a> & #1 #a") == "x@\u200by.z &lt;a&gt; &amp; #\u200b1 #a"
    assert md_code("a ``b`` c") == "```a ``b`` c```"
    assert md_code("`x`") == "`` `x` ``"
    assert md_code("") == "—"
    assert md_fence("no ticks") == "```"
    assert md_fence("a ``````` b", "``") == "````````"


def test_gitops_title_is_clipped_with_the_score_kept() -> None:
    assert review_title(ref="INC-12", command=COMMAND, blast_score=82) == (
        "[alertpilot] INC-12: approve kubectl -n prod delete deployment api (blast radius 82)"
    )
    long = review_title(ref="INC-12", command="kubectl annotate pod x " + "a=b " * 200, blast_score=82)
    assert len(long) == TITLE_LIMIT
    assert long.endswith("… (blast radius 82)")
    assert review_title(ref="INC-1", command="kubectl\n-n prod\tget pods", blast_score=None) == (
        "[alertpilot] INC-1: approve kubectl -n prod get pods"
    )


# --- the reviewer, end to end ------------------------------------------------------------------------


async def test_gitops_reviewer_opens_the_issue(
    forge: FakeGitForge, make_client: MakeClient, render: Callable[..., str]
) -> None:
    reviewer = GitOpsReviewer(make_client(), render)
    with capture_logs() as logs:
        url = await reviewer.open_review(ref="INC-12", incident=incident(), proposal=proposal())

    assert url == f"{forge.root_url}/ops/cluster/issues/1"
    sent = forge.requests[-1].json
    assert sent["title"] == "[alertpilot] INC-12: approve kubectl -n prod delete deployment api (blast radius 82)"
    assert sent["body"] == rendered(render)
    assert sent.get("labels", list(REVIEW_LABELS)) == list(REVIEW_LABELS)
    assert any(e["event"] == "gitops_review_opened" and e["url"] == url for e in logs)


async def test_gitops_reviewer_failure_is_a_gitops_error(
    forge: FakeGitForge, make_client: MakeClient, render: Callable[..., str]
) -> None:
    forge.fail_next(502, "bad gateway")
    with pytest.raises(GitOpsError, match="HTTP 502 from .*: bad gateway") as caught:
        await GitOpsReviewer(make_client(), render).open_review(ref="INC-12", incident=incident(), proposal=proposal())

    assert_no_token(str(caught.value))


async def test_gitops_reviewer_render_bug_is_a_gitops_error(forge: FakeGitForge, make_client: MakeClient) -> None:
    def broken(name: str, **context: Any) -> str:
        raise KeyError(name)

    with capture_logs(), pytest.raises(GitOpsError, match="could not render the review: KeyError"):
        await GitOpsReviewer(make_client(), broken).open_review(ref="INC-12", incident=incident(), proposal=proposal())

    assert forge.requests == []
