"""nurture.inbound.classify on real and RFC-example messages (tests/corpus/inbound), and the
pieces: return dates in English and Japanese, unsubscribe phrases, hostile input."""

from __future__ import annotations

import email
import email.policy
import time
from datetime import date
from pathlib import Path

import pytest

from nurture.inbound import classify, new_text_of, return_date_in
from nurture.inbound.classify import is_unsubscribe_request

CORPUS = Path(__file__).parent / "corpus" / "inbound"


def load(name: str) -> email.message.EmailMessage:
    return email.message_from_bytes((CORPUS / name).read_bytes(), policy=email.policy.default)


# name: (kind, recipient, status, return date, start of the new text)
EXPECTED = {
    "postfix-550-user-unknown.eml": ("hard_bounce", "gone@shop.test", "5.1.1", None, ""),
    "postfix-local-unknown-user.eml": ("hard_bounce", "nobody-here@mta.test", "5.1.1", None, ""),
    "postfix-552-mailbox-full.eml": ("soft_bounce", "full@shop.test", "5.2.2", None, ""),
    "postfix-delayed.eml": ("soft_bounce", "later@slow.test", "4.4.1", None, ""),
    "exim-550-user-unknown.eml": ("hard_bounce", "gone@shop.test", "5.1.1", None, ""),
    "exim-delayed.eml": ("soft_bounce", "later@slow.test", "4.4.1", None, ""),
    "qmail-failure-notice.eml": ("hard_bounce", "old@shop.example", "5.1.1", None, ""),
    "arf-abuse.eml": ("complaint", "victim@example.com", None, None, ""),
    "autoreply-ticket.eml": ("auto_reply", None, None, None, "Thank you for contacting us."),
    "ooo-gmail-en.eml": ("auto_reply", None, None, date(2026, 12, 14), "Hi, I'm away"),
    "ooo-outlook-ja.eml": ("auto_reply", None, None, date(2026, 12, 15), "お問い合わせ"),
    "reply-gmail.eml": ("reply", None, None, None, "Could you call me on Thursday?\n\nKen"),
    "reply-outlook-html.eml": ("reply", None, None, None, "Sounds good – please send the pricing for 3 shops."),
    "reply-apple-mail.eml": ("reply", None, None, None, "Interested. What does it cost for a shop our size?"),
    "reply-ja-iso2022jp.eml": ("reply", None, None, None, "木曜日にお電話いただけますか？\n\n森"),
    "reply-ja-utf8.eml": ("reply", None, None, None, "資料ありがとうございます。来週、打ち合わせをお願いできますか。"),
    "reply-unsubscribe-en.eml": ("unsubscribe", None, None, None, "Remove me."),
    "reply-unsubscribe-ja.eml": ("unsubscribe", None, None, None, "配信停止"),
}


def test_every_fixture_is_covered():
    assert {p.name for p in CORPUS.glob("*.eml")} - {"arf-forged-stranger.eml"} == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_fixture(name: str):
    kind, recipient, status, returns, text = EXPECTED[name]
    c = classify(load(name))
    assert (c.kind, c.recipient, c.status, c.return_date) == (kind, recipient, status, returns), c.reasons
    assert c.new_text.startswith(text)
    assert c.reasons
    if kind in ("reply", "unsubscribe"):
        for quoted in ("wrote:", "> ", "差出人", "Original Message", "From:", "On 23 Nov"):
            assert quoted not in c.new_text, (quoted, c.new_text)


@pytest.mark.parametrize("name", ["postfix-550-user-unknown.eml", "postfix-delayed.eml", "arf-abuse.eml",
                                  "qmail-failure-notice.eml", "exim-550-user-unknown.eml", "exim-delayed.eml"])
def test_reports_name_the_original_message_and_the_verp_address(name: str):
    c = classify(load(name))
    assert any(m.endswith(".fixture@acme.test>") for m in c.message_ids)
    assert any(v.startswith("bounces+") for v in c.verp_recipients)


def test_exims_generic_status_gives_way_to_the_remote_servers_code():
    hard, delayed = classify(load("exim-550-user-unknown.eml")), classify(load("exim-delayed.eml"))
    assert "Status: 5.0.0" in hard.reasons and "5.1.1 from the Diagnostic-Code (the Status is generic)" in hard.reasons
    assert "Action: delayed" in delayed.reasons and "Status: 4.0.0" in delayed.reasons
    # A generic status whose diagnostic says nothing more, or says another class, stays as it is.
    msg = load("exim-550-user-unknown.eml")
    text = msg.as_bytes().replace(b"smtp; 550 5.1.1", b"smtp; 550").replace(b"550 5.1.1 <", b"550 <")
    assert classify(email.message_from_bytes(text, policy=email.policy.default)).status == "5.0.0"
    text = msg.as_bytes().replace(b"smtp; 550 5.1.1", b"smtp; 550 4.4.1")
    assert classify(email.message_from_bytes(text, policy=email.policy.default)).status == "5.0.0"


def test_replies_refer_to_what_they_answer():
    c = classify(load("reply-gmail.eml"))
    assert c.message_ids == ("<201.fixture@acme.test>",) and c.sender == "ken@shop.example"


def test_out_of_office_is_never_a_reply():
    for name in ("ooo-gmail-en.eml", "ooo-outlook-ja.eml", "autoreply-ticket.eml"):
        c = classify(load(name))
        assert c.kind == "auto_reply"
    assert classify(load("ooo-gmail-en.eml")).out_of_office
    assert not classify(load("autoreply-ticket.eml")).out_of_office


REF = date(2026, 11, 24)


@pytest.mark.parametrize("text, expected", [
    ("I'll be back on 14 December.", date(2026, 12, 14)),
    ("Back on Monday, December 14th", date(2026, 12, 14)),
    ("I am out of the office until 2027-01-05.", date(2027, 1, 5)),
    ("returning on the 3rd of January", date(2027, 1, 3)),  # the next 3 January after the message
    ("I will return to the office on 15 Dec 2026", date(2026, 12, 15)),
    ("12月14日まで不在にしております", date(2026, 12, 15)),  # away through the 14th
    ("１２月１４日（月）より出社いたします", date(2026, 12, 14)),  # full-width digits
    ("2027年1月6日に戻ります", date(2027, 1, 6)),
    ("12/14まで休暇をいただいております", date(2026, 12, 15)),
    ("I'm out of office with limited access to email.", None),
    ("back on 31 February", None),
    ("back on 14 December 2030", None),  # too far ahead to believe
])
def test_return_dates(text: str, expected: date | None):
    assert return_date_in(text, reference=REF) == expected


def test_without_a_reference_only_dates_with_a_year_count():
    assert return_date_in("back on 14 December", reference=None) is None
    assert return_date_in("back on 14 December 2026", reference=None) == date(2026, 12, 14)


@pytest.mark.parametrize("text, expected", [
    ("unsubscribe", True), ("Remove me.", True), ("Please remove me from your list!", True),
    ("STOP", True), ("配信停止", True), ("配信停止でお願いします。", True), ("remove me\n\nKen", True),
    ("Please unsubscribe my colleague, but send me the pricing.", False),
    ("Could you remove me from the webinar and call me instead?", False), ("", False),
])
def test_unsubscribe_requests_are_the_whole_new_text(text: str, expected: bool):
    assert is_unsubscribe_request(text) is expected


def test_quoted_history_is_stripped_in_several_conventions():
    assert new_text_of("Yes please.\n\n-----Original Message-----\nFrom: a@b\nhi") == "Yes please."
    assert new_text_of("はい、お願いします。\n\n-----元のメッセージ-----\n差出人: a@b") == "はい、お願いします。"
    assert new_text_of("OK\n\nSent from my iPhone") == "OK"
    assert new_text_of("> only quoted\n> text") == ""


HOSTILE = [
    b"",
    b"\x00\xff" * 1000,
    b"Content-Type: multipart/report; report-type=delivery-status; boundary=x\r\n\r\n--x\r\n"
    b"Content-Type: message/delivery-status\r\n\r\nAction: failed\r\nStatus: 9.9.9.9.9\r\n--x--",
    b"Content-Type: multipart/mixed; boundary=a\r\n\r\n" + b"--a\r\nContent-Type: multipart/mixed; boundary=a\r\n\r\n"
    * 3000,
    b"Subject: =?x-unknown?B?AAAA?=\r\nContent-Type: text/plain; charset=x-no-such-charset\r\n\r\nhello",
    b"From: " + b"a" * 100_000 + b"\r\n\r\nbody",
    b"Subject: back on\r\nAuto-Submitted: auto-replied\r\n\r\n" + b"back on " * 20_000,
    b"Content-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!notbase64",
]


@pytest.mark.parametrize("raw", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_input_never_raises_and_is_quick(raw: bytes):
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    start = time.perf_counter()
    c = classify(msg)
    assert time.perf_counter() - start < 2.0
    assert c.kind in ("unknown", "auto_reply", "soft_bounce", "hard_bounce", "reply") and c.reasons


def test_classifying_a_reply_takes_milliseconds():
    msg = load("reply-gmail.eml")
    classify(msg)
    start = time.perf_counter()
    for _ in range(50):
        classify(msg)
    assert (time.perf_counter() - start) / 50 < 0.05
