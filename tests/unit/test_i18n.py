"""Every template in every language (issue 11): rendered with a strict renderer (a phrase without a translation
is an error, never an English fallback), and the rendered Chinese checked for English prose the catalogs do not
cover (text written into a template without marking it for translation). The catalogs themselves: every phrase
the templates mark is translated in zh-CN and zh-TW, nothing is translated to itself by accident, and no
phrase is translated two ways."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import markupsafe
import pytest
from babel.messages.extract import extract_from_dir

from bot.render import (
    SERVICE_CATALOGS,
    TEMPLATES_DIR,
    MissingTranslation,
    PhraseBook,
    Renderer,
    markdown_value,
    read_catalog,
)
from services.gitops import review_context
from services.languages import LANGUAGES, ChatLanguages, LanguageChange, parse_language
from tests.unit.test_gitops import incident, proposal
from tests.unit.test_render import PLAUSIBLE, TEMPLATES

CHINESE = ("zh-CN", "zh-TW")
STRICT = Renderer(ZoneInfo("Asia/Taipei"), strict=True)
CHANNELS = (("telegram", "html"), ("wecom", "md"))

# Templates whose text is not marked for translation yet (a test below fails for a template still listed once
# it is translated, so the list can only shrink). Every template is translated: keep it empty.
NOT_YET_TRANSLATED: frozenset[str] = frozenset()

# Words that stay as they are in Chinese text: product and tool names, units, identifiers.
KEEP = {
    "alertpilot", "kubectl", "promql", "prometheus", "alertmanager", "grafana", "wecom", "telegram", "gitops",
    "mttr", "mtta", "p50", "inc", "json", "api", "url", "readme", "ai", "ok", "id", "dry", "run", "http", "https",
    "english", "default", "lang", "kubeconfig", "kubernetes", "pod", "webhook", "key", "connect", "zh-cn", "zh-tw", "checkout",
    # what people type, in English whatever the chat's language: role names (ALERTPILOT_ROLES), /report's
    # periods, and WeCom's commands (written without a slash)
    "viewer", "operator", "approver", "admin", "today", "yesterday",
    "status", "incidents", "details", "summary", "ask", "report", "postmortem", "silence", "silences", "unsilence",
    "approve", "reject", "whoami", "chatid", "help",
}
_WORD = re.compile(r"[A-Za-z][A-Za-z'-]{2,}")
_CODE = re.compile(r"\b[A-Z][A-Z0-9_]{2,}\b|INC-\S*|GET /api\S*|<code>.*?</code>|<pre>.*?</pre>|`[^`]*`|https?://\S+|tg://\S+|/[a-z_]+|<[^>]+>|&[a-z]+;", re.S)


def _values(context: Any) -> list[str]:
    """Every string a context carries (it is data, shown as is, never translated)."""
    if isinstance(context, str):
        return [context]
    if isinstance(context, dict):
        return [v for value in context.values() for v in _values(value)] + [str(k) for k in context]
    if isinstance(context, list | tuple | set | frozenset):
        return [v for value in context for v in _values(value)]
    if hasattr(context, "__dataclass_fields__"):
        return [v for name in context.__dataclass_fields__ for v in _values(getattr(context, name))]
    return [str(context)] if context is not None else []


def english_left(text: str, context: dict[str, Any], lang: str | None = None) -> list[str]:
    """English words in a rendered Chinese message that are neither data nor kept names. Data is looked for
    as the channel shows it too: HTML-escaped (Telegram) and neutralised (WeCom), and, with ``lang``, as the
    ``phrase`` filter shows service text in it (whether that comes out whole is the phrase corpora's test)."""
    values = [v for v in _values(context) if len(v) >= 3]
    if lang is not None:
        values += [STRICT.phrases(lang).translate(v) for v in values]
    shown = {str(f(v)) for v in values for f in (str, markupsafe.escape, markdown_value)}
    parts = re.split(r"(<[^>]+>)", text)  # data is removed outside tags only: a key like "code" is not a tag
    for index in range(0, len(parts), 2):
        for value in sorted(shown, key=len, reverse=True):
            parts[index] = parts[index].replace(value, " ")
    text = _CODE.sub(" ", "".join(parts))
    return [w for w in _WORD.findall(text) if w.lower() not in KEEP]


CASES = [
    pytest.param(name, channel, ext, lang, id=f"{name}-{channel}-{lang}",
                 marks=[pytest.mark.xfail(strict=True, raises=(MissingTranslation, AssertionError),
                                          reason="not translated yet")] if name in NOT_YET_TRANSLATED else [])
    for name in TEMPLATES for channel, ext in CHANNELS for lang in CHINESE
]


@pytest.mark.parametrize(("name", "channel", "ext", "lang"), CASES)
def test_every_template_speaks_every_language(name: str, channel: str, ext: str, lang: str) -> None:
    for context in PLAUSIBLE[name]:
        text = STRICT.render(f"{channel}/{name}.{ext}.j2", lang=lang, **context)
        left = english_left(text, context, lang)
        assert not left, f"{channel}/{name} in {lang} still has English: {left[:8]}\n{text}"


def _marked_phrases() -> set[Any]:
    phrases: set[Any] = set()
    method_map = [("**/*.j2", "jinja2")]
    options = {"**/*.j2": {"extensions": "jinja2.ext.i18n", "trimmed": "false", "newstyle_gettext": "true"}}
    for _filename, _lineno, message, _comments, _context in extract_from_dir(
        str(TEMPLATES_DIR), method_map, options_map=options
    ):
        phrases.add(message if isinstance(message, str) else message[0])
    return phrases


@pytest.mark.parametrize("lang", CHINESE)
def test_every_marked_phrase_is_translated(lang: str) -> None:
    catalog = read_catalog(lang)
    translated = {m.id if isinstance(m.id, str) else m.id[0] for m in catalog if m.id}
    missing = _marked_phrases() - translated
    assert not missing, f"{lang}: translate these in templates/i18n/{lang}/*.po: {sorted(missing)[:20]}"


@pytest.mark.parametrize("lang", CHINESE)
def test_no_phrase_is_translated_to_itself(lang: str) -> None:
    same = [m.id for m in read_catalog(lang) if m.id and m.string == m.id and _WORD.search(str(m.id))]
    assert not same, f"{lang}: these are still English: {same[:20]}"


def test_a_phrase_translated_two_ways_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "i18n" / "zh-TW"
    folder.mkdir(parents=True)
    header = 'msgid ""\nmsgstr ""\n"Content-Type: text/plain; charset=UTF-8\\n"\n\n'
    (folder / "a.po").write_text(header + 'msgid "Approve"\nmsgstr "核准"\n', encoding="utf-8")
    (folder / "b.po").write_text(header + 'msgid "Approve"\nmsgstr "批准"\n', encoding="utf-8")
    with pytest.raises(ValueError, match="translated differently in a.po and b.po"):
        read_catalog("zh-TW", tmp_path)


def test_a_missing_translation_is_an_error_only_when_strict(tmp_path: Path) -> None:
    (tmp_path / "telegram").mkdir()
    (tmp_path / "telegram" / "x.html.j2").write_text('{{ _("Not in any catalog") }}', encoding="utf-8")
    assert Renderer(ZoneInfo("UTC"), tmp_path).render("telegram/x.html.j2", lang="zh-TW") == "Not in any catalog"
    with pytest.raises(MissingTranslation, match="zh-TW: no translation for 'Not in any catalog'"):
        Renderer(ZoneInfo("UTC"), tmp_path, strict=True).render("telegram/x.html.j2", lang="zh-TW")


def test_dates_are_written_the_way_each_language_writes_them(tmp_path: Path) -> None:
    (tmp_path / "telegram").mkdir()
    (tmp_path / "telegram" / "x.html.j2").write_text("{{ at|when }} · {{ at|hm }}", encoding="utf-8")
    renderer = Renderer(ZoneInfo("Asia/Taipei"), tmp_path)
    at = "2026-11-24T00:30:00+00:00"
    assert renderer.render("telegram/x.html.j2", lang="en", at=at) == "2026-11-24 08:30 · 08:30"
    assert renderer.render("telegram/x.html.j2", lang="zh-TW", at=at) == "2026年11月24日 08:30 · 08:30"
    assert renderer.render("telegram/x.html.j2", lang="zh-CN", at=at) == "2026年11月24日 08:30 · 08:30"


def test_an_unknown_language_renders_english_and_bound_renderers_share_the_default() -> None:
    context = LanguageChange("shown", "en", "en").context()
    english = STRICT.render("telegram/lang.html.j2", **context)
    assert STRICT.render("telegram/lang.html.j2", lang="xx", **context) == english
    assert STRICT.bound("zh-TW").render("telegram/lang.html.j2", **context) == STRICT.render(
        "telegram/lang.html.j2", lang="zh-TW", **context)
    assert STRICT.bound("nonsense").default_lang == STRICT.default_lang


@pytest.mark.parametrize(
    ("text", "lang"),
    [("en", "en"), ("English", "en"), ("zh-CN", "zh-CN"), ("zh_cn", "zh-CN"), ("zh-Hans", "zh-CN"), ("cn", "zh-CN"),
     ("zh-TW", "zh-TW"), ("ZH_TW", "zh-TW"), ("zh-Hant", "zh-TW"), ("繁體中文", "zh-TW"), ("fr", None), ("", None)],
)
def test_parse_language(text: str, lang: str | None) -> None:
    assert parse_language(text) == lang
    assert lang is None or lang in LANGUAGES


def test_chat_languages_refuses_an_unknown_default() -> None:
    with pytest.raises(ValueError, match="unknown language"):
        ChatLanguages(None, None, default="fr")  # type: ignore[arg-type]


@pytest.mark.parametrize("lang", CHINESE)
@pytest.mark.parametrize("channel", ["telegram", "wecom"])
def test_named_strings_speak_every_language(channel: str, lang: str) -> None:
    """Button labels, the command menu, usage lines, tiers and the WeCom card's key names (strings.j2)."""
    module = STRICT.strings(channel, lang=lang)
    tables = {name: getattr(module, name) for name in dir(module)
              if not name.startswith("_") and isinstance(getattr(module, name), dict)}
    assert "buttons" in tables
    for name, table in tables.items():
        if name == "usage":
            continue  # command syntax, shown in code spans (its placeholders are translated)
        for key, value in table.items():
            left = english_left(str(value), {"key": key})
            assert not left, f"{channel}/strings.j2 {name}[{key!r}] in {lang}: {value!r}"
    english = Renderer(ZoneInfo("Asia/Taipei")).strings(channel)
    assert set(tables["buttons"]) == set(english.buttons)  # the same buttons, other words


@pytest.mark.parametrize("lang", CHINESE)
def test_the_wecom_stream_states_and_the_gitops_review_speak_every_language(lang: str) -> None:
    for state in ("working", "gone", "failed"):
        text = STRICT.render("wecom/stream.md.j2", lang=lang, state=state)
        assert not english_left(text, {}), text
    context = review_context(ref="INC-12", incident=incident(), proposal=proposal(), approve_hint="/approve INC-12")
    review = STRICT.render("gitops/review.md.j2", lang=lang, **context)
    left = english_left(review, {**context, "spec": proposal()["spec"]}, lang)
    assert not left, f"gitops/review in {lang}: {left[:10]}\n{review}"


# --- service phrases (services/phrases.py, the ``phrase`` filter) -------------------------------------------

SERVICES_DIR = TEMPLATES_DIR.parent / "services"


def service_phrases() -> dict[str, str]:
    """Every message id the services mark (``phrase("…")``, ``N_("…")``) → where (file:line)."""
    found: dict[str, str] = {}
    for filename, lineno, message, _comments, _context in extract_from_dir(
        str(SERVICES_DIR), [("**.py", "python")], keywords={"phrase": None, "N_": None}
    ):
        if isinstance(message, str) and message:
            found.setdefault(message, f"services/{filename}:{lineno}")
    return found


def test_services_mark_phrases() -> None:
    assert len(service_phrases()) > 10  # the extraction itself works


@pytest.mark.parametrize("lang", CHINESE)
def test_every_service_phrase_is_translated_with_the_same_values(lang: str) -> None:
    catalog = read_catalog(lang, pattern=SERVICE_CATALOGS)
    translations = {m.id: m.string for m in catalog if isinstance(m.id, str) and m.id}
    marked = service_phrases()
    missing = {msgid: where for msgid, where in marked.items() if msgid not in translations}
    assert not missing, f"{lang}: translate in templates/i18n/{lang}/services-*.po: {list(missing.items())[:20]}"
    names = re.compile(r"%\((\w+)\)s")
    for msgid, msgstr in translations.items():
        assert set(names.findall(msgid)) == set(names.findall(msgstr)), f"{lang}: values differ: {msgid!r} → {msgstr!r}"
    unused = set(translations) - set(marked)
    assert not unused, f"{lang}: no service marks these any more: {sorted(unused)[:20]}"


def test_service_phrases_are_recognisable() -> None:
    for msgid, where in service_phrases().items():
        assert not re.search(r"%(?!\(\w+\)s|%)", msgid), f"{where}: only %(name)s values in a phrase: {msgid!r}"
        _, literal = PhraseBook.pattern(msgid)
        assert literal > 0, f"{where}: a phrase needs text besides its values: {msgid!r}"


def test_the_phrase_book_recognises_translates_and_nests() -> None:
    book = PhraseBook({
        "hard rule: %(rule)s": "硬性规则：%(rule)s",
        "the command is longer than %(limit)s characters": "命令超过 %(limit)s 个字符",
        "several resources": "多个资源",
        "+ %(label)s %(points)s": "+ %(label)s %(points)s",
        "%(a)s and %(a)s again": "%(a)s 再次 %(a)s",
    })
    assert book.translate("the command is longer than 4000 characters") == "命令超过 4000 个字符"
    assert book.translate("hard rule: the command is longer than 9 characters") == "硬性规则：命令超过 9 个字符"
    assert book.translate("+ several resources 10") == "+ 多个资源 10"
    assert book.translate("+ --force 15") == "+ --force 15"  # a value that is no phrase stays as it is
    assert book.translate("x and x again") == "x 再次 x"
    assert book.translate("x and y again") == "x and y again"  # a repeated value must be the same text
    assert book.translate("api is crashing (model text)") == "api is crashing (model text)"
    assert book.translate(None) is None and book.translate("") == ""
    with pytest.raises(MissingTranslation):
        book.translate("api is crashing", strict=True)


def test_the_phrase_filter_speaks_the_chat_language(tmp_path: Path) -> None:
    (tmp_path / "telegram").mkdir()
    (tmp_path / "telegram" / "t.html.j2").write_text("{{ reason|phrase }}")
    for lang, text in (("zh-CN", "太长"), ("zh-TW", "太長")):
        (tmp_path / "i18n" / lang).mkdir(parents=True)
        (tmp_path / "i18n" / lang / "services-x.po").write_text(
            f'msgid ""\nmsgstr ""\n"Content-Type: text/plain; charset=UTF-8\\n"\n\n'
            f'msgid "too long: %(n)s"\nmsgstr "{text}：%(n)s"\n', encoding="utf-8")
    renderer = Renderer(ZoneInfo("UTC"), tmp_path)
    assert renderer.render("telegram/t.html.j2", lang="zh-TW", reason="too long: <5>") == "太長：&lt;5&gt;"
    assert renderer.render("telegram/t.html.j2", lang="zh-CN", reason="too long: 5") == "太长：5"
    assert renderer.render("telegram/t.html.j2", lang="en", reason="too long: 5") == "too long: 5"
