"""The inbound SMTP listener over real aiosmtplib connections: our domains only, a size limit."""

from __future__ import annotations

from email.message import EmailMessage

import aiosmtplib
import pytest

from nurture.config import InboundSmtpSettings
from nurture.inbound.smtp import domain_of, start_listener

DOMAINS = ("bounce.acme.example", "reply.acme.example")


def message(to: str, body: str = "hello") -> EmailMessage:
    m = EmailMessage()
    m["From"] = "MAILER-DAEMON@mx.example.net"
    m["To"] = to
    m["Subject"] = "Undelivered Mail Returned to Sender"
    m["Message-ID"] = "<dsn-1@mx.example.net>"
    m.set_content(body)
    return m


@pytest.fixture
async def listener():
    got: list[tuple[bytes, tuple[str, ...]]] = []
    fail: list[Exception] = []

    async def deliver(raw: bytes, rcpts: tuple[str, ...]) -> None:
        if fail:
            raise fail[0]
        got.append((raw, rcpts))

    running = await start_listener(settings=InboundSmtpSettings(listen="127.0.0.1:0", domains=DOMAINS,
                                                                max_size=20_000, max_recipients=3),
                                   deliver=deliver, host="127.0.0.1", port=0)
    running.got, running.fail = got, fail  # type: ignore[attr-defined]
    try:
        yield running
    finally:
        await running.aclose()


async def test_accepts_mail_for_its_domains_with_the_envelope_recipients(listener):
    to = "bounces+ab12cd@Bounce.Acme.Example"
    await aiosmtplib.send(message(to), hostname=listener.host, port=listener.port,
                          sender="", recipients=[to, "reply+xyz@reply.acme.example"])
    [(raw, rcpts)] = listener.got
    assert rcpts == (to, "reply+xyz@reply.acme.example")
    assert b"Message-ID: <dsn-1@mx.example.net>" in raw and b"hello" in raw


async def test_a_relay_attempt_gets_550_and_nothing_is_delivered(listener):
    with pytest.raises(aiosmtplib.SMTPRecipientsRefused) as e:
        await aiosmtplib.send(message("victim@gmail.example"), hostname=listener.host, port=listener.port,
                              sender="spammer@example.org", recipients=["victim@gmail.example"])
    [refused] = e.value.recipients
    assert refused.code == 550 and "Relaying denied" in refused.message
    assert listener.got == []


async def test_a_lookalike_domain_is_not_ours(listener):
    async with aiosmtplib.SMTP(hostname=listener.host, port=listener.port) as smtp:
        await smtp.mail("")
        for rcpt in ("x@evil-bounce.acme.example", "x@bounce.acme.example.evil.example", "bounce.acme.example",
                     "x@sub.bounce.acme.example"):
            with pytest.raises(aiosmtplib.SMTPRecipientRefused) as e:
                await smtp.rcpt(rcpt)
            assert e.value.code == 550, rcpt
        # Raw commands, past the client's own address parsing:
        for arg in (b"TO:<x@bounce.acme.example>@evil.example", b"TO:<x@evil.example>", b"TO:<>"):
            reply = await smtp.execute_command(b"RCPT", arg)
            assert reply.code in (550, 553, 501), (arg, reply)
    assert listener.got == []


async def test_one_foreign_recipient_among_ours_is_refused_alone(listener):
    errors, _ = await aiosmtplib.send(message("bounces@bounce.acme.example"), hostname=listener.host,
                                      port=listener.port, sender="",
                                      recipients=["bounces@bounce.acme.example", "someone@other.example"])
    assert errors["someone@other.example"].code == 550
    [(_, rcpts)] = listener.got
    assert rcpts == ("bounces@bounce.acme.example",)


async def test_over_the_size_limit_gets_552(listener):
    big = message("bounces@bounce.acme.example", body="x" * 70 + "\n")
    big.set_content(("y" * 70 + "\n") * 400)  # about 28 kB > 20 kB
    async with aiosmtplib.SMTP(hostname=listener.host, port=listener.port) as smtp:
        assert smtp.supports_extension("size") and smtp.esmtp_extensions["size"] == "20000"
        # A client that ignores SIZE and sends anyway:
        await smtp.mail("")
        await smtp.rcpt("bounces@bounce.acme.example")
        with pytest.raises(aiosmtplib.SMTPDataError) as e:
            await smtp.data(big.as_bytes())
        assert e.value.code == 552
        # and one that declares it:
        await smtp.rset()
        with pytest.raises(aiosmtplib.SMTPSenderRefused) as e2:
            await smtp.mail("", options=["SIZE=30000"])
        assert e2.value.code == 552
    assert listener.got == []


async def test_too_many_recipients_gets_452(listener):
    rcpts = [f"bounces+{i}@bounce.acme.example" for i in range(4)]
    errors, _ = await aiosmtplib.send(message(rcpts[0]), hostname=listener.host, port=listener.port,
                                      sender="", recipients=rcpts)
    assert errors[rcpts[3]].code == 452
    assert listener.got[0][1] == tuple(rcpts[:3])


async def test_a_failure_to_store_is_a_4xx_so_the_mta_retries(listener):
    listener.fail.append(RuntimeError("database is locked"))
    with pytest.raises(aiosmtplib.SMTPDataError) as e:
        await aiosmtplib.send(message("bounces@bounce.acme.example"), hostname=listener.host,
                              port=listener.port, sender="", recipients=["bounces@bounce.acme.example"])
    assert e.value.code == 451


def test_domain_of() -> None:
    assert domain_of("Bounces+X@Bounce.Acme.Example.") == "bounce.acme.example"
    assert domain_of("<a@b.example>") == "b.example"
    assert domain_of("no-at-sign") == "" and domain_of("@b.example") == ""


# -- the part, through run_parts -------------------------------------------------------------------

def dsn(*, to: str, failed: str, status: str = "5.1.1") -> bytes:
    """A delivery status notification (RFC 3464) as Postfix writes one."""
    return (f"From: MAILER-DAEMON@mx.shop.example (Mail Delivery System)\r\nTo: {to}\r\n"
            "Subject: Undelivered Mail Returned to Sender\r\nMessage-ID: <20261124095900.ABC12@mx.shop.example>\r\n"
            "Auto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\n"
            'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n\r\n'
            "--B\r\nContent-Type: text/plain\r\n\r\nI'm sorry to have to inform you that your message could not\r\n"
            "be delivered to one or more recipients.\r\n\r\n"
            f"<{failed}>: host mx.shop.example said: 550 {status} User unknown\r\n\r\n"
            "--B\r\nContent-Type: message/delivery-status\r\n\r\n"
            "Reporting-MTA: dns; mx.shop.example\r\n\r\n"
            f"Final-Recipient: rfc822; {failed}\r\nOriginal-Recipient: rfc822;{failed}\r\nAction: failed\r\n"
            f"Status: {status}\r\nDiagnostic-Code: smtp; 550 {status} User unknown\r\n\r\n--B--\r\n").encode()


async def test_the_part_takes_a_bounce_to_a_verp_address_and_refuses_relaying(make_settings, now):
    import asyncio

    from support import add_contact, add_send

    from nurture.inbound.verp import return_path
    from nurture.parts import Context, run_parts
    from nurture.signing import Signer
    from nurture.store import open_async_store

    settings = make_settings(inbound={"return_path": "bounces@bounce.acme.example",
                                      "smtp": {"listen": "127.0.0.1:0"}})
    assert settings.inbound.smtp.domains == ("bounce.acme.example",)
    store = open_async_store(settings.database)

    def seed(s) -> int:
        with s.transaction():
            return add_send(s, add_contact(s, "gone@shop.example"))

    send_id = await store.run(seed)
    verp = return_path(Signer.from_settings(settings.tracking), send_id, address="bounces@bounce.acme.example")
    urls: dict[str, str] = {}
    stop = asyncio.Event()
    job = asyncio.create_task(run_parts(["inbound_smtp"], Context(
        settings=settings, store=store, campaigns={}, stop=stop, now=lambda: now, ready=urls.__setitem__)))
    try:
        for _ in range(100):
            if "inbound_smtp" in urls:
                break
            await asyncio.sleep(0.02)
        host, port = urls["inbound_smtp"].removeprefix("smtp://").rsplit(":", 1)
        with pytest.raises(aiosmtplib.SMTPRecipientsRefused):
            await aiosmtplib.send(message("victim@gmail.example"), hostname=host, port=int(port),
                                  sender="spammer@example.org", recipients=["victim@gmail.example"])
        # The MTA sends the DSN to the Return-Path, upper-cased as some MTAs do.
        async with aiosmtplib.SMTP(hostname=host, port=int(port)) as smtp:
            await smtp.mail("")  # a bounce has the null reverse-path
            await smtp.rcpt(verp.upper())
            await smtp.data(dsn(to=verp.upper(), failed="gone@shop.example"))
        [record] = await store.run(lambda s: s.list_inbound(limit=10))
        assert (record["source"], record["kind"], record["send_id"]) == ("smtp", "hard_bounce", send_id)
        assert await store.run(lambda s: s.is_suppressed("gone@shop.example"))
    finally:
        stop.set()
        await asyncio.wait_for(job, 5)
        await store.aclose()


async def test_the_part_is_a_no_op_without_a_listen_address(make_settings, now):
    import asyncio

    from nurture.parts import Context, run_parts
    from nurture.store import open_async_store

    settings = make_settings(inbound={"return_path": "bounces@bounce.acme.example"})
    store = open_async_store(settings.database)
    try:
        await asyncio.wait_for(run_parts(["inbound_smtp", "imap"], Context(
            settings=settings, store=store, campaigns={}, stop=asyncio.Event(), now=lambda: now)), 2)
    finally:
        await store.aclose()
