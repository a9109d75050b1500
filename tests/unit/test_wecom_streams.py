"""WeCom streamed replies: the first chunk, refreshes, failures and unknown streams."""

from __future__ import annotations

import asyncio
from typing import Any
from zoneinfo import ZoneInfo

from bot.chat.wecom_streams import WeComStreams
from bot.render import Renderer
from services.errors import IncidentNotFound

RENDERER = Renderer(ZoneInfo("UTC"))


async def test_streams_first_chunk_then_finished_answer() -> None:
    streams = WeComStreams(RENDERER)
    gate = asyncio.Event()

    async def work(reply: Any) -> None:
        await gate.wait()
        await reply("answer", {"kind": "ask", "ref": "", "text": "all quiet", "part": 1, "parts": 1, "model": "m"})

    first = await streams.start(work)
    stream_id = first["stream"]["id"]
    assert first["msgtype"] == "stream" and first["stream"]["finish"] is False
    assert "Working on it" in first["stream"]["content"]
    gate.set()
    for _ in range(100):
        if streams.reply(stream_id)["stream"]["finish"]:
            break
        await asyncio.sleep(0.01)
    final = streams.reply(stream_id)["stream"]
    assert final["finish"] is True and "all quiet" in final["content"]
    await streams.aclose()


async def test_streams_failures_and_unknown_ids_finish_with_a_clear_text() -> None:
    streams = WeComStreams(RENDERER)

    async def missing(reply: Any) -> None:
        raise IncidentNotFound("INC-7")

    async def broken(reply: Any) -> None:
        raise RuntimeError("boom")

    assert "INC-7" in (await streams.start(missing))["stream"]["content"]
    failed = (await streams.start(broken))["stream"]
    assert failed["finish"] is True and "Something went wrong" in failed["content"] and "boom" not in failed["content"]
    gone = streams.reply("nope")["stream"]
    assert gone["finish"] is True and "no longer available" in gone["content"]
    await streams.aclose()
