"""The HTTP tests' app."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.harness import AppUnderTest, app_settings, start_app


@pytest.fixture
async def plain_app(tmp_path: Path) -> AsyncIterator[AppUnderTest]:
    """The app without Telegram (console channel), as `make run` starts it on a fresh machine."""
    running = await start_app(app_settings(tmp_path))
    try:
        yield running
    finally:
        await running.stop()
