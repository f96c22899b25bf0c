"""nurture.smtp_pool against a real aiosmtpd server on 127.0.0.1: sessions are reused and
reopened, and every way a delivery fails becomes a SendError with the right code and kind."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from hypothesis import given
from hypothesis import strategies as st

from nurture.config import SmtpSettings
from nurture.errors import SendError
from nurture.sink import RunningSink, Sink, start_sink
from nurture.smtp_pool import (
    THROTTLE_CODES,
    ConnectRefused,
    SmtpConnection,
    enhanced_code,
    is_rate_refusal,
    message_size,
    reply_error,
)

FROM = "hello@acme.example"
DATA = b"From: hello@acme.example\r\nTo: kim@shop.example\r\nSubject: hi\r\nMessage-ID: <1@t>\r\n\r\nhello\r\n"


@dataclass
class Picky(Sink):
    """The sink, refusing some senders and recipients the way real servers do."""

    refuse_rcpt: dict[str, str] | None = None
    refuse_mail: dict[str, str] | None = None

    async def handle_MAIL(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          mail_options: list[str]) -> str:
        if self.refuse_mail and address in self.refuse_mail:
            return self.refuse_mail[address]
        envelope.mail_from = address
        return "250 OK"

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          rcpt_options: list[str]) -> str:
        if self.refuse_rcpt and address in self.refuse_rcpt:
            return self.refuse_rcpt[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"


@pytest.fixture
async def picky() -> AsyncIterator[RunningSink]:
    running = await start_sink(Picky(
        refuse_rcpt={"nobody@shop.example": "550 5.1.1 no such user", "full@shop.example": "452 4.2.2 mailbox full",
                     "policy@shop.example": "550 5.7.1 rejected by policy"},
        refuse_mail={"banned@acme.example": "553 5.1.8 sender address rejected"}))
    try:
        yield running
    finally:
        await running.aclose()


def settings(port: int, **kw: object) -> SmtpSettings:
    return SmtpSettings(host="127.0.0.1", port=port, **{"timeout": 5.0, **kw})  # type: ignore[arg-type]


async def refused(conn: SmtpConnection, *, sender: str = FROM, recipient: str = "kim@shop.example") -> SendError:
    with pytest.raises(SendError) as info:
        await conn.send(sender=sender, recipient=recipient, data=DATA)
    return info.value


def test_enhanced_code_is_read_from_the_start_of_the_reply() -> None:
    assert enhanced_code("5.1.1 <kim@shop.example>: no such user") == "5.1.1"
    assert enhanced_code("  4.7.0 try again later") == "4.7.0"
    assert enhanced_code("5.1.10 null MX") == "5.1.10"
    assert enhanced_code("no such user 5.1.1") is None  # only at the start
    assert enhanced_code("3.1.1 not a class") is None and enhanced_code("5.1.1234 x") is None
    assert enhanced_code("") is None


def test_rate_refusals_are_421_and_4_7_x_only() -> None:
    def err(code: int, text: str) -> SendError:
        return reply_error(code, text, recipient=None, stage="MAIL FROM")

    assert is_rate_refusal(err(450, "4.7.1 Error: too much mail from 127.0.0.1"))
    assert is_rate_refusal(err(451, "4.7.1 please slow down"))
    assert is_rate_refusal(err(421, "4.7.0 too many connections"))
    assert is_rate_refusal(err(421, "closing"))
    assert not is_rate_refusal(err(451, "4.3.0 local error"))  # the server's own trouble
    assert not is_rate_refusal(err(450, "4.2.1 mailbox busy"))  # about the recipient
    assert not is_rate_refusal(err(454, "4.7.0 TLS not available"))
    assert not is_rate_refusal(err(550, "5.7.1 rate limited"))


def test_reply_error_4xx_is_transient_5xx_permanent() -> None:
    e = reply_error(451, "4.3.0 try later", recipient="a@b.example", stage="DATA")
    assert (e.code, e.enhanced, e.transient, e.recipient, e.message) == (
        451, "4.3.0", True, "a@b.example", "DATA: 451 4.3.0 try later")
    e = reply_error(550, "5.1.1 no such user", recipient="a@b.example", stage="RCPT")
    assert (e.transient, e.hard_bounce) == (False, True)
    assert reply_error(554, "no", recipient=None, stage="connect").transient is False


async def test_one_session_is_reused_for_several_messages(smtp_sink: RunningSink) -> None:
    conn = SmtpConnection(settings(smtp_sink.port, helo="sender.acme.example"))
    assert not conn.is_open
    for rcpt in ("a@shop.example", "b@shop.example", "c@shop.example"):
        reply = await conn.send(sender=FROM, recipient=rcpt, data=DATA)
        assert "OK queued" in reply
    assert conn.opened == 1 and conn.is_open
    got = smtp_sink.sink.messages
    assert [m.rcpt_tos for m in got] == [["a@shop.example"], ["b@shop.example"], ["c@shop.example"]]
    assert {m.mail_from for m in got} == {FROM} and got[0].data.replace(b"\r\n", b"\n") == DATA.replace(b"\r\n", b"\n")
    await conn.quit()
    assert not conn.is_open
    await conn.quit()  # quitting a closed connection is harmless


async def test_a_refused_recipient_is_a_permanent_bounce_and_keeps_the_session(picky: RunningSink) -> None:
    conn = SmtpConnection(settings(picky.port))
    e = await refused(conn, recipient="nobody@shop.example")
    assert (e.code, e.enhanced, e.transient, e.recipient, e.hard_bounce) == (
        550, "5.1.1", False, "nobody@shop.example", True)
    assert e.message.startswith("RCPT: 550")
    policy = await refused(conn, recipient="policy@shop.example")
    assert (policy.code, policy.enhanced, policy.hard_bounce) == (550, "5.7.1", False)
    full = await refused(conn, recipient="full@shop.example")
    assert (full.code, full.transient, full.hard_bounce) == (452, True, False)
    await conn.send(sender=FROM, recipient="kim@shop.example", data=DATA)
    assert conn.opened == 1 and len(picky.sink.messages) == 1
    conn.close()


async def test_a_refused_sender_is_never_the_recipients_bounce(picky: RunningSink) -> None:
    conn = SmtpConnection(settings(picky.port))
    e = await refused(conn, sender="banned@acme.example")
    assert (e.code, e.enhanced, e.transient, e.recipient) == (553, "5.1.8", False, None)
    assert e.message.startswith("MAIL FROM: 553")
    conn.close()


@pytest.mark.parametrize(("reply", "transient", "closed"), [
    ("451 4.3.0 try later", True, True),        # a throttle code: the next send opens a new session
    ("421 4.7.0 slow down", True, True),
    ("452 4.3.1 out of storage", True, False),  # transient, but not a request to back off
    ("554 5.7.1 spam", False, False),
])
async def test_data_refusals(reply: str, transient: bool, closed: bool) -> None:
    code = int(reply[:3])
    running = await start_sink(Sink(fault=lambda env, attempt: reply if attempt == 1 else None))
    try:
        conn = SmtpConnection(settings(running.port))
        e = await refused(conn)
        assert (e.code, e.transient, e.recipient, e.enhanced) == (code, transient, "kim@shop.example", reply[4:9])
        assert e.message.startswith(f"DATA: {code}")
        assert conn.is_open is not closed and (code in THROTTLE_CODES) is closed
        await conn.send(sender=FROM, recipient="kim@shop.example", data=DATA)  # the same message, accepted
        assert conn.opened == (2 if closed else 1) and len(running.sink.messages) == 1
        conn.close()
    finally:
        await running.aclose()


async def test_a_dropped_connection_is_transient_and_the_next_send_reconnects() -> None:
    running = await start_sink(Sink(fault=lambda env, attempt: "DROP" if attempt == 1 else None))
    try:
        conn = SmtpConnection(settings(running.port))
        e = await refused(conn)
        assert e.transient and e.code is None and e.message.startswith("connection lost")
        assert not conn.is_open and not e.hard_bounce
        await conn.send(sender=FROM, recipient="kim@shop.example", data=DATA)
        assert conn.opened == 2 and len(running.sink.messages) == 1
        conn.close()
    finally:
        await running.aclose()


async def test_a_server_that_stalls_past_the_timeout() -> None:
    running = await start_sink(Sink(fault=lambda env, attempt: "STALL:3" if attempt == 1 else None))
    try:
        conn = SmtpConnection(settings(running.port, timeout=0.3))
        loop = asyncio.get_running_loop()
        started = loop.time()
        e = await refused(conn)
        assert loop.time() - started < 2.5  # gave up at the timeout, not when the server answered
        assert e.transient and e.code is None and e.message.startswith("timed out")
        assert not conn.is_open
    finally:
        await running.aclose()


async def test_nothing_listening_is_a_transient_connect_error() -> None:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    conn = SmtpConnection(settings(port))
    e = await refused(conn)
    assert e.transient and e.code is None and e.recipient is None
    assert e.message.startswith(f"connect to 127.0.0.1:{port} failed") and isinstance(e, ConnectRefused)
    assert conn.opened == 0 and not conn.is_open


@pytest.mark.parametrize(("greeting", "transient"), [("554 5.7.1 no service for you", False),
                                                     ("421 4.3.2 shutting down", True)])
async def test_a_server_that_refuses_at_the_greeting(greeting: str, transient: bool) -> None:
    async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(greeting.encode() + b"\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(refuse, "127.0.0.1", 0)
    try:
        conn = SmtpConnection(settings(server.sockets[0].getsockname()[1]))
        e = await refused(conn)
        assert (e.code, e.transient, e.recipient, e.enhanced) == (int(greeting[:3]), transient, None, greeting[4:9])
        assert e.message.startswith("connect: ") and not conn.is_open
        assert isinstance(e, ConnectRefused) and not is_rate_refusal(e)  # about the session, no message
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")
async def test_a_refused_login_is_transient_so_fixing_the_password_resumes_sending() -> None:
    def authenticator(server: SMTP, session: Session, envelope: Envelope, mechanism: str,
                      auth_data: object) -> AuthResult:
        ok = isinstance(auth_data, LoginPassword) and auth_data.password == b"right"
        return AuthResult(success=ok, handled=False)

    sink = Sink()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(sink, authenticator=authenticator, auth_require_tls=False, auth_required=True),
        "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        e = await refused(SmtpConnection(settings(port, username="u", password="wrong")))
        assert e.transient and e.code == 535 and e.message.startswith("login refused: 535")
        good = SmtpConnection(settings(port, username="u", password="right"))
        await good.send(sender=FROM, recipient="kim@shop.example", data=DATA)
        assert len(sink.messages) == 1
        good.close()
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize(("sender", "recipient", "blamed"), [
    (FROM, "kim@shop.example\r\nRCPT TO:<x@evil.example>", "recipient"),
    (FROM, "no-at-sign", "recipient"),
    (FROM, "<kim@shop.example>", "recipient"),
    ("", "kim@shop.example", None),
    ("hello@acme.example\n", "kim@shop.example", None),
])
async def test_unusable_addresses_fail_before_any_connection(smtp_sink: RunningSink, sender: str, recipient: str,
                                                             blamed: str | None) -> None:
    conn = SmtpConnection(settings(smtp_sink.port))
    e = await refused(conn, sender=sender, recipient=recipient)
    assert not e.transient and e.message.startswith("unusable address")
    assert e.recipient == (recipient if blamed else None)
    assert conn.opened == 0 and smtp_sink.sink.messages == []


@given(st.lists(st.sampled_from([b"a", b"\r\n", b"\n", b"\r", b".", b"\xe3\x81\x82"]), max_size=40))
def test_the_declared_size_is_what_data_transmits(pieces: list[bytes]) -> None:
    # RFC 1870 SIZE counts the message as sent: what aiosmtplib's DATA puts on the wire.
    from aiosmtplib.protocol import normalize_message_line_endings

    data = b"".join(pieces)
    assert message_size(data) == len(normalize_message_line_endings(data))
