"""nurture.inbound.forward: a reply that came to a ``reply+`` address is forwarded to its rep
over a real SMTP relay (aiosmtpd), once, as a new message of ours with the reply attached."""

from __future__ import annotations

import asyncio
import email
import email.policy
from dataclasses import replace
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path

import pytest

from nurture.campaigns import load_campaign
from nurture.inbound import receive
from nurture.inbound.forward import LEASE, forward_round
from nurture.render import Renderer
from nurture.scheduler import enroll, tick
from nurture.sender import Backoff, SenderOptions, renderer_build, run_sender
from nurture.sink import Sink, start_sink
from nurture.smtp_pool import SmtpConnection
from nurture.store import open_async_store
from nurture.store.contacts import ContactRow

CORPUS = Path(__file__).parent / "corpus" / "inbound"
FAST = SenderOptions(backoff=Backoff(base=timedelta(0)), idle=0.05)


@pytest.fixture
def campaign(root):
    c = load_campaign(root / "campaigns" / "ec-payments.yaml", root=root)
    return replace(c, send_window=type(c.send_window)())


def make(make_settings, port: int, **inbound):
    return make_settings(smtp={"host": "127.0.0.1", "port": port, "rate": "100000/s", "timeout": 5},
                         inbound={"return_path": "bounces@bounce.acme.example", "reply_domain": "reply.acme.example",
                                  **inbound})


async def send_to_ken(settings, campaign, now, owner: str | None = "baker") -> None:
    astore = open_async_store(settings.database)
    try:
        fields = {"first_name": "Ken", "company": "ShopCo", **({"owner": owner} if owner else {})}
        await astore.run(lambda s: s.upsert_contacts([ContactRow("ken@shop.example", fields)], now=now))
        await astore.run(lambda s: enroll(s, campaign, now=now, all_contacts=True))
        await run_sender(store=astore, settings=settings,
                         build=renderer_build(Renderer.from_settings(settings), {campaign.id: campaign}),
                         now=lambda: now, stop=asyncio.Event(), once=True, options=FAST,
                         tick=lambda s, at: tick(s, {campaign.id: campaign}, now=at))
    finally:
        await astore.aclose()


def ken_replies(sent_mail: EmailMessage) -> tuple[bytes, str]:
    """Ken's Gmail reply to the mail he got, addressed as his client does: to its Reply-To."""
    reply_to = sent_mail["Reply-To"].addresses[0].addr_spec
    data = (CORPUS / "reply-gmail.eml").read_bytes()
    data = data.replace(b"<201.fixture@acme.test>", sent_mail["Message-ID"].encode())
    data = data.replace(b"To: Acme Payments <hello@acme.test>", f"To: Acme Payments <{reply_to}>".encode())
    return data, reply_to


def parse(data: bytes) -> EmailMessage:
    msg = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


async def test_a_reply_to_the_reply_address_reaches_its_rep_once_as_our_own_message(
        smtp_sink, make_settings, campaign, now, store):
    settings = make(make_settings, smtp_sink.port)
    await send_to_ken(settings, campaign, now)
    [mail] = smtp_sink.sink.messages
    reply, reply_to = ken_replies(mail.message)
    at = now + timedelta(hours=1)
    result = receive(store, reply, settings=settings, campaigns={campaign.id: campaign}, now=at, source="smtp",
                     envelope_recipients=(reply_to,))
    assert (result.kind, result.matched_by) == ("reply", "reply address")
    assert "forward to baker@acme.example queued" in result.action
    again = receive(store, reply, settings=settings, campaigns={campaign.id: campaign}, now=at, source="smtp",
                    envelope_recipients=(reply_to,))
    assert again.duplicate
    [queued] = store.list_forwards()
    assert (queued.inbound_id, queued.status, queued.rep_id, queued.task_id) == (result.id, "queued", "baker",
                                                                                  result.task_id)

    astore = open_async_store(settings.database)
    conn = SmtpConnection(settings.smtp)
    try:
        assert await forward_round(store=astore, send=conn.send, now=lambda: at) is False
        assert await forward_round(store=astore, send=conn.send, now=lambda: at + timedelta(hours=1)) is False
    finally:
        await conn.quit()
        await astore.aclose()
    forwards = smtp_sink.sink.messages[1:]
    assert len(forwards) == 1, "forwarded exactly once"
    [fwd] = forwards
    assert fwd.rcpt_tos == ["baker@acme.example"] and fwd.mail_from == "bounces@bounce.acme.example"
    msg = fwd.message
    # DMARC: the From is ours (the relay signs for acme.example), the contact is the Reply-To.
    assert msg["From"].addresses[0].addr_spec == "hello@acme.example"
    assert "Ken" in msg["From"].addresses[0].display_name
    assert msg["Reply-To"].addresses[0].addr_spec == "ken@shop.example"
    assert msg["To"].addresses[0].addr_spec == "baker@acme.example"
    assert msg["Subject"] == "Fwd: Re: Checkout payments for ShopCo"
    assert msg["Auto-Submitted"] == "auto-forwarded"
    assert msg["Message-ID"] == queued.message_id and "@acme.example>" in msg["Message-ID"]
    assert mail.message["Message-ID"] in msg["References"] and "<CAreply1@mail.gmail.com>" in msg["References"]
    note, attached = list(msg.iter_parts())
    text = note.get_content()
    assert "Could you call me on Thursday?" in text and f"/tasks/{result.task_id}" in text
    assert "wrote:" not in text  # the note has the new text; the history is in the attachment
    assert attached.get_content_type() == "message/rfc822"
    original = attached.get_payload()[0]
    assert original["Message-ID"] == "<CAreply1@mail.gmail.com>" and original["From"] == "Ken Mori <ken@shop.example>"
    raw_attached = fwd.data.split(b"Content-Transfer-Encoding: 7bit\r\n\r\n", 1)[1]
    assert raw_attached.startswith(reply.split(b"\n", 1)[0].rstrip(b"\r"))  # the reply's own bytes, unchanged
    [row] = store.list_forwards()
    assert (row.status, row.attempts, row.sent_at) == ("sent", 1, at)


async def test_without_an_owner_the_task_s_rep_gets_it(smtp_sink, make_settings, campaign, now, store):
    settings = make(make_settings, smtp_sink.port)
    await send_to_ken(settings, campaign, now, owner=None)
    reply, reply_to = ken_replies(smtp_sink.sink.messages[0].message)
    result = receive(store, reply, settings=settings, campaigns={campaign.id: campaign}, now=now, source="pipe",
                     envelope_recipients=(reply_to,))
    task = store.get_task(result.task_id)
    [row] = store.list_forwards()
    assert row.rep_id == task.rep_id and row.recipient == settings.rep(task.rep_id).email


async def test_a_reply_matched_by_message_id_is_not_forwarded(smtp_sink, make_settings, campaign, now, store):
    """It came to a mailbox people read (the sales inbox over IMAP): nobody needs a copy."""
    settings = make(make_settings, smtp_sink.port)
    await send_to_ken(settings, campaign, now)
    reply, reply_to = ken_replies(smtp_sink.sink.messages[0].message)
    reply = reply.replace(reply_to.encode(), b"sales@acme.example")
    result = receive(store, reply, settings=settings, campaigns={campaign.id: campaign}, now=now, source="imap")
    assert (result.kind, result.matched_by) == ("reply", "message-id")
    assert "forward" not in result.action and store.list_forwards() == []


async def test_forward_replies_false_keeps_the_reply_in_nurture(smtp_sink, make_settings, campaign, now, store):
    settings = make(make_settings, smtp_sink.port, forward_replies=False)
    await send_to_ken(settings, campaign, now)
    reply, reply_to = ken_replies(smtp_sink.sink.messages[0].message)
    result = receive(store, reply, settings=settings, campaigns={campaign.id: campaign}, now=now, source="smtp",
                     envelope_recipients=(reply_to,))
    assert result.kind == "reply" and result.task_id is not None and store.list_forwards() == []


async def test_a_transient_refusal_is_retried_later_and_a_permanent_one_is_recorded(make_settings, campaign, now,
                                                                                    store):
    answers = {"baker@acme.example": ["451 4.3.0 try again later", None]}

    def fault(envelope, attempt):
        queue = answers.get(envelope.rcpt_tos[0])
        return queue.pop(0) if queue else None

    relay = await start_sink(Sink(fault=fault))
    astore = open_async_store(store.path)
    conn = None
    try:
        settings = make(make_settings, relay.port)
        await send_to_ken(settings, campaign, now)
        reply, reply_to = ken_replies(relay.sink.messages[0].message)
        receive(store, reply, settings=settings, campaigns={campaign.id: campaign}, now=now, source="smtp",
                envelope_recipients=(reply_to,))
        conn = SmtpConnection(settings.smtp)
        await forward_round(store=astore, send=conn.send, now=lambda: now)
        [row] = store.list_forwards()
        assert (row.status, row.attempts) == ("retry", 1) and "451" in row.last_error
        await forward_round(store=astore, send=conn.send, now=lambda: now + timedelta(seconds=30))
        assert len(relay.sink.messages) == 1, "not before the retry delay"
        await forward_round(store=astore, send=conn.send, now=lambda: now + timedelta(minutes=2))
        [row] = store.list_forwards()
        assert row.status == "sent" and row.attempts == 2
        assert [m.rcpt_tos for m in relay.sink.messages[1:]] == [["baker@acme.example"]]

        # A permanent refusal: failed at once, never tried again.
        answers["baker@acme.example"] = ["550 5.1.1 no such user"]
        later = now + timedelta(days=1)
        second = reply.replace(b"<CAreply1@", b"<CAreply9@")
        receive(store, second, settings=settings, campaigns={campaign.id: campaign}, now=later, source="smtp",
                envelope_recipients=(reply_to,))
        await forward_round(store=astore, send=conn.send, now=lambda: later)
        await forward_round(store=astore, send=conn.send, now=lambda: later + timedelta(days=1))
        newest = store.list_forwards()[0]
        assert (newest.status, newest.attempts) == ("failed", 1) and "550" in newest.last_error
        assert len(relay.sink.messages) == 2
    finally:
        if conn is not None:
            await conn.quit()
        await astore.aclose()
        await relay.aclose()


async def test_a_forward_interrupted_mid_delivery_is_never_sent_again(smtp_sink, make_settings, campaign, now,
                                                                      store):
    settings = make(make_settings, smtp_sink.port)
    await send_to_ken(settings, campaign, now)
    reply, reply_to = ken_replies(smtp_sink.sink.messages[0].message)
    receive(store, reply, settings=settings, campaigns={campaign.id: campaign}, now=now, source="smtp",
            envelope_recipients=(reply_to,))
    [claimed] = store.claim_forwards(now=now, lease=LEASE)  # then the process dies
    assert store.claim_forwards(now=now + timedelta(minutes=1), lease=LEASE) == []
    assert store.claim_forwards(now=now + LEASE + timedelta(seconds=1), lease=LEASE) == []
    [row] = store.list_forwards()
    assert row.id == claimed.id and row.status == "failed" and "interrupted" in row.last_error
