"""/help by role (services/chat.py help_sections, ChatService.help_context) and what each channel's help,
whoami, chatid, start and first-run templates then say."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from bot.render import Renderer, html_to_text
from services.actions import Actor
from services.chat import ChatService, help_sections
from services.notify import Notifier, Wakeup
from services.ports import ChatTarget
from services.roles import Role, parse_roles

CARD_CHAT = ChatTarget("telegram", "-100")
OTHER_GROUP = ChatTarget("telegram", "-200")
ROLES = "tg:1=viewer,tg:2=operator,tg:3=approver,tg:4=admin,tg:5=approver@prod|route:payments,wecom:lisi=approver"


@pytest.fixture
def renderer() -> Renderer:
    return Renderer(ZoneInfo("UTC"))


@pytest.fixture
def chat() -> ChatService:
    notifier = Notifier([CARD_CHAT, ChatTarget("wecom", "robot-a")], Wakeup())
    # help, whoami and chatid read only the role map and the card chats: no database, no queries
    return ChatService(None, None, notifier, parse_roles(ROLES), lambda: datetime(2026, 1, 1, tzinfo=UTC))  # type: ignore[arg-type]


def actor(ident: str, chat: ChatTarget = OTHER_GROUP) -> Actor:
    return Actor(id=ident, name=ident, target=chat)


@pytest.mark.parametrize(
    ("role", "may_read", "expected"),
    [
        (Role.NONE, False, ["everyone"]),
        (Role.NONE, True, ["everyone", "viewer"]),  # a member of a card chat reads without a role
        (Role.VIEWER, False, ["everyone", "viewer"]),
        (Role.OPERATOR, False, ["everyone", "viewer", "operator"]),
        (Role.APPROVER, False, ["everyone", "viewer", "operator", "approver"]),
        (Role.ADMIN, True, ["everyone", "viewer", "operator", "approver"]),
    ],
)
def test_help_sections_follow_the_role(role: Role, may_read: bool, expected: list[str]) -> None:
    assert help_sections(role, may_read=may_read) == expected


def test_help_context_per_caller(chat: ChatService) -> None:
    stranger = chat.help_context(actor("tg:999"))
    assert stranger == {"sections": ["everyone"], "role": "none", "namespaces": [], "routes": [], "more": True}
    assert chat.help_context(actor("tg:999", CARD_CHAT))["sections"] == ["everyone", "viewer"]
    assert chat.help_context(actor("tg:2"))["sections"] == ["everyone", "viewer", "operator"]
    approver = chat.help_context(actor("tg:3"))
    assert approver["sections"][-1] == "approver" and approver["more"] is False
    assert chat.help_context(actor("tg:4"))["more"] is False  # admin: nothing more to unlock
    scoped = chat.help_context(actor("tg:5"))
    assert (scoped["role"], scoped["namespaces"], scoped["routes"]) == ("approver", ["prod"], ["payments"])
    assert chat.help_context(actor("wecom:lisi", ChatTarget("wecom", "wrkXYZ")))["sections"][-1] == "approver"


def test_identity_spells_the_id_as_roles_wants_it(chat: ChatService) -> None:
    me = chat.identity(actor("tg:5", CARD_CHAT))
    assert me["actor_id"] == "tg:5" and me["role"] == "approver" and me["card_chat"] is True
    assert chat.identity(actor("tg:anonymous"))["anonymous"] is True
    assert chat.identity(actor("wecom:zhangsan"))["role"] == "none"


def test_chat_info_says_whether_cards_come_here(chat: ChatService) -> None:
    assert chat.chat_info(actor("tg:1", CARD_CHAT), private=False) == {
        "chat_id": "-100", "thread_id": None, "private": False, "card_chat": True, "robots": 1,
    }
    assert chat.chat_info(actor("tg:1"), private=False, thread_id=7)["card_chat"] is False


def _help(renderer: Renderer, channel: str, context: dict[str, Any]) -> str:
    if channel == "telegram":
        return html_to_text(renderer.render("telegram/help.html.j2", **context))
    return renderer.render("wecom/help.md.j2", **context)


@pytest.mark.parametrize("channel", ["telegram", "wecom"])
def test_help_shows_only_what_the_role_allows(renderer: Renderer, chat: ChatService, channel: str) -> None:
    slash = "/" if channel == "telegram" else ""
    chat_target = CARD_CHAT if channel == "telegram" else ChatTarget("wecom", "wrkXYZ")
    viewer = _help(renderer, channel, chat.help_context(actor("tg:1", chat_target)))
    approver = _help(renderer, channel, chat.help_context(actor("tg:3", chat_target)))
    stranger = _help(renderer, channel, chat.help_context(actor("tg:999", OTHER_GROUP)))
    assert f"\n{slash}approve INC-12" in approver and f"{slash}reject INC-12" in approver
    assert "approve INC-12" not in viewer and "reject INC-12" not in viewer and "Approve" not in viewer
    assert f"\n{slash}incidents" in viewer and "silence " not in viewer.replace("silences", "")
    assert "higher role" in viewer and "higher role" not in approver
    assert f"{slash}whoami" in stranger and "incidents" not in stranger and "higher role" in stranger
    for text in (viewer, approver, stranger):
        assert f"{slash}whoami" in text and f"{slash}help" in text


def test_help_without_context_is_the_whole_list(renderer: Renderer) -> None:
    text = _help(renderer, "telegram", {})
    for command in ("/incidents", "/run", "/approve INC-12", "/whoami", "/chatid", "/start"):
        assert command in text
    assert "Your role" not in text and "higher role" not in text


def test_whoami_for_someone_without_a_role_says_how_to_get_one(renderer: Renderer, chat: ChatService) -> None:
    text = html_to_text(renderer.render("telegram/whoami.html.j2", **chat.identity(actor("tg:999"))))
    assert "tg:999" in text and "none" in text and "tg:999=viewer" in text and "ALERTPILOT_ROLES" in text
    wecom = renderer.render("wecom/whoami.md.j2", **chat.identity(actor("wecom:zhangsan")))
    assert "`wecom:zhangsan=viewer`" in wecom
    known = html_to_text(renderer.render("telegram/whoami.html.j2", **chat.identity(actor("tg:5"))))
    assert "approver" in known and "prod" in known and "payments" in known and "=viewer" not in known


def test_chatid_names_the_setting_and_the_topic(renderer: Renderer, chat: ChatService) -> None:
    group = html_to_text(renderer.render("telegram/chatid.html.j2",
                                         **chat.chat_info(actor("tg:1"), private=False, thread_id=42)))
    assert "-200" in group and "42" in group and "ALERTPILOT_TELEGRAM_CHAT_ID=-200" in group
    card = html_to_text(renderer.render("telegram/chatid.html.j2", **chat.chat_info(actor("tg:1", CARD_CHAT),
                                                                                   private=False)))
    assert "receives incident cards" in card and "ALERTPILOT_TELEGRAM_CHAT_ID" not in card and "topic" not in card
    wecom = renderer.render("wecom/chatid.md.j2",
                            **chat.chat_info(actor("wecom:lisi", ChatTarget("wecom", "wrkXYZ")), private=False))
    assert "`wrkXYZ`" in wecom and "ALERTPILOT_WECOM_WEBHOOK_KEYS" in wecom and "1 WeCom robot." in wecom


def test_start_in_private_explains_alertpilot(renderer: Renderer, chat: ChatService) -> None:
    me = actor("tg:999", ChatTarget("telegram", "999"))
    text = html_to_text(renderer.render("telegram/start.html.j2", **chat.identity(me), chat_id="999", private=True))
    assert "incident cards" in text and "approv" in text and "Nothing destructive runs without approval" in text
    assert "tg:999" in text and "README.md" in text and "tg:999=viewer" in text


def test_first_run_names_the_chat_id_setting(renderer: Renderer) -> None:
    text = html_to_text(renderer.render("telegram/first_run.html.j2", chat_id="-200"))
    assert "ALERTPILOT_TELEGRAM_CHAT_ID=-200" in text and "/whoami" in text and "README.md" in text
