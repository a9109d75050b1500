"""In-process fake of WeCom's server for tests: the group-robot webhook, and the AI bot's response_url.

``FakeWeCom`` listens on 127.0.0.1 (ephemeral port); the app reaches it through
``ALERTPILOT_WECOM_API_BASE = fake.base_url``, exactly as it reaches ``https://qyapi.weixin.qq.com``.

* ``POST /cgi-bin/webhook/send?key=K`` records the send. Like the real server it answers HTTP 200 with
  ``{"errcode": 0, "errmsg": "ok"}`` — or an error code: 93000 for a key not in ``keys``, 40058 for
  markdown over 4096 bytes or text over 2048 bytes (also for a missing msgtype or content), and whatever a
  test scripted with ``fail_next(errcode)`` (e.g. 45009 rate limited), in order.
* ``POST /cgi-bin/aibot/response?response_code=C`` records a proactive reply; a code is single use, as on
  WeCom (a second use answers errcode 60140).

Anything else answers 404, so a wrongly built URL fails loudly.
"""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from tests.fakes.loopback import LoopbackServer

MARKDOWN_LIMIT = 4096
TEXT_LIMIT = 2048


@dataclass
class RobotSend:
    key: str
    body: dict[str, Any]
    errcode: int

    @property
    def msgtype(self) -> str:
        return str(self.body.get("msgtype"))

    @property
    def content(self) -> str:
        part = self.body.get(self.msgtype) or {}
        return str(part.get("content", ""))


class FakeWeCom(LoopbackServer):
    def __init__(self, keys: tuple[str, ...] = ("robot-key-0001",)) -> None:
        super().__init__()
        self.keys = set(keys)
        self.sends: list[RobotSend] = []
        self.responses: list[tuple[str, dict[str, Any]]] = []  # (response_code, body)
        self._used_codes: set[str] = set()
        self._script: deque[int] = deque()

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def fail_next(self, errcode: int, times: int = 1) -> None:
        self._script.extend([errcode] * times)

    def delivered(self, key: str | None = None) -> list[RobotSend]:
        """Sends WeCom accepted (errcode 0), optionally of one robot."""
        return [s for s in self.sends if s.errcode == 0 and (key is None or s.key == key)]

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if request.method != "POST":
            return web.Response(status=404)
        try:
            body = json.loads(await request.read())
        except ValueError:
            return web.json_response({"errcode": 40058, "errmsg": "invalid json"})
        if request.path == "/cgi-bin/webhook/send":
            return self._robot(request.query.get("key", ""), body)
        if request.path == "/cgi-bin/aibot/response":
            code = request.query.get("response_code", "")
            if code in self._used_codes:
                return web.json_response({"errcode": 60140, "errmsg": "response_code used"})
            self._used_codes.add(code)
            self.responses.append((code, body))
            return web.json_response({"errcode": 0, "errmsg": "ok"})
        return web.Response(status=404)

    def _robot(self, key: str, body: Any) -> web.Response:
        errcode = self._errcode(key, body)
        self.sends.append(RobotSend(key, body if isinstance(body, dict) else {}, errcode))
        message = "ok" if errcode == 0 else f"error {errcode}"
        return web.json_response({"errcode": errcode, "errmsg": message})

    def _errcode(self, key: str, body: Any) -> int:
        if key not in self.keys:
            return 93000
        if self._script:
            return self._script.popleft()
        if not isinstance(body, dict) or body.get("msgtype") not in ("markdown", "text"):
            return 40058
        content = (body.get(body["msgtype"]) or {}).get("content")
        if not isinstance(content, str) or not content:
            return 40058
        limit = MARKDOWN_LIMIT if body["msgtype"] == "markdown" else TEXT_LIMIT
        return 40058 if len(content.encode("utf-8")) > limit else 0
