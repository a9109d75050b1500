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
_ROUTE_SCOPE = re.compile(r"route:[a-z0-9][a-z0-9_-]{0,39}")
ROUTE_PREFIX = "route:"


ALL_NAMESPACES = "*"  # what a command across every namespace (kubectl -A) asks for


@dataclass(frozen=True)
class RoleMap:
    """Maps actor ids such as ``tg:111`` or ``wecom:alice`` to a role, optionally limited to namespaces
    (``tg:111=approver@prod|staging``; globs allowed) and/or to the incidents of routes
    (``@route:payments``, services/routing.py). An unlimited role covers every namespace and route."""

    roles: dict[str, Role] = field(default_factory=dict)
    scopes: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def role_of(self, actor_id: str) -> Role:
        return self.roles.get(actor_id, Role.NONE)

    def allows(self, actor_id: str, needed: Role, *, namespace: str | None = None, route: str | None = None) -> bool:
        """Whether the actor holds ``needed`` (or more), for ``namespace`` and the incident's ``route`` when
        the action has them. A limited role covers an action when one of its namespaces matches, or the
        incident is of one of its routes; a namespace-limited role never covers ALL_NAMESPACES, and a
        route-limited one never an incident of another route (or of none)."""
        if self.role_of(actor_id) < needed:
            return False
        scope = self.scopes.get(actor_id)
        if not scope or (namespace is None and route is None):
            return True
        routes = {s.removeprefix(ROUTE_PREFIX) for s in scope if s.startswith(ROUTE_PREFIX)}
        if route is not None and route in routes:
            return True
        if namespace is None or namespace == ALL_NAMESPACES:
            return not routes and namespace is None
        return any(fnmatch.fnmatchcase(namespace.lower(), p) for p in scope if not p.startswith(ROUTE_PREFIX))

    def holders(self, needed: Role, *, namespace: str | None = None, route: str | None = None) -> list[str]:
        """Everyone who holds ``needed`` (or more) for ``namespace`` and ``route``: ``tg:111``, ``wecom:alice``,
        in map order."""
        return [actor for actor in self.roles if self.allows(actor, needed, namespace=namespace, route=route)]

    def scope_of(self, actor_id: str) -> tuple[str, ...]:
        return self.scopes.get(actor_id, ())


def parse_roles(text: str) -> RoleMap:
    """Parse ``tg:111=approver,tg:222=operator@dev|staging`` (commas, semicolons or whitespace between
    entries; ``@`` limits the role to namespaces or ``route:<name>``s, ``|`` between them)."""
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
        if at and (not scope or any(not (_NAMESPACE_GLOB.fullmatch(n) or _ROUTE_SCOPE.fullmatch(n)) for n in scope)):
            raise ValueError(f"entry {entry!r}: after @ come namespaces or route:<name>s separated by |, "
                             "e.g. approver@prod|staging or approver@route:payments")
        roles[actor] = ROLE_NAMES[name]
        scopes.pop(actor, None)
        if scope:
            scopes[actor] = scope
    return RoleMap(roles, scopes)
