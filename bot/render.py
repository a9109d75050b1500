"""The jinja2 environment: every user-visible text is a template under templates/<channel>/."""

from __future__ import annotations

import html
import re
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "templates"
TELEGRAM_TEXT_LIMIT = 4096
WECOM_MARKDOWN_LIMIT = 4096  # bytes (UTF-8) of a WeCom robot markdown message
WECOM_TEXT_LIMIT = 2048  # bytes of a text message
_TAG = re.compile(r"<[^>]+>")
_MARKDOWN_MARKUP = re.compile(r"</?font[^>]*>|\*\*|`")
_MENTION = re.compile(r"<@([^>]+)>")
# WeCom markdown has no escape character: a dynamic value's markup characters become look-alikes, so a
# label or model text can neither format the message nor @mention anyone (<@userid>) nor add links.
_MARKDOWN_LOOKALIKES = str.maketrans({
    "<": "＜", ">": "＞", "`": "'", "*": "＊", "[": "［", "]": "］", "#": "＃",
})


def markdown_value(value: Any) -> Any:
    """The finalize hook of WeCom templates: every ``{{ value }}`` is neutralised (template text is not)."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value.translate(_MARKDOWN_LOOKALIKES)
    return value


def telegram_visible_length(markup: str) -> int:
    """Length of an HTML-mode message as Telegram counts it: after tags and entities are parsed."""
    return len(html.unescape(_TAG.sub("", markup)))


def html_to_text(markup: str) -> str:
    return html.unescape(_TAG.sub("", markup))


def markdown_to_text(markdown: str) -> str:
    """WeCom markdown as plain text: markup removed, mentions kept as @userid."""
    return _MENTION.sub(r"@\1", _MARKDOWN_MARKUP.sub("", markdown))


def clip_bytes(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` UTF-8 bytes (never inside a character), ending in "…" when cut."""
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text
    return data[: limit - 3].decode("utf-8", errors="ignore").rstrip() + "…"


class Renderer:
    def __init__(self, tz: ZoneInfo, templates_dir: Path = TEMPLATES_DIR) -> None:
        self.tz = tz
        self.env = Environment(
            loader=FileSystemLoader(str(templates_dir)),
            undefined=StrictUndefined,
            autoescape=select_autoescape(enabled_extensions=("html.j2",), default_for_string=False, default=False),
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters["hm"] = self._hm
        self.env.filters["when"] = self._when
        # WeCom markdown (templates/wecom/*): no HTML escaping, every inserted value neutralised.
        self.markdown_env = self.env.overlay(autoescape=False, finalize=markdown_value)

    def render(self, name: str, **context: Any) -> str:
        env = self.markdown_env if name.startswith("wecom/") else self.env
        return env.get_template(name).render(**context).strip()

    def prompt(self, name: str, **context: Any) -> str:
        """An AI prompt (templates/ai/<name>.j2; plain text, no escaping): the services.ports.Prompts port."""
        return self.render(f"ai/{name}.j2", **context)

    def strings(self, channel: str) -> Any:
        """Named strings (button labels…) exported by templates/<channel>/strings.j2."""
        return self.env.get_template(f"{channel}/strings.j2").module

    def _local(self, value: datetime | str | None) -> datetime | None:
        if value is None or value == "":
            return None
        moment = datetime.fromisoformat(value) if isinstance(value, str) else value
        try:
            return moment.astimezone(self.tz)
        except OverflowError:  # at the edge of the calendar: show it in UTC rather than fail the message
            return moment

    def _hm(self, value: datetime | str | None) -> str:
        local = self._local(value)
        return "" if local is None else local.strftime("%H:%M")

    def _when(self, value: datetime | str | None) -> str:
        local = self._local(value)
        return "" if local is None else local.strftime("%Y-%m-%d %H:%M")
