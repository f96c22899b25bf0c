"""The inbound SMTP listener: where MTAs deliver bounces, feedback reports and replies.

It accepts RCPT TO only for the configured bounce and reply domains (``inbound.smtp.domains``)
and answers 550 for anyone else, so it can never be used as an open relay. Mail over
``inbound.smtp.max_size`` is refused with 552 (the limit is advertised in EHLO as SIZE, RFC 1870,
so a well-behaved client does not even send it). Each accepted message is handed, with its
envelope recipients (the VERP address is there even when the headers lost it), to ``deliver``;
only when that returned is the message acknowledged with 250, so a failure on our side is a
4xx and the sending MTA tries again later.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from aiosmtpd.smtp import SMTP, Envelope, Session

from nurture.config import InboundSmtpSettings

log = logging.getLogger("nurture.inbound.smtp")

#: ``deliver(raw message, envelope recipients)``: store what arrived (on the store thread).
Deliver = Callable[[bytes, tuple[str, ...]], Awaitable[object]]


def domain_of(address: str) -> str:
    """``"Bounces+X@Bounce.Acme.Example."`` → ``"bounce.acme.example"`` ("" when there is none)."""
    local, at, domain = address.strip().strip("<>").rpartition("@")
    return domain.lower().rstrip(".") if at and local else ""


@dataclass
class InboundHandler:
    """aiosmtpd handler: recipients only in ``domains``, each message to ``deliver``."""

    domains: frozenset[str]
    deliver: Deliver
    max_recipients: int = 100

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          rcpt_options: list[str]) -> str:
        if domain_of(address) not in self.domains:
            log.info("refused RCPT %r from %s: not a domain of ours", address, _peer(session))
            return "550 5.7.1 Relaying denied: this server accepts mail only for its own domains"
        if len(envelope.rcpt_tos) >= self.max_recipients:
            return "452 4.5.3 Too many recipients"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        data = envelope.original_content or envelope.content or b""
        if isinstance(data, str):  # pragma: no cover - decode_data is off
            data = data.encode("utf-8", "surrogateescape")
        try:
            await self.deliver(bytes(data), tuple(envelope.rcpt_tos))
        except Exception:
            log.exception("could not store a message from %s; the sender will retry", _peer(session))
            return "451 4.3.0 Temporary failure, try again later"
        return "250 2.0.0 OK"


@dataclass
class RunningListener:
    server: asyncio.base_events.Server
    host: str
    port: int

    async def aclose(self) -> None:
        self.server.close()
        await self.server.wait_closed()


async def start_listener(*, settings: InboundSmtpSettings, deliver: Deliver, host: str, port: int,
                         domains: Iterable[str] | None = None) -> RunningListener:
    """Serve the listener on ``host:port`` (0: a free port) in the running loop.

    ``domains`` replaces ``settings.domains`` (the accepted recipient domains)."""
    handler = InboundHandler(domains=frozenset(d.lower().rstrip(".") for d in (domains or settings.domains)),
                             deliver=deliver, max_recipients=settings.max_recipients)
    loop = asyncio.get_running_loop()

    def protocol() -> SMTP:
        # decode_data off: the bytes as they came (8BITMIME, ISO-2022-JP bodies stay untouched).
        return SMTP(handler, data_size_limit=settings.max_size, enable_SMTPUTF8=True,
                    hostname=settings.hostname or socket.gethostname(), ident="nurture inbound", timeout=300, loop=loop)

    server = await loop.create_server(protocol, host=host, port=port)
    bound = server.sockets[0].getsockname()
    return RunningListener(server=server, host=bound[0], port=bound[1])


def _peer(session: Session) -> str:
    peer: object = session.peer
    return str(peer[0]) if isinstance(peer, tuple) and peer else str(peer)
