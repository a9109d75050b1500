"""Text that services write for people: rule explanations, safety reasons, execution notes (issue 11).

Services stay free of templates and languages. They write such text in English through ``phrase`` (or mark a
constant with ``N_``), so the sentence is a known message id with named values:

    phrase("the command is longer than %(limit)s characters", limit=MAX_COMMAND_LENGTH)

The result is plain English text, stored and served by the API as it is. Showing it in a chat's language is
the presentation's job: the ``phrase`` filter of bot/render.py recognises the text as one of these message ids
(catalogs ``templates/i18n/<lang>/services-*.po``), translates it and puts the values back, themselves
translated when they are phrases too (``"hard rule: %(rule)s"``). Text that is not a phrase (a model's answer,
kubectl's error) passes through unchanged.

Rules for a message id (tests/unit/test_i18n.py checks them): values only as ``%(name)s``; at least one
character that is not a placeholder or a space, so a phrase is recognisable; a phrase never ends in a value
that itself ends in the next literal text (recognition is by the first match).
"""

from __future__ import annotations

from typing import Any

__all__ = ["N_", "phrase"]


def phrase(msgid: str, /, **values: Any) -> str:
    """``msgid`` in English with its values filled in (``%(name)s``)."""
    return msgid % values if values else msgid


def N_(msgid: str) -> str:  # noqa: N802 — the gettext convention for "marked, translated later"
    """A constant marked as a phrase (a table of reasons): the text itself."""
    return msgid
