"""An embedded SMTP sink on aiosmtpd: accepts every message and keeps it, in memory and
optionally as ``.eml`` files in a folder. The demo delivers to it; tests use it as the
real SMTP server, with ``fault`` hooks that answer 4xx/5xx, drop the connection or stall.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

#: A fault hook gets (envelope, attempt number for this Message-ID) and returns None to
#: accept, an SMTP reply string such as "451 4.3.0 try later" to refuse, "DROP" to close
#: the connection mid-DATA, or "STALL:<seconds>" to wait before answering.
FaultHook = Callable[[Envelope, int], "str | None | Awaitable[str | None]"]


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    at: datetime

    @property
    def message(self) -> EmailMessage:
        return email.message_from_bytes(self.data, policy=email.policy.default)

    @property
    def message_id(self) -> str | None:
        return self.message.get("Message-ID")


@dataclass
class Sink:
    """aiosmtpd handler; start it with :func:`start_sink`."""

    folder: Path | None = None
    fault: FaultHook | None = None
    delay: float = 0.0
    messages: list[Received] = field(default_factory=list)
    attempts: dict[str, int] = field(default_factory=dict)
    on_message: Callable[[Received], Any] | None = None

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        data = envelope.original_content or envelope.content or b""
        if isinstance(data, str):  # pragma: no cover - decode_data is off
            data = data.encode()
        key = _header(data, b"message-id") or str(id(envelope))
        attempt = self.attempts.get(key, 0) + 1
        self.attempts[key] = attempt
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.fault is not None:
            answer = self.fault(envelope, attempt)
            reply = answer if answer is None or isinstance(answer, str) else await answer
            if reply == "DROP":
                if isinstance(server.transport, asyncio.Transport):
                    server.transport.abort()
                return "451 4.3.0 connection dropped"
            if isinstance(reply, str) and reply.startswith("STALL:"):
                await asyncio.sleep(float(reply.split(":", 1)[1]))
                reply = None
            if reply:
                return reply
        rec = Received(envelope.mail_from or "", list(envelope.rcpt_tos), bytes(data), datetime.now(UTC))
        self.messages.append(rec)
        if self.folder is not None:
            self.folder.mkdir(parents=True, exist_ok=True)
            name = f"{len(self.messages):06d}-{_safe(rec.rcpt_tos[0] if rec.rcpt_tos else 'unknown')}.eml"
            (self.folder / name).write_bytes(rec.data)
        if self.on_message is not None:
            self.on_message(rec)
        return "250 2.0.0 OK queued"


@dataclass
class RunningSink:
    sink: Sink
    server: asyncio.base_events.Server
    host: str
    port: int

    async def aclose(self) -> None:
        self.server.close()
        await self.server.wait_closed()


async def start_sink(sink: Sink, *, host: str = "127.0.0.1", port: int = 0) -> RunningSink:
    """Serve ``sink`` on ``host:port`` (port 0 picks a free one) in the running loop."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(sink, hostname="nurture-sink", ident="nurture sink", enable_SMTPUTF8=True),
        host=host, port=port,
    )
    bound = server.sockets[0].getsockname()
    return RunningSink(sink=sink, server=server, host=bound[0], port=bound[1])


@dataclass
class LimitedRelay(Sink):
    """A sink that enforces a relay's limits the way Postfix does: beyond ``max_connections``
    concurrent sessions a new one gets ``421 4.7.0`` at the greeting and is closed
    (``smtpd_client_connection_count_limit``); beyond ``per_window`` MAIL FROMs in a window of
    ``window`` seconds (a fixed window from its first event, as Postfix's anvil counts
    ``smtpd_client_message_rate_limit``; refused ones count too) ``450 4.7.1``. Start it with
    :func:`start_limited_relay`; the counters say what the client did."""

    max_connections: int = 4
    per_window: int = 50
    window: float = 60.0
    open_now: int = 0
    max_open: int = 0  # most sessions open at once
    connections: int = 0  # sessions accepted
    refused_connections: int = 0
    mail_commands: int = 0  # every MAIL FROM (each a transaction attempt)
    refused_mail: int = 0
    _window_start: float | None = None
    _in_window: int = 0

    async def handle_MAIL(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          mail_options: list[str]) -> str:
        now = asyncio.get_running_loop().time()
        self.mail_commands += 1
        if self._window_start is None or now >= self._window_start + self.window:
            self._window_start, self._in_window = now, 0
        self._in_window += 1
        if self._in_window > self.per_window:
            self.refused_mail += 1
            return "450 4.7.1 Error: too much mail from 127.0.0.1"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"


class _LimitedSMTP(SMTP):
    def __init__(self, relay: LimitedRelay) -> None:
        super().__init__(relay, hostname="nurture-relay", ident="nurture limited relay", enable_SMTPUTF8=True)
        self.relay = relay
        self.refused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        relay = self.relay
        if relay.open_now >= relay.max_connections:
            self.refused = True
            relay.refused_connections += 1
            if isinstance(transport, asyncio.WriteTransport):
                transport.write(b"421 4.7.0 nurture-relay Error: too many connections from 127.0.0.1\r\n")
            transport.close()
            return
        relay.open_now += 1
        relay.connections += 1
        relay.max_open = max(relay.max_open, relay.open_now)
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        if self.refused:
            return
        self.relay.open_now -= 1
        super().connection_lost(error)


async def start_limited_relay(relay: LimitedRelay, *, host: str = "127.0.0.1", port: int = 0) -> RunningSink:
    """Serve ``relay`` on ``host:port`` (port 0 picks a free one) in the running loop."""
    server = await asyncio.get_running_loop().create_server(lambda: _LimitedSMTP(relay), host=host, port=port)
    bound = server.sockets[0].getsockname()
    return RunningSink(sink=relay, server=server, host=bound[0], port=bound[1])


def _header(data: bytes, name: bytes) -> str | None:
    head = data.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
    for line in head.splitlines():
        if line.lower().startswith(name + b":"):
            return line.split(b":", 1)[1].strip().decode(errors="replace")
    return None


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "@.-_" else "_" for c in text)[:80]
