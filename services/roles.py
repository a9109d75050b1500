"""Who may do what: the role map (ALERTPILOT_ROLES) and the permission each action needs."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import IntEnum


class Role(IntEnum):
    NONE = 0
    VIEWER = 1
    OPERATOR = 2
    APPROVER = 3
    ADMIN = 4


_SEPARATORS = re.compile(r"[,;\s]+")
_AROUND_EQUALS = re.compile(r"\s*=\s*")
ROLE_NAMES = {r.name.lower(): r for r in Role if r is not Role.NONE}
KNOWN_PLATFORMS = ("tg", "wecom")


@dataclass(frozen=True)
class RoleMap:
    """Maps actor ids such as ``tg:111`` or ``wecom:alice`` to a role."""

    roles: dict[str, Role] = field(default_factory=dict)

    def role_of(self, actor_id: str) -> Role:
        return self.roles.get(actor_id, Role.NONE)

    def allows(self, actor_id: str, needed: Role) -> bool:
        return self.role_of(actor_id) >= needed


def parse_roles(text: str) -> RoleMap:
    """Parse ``tg:111=approver,tg:222=operator`` (commas, semicolons or whitespace between entries)."""
    roles: dict[str, Role] = {}
    for raw in _SEPARATORS.split(_AROUND_EQUALS.sub("=", text)):
        entry = raw.strip()
        if not entry:
            continue
        actor, sep, name = entry.partition("=")
        platform_part, colon_part, ident_part = actor.strip().partition(":")
        actor, name = f"{platform_part.lower()}{colon_part}{ident_part}", name.strip().lower()
        if not sep or not actor or not name:
            raise ValueError(f"entry {entry!r} is not of the form platform:id=role")
        platform, colon, ident = actor.partition(":")
        if not colon or platform not in KNOWN_PLATFORMS or not ident:
            raise ValueError(f"entry {entry!r}: actor must be tg:<user id> or wecom:<userid>")
        if platform == "tg" and not ident.lstrip("-").isdigit():
            raise ValueError(f"entry {entry!r}: a Telegram user id is a number")
        if name not in ROLE_NAMES:
            raise ValueError(f"entry {entry!r}: role must be one of {', '.join(ROLE_NAMES)}")
        roles[actor] = ROLE_NAMES[name]
    return RoleMap(roles)
