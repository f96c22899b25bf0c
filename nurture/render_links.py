"""Links in rendered mail: find every ``<a href>``, name it, and turn it into a slot that
each message fills with its own tracked URL.

Kept apart from :mod:`nurture.render` because it is plain string work (regular expressions
over the serialized HTML, no parser) that the per-step cache builds once.
"""

from __future__ import annotations

import html as htmlmod
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

#: ``<a ...>`` opening tags; attribute values may contain ``>`` when quoted.
ANCHOR_RE = re.compile(r"""<a\b(?:[^>"']|"[^"]*"|'[^']*')*>""", re.IGNORECASE)
_ATTR_RE = re.compile(r"""([^\s=/>"']+)(?:\s*=\s*("[^"]*"|'[^']*'|[^\s"'>]+))?""")
#: Bare http(s) URLs in a plain-text template.
TEXT_URL_RE = re.compile(r"""https?://[^\s<>"'()\[\]]+[^\s<>"'()\[\].,;:!?]""")

LINK_SLOT = "nrtlk{}q"
HONEYPOT_SLOT = "nrthpq"
PIXEL_SLOT = "nrtpxq"
PREHEADER_SLOT = "nrtphq"
#: After the preheader: zero-width joiners and no-break spaces, so the inbox preview ends
#: with the preheader instead of running on into the mail's first words (the brand line).
_PREVIEW_FILLER = "&#847;&zwnj;&nbsp;" * 60
HONEYPOT_NAME = "honeypot"


@dataclass(frozen=True, slots=True)
class Anchor:
    """One ``<a href>`` of a rendered template, as written (HTML-escaped, maybe with markers)."""

    href: str
    name: str | None  # from data-link; None means "derive from the URL"


def slot_anchors(html: str, *, keep: str) -> tuple[str, tuple[Anchor, ...]]:
    """Replace each anchor's href with ``nrtlk<k>q`` and drop ``data-link`` attributes.

    Anchors whose href equals ``keep`` (the unsubscribe URL or its marker) keep their href,
    as do literal non-web hrefs (``mailto:``, ``tel:``, ``#top``).
    """
    anchors: list[Anchor] = []

    def one(m: re.Match[str]) -> str:
        attrs = _attrs(m.group(0))
        href = next((v for k, v in attrs if k == "href"), None)
        name = next((v for k, v in attrs if k == "data-link"), None)
        if href is None:
            return _tag(attrs, drop="data-link")
        literal = href.strip()
        if literal == keep or (not literal.lower().startswith(("http:", "https:")) and "nrtmk" not in literal):
            return _tag(attrs, drop="data-link")
        anchors.append(Anchor(href=literal, name=htmlmod.unescape(name).strip() if name else None))
        slot = LINK_SLOT.format(len(anchors) - 1)
        return _tag([(k, slot if k == "href" else v) for k, v in attrs], drop="data-link")

    return ANCHOR_RE.sub(one, html), tuple(anchors)


def is_web_url(url: str) -> bool:
    return url.lower().startswith(("http://", "https://"))


def slug_for(url: str) -> str:
    """A link name from a URL: ``https://acme.example/payments/pricing`` → ``payments-pricing``."""
    parts = urlsplit(url)
    path = re.sub(r"\.(html?|php|aspx?)$", "", parts.path.lower())
    slug = re.sub(r"[^a-z0-9]+", "-", path).strip("-")
    if not slug:
        slug = re.sub(r"[^a-z0-9]+", "-", (parts.hostname or "link").lower()).strip("-")
    return slug[-48:].lstrip("-") or "link"


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}/"


def honeypot_html() -> str:
    """An invisible trap link: no text, hidden from people and screen readers, never in the text part."""
    return (
        '<div style="display:none;max-height:0;overflow:hidden;mso-hide:all" aria-hidden="true">'
        f'<a href="{HONEYPOT_SLOT}" tabindex="-1" aria-hidden="true" '
        'style="display:none;font-size:0;line-height:0;color:transparent"></a></div>'
    )


def preheader_html(text: str) -> str:
    """The inbox preview text (``text`` already HTML-escaped), hidden in the mail itself; ""
    for none. Mail clients take the list preview from the first text of the HTML body."""
    if not text:
        return ""
    return ('<div style="display:none;font-size:1px;line-height:1px;max-height:0;max-width:0;'
            f'opacity:0;overflow:hidden;mso-hide:all">{text}{_PREVIEW_FILLER}</div>')


def pixel_html() -> str:
    return (f'<img src="{PIXEL_SLOT}" width="1" height="1" alt="" '
            'style="display:block;width:1px;height:1px;border:0">')


_BODY_OPEN = re.compile(r"<body\b[^>]*>", re.IGNORECASE)
_BODY_CLOSE = re.compile(r"</body\s*>", re.IGNORECASE)


def add_traps(html: str, *, pixel: bool) -> str:
    """Put the preheader slot and the honeypot right after ``<body>`` (the preheader must be
    the body's first text) and the open pixel before ``</body>``."""
    m = _BODY_OPEN.search(html)
    top = PREHEADER_SLOT + honeypot_html()
    html = html[: m.end()] + top + html[m.end():] if m else top + html
    if pixel:
        closes = list(_BODY_CLOSE.finditer(html))
        if closes:
            at = closes[-1].start()
            html = html[:at] + pixel_html() + html[at:]
        else:
            html += pixel_html()
    return html


def _attrs(tag: str) -> list[tuple[str, str | None]]:
    inner = tag[2:-1]
    out: list[tuple[str, str | None]] = []
    for m in _ATTR_RE.finditer(inner):
        value = m.group(2)
        if value is not None and value[:1] in "\"'":
            value = value[1:-1]
        out.append((m.group(1).lower(), value))
    return out


def _tag(attrs: list[tuple[str, str | None]], *, drop: str) -> str:
    parts = ["<a"]
    for k, v in attrs:
        if k == drop:
            continue
        if v is None:
            parts.append(f" {k}")
        else:
            parts.append(f' {k}="{v.replace(chr(34), "&quot;")}"')
    return "".join(parts) + ">"
