"""Text from contacts made safe for the places that interpret it: terminals and Slack.

Contact fields come from CSV imports and forms. A terminal runs the escape sequences in them
(an OSC sequence retitles the window, others move the cursor or rewrite what was printed);
Slack turns ``<!channel>`` into a mention and ``<https://evil|Your invoice>`` into a
disguised link. :func:`strip_controls` and :func:`slack_escape` neutralise them.
"""

from __future__ import annotations

import re
import unicodedata

#: Bidirectional overrides and isolates: they reorder what a terminal shows (CVE-2021-42574).
_BIDI = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c")
_MENTION = re.compile(r"@(?=(channel|here|everyone)\b)", re.IGNORECASE)


def strip_controls(text: str) -> str:
    """``text`` without control characters (C0, DEL, C1: escape sequences, bells, carriage
    returns) or bidirectional overrides; tabs and line breaks become spaces."""
    if text.isprintable():
        return text
    out = []
    for ch in text:
        if ch in "\t\n\r":
            out.append(" ")
        elif ch in _BIDI or unicodedata.category(ch) == "Cc":
            continue
        else:
            out.append(ch)
    return "".join(out)


def slack_escape(text: str) -> str:
    """``text`` as literal Slack text: ``&``, ``<`` and ``>`` escaped as Slack's message
    formatting asks (so no ``<!channel>``, ``<@U123>`` or ``<url|label>`` survives), bare
    ``@channel``/``@here``/``@everyone`` broken with a word joiner, control characters gone."""
    text = strip_controls(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _MENTION.sub("@\u2060", text)
