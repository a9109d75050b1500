"""End-to-end fixtures: the fake OpenAI-compatible model, and the app started against it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.botapi import FakeBotAPI
from tests.fakes.openai import FakeOpenAI
from tests.harness import AppUnderTest, app_settings, start_app

SLA = 2.0


@pytest.fixture
async def model() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI(model="fake-model") as fake:
        yield fake


async def start(tmp_path: Path, bot_api: FakeBotAPI, model: FakeOpenAI, **overrides: Any) -> AppUnderTest:
    settings = app_settings(
        tmp_path, bot_api=bot_api.base_url, ai_base_url=model.base_url, ai_model="fake-model",
        ai_api_key="sk-test", decision_sla_seconds=SLA, ai_timeout_seconds=10, **overrides,
    )
    running = await start_app(settings)
    await bot_api.wait_for("getUpdates")
    return running
