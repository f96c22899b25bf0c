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


def _header(data: bytes, name: bytes) -> str | None:
    head = data.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
    for line in head.splitlines():
        if line.lower().startswith(name + b":"):
            return line.split(b":", 1)[1].strip().decode(errors="replace")
    return None


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "@.-_" else "_" for c in text)[:80]
