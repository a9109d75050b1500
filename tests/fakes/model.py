"""A scripted ChatModel (the services.ports port) for service tests: no HTTP, fails loudly when its script
runs out. End-to-end tests use the fake OpenAI-compatible server in tests/fakes/openai.py instead."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from services.errors import ModelError
from services.ports import ModelReply

VALID = {
    "root_cause": "the api deployment runs out of memory after the 14:02 rollout",
    "action": "kubectl -n prod rollout undo deployment/api",
    "risk": "medium",
    "confidence": 0.82,
    "reasoning": "OOMKilled restarts began right after the rollout",
}


@dataclass
class Call:
    messages: list[dict[str, str]]
    json_schema: dict[str, Any] | None


class FakeModel:
    """``script`` items: a dict (answered as JSON), a str (answered as raw text), a ModelError (raised),
    or a callable returning one of those. ``delay`` seconds pass before each answer, and a ``gate`` holds
    every answer until the test opens it."""

    def __init__(
        self, *script: Any, name: str = "fake-model", delay: float = 0.0, default: Any = None,
        gate: asyncio.Event | None = None,
    ) -> None:
        self.name = name
        self.gate = gate  # when given, every answer waits until the test sets it
        self.script = list(script)
        self.delay = delay
        self.default = default
        self.calls: list[Call] = []

    async def complete(
        self, messages: list[dict[str, str]], *, json_schema: dict[str, Any] | None = None, max_tokens: int = 800
    ) -> ModelReply:
        self.calls.append(Call(messages, json_schema))
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.gate is not None:
            await self.gate.wait()
        if self.script:
            item = self.script.pop(0)
        elif self.default is not None:
            item = self.default
        else:
            raise AssertionError(f"FakeModel: unexpected call #{len(self.calls)}")
        if isinstance(item, Callable):  # type: ignore[arg-type]
            item = item()
        if isinstance(item, ModelError):
            raise item
        text = json.dumps(item) if isinstance(item, dict) else str(item)
        return ModelReply(
            text=text, model=self.name, response_format="json_schema" if json_schema else "text",
            prompt_tokens=100, completion_tokens=30, finish_reason="stop",
        )
