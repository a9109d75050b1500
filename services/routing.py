"""Routing: which chats an incident's card and thread go to. A source with its own chats sends its incidents
there; otherwise the first route whose label matchers all hold for the incident's labels
(``ALERTPILOT_ROUTES``: ``payments: team=payments -> tg:-100123, wecom:<key>; env=staging -> tg:-100999``,
a route named ``route<n>`` unless it has a name); otherwise
the default card chats. Pure: the composition root parses the chats, IncidentService stores the choice on
the incident (so it survives restarts and replicas), the Notifier reads it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from services.ports import ChatTarget


@dataclass(frozen=True)
class Route:
    matchers: dict[str, str]
    chats: tuple[ChatTarget, ...]
    name: str = ""  # what roles name in @route:<name> (a source with its own chats is a route of its name)


def route_for(routes: Sequence[Route], labels: dict[str, str]) -> Route | None:
    """The first route that matches ``labels`` (None: the default card chats)."""
    for route in routes:
        if all(labels.get(name) == value for name, value in route.matchers.items()):
            return route
    return None


def stored_chats(chats: Sequence[ChatTarget]) -> list[str] | None:
    """How an incident keeps its chats (None: the default card chats)."""
    return [f"{c.channel}:{c.chat_id}" for c in chats] or None


def chats_of(stored: Sequence[str] | None) -> tuple[ChatTarget, ...]:
    return tuple(ChatTarget(*item.split(":", 1)) for item in stored or () if ":" in item)
