"""In-process fake of a Gitea or GitHub server's "create an issue" endpoint, for tests.

``FakeGitForge`` is a small aiohttp.web server on 127.0.0.1 (ephemeral port). The application reaches it
exactly as it reaches the real forge, through an ``httpx.AsyncClient`` whose ``base_url`` is
``ALERTPILOT_GITOPS_URL``::

    async with FakeGitForge("github", token="t0k") as fake:
        async with httpx.AsyncClient(base_url=fake.base_url, trust_env=False) as http:
            client = GitOpsClient(http, provider="github", repo="ops/cluster", token="t0k")
            url = await client.create_issue("title", "body")
        assert fake.requests[-1].json["title"] == "title"

Routes (only the provider's own; anything else answers 404, so a wrongly joined URL fails loudly):

* gitea:  ``POST {base_url}/api/v1/repos/{owner}/{repo}/issues``, ``Authorization: token <token>``
* github: ``POST {base_url}/repos/{owner}/{repo}/issues``, ``Authorization: Bearer <token>``

``base_url`` is the server root, plus ``prefix`` when given (``prefix="/api/v3"`` plays GitHub Enterprise,
``prefix="/git"`` a Gitea behind a sub-path). A wrong or missing Authorization header answers 401 like the
real servers; a body without a title answers 422. Success is 201 with ``{"number": n, "html_url":
"{root}/{owner}/{repo}/issues/{n}", ...}``.

Scripting (each applies to the next request that reaches the route, in order): ``fail_next(status, body)``
answers that status and body (a ``str`` as text, anything else as JSON; ``fail_next(201, "<html>")`` plays
a proxy's page, ``fail_next(201, {"number": 1})`` an answer without ``html_url``), ``hang_next()`` never
answers until the server stops, ``reset_next()`` drops the connection with a TCP RST.

Inspection: ``fake.requests`` (every request to the route: method, path, headers, parsed JSON, status).
"""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass
from typing import Any, Literal

from aiohttp import web

from tests.fakes.loopback import LoopbackServer, reset_connection

__all__ = ["FakeGitForge", "ForgeRequest"]


@dataclass
class ForgeRequest:
    method: str
    path: str
    headers: dict[str, str]
    json: Any  # the parsed body, None when it was not JSON
    status: int | None = None  # what was answered; None: hung or reset


@dataclass(frozen=True)
class _Script:
    kind: Literal["answer", "hang", "reset"]
    status: int = 200
    body: Any = None


class FakeGitForge(LoopbackServer):
    def __init__(
        self,
        provider: Literal["gitea", "github"],
        *,
        token: str = "forge-token",
        owner: str = "ops",
        repo: str = "cluster",
        prefix: str = "",
    ) -> None:
        super().__init__()
        if provider not in ("gitea", "github"):
            raise ValueError(f"unknown provider {provider!r}")
        self.provider = provider
        self.token = token
        self.owner, self.repo = owner, repo
        self.prefix = "/" + prefix.strip("/") if prefix.strip("/") else ""
        self.requests: list[ForgeRequest] = []
        self.issues: list[dict[str, Any]] = []  # the issues created, as answered
        self._script: deque[_Script] = deque()

    # ------------------------------------------------------------------ lifecycle
    @property
    def root_url(self) -> str:
        """The forge's web root (where ``html_url`` points)."""
        if self.port is None:
            raise RuntimeError("FakeGitForge is not started")
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """What ``ALERTPILOT_GITOPS_URL`` would be: the API base for GitHub, the server root for Gitea."""
        return self.root_url + self.prefix

    @property
    def issues_path(self) -> str:
        api = "/api/v1" if self.provider == "gitea" else ""
        return f"{self.prefix}{api}/repos/{self.owner}/{self.repo}/issues"

    @property
    def expected_authorization(self) -> str:
        return f"token {self.token}" if self.provider == "gitea" else f"Bearer {self.token}"


    # ------------------------------------------------------------------ scripting
    def fail_next(self, status: int, body: Any = "") -> None:
        self._script.append(_Script("answer", status, body))

    def hang_next(self) -> None:
        self._script.append(_Script("hang"))

    def reset_next(self) -> None:
        self._script.append(_Script("reset"))

    def pending(self) -> int:
        return len(self._script)

    # ------------------------------------------------------------------ serving
    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = None
        call = ForgeRequest(request.method, request.path, dict(request.headers), body)
        if request.method != "POST" or request.path != self.issues_path:
            return self._answer(call, 404, {"message": "Not Found"})
        self.requests.append(call)

        if request.headers.get("Authorization") != self.expected_authorization:
            message = "Bad credentials" if self.provider == "github" else "token is required"
            return self._answer(call, 401, {"message": message})

        if self._script:
            script = self._script.popleft()
            if script.kind == "reset":
                return self._reset(request)
            if script.kind == "hang":
                await self._stop_event.wait()
                return self._reset(request)
            return self._answer(call, script.status, script.body)

        if not isinstance(body, dict) or not isinstance(body.get("title"), str) or not body["title"].strip():
            return self._answer(call, 422, {"message": "Validation Failed", "errors": [{"field": "title"}]})
        number = len(self.issues) + 1
        issue = {
            "id": 1000 + number,
            "number": number,
            "title": body["title"],
            "body": body.get("body", ""),
            "state": "open",
            "labels": [{"name": name} for name in body.get("labels", [])],
            "html_url": f"{self.root_url}/{self.owner}/{self.repo}/issues/{number}",
            "url": f"{self.base_url}/repos/{self.owner}/{self.repo}/issues/{number}",
        }
        self.issues.append(issue)
        return self._answer(call, 201, issue)

    @staticmethod
    def _answer(call: ForgeRequest, status: int, body: Any) -> web.Response:
        call.status = status
        if isinstance(body, str):
            return web.Response(status=status, text=body, content_type="text/plain")
        return web.json_response(body, status=status)

    @staticmethod
    def _reset(request: web.Request) -> web.Response:
        return reset_connection(request)
