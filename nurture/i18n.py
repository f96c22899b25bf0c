"""Localised mail: the message catalogue (``nurture/data/messages.json``, package data) that
gives a campaign ``locale:`` its footer words and the order of a contact's names.

A catalogue entry per language: ``name_order`` (``given-family``: "Yui Sato";
``family-given``: "佐藤 結衣") and ``footer`` texts, which are one-line Jinja templates with
the subject's variables. In ``unsubscribe`` the words in ``[brackets]`` become the
unsubscribe link. A locale is a BCP 47 tag (``ja``, ``en-GB``): ``<html lang>`` gets the tag
as written, the catalogue is chosen by its language (the part before the first ``-``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from types import MappingProxyType
from typing import Literal

from markupsafe import Markup, escape

__all__ = ["DEFAULT_LOCALE", "FOOTER_KEYS", "LOCALE_TAG", "Locale", "known_languages", "locale_for",
           "person_name", "unsubscribe_html", "unsubscribe_problem"]

DEFAULT_LOCALE = "en"
#: The footer texts a catalogue gives and a campaign's ``footer:`` may override.
FOOTER_KEYS = ("why", "unsubscribe")
#: A BCP 47 language tag, simplified: a 2-3 letter language, then subtags (``ja``, ``en-GB``).
LOCALE_TAG = re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9]{1,8})*$")
_LINK = re.compile(r"\[([^\[\]]+)\]")

NameOrder = Literal["given-family", "family-given"]


@dataclass(frozen=True, slots=True)
class Locale:
    """One language of the catalogue, as a campaign uses it."""

    tag: str
    name_order: NameOrder
    footer: Mapping[str, str]


@cache
def _catalogue() -> Mapping[str, Locale]:
    raw = json.loads(resources.files("nurture").joinpath("data/messages.json").read_text(encoding="utf-8"))
    out: dict[str, Locale] = {}
    for lang, entry in raw.items():
        order: NameOrder = "family-given" if entry.get("name_order") == "family-given" else "given-family"
        out[lang] = Locale(tag=lang, name_order=order, footer=MappingProxyType(dict(entry["footer"])))
    return MappingProxyType(out)


def known_languages() -> tuple[str, ...]:
    """The languages the catalogue ships (``en``, ``ja``)."""
    return tuple(sorted(_catalogue()))


def locale_for(tag: str | None, *, footer: Mapping[str, str] | None = None) -> Locale:
    """The catalogue entry for ``tag`` (default ``en``) with ``footer`` overrides applied.
    A language the catalogue lacks needs every footer text in ``footer``, else ``ValueError``."""
    tag = tag or DEFAULT_LOCALE
    own = {k: v for k, v in (footer or {}).items() if v}
    base = _catalogue().get(tag.split("-", 1)[0].lower())
    if base is None:
        if all(k in own for k in FOOTER_KEYS):  # a language of one's own: given-family names
            return Locale(tag=tag, name_order="given-family", footer=MappingProxyType(own))
        raise ValueError(f'"{tag}" is not a language nurture has texts for (known: {", ".join(known_languages())}); '
                         f"give footer: {' and '.join(FOOTER_KEYS)} in that language")
    return Locale(tag=tag, name_order=base.name_order, footer=MappingProxyType({**base.footer, **own}))


def person_name(first: str, last: str, *, order: NameOrder) -> str:
    """``first last`` or, for ``family-given``, ``last first``; the known parts only, joined by
    a space. The honorific (様, Mr, ...) is the template's business."""
    parts = (last, first) if order == "family-given" else (first, last)
    return " ".join(p for p in parts if p)


def unsubscribe_problem(text: str) -> str | None:
    """Why ``text`` cannot be the unsubscribe line (None when it can): it needs exactly one
    ``[words]`` to become the link."""
    n = len(_LINK.findall(text))
    if n == 1:
        return None
    return ("must mark the link text with [brackets] once, e.g. "
            '"Not relevant any more? [Unsubscribe] with one click."' + (f" (found {n})" if n else ""))


def unsubscribe_html(text: str, url: str) -> Markup:
    """The unsubscribe line as HTML: ``text`` escaped, its first ``[words]`` a link to ``url``
    (the whole line when it marks none: the link must never go missing)."""
    m = _LINK.search(text)
    if m is None:
        return Markup(f'<a href="{escape(url)}">{escape(text)}</a>')
    return Markup(f'{escape(text[:m.start()])}<a href="{escape(url)}">{escape(m.group(1))}</a>'
                  f"{escape(text[m.end():])}")
