"""The jinja2 environments: every user-visible text is a template under templates/<channel>/, in English, its
phrases marked for translation (``{% trans %}…{% endtrans %}``, ``_("…")``); templates/i18n/<lang>/*.po hold
the zh-CN and zh-TW catalogs (gettext, read with Babel and compiled in memory at start-up). One environment per
language and channel kind (HTML for Telegram, markdown for WeCom); ``render(name, lang=…)`` picks it.

``strict=True`` (tests) makes a phrase without a translation an error instead of an English fallback.
"""

from __future__ import annotations

import copy
import gettext
import html
import io
import re
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from babel.messages.catalog import Catalog
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from services.gitops import md_code, md_inline, md_quote
from services.languages import DEFAULT_LANGUAGE, LANGUAGES

TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "templates"
TELEGRAM_TEXT_LIMIT = 4096
WECOM_MARKDOWN_LIMIT = 4096  # bytes (UTF-8) of a WeCom robot markdown message
WECOM_TEXT_LIMIT = 2048  # bytes of a text message
# A date and time in the configured zone, as each language writes it.
WHEN_FORMATS = {"en": "{y}-{mm}-{dd} {hm}", "zh-CN": "{y}年{m}月{d}日 {hm}", "zh-TW": "{y}年{m}月{d}日 {hm}"}
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


class MissingTranslation(LookupError):
    """A phrase has no translation in a catalog (raised only by a strict Renderer)."""


class _Strict(gettext.GNUTranslations):
    """A catalog that refuses to fall back to English: the completeness tests render with it."""

    def __init__(self, fp: io.BytesIO, lang: str) -> None:
        super().__init__(fp)
        self.lang = lang

    def gettext(self, message: str) -> str:
        if message not in self._catalog or not self._catalog[message]:  # type: ignore[attr-defined]
            raise MissingTranslation(f"{self.lang}: no translation for {message!r}")
        return super().gettext(message)

    def ngettext(self, msgid1: str, msgid2: str, n: int) -> str:
        if (msgid1, 0) not in self._catalog:  # type: ignore[attr-defined]
            raise MissingTranslation(f"{self.lang}: no translation for {msgid1!r} / {msgid2!r}")
        return super().ngettext(msgid1, msgid2, n)


def read_catalog(lang: str, templates_dir: Path = TEMPLATES_DIR, *, pattern: str = "*.po") -> Catalog:
    """Every ``templates/i18n/<lang>/*.po`` (or those matching ``pattern``) merged into one catalog. A phrase translated differently in two
    files is an error (ValueError naming both), so the files can be split by area without drifting apart."""
    merged = Catalog(locale=lang.replace("-", "_"), fuzzy=False)
    origin: dict[Any, str] = {}
    for path in sorted((templates_dir / "i18n" / lang).glob(pattern)):
        with path.open("rb") as fp:
            catalog = read_po(fp, locale=lang.replace("-", "_"))
        for message in catalog:
            if not message.id or not message.string or (isinstance(message.string, tuple) and not all(message.string)):
                continue
            key = message.id
            existing = merged.get(key)
            if existing is not None and existing.string != message.string:
                raise ValueError(f"{lang}: {key!r} is translated differently in {origin[key]} and {path.name}")
            merged[key] = message
            origin[key] = path.name
    return merged


_PLACEHOLDER = re.compile(r"%\((\w+)\)s|%%")
SERVICE_CATALOGS = "services-*.po"


class PhraseBook:
    """Service text (services/phrases.py) in one language: the text is recognised as one of the catalog's
    message ids, translated, and its values put back (translated too when they are phrases themselves).
    Message ids without values are looked up; the others are tried longest literal text first. Text that is
    no phrase comes back unchanged (model answers, tool output)."""

    MAX_DEPTH = 8

    def __init__(self, messages: dict[str, str]) -> None:
        self._exact: dict[str, str] = {}
        patterns: list[tuple[int, re.Pattern[str], str]] = []
        for msgid, msgstr in messages.items():
            if "%(" not in msgid:
                self._exact[msgid.replace("%%", "%")] = msgstr.replace("%%", "%")
                continue
            lazy, literal = self.pattern(msgid)
            greedy = self.pattern(msgid, greedy=True)[0] if len(_PLACEHOLDER.findall(msgid)) > 1 else None
            patterns.append((literal, lazy, greedy, msgstr))
        patterns.sort(key=lambda item: -item[0])
        self._patterns = [(lazy, greedy, msgstr) for _, lazy, greedy, msgstr in patterns]
        self._cache: dict[str, str | None] = {}

    @staticmethod
    def pattern(msgid: str, *, greedy: bool = False) -> tuple[re.Pattern[str], int]:
        """The regular expression recognising ``msgid``'s English text, and how many literal characters it
        has (more literal text = more specific, tried first). A value repeated is the same text twice.
        Values are matched shortest first, or longest first when ``greedy``."""
        parts, seen, position, literal = [], set(), 0, 0
        for match in _PLACEHOLDER.finditer(msgid):
            text = msgid[position:match.start()]
            parts.append(re.escape(text))
            literal += len(text.replace(" ", ""))
            if match.group(0) == "%%":
                parts.append("%")
                literal += 1
            elif match.group(1) in seen:
                parts.append(f"(?P={match.group(1)})")
            else:
                seen.add(match.group(1))
                parts.append(f"(?P<{match.group(1)}>.+)" if greedy else f"(?P<{match.group(1)}>.+?)")
            position = match.end()
        text = msgid[position:]
        parts.append(re.escape(text))
        literal += len(text.replace(" ", ""))
        return re.compile("".join(parts), re.S), literal

    def translate(self, text: Any, *, strict: bool = False) -> Any:
        """``text`` in this book's language. ``strict``: text that is no phrase raises MissingTranslation."""
        if not isinstance(text, str) or not text:
            return text
        found = self._find(text, 0)
        if found is None:
            if strict:
                raise MissingTranslation(f"not a known phrase: {text!r}")
            return text
        return found

    def _find(self, text: str, depth: int) -> str | None:
        if depth == 0 and text in self._cache:
            return self._cache[text]
        found = self._exact.get(text)
        if found is None and depth < self.MAX_DEPTH:
            for lazy, greedy, msgstr in self._patterns:
                match = lazy.fullmatch(text)
                if match is None:
                    continue
                # Values next to each other ("+ %(label)s %(points)s") can split two ways: keep the split
                # that recognises more of them as phrases ("several resources" + "10", not "several" + …).
                values = self._values(match, depth)
                longest = greedy.fullmatch(text) if greedy is not None else None
                if longest is not None and longest.groupdict() != match.groupdict():
                    other = self._values(longest, depth)
                    if sum(v is not None for v in other.values()) > sum(v is not None for v in values.values()):
                        match, values = longest, other
                found = msgstr % {name: values[name] or value for name, value in match.groupdict().items()}
                break
        if depth == 0 and len(self._cache) < 10_000:
            self._cache[text] = found
        return found

    def _values(self, match: re.Match[str], depth: int) -> dict[str, str | None]:
        return {name: self._find(value, depth + 1) for name, value in match.groupdict().items()}


def phrase_book(lang: str, templates_dir: Path = TEMPLATES_DIR) -> PhraseBook:
    """The service phrases of ``lang`` (templates/i18n/<lang>/services-*.po); English is the identity."""
    if lang == DEFAULT_LANGUAGE:
        return PhraseBook({})
    catalog = read_catalog(lang, templates_dir, pattern=SERVICE_CATALOGS)
    return PhraseBook({m.id: m.string for m in catalog if isinstance(m.id, str) and m.id and m.string})


def compiled(catalog: Catalog, lang: str, *, strict: bool) -> gettext.GNUTranslations:
    buffer = io.BytesIO()
    write_mo(buffer, catalog)
    buffer.seek(0)
    return _Strict(buffer, lang) if strict else gettext.GNUTranslations(buffer)


class Renderer:
    def __init__(
        self, tz: ZoneInfo, templates_dir: Path = TEMPLATES_DIR, *, default_lang: str = DEFAULT_LANGUAGE,
        strict: bool = False,
    ) -> None:
        """``default_lang``: the language of messages to chats without their own (/lang)."""
        self.tz = tz
        self.default_lang = default_lang
        self._templates_dir, self._strict = templates_dir, strict
        self._envs: dict[tuple[str, bool], Environment] = {}
        self._books: dict[str, PhraseBook] = {}
        self.env = self._environment(DEFAULT_LANGUAGE, markdown=False)  # English HTML (tests and tools)

    def _environment(self, lang: str, *, markdown: bool) -> Environment:
        """The environment of one language and channel kind, built once. Each has its own globals (the
        installed gettext), so they are separate environments, not overlays (which share globals)."""
        key = (lang, markdown)
        if key not in self._envs:
            env = Environment(
                loader=FileSystemLoader(str(self._templates_dir)),
                undefined=StrictUndefined,
                autoescape=False if markdown else select_autoescape(
                    enabled_extensions=("html.j2",), default_for_string=False, default=False),
                # WeCom markdown (templates/wecom/*): no HTML escaping, every inserted value neutralised.
                finalize=markdown_value if markdown else None,
                trim_blocks=True,
                lstrip_blocks=True,
                extensions=["jinja2.ext.i18n"],
            )
            if lang == DEFAULT_LANGUAGE:
                env.install_null_translations(newstyle=True)  # type: ignore[attr-defined]
            else:
                translations = compiled(read_catalog(lang, self._templates_dir), lang, strict=self._strict)
                env.install_gettext_translations(translations, newstyle=True)  # type: ignore[attr-defined]
            env.filters["phrase"] = self.phrases(lang).translate
            # inert Markdown of a value (templates/gitops/review.md.j2: text translated there, escaped after)
            env.filters["md_inline"], env.filters["md_quote"], env.filters["md_code"] = md_inline, md_quote, md_code
            env.filters["hm"] = self._hm
            env.filters["when"] = self._when_in(lang)
            env.globals["lang"] = lang
            self._envs[key] = env
        return self._envs[key]

    def phrases(self, lang: str) -> PhraseBook:
        """The service phrases in ``lang`` (the ``phrase`` filter of templates), built once."""
        if lang not in self._books:
            self._books[lang] = phrase_book(lang if lang in LANGUAGES else DEFAULT_LANGUAGE, self._templates_dir)
        return self._books[lang]

    def bound(self, lang: str) -> Renderer:
        """This renderer speaking ``lang`` by default (one chat's answers); the environments are shared."""
        other = copy.copy(self)
        other.default_lang = lang if lang in LANGUAGES else self.default_lang
        return other

    def render(self, name: str, *, lang: str | None = None, **context: Any) -> str:
        """``name`` rendered in ``lang`` (default: the configured language); an unknown language is English."""
        lang = lang or self.default_lang
        if lang not in LANGUAGES:
            lang = DEFAULT_LANGUAGE
        env = self._environment(lang, markdown=name.startswith("wecom/"))
        return env.get_template(name).render(**context).strip()

    def prompt(self, name: str, **context: Any) -> str:
        """An AI prompt (templates/ai/<name>.j2; plain text, never translated: the model is told which
        language to answer in): the services.ports.Prompts port."""
        return self._environment(DEFAULT_LANGUAGE, markdown=False).get_template(f"ai/{name}.j2").render(
            **context).strip()

    def strings(self, channel: str, *, lang: str | None = None) -> Any:
        """Named strings (button labels…) exported by templates/<channel>/strings.j2, in ``lang``."""
        lang = lang if lang in LANGUAGES else self.default_lang
        return self._environment(lang, markdown=False).get_template(f"{channel}/strings.j2").module

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

    def _when_in(self, lang: str) -> Any:
        pattern = WHEN_FORMATS.get(lang, WHEN_FORMATS[DEFAULT_LANGUAGE])

        def when(value: datetime | str | None) -> str:
            local = self._local(value)
            if local is None:
                return ""
            return pattern.format(y=local.year, m=local.month, d=local.day, hm=local.strftime("%H:%M"),
                                  mm=f"{local.month:02d}", dd=f"{local.day:02d}")
        return when
