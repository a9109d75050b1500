"""Who may do what: the role map (ALERTPILOT_ROLES) and the permission each action needs."""

from __future__ import annotations

import fnmatch
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
_NAMESPACE_GLOB = re.compile(r"[a-z0-9*?][a-z0-9*?.-]{0,62}")


ALL_NAMESPACES = "*"  # what a command across every namespace (kubectl -A) asks for


@dataclass(frozen=True)
class RoleMap:
    """Maps actor ids such as ``tg:111`` or ``wecom:alice`` to a role, optionally limited to namespaces
    (``tg:111=approver@prod|staging``; globs allowed). An unlimited role covers every namespace."""

    roles: dict[str, Role] = field(default_factory=dict)
    scopes: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def role_of(self, actor_id: str) -> Role:
        return self.roles.get(actor_id, Role.NONE)

    def allows(self, actor_id: str, needed: Role, *, namespace: str | None = None) -> bool:
        """Whether the actor holds ``needed`` (or more), for ``namespace`` when the action has one. A
        namespace-limited role never covers ALL_NAMESPACES."""
        if self.role_of(actor_id) < needed:
            return False
        scope = self.scopes.get(actor_id)
        if not scope or namespace is None:
            return True
        if namespace == ALL_NAMESPACES:
            return False
        return any(fnmatch.fnmatchcase(namespace.lower(), pattern) for pattern in scope)

    def holders(self, needed: Role, *, namespace: str | None = None) -> list[str]:
        """Everyone who holds ``needed`` (or more) for ``namespace``: ``tg:111``, ``wecom:alice``, in map order."""
        return [actor for actor in self.roles if self.allows(actor, needed, namespace=namespace)]

    def scope_of(self, actor_id: str) -> tuple[str, ...]:
        return self.scopes.get(actor_id, ())


def parse_roles(text: str) -> RoleMap:
    """Parse ``tg:111=approver,tg:222=operator@dev|staging`` (commas, semicolons or whitespace between
    entries; ``@`` limits the role to namespaces, ``|`` between them)."""
    roles: dict[str, Role] = {}
    scopes: dict[str, tuple[str, ...]] = {}
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
        name, at, namespaces = name.partition("@")
        if name not in ROLE_NAMES:
            raise ValueError(f"entry {entry!r}: role must be one of {', '.join(ROLE_NAMES)}")
        scope = tuple(n.strip().lower() for n in namespaces.split("|") if n.strip())
        if at and (not scope or any(not _NAMESPACE_GLOB.fullmatch(n) for n in scope)):
            raise ValueError(f"entry {entry!r}: after @ come namespaces separated by |, e.g. approver@prod|staging")
        roles[actor] = ROLE_NAMES[name]
        scopes.pop(actor, None)
        if scope:
            scopes[actor] = scope
    return RoleMap(roles, scopes)
