"""Reusable SMTP connections (aiosmtplib), and the translation of every way a delivery can
fail into :class:`nurture.errors.SendError`. The only module that imports aiosmtplib.
"""

from __future__ import annotations

import asyncio
import re

import aiosmtplib
from aiosmtplib.protocol import normalize_message_line_endings as normalize_line_endings

from nurture.config import SmtpSettings
from nurture.errors import SendError

_ENHANCED = re.compile(r"^\s*([245]\.\d{1,3}\.\d{1,3})\b")
#: Replies after which the session is closed and a fresh one opened for the next message.
THROTTLE_CODES = frozenset({421, 451, 454})


class ConnectRefused(SendError):
    """The relay refused the session itself (421 at the greeting, no connection, EHLO or
    STARTTLS refused): about the connection, never about a message."""


def is_rate_refusal(e: SendError) -> bool:
    """Whether a reply asks the client to send less (421 anywhere, 450/451 with a 4.7.x
    enhanced code such as Postfix's "450 4.7.1 Error: too much mail") rather than blaming
    the message or the recipient."""
    if isinstance(e, ConnectRefused):
        return False
    return e.code == 421 or (e.code in (450, 451) and (e.enhanced or "").startswith("4.7."))


def enhanced_code(message: str) -> str | None:
    """The RFC 3463 enhanced status code at the start of a reply text (``5.1.1``), if any."""
    m = _ENHANCED.match(message or "")
    return m.group(1) if m else None


def reply_error(code: int, message: str, *, recipient: str | None, stage: str) -> SendError:
    """A SendError for an SMTP reply: 4xx are transient, 5xx permanent."""
    text = f"{code} {message}".strip()
    return SendError(f"{stage}: {text}", code=code, recipient=recipient, transient=400 <= code < 500,
                     enhanced=enhanced_code(message))


def _check_address(sender: str, recipient: str) -> None:
    for addr in (sender, recipient):
        if not addr or any(c in addr for c in "\r\n<>") or "@" not in addr:
            raise SendError(f"unusable address {addr!r}", recipient=recipient if addr == recipient else None,
                            transient=False)


def message_size(data: bytes) -> int:
    """The size of ``data`` as DATA transmits it (RFC 1870: octets, CRLF line ends, ending in
    CRLF). nurture's messages have CRLF line ends already, which three counts confirm far faster
    than normalising the whole message."""
    crlf = data.count(b"\r\n")
    if data.count(b"\n") == crlf and data.count(b"\r") == crlf:
        return len(data) + (0 if data.endswith(b"\r\n") else 2)
    return len(normalize_line_endings(data))


class SmtpConnection:
    """One SMTP session, opened on first use and reopened after it breaks.

    ``send`` raises :class:`SendError`; after a network error, timeout or 421 the session
    is closed so that the next ``send`` opens a fresh one.
    """

    def __init__(self, settings: SmtpSettings) -> None:
        self.settings = settings
        self._smtp: aiosmtplib.SMTP | None = None
        self.opened = 0  # sessions opened so far (for stats and tests)
        self.connecting = False  # a session is being opened now

    def _client(self) -> aiosmtplib.SMTP:
        s = self.settings
        return aiosmtplib.SMTP(
            hostname=s.host, port=s.port, timeout=s.timeout, local_hostname=s.helo,
            use_tls=s.tls == "tls", start_tls=True if s.tls == "starttls" else False,
            username=s.username, password=s.password,
        )

    @property
    def is_open(self) -> bool:
        return self._smtp is not None and self._smtp.is_connected

    async def _ensure(self) -> aiosmtplib.SMTP:
        if self._smtp is not None and self._smtp.is_connected:
            return self._smtp
        self.close()
        smtp = self._client()
        self.connecting = True
        try:
            await smtp.connect()
        except aiosmtplib.SMTPAuthenticationError as e:
            smtp.close()
            raise SendError(f"login refused: {e.code} {e.message}", code=e.code, transient=True,
                            enhanced=enhanced_code(e.message)) from None
        except aiosmtplib.SMTPResponseException as e:
            smtp.close()
            raise ConnectRefused(f"connect: {e.code} {e.message}".strip(), code=e.code, transient=e.code < 500,
                                 enhanced=enhanced_code(e.message)) from None
        except (TimeoutError, aiosmtplib.SMTPException, OSError) as e:
            smtp.close()
            raise ConnectRefused(f"connect to {self.settings.host}:{self.settings.port} failed: {e}",
                                 transient=True) from None
        finally:
            self.connecting = False
        self._smtp = smtp
        self.opened += 1
        return smtp

    async def send(self, *, sender: str, recipient: str, data: bytes) -> str:
        """Deliver ``data`` to one recipient; returns the server's reply text on 250."""
        _check_address(sender, recipient)
        smtp = await self._ensure()
        stage = "MAIL FROM"
        try:
            # One transaction by hand (MAIL, RCPT, DATA, and RSET after a refusal, as sendmail()
            # does it) because sendmail() parses both addresses once more before mail() and rcpt()
            # do, and normalises the whole message a second time just to count it for SIZE.
            options = [f"SIZE={message_size(data)}"] if smtp.supports_extension("size") else []
            await smtp.mail(sender, options=options)
            stage = "RCPT"
            await smtp.rcpt(recipient)
            stage = "DATA"
            return (await smtp.data(data)).message
        except aiosmtplib.SMTPResponseException as e:  # the reply to MAIL, RCPT or DATA
            err = reply_error(e.code, e.message, recipient=None if stage == "MAIL FROM" else recipient, stage=stage)
        except ValueError as e:  # an address aiosmtplib will not put on the wire
            await self._reset(smtp)
            raise SendError(f"unusable address: {e}", recipient=recipient, transient=False) from None
        except (TimeoutError, aiosmtplib.SMTPException, OSError) as e:
            self.close()
            kind = "timed out" if isinstance(e, asyncio.TimeoutError) else "connection lost"
            raise SendError(f"{kind}: {e}", recipient=recipient, transient=True) from None
        if err.code in THROTTLE_CODES or not self.is_open:
            self.close()
        else:
            await self._reset(smtp)
        raise err

    async def _reset(self, smtp: aiosmtplib.SMTP) -> None:
        """RSET after a refused transaction, so the session is clean for the next message."""
        if not smtp.is_connected:
            return
        try:
            await smtp.rset()
        except (TimeoutError, aiosmtplib.SMTPException, OSError):
            self.close()  # the next send opens a fresh session

    def close(self) -> None:
        """Drop the session at once (no QUIT)."""
        if self._smtp is not None:
            self._smtp.close()
            self._smtp = None

    async def quit(self) -> None:
        """Say QUIT politely, then close."""
        if self.is_open:
            assert self._smtp is not None
            try:
                await self._smtp.quit(timeout=min(5.0, self.settings.timeout))
            except (TimeoutError, aiosmtplib.SMTPException, OSError):
                pass
        self.close()
