"""The lifecycle shared by the fake HTTP peers (OpenAI-compatible model, Git forge): one catch-all aiohttp
route on 127.0.0.1, an ephemeral port, and a prompt stop that wakes hanging handlers."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from typing import Self

from aiohttp import web


class LoopbackServer:
    host = "127.0.0.1"
    client_max_size = 1024 * 1024

    def __init__(self) -> None:
        self.port: int | None = None
        self._stop_event = asyncio.Event()
        self._runner: web.AppRunner | None = None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raise NotImplementedError

    async def start(self) -> Self:
        if self._runner is not None:
            return self
        self._stop_event = asyncio.Event()
        app = web.Application(client_max_size=self.client_max_size)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, 0)
        await site.start()
        server = site._server
        assert server is not None and server.sockets  # type: ignore[union-attr]
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        """Stop promptly: hanging and slow handlers wake up (they wait on ``_stop_event``) and drop out."""
        if self._runner is None:
            return
        self._stop_event.set()
        runner, self._runner = self._runner, None
        await runner.cleanup()

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


def reset_connection(request: web.Request) -> web.Response:
    """Drop the connection with a TCP RST and no HTTP answer (a peer that crashes mid-request)."""
    transport = request.transport
    if transport is not None:
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()
    return web.Response(status=204)  # aiohttp finds the transport closed and writes nothing
