"""nurture.inbound.apply end to end through the store: real campaigns rendered and sent over a
real aiosmtpd sink with VERP return paths, then real reports (Postfix DSNs, ARF, replies as
mail clients write them; tests/corpus/inbound) rewritten to name those sends, received."""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path

import pytest

from nurture.campaigns import load_campaign
from nurture.inbound import ProviderEvent, parse_recipient, receive, receive_event
from nurture.models import Exit
from nurture.render import Renderer
from nurture.scheduler import enroll, tick
from nurture.sender import Backoff, SenderOptions, renderer_build, run_sender
from nurture.signing import Signer
from nurture.store import open_async_store
from nurture.store.contacts import ContactRow

CORPUS = Path(__file__).parent / "corpus" / "inbound"
FAST = SenderOptions(backoff=Backoff(base=timedelta(0)), idle=0.05)
PEOPLE = ("ken@shop.example", "gone@shop.example", "aya@shop.example", "mia@gmail.com")


@pytest.fixture
def inbound_settings(make_settings):
    def make(port: int = 1, **inbound):
        return make_settings(smtp={"host": "127.0.0.1", "port": port, "rate": "100000/s", "timeout": 5},
                             inbound={"return_path": "bounces@bounce.acme.example", **inbound})
    return make


@pytest.fixture
def campaign(root):
    c = load_campaign(root / "campaigns" / "ec-payments.yaml", root=root)
    return replace(c, send_window=type(c.send_window)())  # any hour: the test clock is fixed


async def send_first_step(db_path, settings, campaign, now, smtp_sink):
    """Import PEOPLE, enroll them, and deliver the first step; returns {email: (send id, Message-ID)}."""
    astore = open_async_store(db_path)
    try:
        await astore.run(lambda s: s.upsert_contacts(
            [ContactRow(e, {"first_name": e.split("@")[0].title(), "company": "ShopCo"}) for e in PEOPLE], now=now))
        await astore.run(lambda s: enroll(s, campaign, now=now, all_contacts=True))
        renderer = Renderer.from_settings(settings)
        await run_sender(store=astore, settings=settings, build=renderer_build(renderer, {campaign.id: campaign}),
                         now=lambda: now, stop=asyncio.Event(), once=True, options=FAST,
                         tick=lambda s, at: tick(s, {campaign.id: campaign}, now=at))
        rows = await astore.run(lambda s: s.query(
            "SELECT s.id, s.message_id, c.email FROM sends s JOIN contacts c ON c.id = s.contact_id"
            " WHERE s.status = 'sent'"))
    finally:
        await astore.aclose()
    return {r["email"]: (r["id"], r["message_id"]) for r in rows}


def fixture(name: str, **subs: str) -> bytes:
    """A corpus message with strings replaced (its VERP address, Message-IDs, addresses)."""
    data = (CORPUS / name).read_bytes()
    for old, new in subs.items():
        data = data.replace(old.encode(), new.encode())
    return data


def snapshot(store) -> str:
    """Everything an inbound item may change, to show that a hostile one changed nothing."""
    out = {}
    for table in ("contacts", "enrollments", "sends", "suppressions", "tasks", "events"):
        out[table] = store.query(f"SELECT * FROM {table} ORDER BY 1")
    return json.dumps(out, default=str, sort_keys=True)


def verp(settings, send_id):
    from nurture.inbound import return_path

    return return_path(Signer.from_settings(settings.tracking), send_id, address=settings.inbound.return_path)


# -- the sender side ------------------------------------------------------------------------------------

async def test_each_mail_goes_out_with_its_own_verp_return_path(smtp_sink, inbound_settings, db_path, campaign, now,
                                                                store):
    settings = inbound_settings(smtp_sink.port)
    sent = await send_first_step(db_path, settings, campaign, now, smtp_sink)
    assert len(smtp_sink.sink.messages) == len(PEOPLE) == len(sent)
    signer = Signer.from_settings(settings.tracking)
    by_rcpt = {m.rcpt_tos[0]: m for m in smtp_sink.sink.messages}
    for email, (send_id, message_id) in sent.items():
        mail_from = by_rcpt[email].mail_from
        assert mail_from.startswith("bounces+") and mail_from.endswith("@bounce.acme.example")
        assert mail_from == mail_from.lower()  # case-folding MTAs cannot break it
        assert parse_recipient(signer, mail_from) == ("bounce", send_id)
        assert by_rcpt[email].message["Message-ID"] == message_id  # the stored one


async def test_reply_domain_routes_reply_to_through_a_reply_token(smtp_sink, inbound_settings, db_path, campaign,
                                                                  now):
    settings = inbound_settings(smtp_sink.port, reply_domain="reply.acme.example")
    sent = await send_first_step(db_path, settings, campaign, now, smtp_sink)
    msg = next(m for m in smtp_sink.sink.messages if m.rcpt_tos == ["ken@shop.example"]).message
    kind_id = parse_recipient(Signer.from_settings(settings.tracking), msg["Reply-To"].addresses[0].addr_spec)
    assert kind_id == ("reply", sent["ken@shop.example"][0])


# -- bounces ------------------------------------------------------------------------------------------

#: The real MTAs' reports for an unknown user and a delay, with the fixture send id each names
#: (tests/corpus/inbound/make_fixtures.sh and make_exim_fixtures.sh made them).
UNKNOWN_USER = {"postfix": ("postfix-550-user-unknown.eml", 101), "exim": ("exim-550-user-unknown.eml", 111)}
DELAYED = {"postfix": ("postfix-delayed.eml", 103), "exim": ("exim-delayed.eml", 113)}


def fixture_verp(send_id: int) -> str:
    """The VERP address a fixture's test mail had (the fixture key ring of mta_helper.py)."""
    from nurture.inbound import return_path

    return return_path(Signer({"k1": b"inbound-fixture-secret"}, current="k1"), send_id, address="bounces@bounce.test")


@pytest.mark.parametrize("mta", sorted(UNKNOWN_USER))
async def test_a_real_mtas_dsn_after_acceptance_bounces_the_contact_and_nothing_more_is_sent(
        smtp_sink, inbound_settings, db_path, campaign, now, store, mta):
    settings = inbound_settings(smtp_sink.port)
    sent = await send_first_step(db_path, settings, campaign, now, smtp_sink)
    send_id, mid = sent["gone@shop.example"]
    name, fixture_id = UNKNOWN_USER[mta]
    dsn = fixture(name, **{
        fixture_verp(fixture_id): verp(settings, send_id),
        f"<{fixture_id}.fixture@acme.test>": mid, "gone@shop.test": "gone@shop.example"})
    result = receive(store, dsn, settings=settings, campaigns={campaign.id: campaign}, now=now + timedelta(minutes=5),
                     source="pipe")
    assert (result.kind, result.status, result.matched_by, result.send_id) == ("hard_bounce", "5.1.1", "verp", send_id)
    contact = store.get_contact_by_email("gone@shop.example")
    assert contact.status == "bounced" and store.is_suppressed("gone@shop.example")
    assert store.get_enrollment(campaign.id, contact.id).state == "exited"
    [event] = store.events(kind="contact.bounced")
    assert event.payload["send_id"] == send_id and event.payload["status"] == "5.1.1"
    # A week later the next step goes to everyone else, not to the dead address.
    later = now + timedelta(days=8)
    tick(store, {campaign.id: campaign}, now=later)
    queued = {r["email"] for r in store.query(
        "SELECT c.email FROM sends s JOIN contacts c ON c.id = s.contact_id WHERE s.status = 'queued'")}
    assert queued == set(PEOPLE) - {"gone@shop.example"}


async def test_the_same_dsn_twice_is_applied_once(smtp_sink, inbound_settings, db_path, campaign, now, store):
    settings = inbound_settings(smtp_sink.port)
    sent = await send_first_step(db_path, settings, campaign, now, smtp_sink)
    send_id, mid = sent["gone@shop.example"]
    dsn = fixture("postfix-550-user-unknown.eml", **{
        "bounces+aebgwmlf4jbrrrebylnr6pqciqia@bounce.test": verp(settings, send_id), "<101.fixture@acme.test>": mid})
    first = receive(store, dsn, settings=settings, campaigns={}, now=now, source="imap")
    before = snapshot(store)
    again = receive(store, dsn, settings=settings, campaigns={}, now=now, source="pipe")
    assert not first.duplicate and again.duplicate and again.id == first.id
    assert snapshot(store) == before
    assert len(store.list_inbound()) == 1


@pytest.mark.parametrize("mta", sorted(DELAYED))
async def test_delay_warnings_are_soft_until_they_repeat_over_days(smtp_sink, inbound_settings, db_path, campaign,
                                                                   now, store, mta):
    settings = inbound_settings(smtp_sink.port, soft_bounce_limit=3, soft_bounce_span="3d")
    sent = await send_first_step(db_path, settings, campaign, now, smtp_sink)
    send_id, mid = sent["aya@shop.example"]
    name, fixture_id = DELAYED[mta]
    data = (CORPUS / name).read_bytes()
    [mid_field] = re.findall(rb"^Message-I[Dd]: <", data, re.M)[:1]  # the report's own Message-ID field

    def warning(n: int) -> bytes:
        return fixture(name, **{
            fixture_verp(fixture_id): verp(settings, send_id),
            mid_field.decode(): f"{mid_field.decode()}{n}.", "later@slow.test": "aya@shop.example"})

    results = [receive(store, warning(n), settings=settings, campaigns={}, now=now + timedelta(days=d), source="pipe")
               for n, d in ((1, 0), (2, 1), (3, 2))]
    assert [r.kind for r in results] == ["soft_bounce"] * 3
    assert not store.is_suppressed("aya@shop.example")  # three within two days: a passing outage
    last = receive(store, warning(4), settings=settings, campaigns={}, now=now + timedelta(days=4), source="pipe")
    assert "suppressed aya@shop.example" in last.action
    assert store.get_contact_by_email("aya@shop.example").status == "bounced"


async def test_provider_events_are_applied_once_and_only_for_addresses_we_sent_to(
        smtp_sink, inbound_settings, db_path, campaign, now, store):
    settings = inbound_settings(smtp_sink.port)
    sent = await send_first_step(db_path, settings, campaign, now, smtp_sink)
    event = ProviderEvent(provider="ses", event_id="0100018c-aaaa", kind="hard_bounce", recipient="Gone@Shop.example",
                          message_id=sent["gone@shop.example"][1].strip("<>"), status="5.1.1", at=now,
                          raw={"bounceType": "Permanent"})
    first = receive_event(store, event, settings=settings, campaigns={}, now=now)
    assert first.matched_by == "provider message-id" and store.is_suppressed("gone@shop.example")
    before = snapshot(store)
    assert receive_event(store, event, settings=settings, campaigns={}, now=now).duplicate
    stranger = replace(event, event_id="0100018c-bbbb", recipient="someone@else.example", message_id=None)
    result = receive_event(store, stranger, settings=settings, campaigns={}, now=now)
    assert result.send_id is None and "never sent" in " ".join(result.reasons)
    complaint = replace(event, event_id="c-1", kind="complaint", recipient="ken@shop.example", message_id=None)
    assert receive_event(store, complaint, settings=settings, campaigns={}, now=now).matched_by == "provider recipient"
    assert store.query_one("SELECT reason FROM suppressions WHERE email_key = 'ken@shop.example'")["reason"] == \
        "complaint"
    assert snapshot(store) != before


# -- complaints -----------------------------------------------------------------------------------------

async def test_an_arf_complaint_suppresses_and_exits(smtp_sink, inbound_settings, db_path, campaign, now, store):
    settings = inbound_settings(smtp_sink.port)
    sent = await send_first_step(db_path, settings, campaign, now, smtp_sink)
    send_id, mid = sent["ken@shop.example"]
    arf = (CORPUS / "arf-abuse.eml").read_bytes()
    token_105 = next(t for t in arf.decode().split() if t.startswith("<bounces+")).strip("<>")
    arf = arf.replace(token_105.encode(), verp(settings, send_id).encode()).replace(
        b"<105.fixture@acme.test>", mid.encode()).replace(b"victim@example.com", b"ken@shop.example")
    result = receive(store, arf, settings=settings, campaigns={campaign.id: campaign}, now=now, source="imap")
    assert result.kind == "complaint" and result.send_id == send_id
    assert store.query_one("SELECT reason FROM suppressions WHERE email_key = 'ken@shop.example'")["reason"] == \
        "complaint"
    contact = store.get_contact_by_email("ken@shop.example")
    assert store.get_enrollment(campaign.id, contact.id).exit_reason == "complaint"
    assert [e.payload["send_id"] for e in store.events(kind="contact.complained")] == [send_id]
    assert store.funnel(campaign.id)[campaign.steps[0].id]["complaints"] == 1


# -- replies -----------------------------------------------------------------------------------------------

async def test_a_reply_fires_the_replied_exit_and_a_call_now_task_with_its_new_text(
        smtp_sink, inbound_settings, db_path, campaign, now, store):
    settings = inbound_settings(smtp_sink.port)
    sent = await send_first_step(db_path, settings, campaign, now, smtp_sink)
    send_id, mid = sent["ken@shop.example"]
    reply = fixture("reply-gmail.eml", **{"<201.fixture@acme.test>": mid})
    result = receive(store, reply, settings=settings, campaigns={campaign.id: campaign},
                     now=now + timedelta(hours=1), source="imap")
    assert (result.kind, result.matched_by, result.send_id) == ("reply", "message-id", send_id)
    contact = store.get_contact_by_email("ken@shop.example")
    assert store.get_enrollment(campaign.id, contact.id).exit_reason == "replied"
    task = store.get_task(result.task_id)
    assert (task.kind, task.priority) == ("call_now", "high")  # no replied rule in the shipped campaign
    assert "Could you call me on Thursday?" in task.reason and "wrote:" not in task.reason
    assert task.rep_id is not None  # routed like a click's task
    [event] = store.events(kind="contact.replied")
    assert event.payload["text"].startswith("Could you call me on Thursday?")
    # Others at the same company keep going: the shipped campaign says exit: [replied], not {replied: company}.
    other = store.get_contact_by_email("aya@shop.example")
    assert store.get_enrollment(campaign.id, other.id).state == "active"


async def test_replied_company_stops_colleagues_but_not_free_mail_users(smtp_sink, inbound_settings, db_path,
                                                                        campaign, now, store):
    settings = inbound_settings(smtp_sink.port)
    sent = await send_first_step(db_path, settings, campaign, now, smtp_sink)
    company = replace(campaign, exits=(*campaign.exits, Exit("replied", "company")))
    reply = fixture("reply-apple-mail.eml", **{"<201.fixture@acme.test>": sent["ken@shop.example"][1]})
    result = receive(store, reply, settings=settings, campaigns={campaign.id: company}, now=now, source="pipe")
    assert "2 other contacts at shop.example stopped" in result.action
    states = {e: store.get_enrollment(campaign.id, store.get_contact_by_email(e).id).exit_reason for e in PEOPLE}
    assert states == {"ken@shop.example": "replied", "gone@shop.example": "replied: ken@shop.example",
                      "aya@shop.example": "replied: ken@shop.example", "mia@gmail.com": None}


async def test_a_japanese_unsubscribe_reply_unsubscribes(smtp_sink, inbound_settings, db_path, campaign, now, store):
    settings = inbound_settings(smtp_sink.port)
    sent = await send_first_step(db_path, settings, campaign, now, smtp_sink)
    reply = fixture("reply-unsubscribe-ja.eml", **{"<201.fixture@acme.test>": sent["ken@shop.example"][1]})
    result = receive(store, reply, settings=settings, campaigns={campaign.id: campaign}, now=now, source="pipe")
    assert result.kind == "unsubscribe" and result.task_id is None
    assert store.get_contact_by_email("ken@shop.example").status == "unsubscribed"
    assert store.events(kind="contact.unsubscribed")[0].payload["source"] == "reply via pipe"


# -- out of office ---------------------------------------------------------------------------------------

async def test_out_of_office_pauses_until_the_return_date_and_raises_no_task(
        smtp_sink, inbound_settings, db_path, campaign, now, store):
    settings = inbound_settings(smtp_sink.port)
    sent = await send_first_step(db_path, settings, campaign, now, smtp_sink)
    ooo = fixture("ooo-gmail-en.eml", **{"<201.fixture@acme.test>": sent["ken@shop.example"][1]})
    result = receive(store, ooo, settings=settings, campaigns={campaign.id: campaign}, now=now, source="imap")
    assert result.kind == "auto_reply" and result.task_id is None
    assert store.query_one("SELECT count(*) AS n FROM tasks")["n"] == 0
    contact = store.get_contact_by_email("ken@shop.example")
    enrollment = store.get_enrollment(campaign.id, contact.id)
    assert enrollment.state == "active"
    tz = contact.timezone or campaign.timezone
    assert enrollment.next_at.astimezone(__import__("zoneinfo").ZoneInfo(tz)).date() == date(2026, 12, 14)
    # The second step is due a week after the first (Dec 1); on Dec 8 the others get it, Ken does not.
    tick(store, {campaign.id: campaign}, now=now + timedelta(days=8))
    waiting = store.query("SELECT contact_id FROM sends WHERE status = 'queued'")
    assert contact.id not in {r["contact_id"] for r in waiting} and len(waiting) == len(PEOPLE) - 1
    tick(store, {campaign.id: campaign}, now=result.resume_at + timedelta(minutes=1))
    assert contact.id in {r["contact_id"] for r in store.query("SELECT contact_id FROM sends WHERE status = 'queued'")}


def test_out_of_office_holds_a_step_in_flight_when_it_is_delivered(store, make_settings, now):
    """A pause that comes while the next step is queued holds that send, and the step after it."""
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from support import add_contact, add_send, make_campaign

    settings = make_settings()
    c = make_campaign()
    with store.transaction():
        cid = add_contact(store, "ken@shop.example")
        sid = add_send(store, cid)
        store.set_message_id(sid, "<1.x@acme.example>")
        store.conn.execute("UPDATE enrollments SET next_at = NULL, next_wait = 604800")
        store.conn.execute("UPDATE sends SET status = 'sending'")  # handed to SMTP, not yet marked
    ooo = fixture("ooo-gmail-en.eml", **{"<201.fixture@acme.test>": "<1.x@acme.example>"})
    result = receive(store, ooo, settings=settings, campaigns={c.id: c}, now=now, source="pipe")
    assert result.resume_at is not None
    store.mark_sent(sid, now=now)  # e.g. a retry of the same step delivered now
    assert store.get_enrollment(c.id, cid).next_at >= result.resume_at


# -- hostile input changes nothing -------------------------------------------------------------------------

async def test_hostile_messages_leave_everything_as_it_was(smtp_sink, inbound_settings, db_path, campaign, now, store):
    settings = inbound_settings(smtp_sink.port, max_bytes=1_000_000)
    sent = await send_first_step(db_path, settings, campaign, now, smtp_sink)
    ken_mid = sent["ken@shop.example"][1]
    cases = {
        "garbage": b"\x00\xff\xfe not a message at all \x00" * 50,
        "20 MB": b"Subject: big\r\n\r\n" + b"x" * 20_000_000,
        "forged ARF for a stranger": (CORPUS / "arf-forged-stranger.eml").read_bytes(),
        "forged DSN, forged token": fixture("postfix-550-user-unknown.eml", **{
            "bounces+aebgwmlf4jbrrrebylnr6pqciqia@bounce.test": "bounces+aebgwmlf4jbrrrebylnr6pqciqib@bounce.test",
            "gone@shop.test": "ken@shop.example"}),
        "DSN quoting our Message-ID for another address": fixture("postfix-550-user-unknown.eml", **{
            "bounces+aebgwmlf4jbrrrebylnr6pqciqia@bounce.test": "bounces@bounce.acme.example",
            "<101.fixture@acme.test>": ken_mid, "Message-Id: <": "Message-Id: <2."}),
        "a reply that quotes no send": (CORPUS / "reply-gmail.eml").read_bytes(),
        "a reply quoting our Message-ID from someone else": fixture("reply-gmail.eml", **{
            "<201.fixture@acme.test>": ken_mid, "ken@shop.example": "mallory@evil.example",
            "<CAreply1@": "<CAreply2@"}),
        "a click token used as a bounce token": fixture("reply-gmail.eml", **{"<CAreply1@": "<CAreply3@",
            "To: Acme Payments <hello@acme.test>":
                "To: bounces+" + Signer.from_settings(settings.tracking).sign_lower("click", 1, 1) + "@b.example"}),
        "nested multiparts": b"Content-Type: multipart/mixed; boundary=a\r\n\r\n"
                             + b"--a\r\nContent-Type: multipart/mixed; boundary=a\r\n\r\n" * 5000,
    }
    before = snapshot(store)
    for name, raw in cases.items():
        result = receive(store, raw, settings=settings, campaigns={campaign.id: campaign}, now=now, source="test")
        assert result.send_id is None, name
        assert result.action.startswith("nothing"), (name, result.action)
        assert result.reasons, name
    assert snapshot(store) == before
    rows = {r["id"]: r for r in store.list_inbound(unmatched=True, limit=100)}
    assert len(rows) == len(cases)
    assert any("too large" in " ".join(r["reasons"]) for r in rows.values())
