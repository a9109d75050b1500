"""WeCom AI-bot streamed replies (``msgtype: stream``) for answers that take a while: /summary and /ask.

The first passive reply carries what is ready after a short wait (a rule-based answer usually is, so it
comes whole and finished); WeCom then asks for the stream again by its id until it is finished, and each
refresh gets everything rendered so far. Streams live in this process for STREAM_TTL_SECONDS; with
several replicas a refresh may reach another one, which answers that the stream is gone (the shared
store comes with the scale-out work).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import structlog

from bot.render import Renderer, clip_bytes
from services.actions import Reply
from services.errors import IncidentNotFound

log = structlog.get_logger(__name__)

FIRST_CHUNK_SECONDS = 1.0
STREAM_TTL_SECONDS = 600.0
STREAM_MAX_BYTES = 20_000


@dataclass
class _Stream:
    parts: list[str] = field(default_factory=list)
    done: bool = False
    started: float = field(default_factory=time.monotonic)
    task: asyncio.Task[None] | None = None
    lang: str | None = None  # the chat's language (/lang)


class WeComStreams:
    def __init__(self, renderer: Renderer) -> None:
        self._render = renderer
        self._streams: dict[str, _Stream] = {}
        self._lang: str | None = None

    def bound(self, lang: str) -> WeComStreams:
        """These streams, answering new ones in ``lang`` (one chat's): the same streams, shared."""
        other = copy.copy(self)
        other._lang = lang
        return other

    async def start(self, work: Callable[[Reply], Awaitable[None]]) -> dict[str, Any]:
        """Run ``work`` (it answers through the reply it is given) and return the first stream reply (in the
        language these streams are bound to, else the renderer's)."""
        self._forget_old()
        stream_id = secrets.token_hex(8)
        stream = self._streams[stream_id] = _Stream(lang=self._lang)
        stream.task = asyncio.create_task(self._run(stream, work), name=f"wecom-stream-{stream_id}")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(FIRST_CHUNK_SECONDS):
                await asyncio.shield(stream.task)
        return self.reply(stream_id)

    def reply(self, stream_id: str) -> dict[str, Any]:
        """The stream as it stands (a refresh): everything so far, and whether it is finished."""
        stream = self._streams.get(stream_id)
        if stream is None:
            content, done = self._render.render("wecom/stream.md.j2", lang=self._lang, state="gone"), True
        elif stream.parts:
            content, done = "\n\n".join(stream.parts), stream.done
        else:
            content, done = self._render.render("wecom/stream.md.j2", lang=stream.lang, state="working"), stream.done
        content = clip_bytes(content, STREAM_MAX_BYTES)
        return {"msgtype": "stream", "stream": {"id": stream_id, "finish": done, "content": content}}

    async def _run(self, stream: _Stream, work: Callable[[Reply], Awaitable[None]]) -> None:
        async def reply(template: str, context: dict[str, Any]) -> None:
            stream.parts.append(self._render.render(f"wecom/{template}.md.j2", lang=stream.lang, **context))

        try:
            await work(reply)
        except IncidentNotFound as exc:
            await reply("error", {"code": "not_found", "ref": exc.ref})
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("wecom_stream_failed")
            await reply("stream", {"state": "failed"})
        finally:
            stream.done = True

    def _forget_old(self) -> None:
        cutoff = time.monotonic() - STREAM_TTL_SECONDS
        for stream_id in [i for i, s in self._streams.items() if s.started < cutoff]:
            stream = self._streams.pop(stream_id)
            if stream.task is not None:
                stream.task.cancel()

    async def aclose(self) -> None:
        tasks = [s.task for s in self._streams.values() if s.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._streams.clear()
