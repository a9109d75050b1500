"""Incident routing: ALERTPILOT_ROUTES parsing, the first matching route, a source's own chats."""

from __future__ import annotations

import json

import pytest

from bot.chat.wecom import robot_id
from bot.settings import SettingsError, load_settings
from services.ports import ChatTarget
from services.roles import ALL_NAMESPACES, Role, parse_roles
from services.routing import Route, chats_of, route_for, stored_chats
from services.sources.credentials import InvalidSources, load_sources

KEY = "0123abcd-4567-89ef-0123-456789abcdef"
PAYMENTS = ChatTarget("telegram", "-100123")
STAGING = ChatTarget("telegram", "-100999")
ROBOT = ChatTarget("wecom", robot_id(KEY))


@pytest.fixture
def configured(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    monkeypatch.setenv("ALERTPILOT_TELEGRAM_TOKEN", "123:ABC")
    monkeypatch.setenv("ALERTPILOT_WECOM_WEBHOOK_KEYS", KEY)
    return monkeypatch


def test_routes_parse_in_order_with_both_arrows(configured: pytest.MonkeyPatch) -> None:
    configured.setenv("ALERTPILOT_ROUTES", f"payments: team=payments env=prod -> tg:-100123, wecom:{KEY}; env=staging → tg:-100999")
    routes = load_settings().route_list
    assert routes == [Route({"team": "payments", "env": "prod"}, (PAYMENTS, ROBOT), "payments"),
                      Route({"env": "staging"}, (STAGING,), "route2")]
    assert KEY not in repr(routes)  # robots are known by their digest


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("team=payments", "route 1: expected 'label=value … -> tg:<chat id>, wecom:<robot key>'"),
        ("-> tg:-100123", "route 1: expected"),
        ("team -> tg:-100123", "route 1: 'team' is not label=value"),
        ("team=a -> tg:-1; team=b ->", "route 2: no chat after '->'"),
        ("team=a -> slack:#ops", "route 1: not a chat: 'slack:#ops'"),
        ("team=a -> wecom:not-a-configured-key", "must be one of ALERTPILOT_WECOM_WEBHOOK_KEYS"),
        ("a: team=a -> tg:-1; a: team=b -> tg:-2", "route 2: the name 'a' is used twice"),
    ],
)
def test_bad_routes_name_the_route(configured: pytest.MonkeyPatch, value: str, problem: str) -> None:
    configured.setenv("ALERTPILOT_ROUTES", value)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert "ALERTPILOT_ROUTES" in str(caught.value) and problem in str(caught.value)


def test_a_telegram_route_needs_telegram(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALERTPILOT_ROUTES", "team=a -> tg:-100123")
    with pytest.raises(SettingsError, match="needs Telegram"):
        load_settings()


def test_the_first_matching_route_wins() -> None:
    routes = [Route({"team": "payments", "env": "prod"}, (PAYMENTS,), "a"), Route({"env": "staging"}, (STAGING,), "b"),
              Route({"team": "payments"}, (ROBOT,), "c")]
    assert route_for(routes, {"team": "payments", "env": "prod", "alertname": "X"}) is routes[0]
    assert route_for(routes, {"team": "payments", "env": "staging"}) is routes[1]
    assert route_for(routes, {"team": "payments"}) is routes[2]
    assert route_for(routes, {"team": "search"}) is None  # the default card chats
    assert route_for([], {"team": "payments"}) is None


def test_roles_limited_to_routes() -> None:
    roles = parse_roles("tg:1=approver@route:payments,tg:2=approver@prod|route:payments,tg:3=approver@prod,tg:4=approver")
    # an incident of route payments: the route's approvers, whatever the namespace
    assert [a for a in roles.roles if roles.allows(a, Role.APPROVER, namespace="prod", route="payments")] == \
        ["tg:1", "tg:2", "tg:3", "tg:4"]
    assert roles.holders(Role.APPROVER, namespace="staging", route="payments") == ["tg:1", "tg:2", "tg:4"]
    # another route, or none: a route-limited role does not cover it; a namespace-limited one by its namespace
    assert roles.holders(Role.APPROVER, namespace="prod", route="search") == ["tg:2", "tg:3", "tg:4"]
    assert roles.holders(Role.APPROVER, namespace=None, route="search") == ["tg:3", "tg:4"]
    assert roles.holders(Role.APPROVER, namespace="prod") == ["tg:2", "tg:3", "tg:4"]
    assert roles.holders(Role.APPROVER) == ["tg:1", "tg:2", "tg:3", "tg:4"]  # no incident: no limit applies
    assert roles.holders(Role.APPROVER, namespace=ALL_NAMESPACES, route="payments") == ["tg:1", "tg:2", "tg:4"]
    with pytest.raises(ValueError, match="route:<name>"):
        parse_roles("tg:1=approver@route:")


def test_stored_chats_round_trip() -> None:
    assert stored_chats(()) is None
    stored = stored_chats((PAYMENTS, ROBOT))
    assert stored == ["telegram:-100123", f"wecom:{robot_id(KEY)}"]
    assert chats_of(stored) == (PAYMENTS, ROBOT) and chats_of(None) == ()


def test_a_source_names_its_chats(configured: pytest.MonkeyPatch) -> None:
    settings = load_settings()
    [source] = load_sources(json.dumps([{"name": "ci", "token": "ci-token-0123456789", "chats": ["tg:-100123", f"wecom:{KEY}"]}]),
                            None, chat=settings.chat_target)
    assert source.chats == (PAYMENTS, ROBOT)
    with pytest.raises(InvalidSources, match=r"sources\[0\] \(ci\)\.chats: not a chat"):
        load_sources(json.dumps([{"name": "ci", "token": "ci-token-0123456789", "chats": ["#ops"]}]), None,
                     chat=settings.chat_target)
    with pytest.raises(InvalidSources, match="chats are not available here"):
        load_sources(json.dumps([{"name": "ci", "token": "ci-token-0123456789", "chats": ["tg:-1"]}]), None)
