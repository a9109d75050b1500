"""WeCom AI-bot replies: the incident as a ``button_interaction`` template card (its text from
templates/wecom/strings.j2), markdown replies, and the ``update_template_card`` answer to a click.

``task_id`` names the incident and the card's version (``INC-12-p1a2b3c4-3f9a``) plus a random part, since
WeCom wants every task id new; a click's task id leads back to the incident (``INC-12-…``).
"""

from __future__ import annotations

import re
import secrets
from typing import Any

from bot.render import Renderer, markdown_to_text
from services.knowledge import flat_clip as clip
from services.ports import CardAction, IncidentCard, card_version

TITLE_MAX = 36
DESC_MAX = 44
TEXT_MAX = 112
KEYNAME_MAX = 10
VALUE_MAX = 30
_TASK = re.compile(r"^INC-(\d{1,12})(?:-|$)")
BUTTON_STYLES = {"approve": 1, "reject": 2, "details": 3, "silence": 3}


def task_id(card: IncidentCard) -> str:
    return f"{card.ref}-{card_version(card)}-{secrets.token_hex(3)}"


def incident_of_task(task: str) -> int | None:
    found = _TASK.match(task or "")
    return int(found.group(1)) if found else None


def template_card(renderer: Renderer, card: IncidentCard, *, note: str = "", details: bool = False) -> dict[str, Any]:
    """The card with Approve and Reject while a decision is open, Details always, Silence while it fires."""
    s = renderer.strings("wecom")
    keys = ["state", "blast", "source"] + (["service", "alerts"] if details else [])
    values = {
        "state": s.card_state(card), "blast": s.card_blast(card), "source": s.card_source(card),
        "service": f"{card.service or '—'} / {card.namespace or '—'}", "alerts": s.card_alerts(card),
    }
    actions = [a.value for a in card.actions if a in (CardAction.APPROVE, CardAction.REJECT)] + ["details"]
    actions += [CardAction.SILENCE.value] if CardAction.SILENCE in card.actions else []
    text = note or str(s.card_text(card))
    if details and card.summary:
        text = f"{card.summary} · {text}"
    return {
        "card_type": "button_interaction",
        "source": {"desc": "alertpilot"},
        "main_title": {"title": clip(str(s.card_title(card)), TITLE_MAX), "desc": clip(str(s.card_desc(card)), DESC_MAX)},
        "sub_title_text": clip(text, TEXT_MAX),
        "horizontal_content_list": [
            {"keyname": clip(str(s.keynames[k]), KEYNAME_MAX), "value": clip(str(values[k]), VALUE_MAX)} for k in keys
        ],
        "task_id": task_id(card),
        "button_list": [
            {"text": s.buttons[a], "style": BUTTON_STYLES[a], "key": a} for a in actions
        ],
    }


def outcome_note(renderer: Renderer, result: dict[str, Any]) -> str:
    """A decision's outcome (``result_context``) as the card's one-line note."""
    return markdown_to_text(renderer.render("wecom/action_result.md.j2", **result))


def card_reply(renderer: Renderer, card: IncidentCard, *, note: str = "") -> dict[str, Any]:
    return {"msgtype": "template_card", "template_card": template_card(renderer, card, note=note)}


def update_reply(renderer: Renderer, card: IncidentCard, *, note: str = "", details: bool = False) -> dict[str, Any]:
    return {"response_type": "update_template_card", "template_card": template_card(renderer, card, note=note,
                                                                                      details=details)}


def markdown_reply(renderer: Renderer, template: str, **context: Any) -> dict[str, Any]:
    return {"msgtype": "markdown", "markdown": {"content": renderer.render(f"wecom/{template}.md.j2", **context)}}
