"""nurture.i18n: the shipped catalogue, locales, name order and the unsubscribe line."""

from __future__ import annotations

import json
from importlib import resources

import pytest

from nurture.i18n import (
    FOOTER_KEYS,
    known_languages,
    locale_for,
    person_name,
    unsubscribe_html,
    unsubscribe_problem,
)


def test_the_catalogue_ships_english_and_japanese_with_every_text() -> None:
    raw = json.loads(resources.files("nurture").joinpath("data/messages.json").read_text(encoding="utf-8"))
    assert known_languages() == ("en", "ja") == tuple(sorted(raw))
    for lang in known_languages():
        loc = locale_for(lang)
        assert tuple(loc.footer) == FOOTER_KEYS, lang
        assert unsubscribe_problem(loc.footer["unsubscribe"]) is None, lang
    assert locale_for("ja").name_order == "family-given" and locale_for("en").name_order == "given-family"
    assert locale_for(None).tag == "en"
    assert "ワンクリック" in locale_for("ja").footer["unsubscribe"]


def test_a_region_uses_its_languages_texts_and_keeps_its_tag() -> None:
    loc = locale_for("ja-JP")
    assert loc.tag == "ja-JP" and loc.footer == locale_for("ja").footer and loc.name_order == "family-given"


def test_overrides_replace_single_texts() -> None:
    loc = locale_for("en", footer={"why": "Because you asked."})
    assert loc.footer["why"] == "Because you asked."
    assert loc.footer["unsubscribe"] == locale_for("en").footer["unsubscribe"]


def test_another_language_needs_every_text() -> None:
    with pytest.raises(ValueError, match=r'"de" is not a language nurture has texts for \(known: en, ja\)'):
        locale_for("de", footer={"why": "Weil ..."})
    loc = locale_for("de", footer={"why": "Weil ...", "unsubscribe": "[Abmelden]"})
    assert loc.name_order == "given-family" and loc.footer["unsubscribe"] == "[Abmelden]"


def test_person_name_order() -> None:
    assert person_name("Yui", "Sato", order="given-family") == "Yui Sato"
    assert person_name("結衣", "佐藤", order="family-given") == "佐藤 結衣"
    assert person_name("", "佐藤", order="family-given") == "佐藤"
    assert person_name("", "", order="family-given") == ""


def test_the_unsubscribe_line_links_its_bracketed_words_and_escapes_the_rest() -> None:
    html = unsubscribe_html("A & B? [Stop <now>] here.", "https://t.example/u/x?a=1&b=2")
    assert str(html) == 'A &amp; B? <a href="https://t.example/u/x?a=1&amp;b=2">Stop &lt;now&gt;</a> here.'
    assert str(unsubscribe_html("Unsubscribe", "https://t.example/u/x")) == \
        '<a href="https://t.example/u/x">Unsubscribe</a>'  # never without the link
    assert unsubscribe_problem("no link") and "(found 2)" in (unsubscribe_problem("[a] [b]") or "")
    assert unsubscribe_problem("配信停止は[こちら]") is None
