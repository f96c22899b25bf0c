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
