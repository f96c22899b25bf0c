"""nurture.render_mime: the hand-built message bytes, parsed back with the standard library's
email package (what a receiving mail client does)."""

from __future__ import annotations

import email
import email.policy
import functools
import re
from email.message import EmailMessage

import pytest

from nurture.render_mime import address, build_message, clean, header_line, mailbox, message_id_for, qp

TEXT = "Hello 山田,\n\nA line with trailing spaces  \n" + "y" * 200 + "\n= is not an escape\n"
HTML = '<p style="color: #333">Hello 山田 — <a href="https://acme.example/?a=1&amp;b=2">pricing</a></p>'


def parse(data: bytes) -> EmailMessage:
    msg = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def build(*, headers: list[tuple[str, str]] | None = None, text: str = TEXT, html: str = HTML,
          seed: str = "send-1") -> bytes:
    return build_message(headers=headers or [
        ("From", "Acme Payments <hello@acme.example>"), ("To", mailbox("Kim Lee", "kim@shop.example")),
        ("Subject", "Hello"), ("Message-ID", "<1.abc@acme.example>")], text=text, html=html, seed=seed)


def test_a_multipart_alternative_with_text_first_and_both_bodies_intact() -> None:
    msg = parse(build())
    assert msg.get_content_type() == "multipart/alternative" and msg["MIME-Version"] == "1.0"
    parts = list(msg.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    assert all(p["Content-Transfer-Encoding"] == "quoted-printable" and p.get_content_charset() == "utf-8"
               for p in parts)
    assert parts[0].get_content().replace("\r\n", "\n") == TEXT
    assert parts[1].get_content().replace("\r\n", "\n") == HTML
    body = msg.get_body(preferencelist=("html", "plain"))
    assert body is not None and body.get_content_type() == "text/html"
    assert msg.defects == [] and all(p.defects == [] for p in parts)


def test_every_line_ends_in_crlf_and_fits_in_78_octets() -> None:
    data = build(headers=[("From", "Acme <hello@acme.example>"), ("To", "kim@shop.example"),
                          ("Subject", "決済 " * 40)])
    assert b"\n" not in data.replace(b"\r\n", b"")
    lines = data.split(b"\r\n")
    assert max(len(line) for line in lines) <= 78
    assert all(b < 128 for b in data)  # 7bit on the wire: no SMTPUTF8 or 8BITMIME needed


def test_non_ascii_headers_are_encoded_words_that_decode_back() -> None:
    subject = "ShopCo: 決済をひとつに — " + "x" * 80
    msg = parse(build(headers=[
        ("From", "Acme Payments 日本 <hello@acme.example>"), ("To", mailbox("山田 \"Taro\"", "taro@shop.example")),
        ("Reply-To", '"Doe, Jane" <jane@acme.example>'), ("Subject", subject)]))
    assert msg["Subject"] == subject

    def people(name: str) -> list[tuple[str, str]]:
        return [(a.display_name, a.addr_spec) for a in msg[name].addresses]

    assert people("From") == [("Acme Payments 日本", "hello@acme.example")]
    assert people("To") == [("山田 'Taro'", "taro@shop.example")]
    assert people("Reply-To") == [("Doe, Jane", "jane@acme.example")]


def test_no_header_injection_through_values() -> None:
    msg = parse(build(headers=[
        ("From", "Acme <hello@acme.example>\r\nBcc: a@evil.example"),
        ("To", mailbox("Kim\r\nBcc: b@evil.example", "kim@shop.example")),
        ("Subject", "Hi\r\nBcc: c@evil.example\n\nbody"), ("X-Campaign", "c1\x00\tx")]))
    assert msg.get_all("Bcc") is None
    assert msg["Subject"] == "Hi Bcc: c@evil.example body" and msg["X-Campaign"] == "c1 x"
    assert [a.addr_spec for a in msg["To"].addresses] == ["kim@shop.example"]
    assert clean(" a\r\n\r\nb\t\x00c ") == "a b c"


def test_the_boundary_is_deterministic_and_cannot_occur_in_a_body() -> None:
    first = build(seed="send-1")
    assert build(seed="send-1") == first  # re-rendering a send gives the same bytes
    boundary = parse(first).get_boundary()
    assert boundary and boundary.startswith("=_nurture_") and parse(build(seed="send-2")).get_boundary() != boundary
    # A body that contains the boundary text verbatim: quoted-printable writes "=" as "=3D".
    tricky = f"--{boundary}\n--{boundary}--\n"
    msg = parse(build(text=tricky, html=tricky, seed="send-1"))
    parts = list(msg.iter_parts())
    assert len(parts) == 2 and parts[0].get_content().replace("\r\n", "\n") == tricky


def test_header_line_folds_long_ascii_and_encodes_the_rest() -> None:
    assert header_line("Subject", "Hello") == "Subject: Hello\r\n"
    long = header_line("Subject", "word " * 30)
    assert long.endswith("\r\n") and "\r\n " in long.rstrip("\r\n")  # folded
    assert max(len(x) for x in long.split("\r\n")) <= 78
    assert parse((long + "\r\n").encode())["Subject"] == ("word " * 30).strip()
    assert header_line("Subject", "日本").startswith("Subject: =?utf-8?")


def test_addresses() -> None:
    assert address("Acme <a@acme.example>") == "Acme <a@acme.example>"
    assert address("a@acme.example") == "a@acme.example"
    assert address('"Doe, Jane" <j@acme.example>') == '"Doe, Jane" <j@acme.example>'  # the slow path keeps quotes
    assert address("Ünï <u@acme.example>").startswith("=?utf-8?") and address("Ünï <u@acme.example>").endswith(
        " <u@acme.example>")
    assert mailbox("", "kim@shop.example") == "kim@shop.example"
    assert mailbox("kim@shop.example", "kim@shop.example") == "kim@shop.example"  # no name that repeats it
    assert mailbox("Kim Lee", "kim@shop.example") == "Kim Lee <kim@shop.example>"
    assert mailbox('Kim "K" Lee', "kim@shop.example") == "Kim 'K' Lee <kim@shop.example>"


def test_quoted_printable_normalises_line_ends() -> None:
    assert qp("a\r\nb\rc\n") == b"a\r\nb\r\nc\r\n"
    assert qp("tail \n") == b"tail=20\r\n"  # trailing whitespace survives transport
    assert qp("é=") == b"=C3=A9=3D"


def _keyed(secret: bytes):
    from nurture.signing import Signer

    return functools.partial(Signer({"k1": secret}, current="k1").keyed_digest, "message-id")


def test_message_ids_are_stable_per_send_and_carry_no_address() -> None:
    k = _keyed(b"s3cret")
    mid = message_id_for(7, "ec-payments", "Acme <hello@acme.example>", keyed=k)
    assert mid == message_id_for(7, "ec-payments", "Acme <HELLO@acme.example>", keyed=k)  # case of the address
    assert mid == message_id_for(7, "ec-payments", "Acme <hello@acme.example>", keyed=_keyed(b"s3cret"))
    assert mid.startswith("<7.") and mid.endswith("@acme.example>") and "hello" not in mid
    others = {message_id_for(8, "ec-payments", "hello@acme.example", keyed=k),
              message_id_for(7, "other", "hello@acme.example", keyed=k),
              message_id_for(7, "ec-payments", "news@acme.example", keyed=k)}
    assert mid not in others and len(others) == 3
    assert message_id_for(1, "c", "broken@", keyed=k).endswith("@nurture.invalid>")


def test_message_ids_cannot_be_computed_without_the_key() -> None:
    """Someone holding one of our mails knows campaign, send id and sender; without the
    tracking secret they still cannot compute another send's Message-ID (and forge a report
    that quotes it): the old unkeyed sha256, or another key, gives something else."""
    import hashlib

    mid = message_id_for(8, "ec-payments", "hello@acme.example", keyed=_keyed(b"s3cret"))
    digest = mid[len("<8."):].split("@")[0]
    plain = hashlib.sha256(b"ec-payments\x008\x00hello@acme.example").hexdigest()[:16]
    assert digest != plain
    assert mid != message_id_for(8, "ec-payments", "hello@acme.example", keyed=_keyed(b"other"))
    assert len(digest) == 16 and int(digest, 16) >= 0


@pytest.mark.parametrize("text", ["", "\n", "one line without an end"])
def test_short_bodies(text: str) -> None:
    parts = list(parse(build(text=text, html="<p></p>")).iter_parts())
    assert parts[0].get_content().replace("\r\n", "\n") == text and parts[1].get_content() == "<p></p>"


def test_a_long_japanese_display_name_becomes_short_encoded_words_on_folded_lines() -> None:
    from email.header import decode_header, make_header

    name = "株式会社アクメ・ペイメンツ 営業部 サポートチーム"
    to = mailbox("山田 太郎 株式会社ショップジャパン 購買部", "taro@shop.example")
    raw = build_message(headers=[("From", f"{name} <hello@acme.example>"), ("To", to), ("Subject", "hi"),
                                 ("List-Id", f"{name} <ec-payments-ja.acme.example>")],
                        text="x", html="y", seed="s")
    head = raw.split(b"\r\n\r\n")[0].decode("ascii")
    assert max(len(line) for line in head.split("\r\n")) <= 78
    words = re.findall(r"=\?utf-8\?b\?[^?]*\?=", head)
    assert len(words) >= 6 and max(len(w) for w in words) <= 75  # RFC 2047 §2
    unfolded = re.sub(r"\r\n[ \t]", " ", head)
    fields = dict(line.split(": ", 1) for line in unfolded.split("\r\n"))
    assert str(make_header(decode_header(fields["From"]))) == f"{name} <hello@acme.example>"
    assert str(make_header(decode_header(fields["List-Id"]))) == f"{name} <ec-payments-ja.acme.example>"
    assert fields["List-Id"].endswith(" <ec-payments-ja.acme.example>")  # the id itself is never encoded
