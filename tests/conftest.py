from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.fakes.botapi import FakeBotAPI
from tests.harness import BOT_TOKEN, AppUnderTest, app_settings, start_app


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Tests never read the developer's ALERTPILOT_* variables or .env file."""
    for key in list(os.environ):
        if key.startswith("ALERTPILOT_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
async def bot_api() -> AsyncIterator[FakeBotAPI]:
    async with FakeBotAPI(token=BOT_TOKEN, bot_username="alertpilot_bot") as fake:
        yield fake


@pytest.fixture
async def app(tmp_path: Path, bot_api: FakeBotAPI) -> AsyncIterator[AppUnderTest]:
    running = await start_app(app_settings(tmp_path, bot_api=bot_api.base_url))
    await bot_api.wait_for("getUpdates")
    try:
        yield running
    finally:
        await running.stop()
