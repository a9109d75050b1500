"""Payload mutations for the parser tests: ``set_at(("alerts", 0, "status"), 7)(body)``."""

from __future__ import annotations

from typing import Any


def set_at(path: tuple[Any, ...], value: Any) -> Any:
    def mutate(body: dict[str, Any]) -> Any:
        target: Any = body
        for step in path[:-1]:
            target = target[step]
        target[path[-1]] = value
        return body

    return mutate


def del_at(path: tuple[Any, ...]) -> Any:
    def mutate(body: dict[str, Any]) -> Any:
        target: Any = body
        for step in path[:-1]:
            target = target[step]
        del target[path[-1]]
        return body

    return mutate
