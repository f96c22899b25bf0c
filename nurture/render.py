"""Rendering: campaign step + contact → a complete MIME message with tracked links.

Pipeline for one message: Jinja (sandboxed, StrictUndefined) renders the subject and the
HTML; every ``<a href>`` becomes ``{base_url}/c/<token>``; CSS is inlined (css-inline); the
text part comes from html2text (or the step's text template); an invisible honeypot link and
an open pixel are added; headers include List-Unsubscribe (RFC 8058) and a deterministic
Message-ID.

Speed: inlining and html2text are the slow parts (html2text alone ~1 ms). So the HTML is also
rendered with *markers* in place of the contact's string values; when the markers, filled
in, give exactly the real rendering, the per-step work (inlining, text conversion, link
slots) is cached under the marked HTML and each later message only fills in its values.
Templates that only print values skip that check (see
:meth:`nurture.render_env.Templates.prints_values_only`); templates whose shape depends on
the contact (``{% if contact.industry == ... %}``) are cached per shape or take the full path.
The result is the same either way.
"""

from __future__ import annotations

import functools
import html as htmlmod
import os
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import format_datetime, parseaddr
from typing import TYPE_CHECKING, Any

import css_inline
import html2text
from markupsafe import escape

from nurture.dkim_sign import DkimKey, DkimSigner, load_key
from nurture.errors import ConfigError, NotFound, TemplateError
from nurture.i18n import Locale, locale_for, person_name, unsubscribe_html
from nurture.models import Campaign, Contact, Step
from nurture.render_env import MissingTemplate, Namespace, SubjectError, Templates
from nurture.render_links import (
    HONEYPOT_NAME,
    TEXT_URL_RE,
    Anchor,
    add_traps,
    is_web_url,
    origin_of,
    preheader_html,
    slot_anchors,
    slug_for,
)
from nurture.render_mime import build_message, clean, mailbox, message_id_for
from nurture.signing import Signer, tagged_address

if TYPE_CHECKING:  # pragma: no cover
    import jinja2

    from nurture.config import DkimSettings, SenderIdentity, Settings

__all__ = [
    "LinkIds", "MissingTemplate", "RenderedLink", "RenderedMessage", "Renderer", "SubjectError",
    "memory_link_ids", "message_id_for", "template_vars",
]

#: ``(link name, url, is_honeypot) -> link id`` for the campaign and step being rendered.
LinkIds = Callable[[str, str, bool], int]

_MARK = "nrtmk{}q"
_FILL_RE = re.compile(r"nrt(?:mk(\d+)|lk(\d+)|(hp)|(px)|(ph))q")
_MARK_RE = re.compile(r"nrtmk\d+q")
_BLANK_LINES = re.compile(r"\n{3,}")
_CACHE_LIMIT = 512


@dataclass(frozen=True, slots=True)
class RenderedLink:
    name: str
    url: str
    link_id: int
    honeypot: bool = False


@dataclass(frozen=True, slots=True)
class RenderedMessage:
    """One rendered message. ``headers`` are the decoded header values, for display."""

    subject: str
    html: str
    text: str
    message_id: str
    to: str
    from_address: str
    links: tuple[RenderedLink, ...]
    headers: tuple[tuple[str, str], ...]
    unsubscribe_url: str
    raw: bytes = field(repr=False)
    #: The envelope sender (VERP ``bounces+<token>@…``) when ``inbound.return_path`` is set.
    return_path: str | None = None
    #: The rendered preheader (inbox preview text), "" without one.
    preheader: str = ""

    def to_bytes(self) -> bytes:
        """The message as sent: CRLF line ends, every line shorter than 998 octets."""
        return self.raw

    @property
    def has_unsubscribe_link(self) -> bool:
        return self.unsubscribe_url in self.html


@dataclass(frozen=True, slots=True)
class _Entry:
    """Contact-independent work for one rendered HTML shape (markers and slots left in)."""

    html: str
    text: str
    anchors: tuple[Anchor, ...]


class Renderer:
    """Renders campaign steps for contacts. Thread-safe; caches compiled templates and the
    per-step work (see the module docstring)."""

    def __init__(self, *, templates_dir: str | os.PathLike[str], signer: Signer, base_url: str,
                 sender: SenderIdentity, open_tracking: bool = True,
                 dkim: DkimSettings | None = None, return_path: str | None = None,
                 reply_domain: str | None = None) -> None:
        self.templates_dir = str(templates_dir)
        self.signer = signer
        self.base_url = base_url.rstrip("/")
        self.sender = sender
        self.open_tracking = open_tracking
        self.dkim = dkim
        #: ``inbound.return_path`` / ``inbound.reply_domain``: per-send VERP addresses.
        self.return_path = return_path
        self.reply_domain = reply_domain
        self.templates = Templates(self.templates_dir)
        self._inliner = css_inline.CSSInliner(keep_at_rules=True, load_remote_stylesheets=False)
        self._marks: dict[str, int] = {}
        self._lock = threading.Lock()
        self._cache: dict[tuple[str, str], _Entry] = {}
        self.stats = {"hits": 0, "misses": 0, "uncached": 0}
        self._dkim_signer: DkimSigner | None = None

    @classmethod
    def from_settings(cls, settings: Settings, signer: Signer | None = None) -> Renderer:
        """A renderer for ``settings`` (templates dir, tracking base URL and keys, sender, DKIM)."""
        return cls(templates_dir=settings.templates_dir,
                   signer=signer or Signer.from_settings(settings.tracking),
                   base_url=settings.tracking.base_url, sender=settings.sender,
                   open_tracking=settings.tracking.open_tracking, dkim=settings.dkim,
                   return_path=settings.inbound.return_path, reply_domain=settings.inbound.reply_domain)

    # -- public -----------------------------------------------------------------------------

    def render(self, *, campaign: Campaign, step: Step, contact: Contact, send_id: int,
               link_ids: LinkIds, now: datetime, message_id: str | None = None) -> RenderedMessage:
        """Render ``step`` of ``campaign`` for ``contact`` as send ``send_id``.

        Raises :class:`TemplateError` (``MissingTemplate``, ``SubjectError``) with the file
        and line of the problem.
        """
        index = _step_index(campaign, step)
        unsub = f"{self.base_url}/u/{self.signer.sign('unsubscribe', send_id)}"
        cvars, top = template_vars(campaign, contact)
        loc = _locale(campaign.locale, tuple(campaign.footer.items()))
        from_address = clean(campaign.sender or self.sender.from_address)
        sender = {"from_address": from_address, "name": _display_name(from_address),
                  "reply_to": campaign.reply_to or self.sender.reply_to or "",
                  "postal_address": self.sender.postal_address}
        base = {"campaign": Namespace("campaign", {"id": campaign.id, "name": campaign.name, "locale": loc.tag}),
                "sender": Namespace("sender", sender)}
        subject = clean(self.templates.subject(campaign, step, index, {
            **top, **base, "contact": Namespace("contact", cvars),
            "step": Namespace("step", {"id": step.id, "subject": step.subject, "preheader": ""}),
            "unsubscribe_url": unsub}))
        preheader = ""
        if step.preheader:
            preheader = " ".join(self.templates.line(campaign, step, step.preheader, f"steps[{index}].preheader", {
                **top, **base, "contact": Namespace("contact", cvars),
                "step": Namespace("step", {"id": step.id, "subject": subject, "preheader": ""}),
                "unsubscribe_url": unsub}).split())
        base["step"] = Namespace("step", {"id": step.id, "subject": subject, "preheader": preheader})

        template = self.templates.get(step.template)
        real_ctx = {**top, **base, "contact": Namespace("contact", cvars), "unsubscribe_url": unsub}
        real_ctx["footer"] = self._footer(campaign, step, loc, real_ctx, unsub)
        values: dict[int, str] = {}
        marked_top = {k: self._mark(k, v, values) for k, v in top.items()}
        marked_contact = Namespace("contact", {k: self._mark(f"contact.{k}", v, values) for k, v in cvars.items()})
        marked_step = Namespace("step", {"id": step.id, "subject": self._mark("step.subject", subject, values),
                                         "preheader": self._mark("step.preheader", preheader, values)})
        marked_unsub = self._mark("unsubscribe_url", unsub, values)
        mctx = {**marked_top, **base, "step": marked_step, "contact": marked_contact,
                "unsubscribe_url": marked_unsub}
        escaped = {i: str(escape(v)) for i, v in values.items()}
        mctx["footer"] = self._marked_footer(campaign, step, loc, mctx, marked_unsub, real_ctx["footer"],
                                             values, escaped)

        real: str | None = None
        marked = _try_render(template, mctx)
        if not self.templates.prints_values_only(step.template):
            # The values may steer the template ({% if contact.industry == "toys" %}): the
            # placeholder rendering counts only if, filled in, it is the real rendering.
            real = self.templates.run(template, real_ctx)
            if marked is not None and _fill_marks(marked, escaped) != real:
                marked = None
        elif marked is None:
            real = self.templates.run(template, real_ctx)  # raises the real error
        entry = self._entry(step.template, marked) if marked is not None else None
        if entry is None:
            self.stats["uncached"] += 1
            if real is None:
                real = self.templates.run(template, real_ctx)
            values, escaped = {}, {}
            entry = self._build(real, keep=str(escape(unsub)), name=step.template)

        links, slot_urls, honeypot, pixel = self._links(entry, escaped, unsub, send_id, link_ids)
        plain = {i: " ".join(v.split()) for i, v in values.items()}
        html = _fill(entry.html, escaped, [str(escape(u)) for u in slot_urls],
                     str(escape(honeypot)), str(escape(pixel)), preheader_html(str(escape(preheader))))
        if step.text_template:
            text = self._text_template(step.text_template, {
                **top, **base, "contact": Namespace("contact", cvars), "unsubscribe_url": unsub},
                links, unsub, send_id, link_ids)
        else:
            # The preview line leads the text part too: clients that show the text part (and
            # readers of it) see the same summary the HTML's hidden preheader gives.
            text = _fill(entry.text, plain, slot_urls, "", "")
            if preheader:
                text = f"{preheader}\n\n{text}"

        mid = message_id or message_id_for(send_id, campaign.id, from_address, keyed=self._message_id_key)
        to = clean(contact.email)
        to_display = mailbox(str(cvars.get("name") or contact.name), to)
        headers: list[tuple[str, str]] = [
            ("From", from_address), ("To", to_display), ("Subject", subject),
            ("Date", format_datetime(now)), ("Message-ID", mid),
        ]
        reply_to = campaign.reply_to or self.sender.reply_to
        if self.reply_domain:  # replies come to nurture, which matches them by the token
            routed = tagged_address(self.signer, "reply", send_id, address=f"reply@{self.reply_domain}")
            reply_to = mailbox(_display_name(reply_to or from_address), routed)
        if reply_to:
            headers.append(("Reply-To", reply_to))
        domain = _domain(from_address)
        headers += [("List-Unsubscribe", f"<{unsub}>"),
                    ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
                    # RFC 2919: one list per campaign; Gmail's Postmaster Tools group complaints
                    # by Feedback-ID (campaign:step:sender id, the last field identifying the sender).
                    ("List-Id", f"{_list_phrase(campaign.name)} <{_list_label(campaign.id)}.{domain}>"),
                    ("Feedback-ID", f"{_fid(campaign.id)}:{_fid(step.id)}:{_fid(domain)}"),
                    ("X-Nurture-Campaign", campaign.id), ("X-Nurture-Step", step.id)]
        raw = build_message(headers=headers, text=text, html=html, seed=mid)
        if self.dkim is not None:
            raw = self.sign_dkim(raw)
        verp = tagged_address(self.signer, "bounce", send_id, address=self.return_path) if self.return_path else None
        return RenderedMessage(subject=subject, html=html, text=text, message_id=mid, to=to,
                               from_address=from_address, links=tuple(links),
                               headers=tuple(headers), unsubscribe_url=unsub, raw=raw, return_path=verp,
                               preheader=preheader)

    def _footer(self, campaign: Campaign, step: Step, loc: Locale, ctx: Mapping[str, Any],
                unsub: str) -> Namespace:
        """``footer.why`` / ``.unsubscribe`` (HTML, the link in it) / ``.unsubscribe_text``: the
        locale's footer texts (or the campaign's ``footer:``), rendered like the subject."""
        why = self.templates.line(campaign, step, loc.footer["why"], "footer.why", ctx)
        line = self.templates.line(campaign, step, loc.footer["unsubscribe"], "footer.unsubscribe", ctx)
        line = " ".join(line.split())
        return Namespace("footer", {"why": " ".join(why.split()), "unsubscribe": unsubscribe_html(line, unsub),
                                    "unsubscribe_text": line.replace("[", "").replace("]", "")})

    def _marked_footer(self, campaign: Campaign, step: Step, loc: Locale, mctx: Mapping[str, Any], marked_unsub: str,
                       real: Namespace, values: Mapping[int, str], escaped: Mapping[int, str]) -> Namespace:
        """The footer with placeholders, when filling them in gives the real footer; else the
        real one (correct, only cached per contact)."""
        try:
            marked = self._footer(campaign, step, loc, mctx, marked_unsub)
        except TemplateError:
            return real
        for key, value in marked.items():
            filled = _fill_marks(str(value), escaped if key == "unsubscribe" else values)
            if filled != str(real[key]):
                return real
        return marked

    def _message_id_key(self, data: bytes) -> bytes:
        return self.signer.keyed_digest("message-id", data)

    def sign_dkim(self, message: bytes) -> bytes:
        """``message`` with its DKIM-Signature headers prepended (settings.dkim must be set):
        RSA-SHA256, and Ed25519-SHA256 too when an Ed25519 key is configured."""
        signer = self._dkim_signer
        if signer is None:
            if self.dkim is None:
                raise ConfigError("DKIM is not configured", field="dkim")
            signer = self._dkim_signer = DkimSigner(domain=self.dkim.domain, keys=dkim_keys(self.dkim))
        return signer.sign(message)

    def display(self, name_or_path: str) -> str:
        """A template path as the user wrote it: relative to the working directory if inside it."""
        return self.templates.display(name_or_path)

    # -- pieces -----------------------------------------------------------------------------

    def _text_template(self, name: str, ctx: Mapping[str, Any], links: list[RenderedLink],
                       unsub: str, send_id: int, link_ids: LinkIds) -> str:
        text = self.templates.run(self.templates.get(name), ctx)
        by_url = {link.url: link for link in links}

        def track(m: re.Match[str]) -> str:
            url = m.group(0)
            if url == unsub:
                return url
            link = by_url.get(url)
            if link is None:
                name = slug_for(url)
                link = by_url[url] = RenderedLink(name, url, link_ids(name, url, False))
                links.append(link)
            return f"{self.base_url}/c/{self.signer.sign('click', send_id, link.link_id)}"

        return TEXT_URL_RE.sub(track, text)

    # -- the per-step cache -----------------------------------------------------------------

    def _mark(self, path: str, value: Any, values: dict[int, str]) -> Any:
        if not isinstance(value, str) or not value:
            return value
        i = self._marks.get(path)
        if i is None:
            with self._lock:  # two threads must never give one marker number to two names
                i = self._marks.setdefault(path, len(self._marks))
        values[i] = value
        return _MARK.format(i)

    def _entry(self, name: str, marked: str) -> _Entry | None:
        """The cached work for this placeholder rendering (built on first use)."""
        key = (name, marked)
        entry = self._cache.get(key)
        if entry is not None:
            self.stats["hits"] += 1
            return entry
        entry = self._build(marked, keep=_MARK.format(self._marks["unsubscribe_url"]), name=name)
        if sorted(_MARK_RE.findall(entry.html)) != sorted(_MARK_RE.findall(marked)) or re.search(
                r"style=\"[^\"]*nrtmk", entry.html):
            return None  # the inliner touched a marker: this shape cannot be reused
        self.stats["misses"] += 1
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
        self._cache[key] = entry
        return entry

    def _build(self, html: str, *, keep: str, name: str) -> _Entry:
        slotted, anchors = slot_anchors(html, keep=keep)
        converter = html2text.HTML2Text()
        converter.body_width = 0
        converter.ignore_images = True
        converter.ignore_tables = True
        converter.unicode_snob = True
        converter.ignore_emphasis = True
        # Table layouts leave html2text's markdown hard breaks ("  ") and empty rows behind.
        lines = "\n".join(line.rstrip() for line in converter.handle(slotted).splitlines())
        text = _BLANK_LINES.sub("\n\n", lines).strip() + "\n"
        try:
            inlined = self._inliner.inline(slotted)
        except Exception as e:  # css_inline.InlineError: e.g. an unreadable stylesheet
            raise TemplateError(f"CSS cannot be inlined: {e}", template=self.display(name)) from None
        inlined = add_traps(inlined, pixel=self.open_tracking)
        return _Entry(html=inlined, text=text, anchors=anchors)

    def _links(self, entry: _Entry, escaped: Mapping[int, str], unsub: str, send_id: int,
               link_ids: LinkIds) -> tuple[list[RenderedLink], list[str], str, str]:
        links: list[RenderedLink] = []
        urls: list[str] = []
        derived: dict[str, str] = {}  # derived name -> url, to tell different URLs apart
        ids: dict[tuple[str, str], int] = {}
        for anchor in entry.anchors:
            url = htmlmod.unescape(_fill_marks(anchor.href, escaped)).strip()
            if url == unsub or not is_web_url(url):
                urls.append(url)
                continue
            if anchor.name:
                name = htmlmod.unescape(_fill_marks(anchor.name, escaped))
            else:
                name = base_name = slug_for(url)
                n = 1
                while derived.get(name, url) != url:
                    n += 1
                    name = f"{base_name}-{n}"
                derived[name] = url
            lid = ids.get((name, url))
            if lid is None:
                lid = ids[(name, url)] = link_ids(name, url, False)
                links.append(RenderedLink(name, url, lid))
            urls.append(f"{self.base_url}/c/{self.signer.sign('click', send_id, lid)}")
        trap_url = origin_of(links[0].url) if links else f"{self.base_url}/"
        trap_id = link_ids(HONEYPOT_NAME, trap_url, True)
        links.append(RenderedLink(HONEYPOT_NAME, trap_url, trap_id, honeypot=True))
        honeypot = f"{self.base_url}/c/{self.signer.sign('click', send_id, trap_id)}"
        pixel = f"{self.base_url}/o/{self.signer.sign('open', send_id)}.gif"
        return links, urls, honeypot, pixel


def template_vars(campaign: Campaign, contact: Contact) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(contact, top-level)`` variables: the contact's fields and attributes, with the
    campaign's ``defaults`` filling what the contact lacks (missing or empty)."""
    defaults: Mapping[str, Any] = getattr(campaign, "defaults", None) or {}
    cvars = contact.as_template_vars()
    if campaign.locale != "en" and (contact.first_name or contact.last_name):
        order = _locale(campaign.locale, tuple(campaign.footer.items())).name_order
        cvars["name"] = person_name(contact.first_name, contact.last_name, order=order)
    top = dict(contact.attributes)
    for key, value in defaults.items():
        if cvars.get(key) in (None, ""):
            cvars[key] = value
        if top.get(key) in (None, ""):
            top[key] = value
    for reserved in ("contact", "campaign", "step", "sender", "unsubscribe_url"):
        top.pop(reserved, None)
    return cvars, top


def dkim_keys(dkim: DkimSettings) -> list[DkimKey]:
    """The configured signing keys, RSA first, then Ed25519 when one is set; an unusable key
    is a :class:`ConfigError`."""
    keys = [load_key(dkim.selector, dkim.private_key)]
    if dkim.ed25519_key is not None and dkim.ed25519_selector:
        keys.append(load_key(dkim.ed25519_selector, dkim.ed25519_key))
    return keys


def campaign_step(campaigns: Mapping[str, Campaign], campaign_id: str, step_id: str) -> tuple[Campaign, Step]:
    """The campaign and step a send was queued for; :class:`NotFound` when either is gone."""
    campaign = campaigns.get(campaign_id)
    if campaign is None:
        raise NotFound(f"campaign {campaign_id!r} is not in the campaigns folder")
    try:
        return campaign, campaign.step(step_id)
    except KeyError:
        raise NotFound(f"campaign {campaign_id!r} has no step {step_id!r}") from None


def memory_link_ids() -> LinkIds:
    """Link ids kept in memory (1, 2, 3, ...) for previews and validation."""
    ids: dict[tuple[str, str, bool], int] = {}

    def link_ids(name: str, url: str, honeypot: bool) -> int:
        return ids.setdefault((name, url, honeypot), len(ids) + 1)

    return link_ids


@functools.lru_cache(maxsize=256)
def _locale(tag: str, footer: tuple[tuple[str, str], ...]) -> Locale:
    try:
        return locale_for(tag, footer=dict(footer))
    except ValueError as e:  # campaigns are checked when loaded; one built by hand may not be
        raise TemplateError(str(e)) from None


@functools.lru_cache(maxsize=64)
def _display_name(from_address: str) -> str:
    name, addr = parseaddr(from_address)
    return name or addr or from_address


@functools.lru_cache(maxsize=64)
def _domain(from_address: str) -> str:
    addr = parseaddr(from_address)[1] or from_address
    return addr.rpartition("@")[2].strip(" >").lower() or "nurture.invalid"


def _list_label(text: str) -> str:
    """A dot-atom label (RFC 2919 §2) from a campaign id."""
    return re.sub(r"[^A-Za-z0-9-]+", "-", text).strip("-").lower() or "campaign"


def _list_phrase(name: str) -> str:
    """The List-Id description as a quoted string (or plain UTF-8 text, encoded on output)."""
    name = name.replace("\\", "").replace('"', "'")
    return f'"{name}"' if name.isascii() else name


def _fid(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text)


def _step_index(campaign: Campaign, step: Step) -> int:
    for i, s in enumerate(campaign.steps):
        if s.id == step.id:
            return i
    return 0


def _try_render(template: jinja2.Template, ctx: Mapping[str, Any]) -> str | None:
    try:
        return template.render(ctx)
    except Exception:  # the real rendering reports it, with the real values
        return None


def _fill_marks(text: str, values: Mapping[int, str]) -> str:
    if "nrtmk" not in text:
        return text
    return _MARK_RE.sub(lambda m: values.get(int(m.group(0)[5:-1]), ""), text)


def _fill(text: str, values: Mapping[int, str], slots: list[str], honeypot: str, pixel: str,
          preheader: str = "") -> str:
    def one(m: re.Match[str]) -> str:
        if m.group(1):
            return values.get(int(m.group(1)), "")
        if m.group(2):
            return slots[int(m.group(2))]
        if m.group(5):
            return preheader
        return honeypot if m.group(3) else pixel

    return _FILL_RE.sub(one, text)
