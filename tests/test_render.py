"""Rendering: real templates, real MIME parsed back with the standard library."""

from __future__ import annotations

import email
import email.policy
import functools
import re
import subprocess
from dataclasses import replace
from datetime import timedelta
from html.parser import HTMLParser
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from nurture.campaigns import load_campaign, sample_contact
from nurture.errors import TemplateError
from nurture.models import Campaign, Contact, Step
from nurture.render import (
    MissingTemplate,
    Renderer,
    SubjectError,
    memory_link_ids,
    message_id_for,
)
from nurture.signing import Signer

ROOT = Path(__file__).resolve().parent.parent


class Recorder:
    """A LinkIds that remembers what it handed out, like the links table does."""

    def __init__(self) -> None:
        self.by_id: dict[int, tuple[str, str, bool]] = {}
        self.ids: dict[tuple[str, str, bool], int] = {}

    def __call__(self, name: str, url: str, honeypot: bool) -> int:
        key = (name, url, honeypot)
        if key not in self.ids:
            self.ids[key] = 100 + len(self.ids)
            self.by_id[self.ids[key]] = key
        return self.ids[key]


class Anchors(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.anchors: list[dict] = []
        self._open: dict | None = None
        self.hidden_depth = 0
        self._stack: list[bool] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "div":
            hidden = "display:none" in (a.get("style") or "").replace(" ", "")
            self._stack.append(hidden)
            self.hidden_depth += hidden
        if tag == "a":
            self._open = {**a, "_text": "", "_hidden": self.hidden_depth > 0}
            self.anchors.append(self._open)

    def handle_endtag(self, tag):
        if tag == "a":
            self._open = None
        if tag == "div" and self._stack:
            self.hidden_depth -= self._stack.pop()

    def handle_data(self, data):
        if self._open is not None:
            self._open["_text"] += data


def anchors_of(html: str) -> list[dict]:
    p = Anchors()
    p.feed(html)
    return p.anchors


@pytest.fixture
def campaign() -> Campaign:
    return load_campaign(ROOT / "campaigns" / "ec-payments.yaml", root=ROOT)


@pytest.fixture
def renderer(settings) -> Renderer:
    return Renderer.from_settings(settings)


@pytest.fixture
def signer(settings) -> Signer:
    return Signer.from_settings(settings.tracking)


def render(renderer, campaign, step_id="service-page", sample=0, send_id=42, now=None, **kw):
    from tests.conftest import NOW

    rec = kw.pop("link_ids", None) or Recorder()
    msg = renderer.render(campaign=campaign, step=campaign.step(step_id),
                          contact=sample_contact(campaign.samples[sample], contact_id=sample + 1),
                          send_id=send_id, link_ids=rec, now=now or NOW, **kw)
    return msg, rec


def parse(raw: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(raw, policy=email.policy.default)


def test_list_id_and_feedback_id_name_the_campaign_and_step(renderer, campaign) -> None:
    msg, _ = render(renderer, campaign, step_id="service-page")
    m = parse(msg.to_bytes())
    assert m["List-Id"] == f'"{campaign.name}" <ec-payments.acme.example>'
    assert m["Feedback-ID"] == "ec-payments:service-page:acme.example"


def test_mime_structure_and_headers(renderer, campaign, settings, signer) -> None:
    msg, _ = render(renderer, campaign)
    raw = msg.to_bytes()
    assert b"\r\n" in raw and b"\n" not in raw.replace(b"\r\n", b"")
    assert max(len(line) for line in raw.split(b"\r\n")) < 998
    m = parse(raw)
    assert m.get_content_type() == "multipart/alternative"
    parts = list(m.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    assert all(p.get_content_charset() == "utf-8" for p in parts)
    assert m["Subject"] == "Kumo Tea Works: one checkout, every payment method"
    assert m["From"].addresses[0].addr_spec == "hello@acme.example"
    assert m["To"].addresses[0].addr_spec == "yui.sato@kumo-tea.example"
    assert m["Date"].datetime.isoformat() == "2026-11-24T10:00:00+00:00"
    assert m["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    unsub = re.fullmatch(r"<(.+)/u/([A-Za-z0-9_-]+)>", m["List-Unsubscribe"])
    assert unsub and unsub.group(1) == settings.tracking.base_url
    assert signer.verify("unsubscribe", unsub.group(2)) == (42,)
    assert m["X-Nurture-Campaign"] == "ec-payments" and m["X-Nurture-Step"] == "service-page"
    assert "kumo" not in (m["X-Nurture-Campaign"] + m["X-Nurture-Step"] + m["Message-ID"]).lower()
    # The parts decode to what the renderer reports.
    assert parts[1].get_content() .replace("\r\n", "\n") == msg.html.replace("\r\n", "\n")
    assert parts[0].get_content().replace("\r\n", "\n") == msg.text.replace("\r\n", "\n")


def test_message_id_is_deterministic(renderer, campaign, settings, signer) -> None:
    a, _ = render(renderer, campaign)
    b, _ = render(Renderer.from_settings(settings), campaign)
    keyed = functools.partial(signer.keyed_digest, "message-id")
    assert a.message_id == b.message_id == message_id_for(42, "ec-payments", "Acme Payments <hello@acme.example>",
                                                          keyed=keyed)
    assert a.to_bytes() == b.to_bytes()  # a re-render after a crash sends identical bytes
    c, _ = render(renderer, campaign, send_id=43)
    assert c.message_id != a.message_id
    assert re.fullmatch(r"<43\.[0-9a-f]{16}@acme\.example>", c.message_id)
    forced, _ = render(renderer, campaign, message_id="<kept@acme.example>")
    assert parse(forced.to_bytes())["Message-ID"] == "<kept@acme.example>"


def test_message_id_is_keyed_with_the_tracking_secret(campaign, settings) -> None:
    """Another secret renders another Message-ID for the same send: without the key the id
    of a send cannot be computed from one of our mails. The stored Message-ID still wins."""
    a, _ = render(Renderer.from_settings(settings), campaign)
    other = replace(settings, tracking=replace(settings.tracking, keys={settings.tracking.current_key: b"another"}))
    b, _ = render(Renderer.from_settings(other), campaign)
    assert a.message_id != b.message_id and a.message_id.split("@")[1] == b.message_id.split("@")[1]
    c, _ = render(Renderer.from_settings(other), campaign, message_id=a.message_id)
    assert c.message_id == a.message_id


def test_every_link_is_tracked_and_verifies(renderer, campaign, signer, settings) -> None:
    msg, rec = render(renderer, campaign, send_id=42)
    base = settings.tracking.base_url
    anchors = anchors_of(msg.html)
    assert "data-link" not in msg.html
    seen = {}
    for a in anchors:
        href = a["href"]
        if href == msg.unsubscribe_url:
            continue
        m = re.fullmatch(re.escape(base) + r"/c/([A-Za-z0-9_-]+)", href)
        assert m, href
        send_id, link_id = signer.verify("click", m.group(1))
        assert send_id == 42
        name, url, honeypot = rec.by_id[link_id]
        seen[name] = (url, honeypot, a)
    assert seen["pricing"][:2] == ("https://acme.example/payments/pricing", False)
    assert seen["service-page"][:2] == ("https://acme.example/payments", False)
    assert {(link.name, link.url) for link in msg.links} == {
        ("pricing", "https://acme.example/payments/pricing"),
        ("service-page", "https://acme.example/payments"),
        ("honeypot", "https://acme.example/"),
    }
    # the footer's unsubscribe link is left as the signed /u/ URL
    assert any(a["href"] == msg.unsubscribe_url for a in anchors)


def test_honeypot_is_hidden_and_not_in_text(renderer, campaign, signer) -> None:
    msg, rec = render(renderer, campaign)
    traps = [link for link in msg.links if link.honeypot]
    assert len(traps) == 1
    trap_anchors = [a for a in anchors_of(msg.html)
                    if a["href"].endswith("/c/" + signer.sign("click", 42, traps[0].link_id))]
    assert len(trap_anchors) == 1
    a = trap_anchors[0]
    assert a["aria-hidden"] == "true" and a["tabindex"] == "-1"
    assert a["_text"].strip() == "" and a["_hidden"]
    assert "/c/" + signer.sign("click", 42, traps[0].link_id) not in msg.text
    # the visible links are all in the text part, tracked
    for link in msg.links:
        if not link.honeypot:
            assert f"/c/{signer.sign('click', 42, link.link_id)}" in msg.text
    assert msg.unsubscribe_url in msg.text
    assert "https://acme.example/payments/pricing" not in msg.text  # only tracked URLs


def test_css_is_inlined_and_media_queries_kept(renderer, campaign) -> None:
    msg, _ = render(renderer, campaign, step_id="case-study")
    button = [a for a in anchors_of(msg.html) if "button" in (a.get("class") or "")]
    assert button and "background-color" in button[0]["style"]
    assert "@media" in msg.html
    assert "How Kissa Roasters cut checkout drop-off by 23%" in msg.html


def test_open_pixel(renderer, campaign, signer, make_settings) -> None:
    msg, _ = render(renderer, campaign)
    m = re.search(r'<img src="([^"]+)/o/([A-Za-z0-9_-]+)\.gif"', msg.html)
    assert m and signer.verify("open", m.group(2)) == (42,)
    off = Renderer.from_settings(make_settings(tracking={"open_tracking": False}))
    msg2, _ = render(off, campaign)
    assert "/o/" not in msg2.html


def test_cached_and_uncached_paths_give_identical_messages(settings, campaign) -> None:
    warm = Renderer.from_settings(settings)
    for i in range(3):
        render(warm, campaign, step_id="case-study", sample=i)
    assert warm.stats["hits"] == 2 and warm.stats["misses"] == 1
    for i in range(3):
        cold = Renderer.from_settings(settings)
        assert render(cold, campaign, step_id="case-study", sample=i)[0].to_bytes() == \
            render(warm, campaign, step_id="case-study", sample=i)[0].to_bytes()


def _campaign(tmp_path: Path, files: dict[str, str], subject: str = "Hello {{ contact.first_name }}",
              text_template: str | None = None) -> tuple[Campaign, Renderer]:
    tdir = tmp_path / "templates"
    for name, body in files.items():
        (tdir / name).parent.mkdir(parents=True, exist_ok=True)
        (tdir / name).write_text(body)
    step = Step(id="s1", subject=subject, template="mail.html", wait=timedelta(0),
                text_template=text_template, line=7)
    c = Campaign(id="t", name="Test", path="campaigns/t.yaml", timezone="UTC", steps=(step,))
    from nurture.config import SenderIdentity

    r = Renderer(templates_dir=tdir, signer=Signer({"k1": b"s"}, current="k1"),
                 base_url="https://t.example", sender=SenderIdentity(
                     from_address="Tëst Sender <news@t.example>", postal_address="Somewhere 1"))
    return c, r


def _contact(**kw) -> Contact:
    base = dict(id=1, email="ana@shop.example", first_name="Ana", company="Shop & Co")
    base.update(kw)
    return Contact(**base)


def _render_first_step(c: Campaign, r: Renderer, now):
    """Render the campaign's first step for the default contact (send 1, in-memory link ids)."""
    return r.render(campaign=c, step=c.steps[0], contact=_contact(), send_id=1, link_ids=memory_link_ids(), now=now)


def test_contact_dependent_structure_and_escaping(tmp_path, now, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    c, r = _campaign(tmp_path, {"mail.html": (
        "<html><head><style>p{color:#123456}</style></head><body>"
        "{% if contact.industry == 'toys' %}<p>Toys!</p>{% endif %}"
        "<p>Hi {{ contact.first_name }} at {{ contact.company }}</p>"
        '<a href="https://t.example/a?x=1&amp;y=2">A</a> <a href="mailto:sales@t.example">mail</a> '
        '<a href="tel:+441234">call</a> <a href="#top">top</a> <a href="{{ unsubscribe_url }}">unsub</a>'
        "</body></html>")})
    link_ids = memory_link_ids()
    toys = r.render(campaign=c, step=c.steps[0], contact=_contact(industry="toys"), send_id=1,
                    link_ids=link_ids, now=now)
    other = r.render(campaign=c, step=c.steps[0], contact=_contact(industry="food", first_name="Bo"),
                     send_id=2, link_ids=link_ids, now=now)
    assert "Toys!" in toys.html and "Toys!" not in other.html
    assert "Shop &amp; Co" in toys.html and "Shop & Co" in toys.text
    assert "Hi Bo" in other.html and "Hi Ana" not in other.html
    assert [link.url for link in toys.links if not link.honeypot] == ["https://t.example/a?x=1&y=2"]
    assert toys.links[0].name == "a"
    hrefs = [a["href"] for a in anchors_of(toys.html)]
    assert "mailto:sales@t.example" in hrefs and "tel:+441234" in hrefs and "#top" in hrefs
    assert toys.unsubscribe_url in hrefs
    assert 'style="color: #123456' in toys.html or "color:#123456" in toys.html.replace(" ", "")
    m = parse(toys.to_bytes())
    assert m["From"].addresses[0].display_name == "Tëst Sender"


def test_header_injection_and_non_ascii(tmp_path, now) -> None:
    c, r = _campaign(tmp_path, {"mail.html": '<p>x <a href="{{ unsubscribe_url }}">u</a></p>'},
                     subject="Hi {{ contact.first_name }}, {{ contact.company }}")
    evil = _contact(first_name="佐藤", company="Evil\r\nBcc: victim@x.example", last_name="由衣")
    msg = r.render(campaign=c, step=c.steps[0], contact=evil, send_id=3, link_ids=memory_link_ids(), now=now)
    m = parse(msg.to_bytes())
    assert m["Bcc"] is None
    assert m["Subject"] == "Hi 佐藤, Evil Bcc: victim@x.example"
    assert m["To"].addresses[0].display_name == "佐藤 由衣"
    assert all(line.isascii() for line in msg.to_bytes().split(b"\r\n"))


def test_long_subject_and_long_lines_are_folded(tmp_path, now) -> None:
    c, r = _campaign(tmp_path, {"mail.html": "<p>" + "word " * 600 + "x" * 3000 +
                                '<a href="{{ unsubscribe_url }}">u</a></p>'},
                     subject="A very long subject " * 12)
    msg = r.render(campaign=c, step=c.steps[0], contact=_contact(), send_id=3, link_ids=memory_link_ids(), now=now)
    raw = msg.to_bytes()
    assert max(len(line) for line in raw.split(b"\r\n")) <= 78
    assert parse(raw)["Subject"] == ("A very long subject " * 12).strip()


def test_derived_link_names_are_unique_per_url(tmp_path, now) -> None:
    c, r = _campaign(tmp_path, {"mail.html": (
        '<a href="https://a.example/news/x.html">1</a><a href="https://b.example/news/x">2</a>'
        '<a href="https://a.example/news/x.html">again</a>'
        '<a data-link="promo" href="https://a.example/p">p</a><a data-link="promo" href="https://a.example/p">p2</a>'
        '<a href="{{ unsubscribe_url }}">u</a>')})
    msg = r.render(campaign=c, step=c.steps[0], contact=_contact(), send_id=3, link_ids=memory_link_ids(), now=now)
    assert [(link.name, link.url) for link in msg.links if not link.honeypot] == [
        ("news-x", "https://a.example/news/x.html"), ("news-x-2", "https://b.example/news/x"),
        ("promo", "https://a.example/p")]


def test_text_template_links_are_tracked(tmp_path, now) -> None:
    c, r = _campaign(tmp_path, {
        "mail.html": '<a data-link="pricing" href="https://t.example/pricing">p</a>'
                     '<a href="{{ unsubscribe_url }}">u</a>',
        "mail.txt": "Hi {{ contact.first_name }},\nprices: https://t.example/pricing\nnews: https://t.example/news.\n"
                    "stop: {{ unsubscribe_url }}\n"}, text_template="mail.txt")
    msg = r.render(campaign=c, step=c.steps[0], contact=_contact(), send_id=9, link_ids=memory_link_ids(), now=now)
    names = {link.name: link for link in msg.links}
    assert "https://t.example/pricing" not in msg.text and "https://t.example/news" not in msg.text
    assert f"https://t.example/c/{r.signer.sign('click', 9, names['pricing'].link_id)}\n" in msg.text
    assert f"https://t.example/c/{r.signer.sign('click', 9, names['news'].link_id)}.\n" in msg.text
    assert f"stop: {msg.unsubscribe_url}" in msg.text


def test_undefined_variable_names_template_line_and_variable(tmp_path, now, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    c, r = _campaign(tmp_path, {
        "base.html": "<html>\n<body>\n{% block content %}{% endblock %}\n{{ footer_note }}\n</body></html>",
        "mail.html": "{% extends 'base.html' %}\n{% block content %}\n<p>Hi</p>\n<p>{{ contact.compnay }}</p>\n"
                     "{% endblock %}"})
    with pytest.raises(TemplateError) as e:
        _render_first_step(c, r, now)
    assert str(e.value) == "templates/mail.html:4: 'contact.compnay' is undefined"
    assert e.value.variable == "contact.compnay" and e.value.line == 4
    (tmp_path / "templates" / "mail.html").write_text("{% extends 'base.html' %}")
    c, r = _campaign(tmp_path, {})
    with pytest.raises(TemplateError) as e:
        _render_first_step(c, r, now)
    assert str(e.value) == "templates/base.html:4: 'footer_note' is undefined"


def test_syntax_error_missing_template_and_subject(tmp_path, now, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    c, r = _campaign(tmp_path, {"mail.html": "<p>\n{% if x %}\n<p>never closed</p>\n"})
    with pytest.raises(TemplateError) as e:
        _render_first_step(c, r, now)
    assert str(e.value).startswith("templates/mail.html:2: Unexpected end of template")
    c, r = _campaign(tmp_path, {"mail.html": "{% include 'parts/missing.html' %}"})
    with pytest.raises(MissingTemplate) as e:
        _render_first_step(c, r, now)
    assert str(e.value) == "templates/mail.html:1: template not found: templates/parts/missing.html"
    c, r = _campaign(tmp_path, {"mail.html": "<p>ok</p>"}, subject="Hi {{ contact.frist_name }}")
    with pytest.raises(SubjectError) as e:
        _render_first_step(c, r, now)
    assert str(e.value) == "campaigns/t.yaml:7: steps[0].subject: 'contact.frist_name' is undefined"


def test_sandbox_blocks_unsafe_access(tmp_path, now, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    c, r = _campaign(tmp_path, {"mail.html": "<p>\n{{ contact.__class__.__mro__ }}</p>"})
    with pytest.raises(TemplateError) as e:
        _render_first_step(c, r, now)
    assert str(e.value).startswith("templates/mail.html:2: ")


def test_campaign_defaults_fill_missing_attributes(renderer, campaign, now) -> None:
    bare = Contact(id=5, email="new@shop.example", company="New Shop")
    msg = renderer.render(campaign=campaign, step=campaign.step("case-study"), contact=bare,
                          send_id=5, link_ids=memory_link_ids(), now=now)
    assert msg.subject == "How a shop like yours cut checkout drop-off by 23%"
    assert "Hi there," in msg.text


def test_dkim_signature_verifies(tmp_path, make_settings, campaign) -> None:
    import dkim

    key = tmp_path / "dkim.pem"
    subprocess.run(["openssl", "genrsa", "-out", str(key), "1024"], check=True, capture_output=True)
    pub = subprocess.run(["openssl", "rsa", "-in", str(key), "-pubout", "-outform", "DER"],
                         check=True, capture_output=True).stdout
    import base64

    record = b"v=DKIM1; k=rsa; p=" + base64.b64encode(pub)
    s = make_settings(dkim={"selector": "sel", "domain": "acme.example", "private_key_file": str(key)})
    msg, _ = render(Renderer.from_settings(s), campaign)
    raw = msg.to_bytes()
    assert raw.startswith(b"DKIM-Signature:")
    sig = parse(raw)["DKIM-Signature"]
    signed = re.search(r"h=([^;]+)", str(sig).replace(" ", "").replace("\r\n", "")).group(1).lower().split(":")
    assert "list-unsubscribe" in signed and "list-unsubscribe-post" in signed
    assert dkim.verify(raw, dnsfunc=lambda name, timeout=5: record if name == b"sel._domainkey.acme.example." else None)
    assert not dkim.verify(raw.replace(b"List-Unsubscribe-Post: List-Unsubscribe=One-Click",
                                       b"List-Unsubscribe-Post: nope"),
                           dnsfunc=lambda name, timeout=5: record)


def test_rendered_mail_carries_an_ed25519_signature_beside_the_rsa_one(tmp_path, make_settings, campaign) -> None:
    import base64

    import dkim

    key, ed = tmp_path / "dkim.pem", tmp_path / "ed.pem"
    subprocess.run(["openssl", "genrsa", "-out", str(key), "2048"], check=True, capture_output=True)
    subprocess.run(["openssl", "genpkey", "-algorithm", "ed25519", "-out", str(ed)], check=True, capture_output=True)
    rsa_pub = subprocess.run(["openssl", "rsa", "-in", str(key), "-pubout", "-outform", "DER"],
                             check=True, capture_output=True).stdout
    ed_pub = subprocess.run(["openssl", "pkey", "-in", str(ed), "-pubout", "-outform", "DER"],
                            check=True, capture_output=True).stdout[-32:]  # the raw key ends the SPKI
    recs = {b"sel._domainkey.acme.example.": b"v=DKIM1; k=rsa; p=" + base64.b64encode(rsa_pub),
            b"ed._domainkey.acme.example.": b"v=DKIM1; k=ed25519; p=" + base64.b64encode(ed_pub)}
    s = make_settings(dkim={"selector": "sel", "domain": "acme.example", "private_key_file": str(key),
                            "ed25519_selector": "ed", "ed25519_key_file": str(ed)})
    msg, _ = render(Renderer.from_settings(s), campaign)
    raw = msg.to_bytes()
    assert raw.startswith(b"DKIM-Signature: v=1; a=ed25519-sha256;") and raw.count(b"DKIM-Signature:") == 2
    for idx in (0, 1):
        assert dkim.DKIM(raw).verify(idx=idx, dnsfunc=lambda name, timeout=5: recs.get(name))


class _Visible(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.chunks: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag, attrs):
        self._skip += tag in ("style", "title")

    def handle_endtag(self, tag):
        self._skip -= tag in ("style", "title")

    def handle_data(self, data):
        if not self._skip:
            self.chunks.append(data)


def _visible(html: str) -> str:
    p = _Visible()
    p.feed(html)
    return " ".join("".join(p.chunks).split())


_printable = st.text(st.characters(blacklist_categories=("Cc", "Cs", "Co", "Cn")), min_size=0, max_size=30)


@hsettings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(first=_printable, company=_printable, similar=_printable)
def test_cached_path_matches_full_render_for_any_values(renderer, campaign, now, first, company, similar) -> None:
    contact = Contact(id=9, email="x@shop.example", first_name=first, company=company,
                      attributes={"similar_company": similar})
    step = campaign.step("case-study")
    fast = renderer.render(campaign=campaign, step=step, contact=contact, send_id=5,
                           link_ids=memory_link_ids(), now=now)
    slow_renderer = Renderer(templates_dir=renderer.templates_dir, signer=renderer.signer,
                             base_url=renderer.base_url, sender=renderer.sender)
    slow_renderer._entry = lambda *a, **k: None  # force the full pipeline
    slow = slow_renderer.render(campaign=campaign, step=step, contact=contact, send_id=5,
                                link_ids=memory_link_ids(), now=now)
    assert _visible(fast.html) == _visible(slow.html)
    assert [a["href"] for a in anchors_of(fast.html)] == [a["href"] for a in anchors_of(slow.html)]
    assert fast.links == slow.links and fast.subject == slow.subject
    m = parse(fast.to_bytes())
    assert m["Subject"] == fast.subject
    if first.strip():
        assert " ".join(first.split()) in fast.text


def test_slot_anchors_handles_real_world_markup() -> None:
    from nurture.render_links import slot_anchors, slug_for

    html = ("<A HREF='https://x.example/a?b=1&amp;c=2' data-link=\"promo\" title='say \"hi\" > bye'>1</A>"
            '<a class=btn href=https://x.example/b>2</a><a name="top">3</a>'
            '<a href="mailto:a@x.example">4</a><a href=" https://x.example/c ">5</a><a href="U">6</a>')
    out, anchors = slot_anchors(html, keep="U")
    assert [(a.href, a.name) for a in anchors] == [
        ("https://x.example/a?b=1&amp;c=2", "promo"), ("https://x.example/b", None), ("https://x.example/c", None)]
    assert "data-link" not in out
    assert 'href="nrtlk0q"' in out and 'title="say &quot;hi&quot; > bye"' in out
    assert 'href="nrtlk1q"' in out and 'class="btn"' in out
    assert '<a name="top">' in out and 'href="mailto:a@x.example"' in out and 'href="U"' in out
    assert slug_for("https://acme.example/payments/pricing") == "payments-pricing"
    assert slug_for("https://acme.example/") == "acme-example"
    assert slug_for("https://acme.example/News/Item.html?utm=1") == "news-item"


async def test_rendered_bytes_survive_real_smtp(smtp_sink, renderer, campaign, now) -> None:
    import aiosmtplib

    # a value with a line that starts with "." checks SMTP dot-stuffing end to end
    contact = Contact(id=3, email="ana@shop.example", first_name="Ana", company="Shop &\n.Co",
                      attributes={"similar_company": "Kissa"})
    msgs = [renderer.render(campaign=campaign, step=s, contact=contact, send_id=10 + i,
                            link_ids=memory_link_ids(), now=now) for i, s in enumerate(campaign.steps)]
    assert b"\r\n.Co" in msgs[0].to_bytes()
    async with aiosmtplib.SMTP(hostname=smtp_sink.host, port=smtp_sink.port) as smtp:
        for m in msgs:
            await smtp.sendmail("hello@acme.example", [m.to], m.to_bytes())
    assert [r.data.replace(b"\r\n", b"\n") for r in smtp_sink.sink.messages] == \
        [m.to_bytes().replace(b"\r\n", b"\n") for m in msgs]
    got = smtp_sink.sink.messages[0].message
    assert got.get_body(("html",)).get_content().replace("\r\n", "\n") == msgs[0].html
    assert "Shop & .Co" in got.get_body(("plain",)).get_content()


@pytest.mark.parametrize("source, pure", [
    ('<p>{{ contact.first_name or "there" }} {{ similar_company }} {{ unsubscribe_url }}</p>', True),
    ("<p>{{ campaign.name | lower }}{% if sender.postal_address %}{{ sender.postal_address }}{% endif %}</p>", True),
    ("<title>{{ step.subject }}</title>{{ step.id | upper }}", True),
    ("{% if contact.industry == 'toys' %}x{% endif %}", False),
    ("{{ contact.first_name | upper }}", False),
    ("{{ contact }}", False),
    ("{{ contact.address.city }}", False),
    ("{% set n = contact.first_name %}{{ n }}", False),
    ("{% for x in items %}{{ x }}{% endfor %}", False),
    ("{{ contact[key] }}", False),
    ("{{ 'Hi ' ~ contact.first_name }}", False),
    ('{% include "other.html" %}', False),
    ('{% include "ok.html" %}', True),
])
def test_which_templates_only_print_values(tmp_path, source, pure) -> None:
    from nurture.render_env import Templates

    (tmp_path / "t.html").write_text(source)
    (tmp_path / "ok.html").write_text("{{ contact.company }}")
    (tmp_path / "other.html").write_text("{% if contact.vip %}VIP{% endif %}")
    assert Templates(tmp_path).prints_values_only("t.html") is pure


# -- preheaders ------------------------------------------------------------------------------

class _BodyText(HTMLParser):
    """The text of <body> in order, each piece with whether a display:none block hides it."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.pieces: list[tuple[str, bool]] = []
        self._in_body = False
        self._hidden: list[bool] = []

    def handle_starttag(self, tag, attrs):
        if tag == "body":
            self._in_body = True
        elif tag == "div":
            self._hidden.append("display:none" in (dict(attrs).get("style") or "").replace(" ", ""))

    def handle_endtag(self, tag):
        if tag == "div" and self._hidden:
            self._hidden.pop()

    def handle_data(self, data):
        if self._in_body and data.strip(" \r\n\u034f\u200c\xa0"):
            self.pieces.append((data.strip(" \r\n\u034f\u200c\xa0"), any(self._hidden)))


def body_text(html: str) -> list[tuple[str, bool]]:
    p = _BodyText()
    p.feed(html)
    return p.pieces


def test_preheader_is_the_first_text_of_the_html_body_and_of_the_text_part(renderer, campaign) -> None:
    msg, _ = render(renderer, campaign, step_id="case-study")
    m = parse(msg.to_bytes())
    html = m.get_body(("html",)).get_content()
    text = m.get_body(("plain",)).get_content().replace("\r\n", "\n")
    preheader = "More payment methods, one page, and results within 90 days."
    pieces = body_text(html)
    assert pieces[0] == (preheader, True), pieces[:2]  # what inbox lists show, hidden in the mail
    assert pieces[1] == ("Acme Payments", False)  # the brand line follows, visible
    assert "&#847;&zwnj;&nbsp;" * 20 in html  # the filler that ends the preview there
    assert text.split("\n")[:2] == [preheader, ""] and text.count(preheader) == 1
    assert [p for p, hidden in pieces if hidden] == [preheader]


def test_preheader_is_a_template_escaped_in_the_html(tmp_path, now) -> None:
    c, r = _campaign(tmp_path, {"mail.html": "<html><body><p>Body {{ step.preheader }}</p>"
                                             '<a href="{{ unsubscribe_url }}">u</a></body></html>'})
    step = replace(c.steps[0], preheader="Deals for\n{{ contact.company }} <b>")
    msg = r.render(campaign=c, step=step, contact=_contact(), send_id=1, link_ids=memory_link_ids(), now=now)
    m = parse(msg.to_bytes())
    html = m.get_body(("html",)).get_content()
    assert body_text(html)[0] == ("Deals for Shop & Co <b>", True)
    assert "Deals for Shop &amp; Co &lt;b&gt;" in html and "<b>" not in html
    assert m.get_body(("plain",)).get_content().startswith("Deals for Shop & Co <b>\r\n\r\n")
    assert "<p>Body Deals for Shop &amp; Co &lt;b&gt;</p>" in html  # step.preheader in templates
    plain = r.render(campaign=c, step=c.steps[0], contact=_contact(), send_id=1, link_ids=memory_link_ids(), now=now)
    assert 'mso-hide:all">' not in plain.html  # no preheader block (the honeypot's ends differently)
    assert body_text(plain.html)[0] == ("Body", False) and plain.text.startswith("Body")


def test_a_preheader_error_points_at_the_campaign_field(tmp_path, now, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    c, r = _campaign(tmp_path, {"mail.html": '<html><body><a href="{{ unsubscribe_url }}">u</a></body></html>'})
    step = replace(c.steps[0], preheader="{{ contact.frist_name }}")
    with pytest.raises(SubjectError) as info:
        r.render(campaign=replace(c, steps=(step,)), step=step, contact=_contact(), send_id=1,
                 link_ids=memory_link_ids(), now=now)
    assert info.value.field == "steps[0].preheader" and info.value.variable == "contact.frist_name"
    assert str(info.value) == "campaigns/t.yaml:7: steps[0].preheader: 'contact.frist_name' is undefined"


# -- localised mail --------------------------------------------------------------------------

@pytest.fixture
def ja_campaign() -> Campaign:
    return load_campaign(ROOT / "campaigns" / "ec-payments-ja.yaml", root=ROOT)


def _decoded(value: str) -> str:
    """A header decoded by RFC 2047 §6.2 (Python's address parser keeps a space between
    adjacent encoded words that real clients drop)."""
    from email.header import decode_header, make_header

    return str(make_header(decode_header(value)))


def test_english_mail_keeps_its_footer(renderer, campaign) -> None:
    msg, _ = render(renderer, campaign, step_id="case-study")
    assert '<html lang="en">' in msg.html
    assert re.search(r'Not relevant any more\? <a href="[^"]+/u/[^"]+"[^>]*>Unsubscribe</a> with one click\.', msg.html)
    assert "asked us about checkout payments for e-commerce merchants." in msg.html
    assert parse(msg.to_bytes())["To"].addresses[0].display_name == "Yui Sato"


def test_japanese_mail_lang_footer_and_name_order(renderer, ja_campaign) -> None:
    msg, _ = render(renderer, ja_campaign, step_id="case-study")
    raw = msg.to_bytes()
    m = parse(raw)
    html = m.get_body(("html",)).get_content()
    text = m.get_body(("plain",)).get_content().replace("\r\n", "\n")
    assert '<html lang="ja">' in html
    unsub = re.escape(msg.unsubscribe_url)
    assert re.search(rf'今後このようなご案内が不要な場合は、<a href="{unsub}"[^>]*>こちら</a>'
                     "からワンクリックで配信を停止できます。", html)
    assert ("本メールは、株式会社くも茶房にてEC事業者向けオンライン決済サービスについて"
            "お問い合わせいただいた方にお送りしております。") in html
    assert "Unsubscribe" not in html and "Not relevant" not in text and "asked us" not in text
    assert "株式会社くも茶房\n佐藤 結衣 様" in text  # family name first, 様 from the template
    assert _decoded(raw.split(b"\r\nTo: ")[1].split(b"\r\nSubject:")[0].decode()) == \
        "佐藤 結衣 <yui.sato@kumo-tea.example>"
    assert text.startswith("決済手段の拡充と画面の一体化で、導入から90日で成果が出ました。\n")
    assert m["Subject"] == "【導入事例】喫茶ロースターズが決済画面での離脱を23%削減した方法"
    nameless, _ = render(renderer, ja_campaign, step_id="service-page", sample=2)
    assert "有限会社オービットトイズ<br>ご担当者様" in nameless.html
    assert nameless.subject.startswith("【有限会社オービットトイズ様】")
    assert parse(nameless.to_bytes())["To"] == "info@orbit-toys.example"


def test_the_japanese_from_name_is_folded_into_short_encoded_words(renderer, ja_campaign) -> None:
    msg, _ = render(renderer, ja_campaign, step_id="webinar")
    head = msg.to_bytes().split(b"\r\n\r\n", 1)[0].decode("ascii")
    lines = head.split("\r\n")
    assert max(len(line) for line in lines) <= 78
    assert max(len(w) for w in re.findall(r"=\?[^?]+\?[bBqQ]\?[^?]*\?=", head)) <= 75
    from_value = head.split("\r\nFrom: ", 1)[1] if not head.startswith("From: ") else head[6:]
    from_value = re.split(r"\r\n(?=\S)", from_value, maxsplit=1)[0]
    assert "\r\n " in from_value  # folded onto a continuation line
    assert _decoded(from_value) == "アクメ・ペイメンツ株式会社 EC決済チーム <hello@acme.example>"


def test_footer_overrides_render_per_contact_through_the_cache(renderer, ja_campaign, settings, now) -> None:
    c = replace(ja_campaign, footer={"why": "{{ contact.company or '貴社' }}様へのご案内です。",
                                     "unsubscribe": "配信停止は[こちら]（{{ campaign.id }}）"})
    step = c.step("case-study")
    first, second = (renderer.render(campaign=c, step=step, contact=sample_contact(s, contact_id=i), send_id=i,
                                     link_ids=memory_link_ids(), now=now) for i, s in enumerate(c.samples[:2], 1))
    assert "株式会社くも茶房様へのご案内です。" in first.html
    assert "花織テキスタイル株式会社様へのご案内です。" in second.html
    assert "くも茶房" not in second.html
    link = re.escape(second.unsubscribe_url)
    assert re.search(rf'配信停止は<a href="{link}"[^>]*>こちら</a>（ec-payments-ja）', second.html)
    assert "お問い合わせいただいた方" not in first.html  # the catalogue's words are replaced
    assert renderer.stats["hits"] >= 1  # the second contact filled the first one's cached shape
    cold = Renderer.from_settings(settings)
    again = cold.render(campaign=c, step=step, contact=sample_contact(c.samples[1], contact_id=2), send_id=2,
                        link_ids=memory_link_ids(), now=now)
    assert again.to_bytes() == second.to_bytes()


def test_a_language_of_ones_own_with_its_footer(renderer, campaign, now) -> None:
    c = replace(campaign, locale="de", footer={"why": "Sie erhalten diese Mail von {{ sender.name }}.",
                                               "unsubscribe": "Nicht mehr relevant? [Abmelden] mit einem Klick."})
    msg, _ = render(renderer, c, step_id="case-study")
    assert '<html lang="de">' in msg.html and "Sie erhalten diese Mail von Acme Payments." in msg.html
    assert re.search(r'Nicht mehr relevant\? <a href="[^"]+/u/[^"]+"[^>]*>Abmelden</a> mit einem Klick\.', msg.html)
    assert f"Nicht mehr relevant? [Abmelden]({msg.unsubscribe_url}) mit einem Klick." in msg.text
    assert parse(msg.to_bytes())["To"].addresses[0].display_name == "Yui Sato"


def test_a_footer_whose_shape_depends_on_the_contact_still_renders_right(renderer, ja_campaign, now) -> None:
    c = replace(ja_campaign, footer={"why": "{{ contact.company | upper }}", "unsubscribe": "[x]"})
    step = c.step("case-study")
    for i, company in enumerate(["abc", "xyz"], 1):
        msg = renderer.render(campaign=c, step=step, contact=Contact(id=i, email="a@b.example", company=company),
                              send_id=i, link_ids=memory_link_ids(), now=now)
        assert company.upper() in msg.html and "NRTMK" not in msg.html.upper().replace(company.upper(), "")
