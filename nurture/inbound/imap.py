"""The IMAP reader: replies and bounces from a mailbox nurture does not own (the team's sales inbox).

Each round finds the messages of ``inbound.imap.folder`` that do not carry the keyword
``inbound.imap.flag`` (``$NurtureSeen``), hands each one's bytes to ``deliver`` and then sets
the keyword. It reads with ``BODY.PEEK[]``, so nothing it reads becomes \\Seen in the reps'
mail client, and it never deletes, moves or expunges anything: the keyword is the only trace it
leaves. The keyword is set after ``deliver`` returned, so a crash between the two re-reads a
message, which the store's dedupe (by Message-ID, else by ``dedupe_key``) applies only once.

Between rounds it waits in IDLE (RFC 2177) when the server offers it and ``inbound.imap.idle``
is on, else it polls every ``inbound.imap.poll``. A server that does not keep custom keywords
(its PERMANENTFLAGS lack ``\\*``) is read with an in-memory UID cursor and the store's dedupe
instead; the first round after a start then looks back ``lookback``.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.parser
import email.policy
import logging
import re
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from aioimaplib import aioimaplib

from nurture.config import ImapSettings

log = logging.getLogger("nurture.inbound.imap")

#: ``deliver(raw message, dedupe_key)``: store what was read (on the store thread).
Deliver = Callable[[bytes, "str | None"], Awaitable[object]]

#: Messages fetched in one round before the next round is started at once.
BATCH = 50

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


class ImapError(Exception):
    """The server refused a command (login, select, search, fetch, store)."""


@dataclass(frozen=True, slots=True)
class Round:
    """What one round did: messages handed on, and whether more are waiting."""

    handled: int
    backlog: bool


class ImapReader:
    """One connection to one folder; :meth:`round` reads what is new, :meth:`wait` waits for more."""

    def __init__(self, *, settings: ImapSettings, deliver: Deliver, now: Callable[[], datetime],
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self.settings = settings
        self.deliver = deliver
        self.now = now
        self.ssl_context = ssl_context
        self._client: aioimaplib.IMAP4 | None = None
        self._uidvalidity: str | None = None
        self._keywords = True
        #: Highest UID handed on in this process (per UIDVALIDITY): no re-search of old mail.
        self._last_uid = 0

    # -- connection ------------------------------------------------------------------------------

    async def connect(self) -> None:
        s = self.settings
        client: aioimaplib.IMAP4
        if s.tls == "tls":
            client = aioimaplib.IMAP4_SSL(host=s.host, port=s.port, timeout=s.timeout,
                                          ssl_context=self.ssl_context or ssl.create_default_context())
        else:
            client = aioimaplib.IMAP4(host=s.host, port=s.port, timeout=s.timeout)
        self._client = client
        await client.wait_hello_from_server()
        _ok(await client.login(s.username, s.password), "LOGIN")
        selected = _ok(await client.select(_mailbox(s.folder)), f"SELECT {s.folder}")
        text = b"\n".join(bytes(x) for x in selected.lines).decode("utf-8", "replace")
        validity = re.search(r"UIDVALIDITY (\d+)", text)
        uidvalidity = validity.group(1) if validity else "0"
        if uidvalidity != self._uidvalidity:
            self._uidvalidity, self._last_uid = uidvalidity, 0
        flags = re.search(r"PERMANENTFLAGS \(([^)]*)\)", text)
        permanent = flags.group(1).split() if flags else []
        self._keywords = "\\*" in permanent or s.flag in permanent
        if not self._keywords:
            log.warning("%s does not keep the keyword %s; reading by UID and relying on the store's dedupe",
                        s.host, s.flag)

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        with contextlib.suppress(Exception):
            if client.has_pending_idle():
                client.idle_done()
            await asyncio.wait_for(client.logout(), 5)

    @property
    def connected(self) -> bool:
        return self._client is not None and self._client.get_state() == "SELECTED"

    # -- one round -------------------------------------------------------------------------------

    async def round(self) -> Round:
        """Hand on each new message once (oldest first, at most :data:`BATCH`), then mark it."""
        client = self._require()
        s = self.settings
        criteria = ["UID", f"{self._last_uid + 1}:*"]
        if self._keywords:
            criteria += ["NOT", "KEYWORD", s.flag]
        if not self._keywords or self._last_uid == 0:
            criteria += ["SINCE", _imap_date(self.now() - timedelta(seconds=s.lookback_seconds))]
        found = _ok(await client.uid_search(*criteria, charset=None), "UID SEARCH")
        # Only the SEARCH result lines: an untagged "3 EXISTS" may arrive among them.
        uids = sorted({int(u) for line in found.lines[:-1] if (words := bytes(line).split())
                       and all(w.isdigit() for w in words) for u in words})
        uids = [u for u in uids if u > self._last_uid]  # "n:*" also matches the last UID below n
        handled = 0
        for uid in uids[:BATCH]:
            raw = await self._fetch(uid)
            if raw is not None:
                await self.deliver(raw, None if _has_message_id(raw) else self._key(uid))
                if self._keywords:
                    _ok(await client.uid("store", str(uid), "+FLAGS.SILENT", f"({s.flag})"), "UID STORE")
                handled += 1
            self._last_uid = max(self._last_uid, uid)
        return Round(handled=handled, backlog=len(uids) > BATCH)

    async def _fetch(self, uid: int) -> bytes | None:
        fetched = _ok(await self._require().uid("fetch", str(uid), "(BODY.PEEK[])"), "UID FETCH")
        for item in fetched.lines:
            if isinstance(item, bytearray):  # the literal: the message's bytes as stored
                return bytes(item)
        return None  # expunged meanwhile

    def _key(self, uid: int) -> str:
        s = self.settings
        return f"imap:{s.username}@{s.host}/{s.folder};UIDVALIDITY={self._uidvalidity};UID={uid}"

    # -- between rounds --------------------------------------------------------------------------

    async def wait(self, stop: asyncio.Event, timeout: float) -> None:
        """Until the server reports a change (IDLE), ``stop`` is set or ``timeout`` passed."""
        client = self._require()
        if not (self.settings.idle and "IDLE" in client.protocol.capabilities):
            await _first(stop.wait(), timeout=timeout)
            return
        idle = await client.idle_start(timeout=timeout)
        try:
            await _first(stop.wait(), client.wait_server_push(timeout=timeout + 1), timeout=timeout)
        finally:
            client.idle_done()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(idle, self.settings.timeout)

    def _require(self) -> aioimaplib.IMAP4:
        if self._client is None:
            raise ImapError("not connected")
        return self._client


async def run_reader(reader: ImapReader, *, stop: asyncio.Event, on_round: Callable[[Round], None] | None = None,
                     retry_seconds: float | None = None) -> None:
    """Read until ``stop``: connect, round, wait, round … A lost connection or a refused command
    is logged and retried after ``retry_seconds`` (default: the poll interval)."""
    every = reader.settings.poll_seconds
    retry = every if retry_seconds is None else retry_seconds
    try:
        while not stop.is_set():
            try:
                if not reader.connected:
                    await reader.close()
                    await reader.connect()
                done = await reader.round()
                if on_round is not None:
                    on_round(done)
                if not done.backlog:
                    await reader.wait(stop, every)
            except (TimeoutError, OSError, aioimaplib.AioImapException, ImapError) as e:
                log.warning("IMAP %s: %s; retrying in %.0fs", reader.settings.host, e or type(e).__name__, retry)
                await reader.close()
                await _first(stop.wait(), timeout=retry)
            except Exception:
                log.exception("IMAP %s: round failed; retrying in %.0fs", reader.settings.host, retry)
                await reader.close()
                await _first(stop.wait(), timeout=retry)
    finally:
        await reader.close()


# -- helpers -------------------------------------------------------------------------------------

def _ok(response: aioimaplib.Response, what: str) -> aioimaplib.Response:
    if response.result != "OK":
        detail = b" ".join(bytes(x) for x in response.lines[-1:]).decode("utf-8", "replace")
        raise ImapError(f"{what} refused: {response.result} {detail}".strip())
    return response


def _mailbox(name: str) -> str:
    """A mailbox name as an IMAP string (quoted when it needs to be)."""
    if re.fullmatch(r"[A-Za-z0-9_./-]+", name):
        return name
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _imap_date(moment: datetime) -> str:
    return f"{moment.day}-{_MONTHS[moment.month - 1]}-{moment.year}"


def _has_message_id(raw: bytes) -> bool:
    head = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(raw[:65536])
    return bool((head.get("Message-ID") or "").strip())


async def _first(*aws: Awaitable[object], timeout: float) -> None:
    tasks = [asyncio.ensure_future(a) for a in aws]
    try:
        await asyncio.wait(tasks, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
