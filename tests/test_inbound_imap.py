"""The IMAP reader against a real Dovecot on loopback (Debian's dovecot-imapd; skipped without it)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aioimaplib import aioimaplib
from conftest import NOW

from nurture.config import ImapSettings
from nurture.inbound import imap
from nurture.inbound.imap import ImapReader, run_reader

DOVECOT = shutil.which("dovecot") or ("/usr/sbin/dovecot" if os.path.exists("/usr/sbin/dovecot") else None)
pytestmark = pytest.mark.skipif(DOVECOT is None, reason="dovecot is not installed (apt-get install dovecot-imapd)")

PASSWORD = "imap-test-password"


@dataclass
class Dovecot:
    port: int
    root: Path
    #: Each test has a mailbox of its own on the module's server.
    user: str = "sales@acme.example"

    def settings(self, **overrides: object) -> ImapSettings:
        values: dict[str, object] = dict(host="127.0.0.1", port=self.port, tls="none", username=self.user,
                                         password=PASSWORD, poll_seconds=0.2, timeout=5.0)
        values.update(overrides)
        return ImapSettings(**values)  # type: ignore[arg-type]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _users() -> tuple[str, str, str]:
    """(internal user, login user, mail user): Debian's dovecot users as root, else ourselves."""
    me = pwd.getpwuid(os.geteuid()).pw_name
    if os.geteuid() != 0:
        return me, me, me
    try:
        pwd.getpwnam("dovecot"), pwd.getpwnam("dovenull")
    except KeyError:
        pytest.skip("the dovecot and dovenull users are missing")
    return "dovecot", "dovenull", "dovecot"


@pytest.fixture(scope="module")
def dovecot_server() -> Iterator[Dovecot]:
    # Not tmp_path: unix socket paths must stay short, and the mail user must reach the folder.
    root = Path(tempfile.mkdtemp(prefix="nurture-dovecot-"))
    root.chmod(0o755)
    internal, login, mail_user = _users()
    port = _free_port()
    for sub in ("run", "state", "mail"):
        (root / sub).mkdir()
    (root / "passwd").write_text("".join(f"sales{i}@acme.example:{{PLAIN}}{PASSWORD}::::::\n" for i in range(50)))
    (root / "dovecot.conf").write_text(f"""
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
first_valid_uid = 0
mail_location = maildir:{root}/mail/%u
default_internal_user = {internal}
default_login_user = {login}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/passwd
}}
userdb {{
  driver = static
  args = uid={mail_user} gid={pwd.getpwnam(mail_user).pw_gid} home={root}/mail/%u
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service anvil {{
  chroot =
}}
""")
    shutil.chown(root / "mail", user=mail_user)
    assert DOVECOT is not None
    subprocess.run([DOVECOT, "-c", str(root / "dovecot.conf")], check=True, timeout=30)
    try:
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                break
            if time.monotonic() > deadline:
                log = (root / "dovecot.log").read_text() if (root / "dovecot.log").exists() else ""
                pytest.fail(f"dovecot did not start:\n{log}")
            time.sleep(0.05)
        yield Dovecot(port=port, root=root)
    finally:
        pid_file = root / "run" / "master.pid"
        if pid_file.exists():
            pid = int(pid_file.read_text().split()[0])
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, 15)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.05)
        shutil.rmtree(root, ignore_errors=True)


_mailboxes = iter(range(50))


@pytest.fixture
def dovecot(dovecot_server: Dovecot) -> Dovecot:
    """A fresh mailbox (one of the users made at start) on the module's Dovecot."""
    return Dovecot(port=dovecot_server.port, root=dovecot_server.root, user=f"sales{next(_mailboxes)}@acme.example")


class Client:
    """A second client (the reps' mail program, say): appends mail and looks at its flags."""

    def __init__(self, server: Dovecot) -> None:
        self.server = server
        self.imap: aioimaplib.IMAP4 | None = None

    async def __aenter__(self) -> Client:
        self.imap = aioimaplib.IMAP4(host="127.0.0.1", port=self.server.port, timeout=5)
        await self.imap.wait_hello_from_server()
        assert (await self.imap.login(self.server.user, PASSWORD)).result == "OK"
        assert (await self.imap.select("INBOX")).result == "OK"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.imap is not None
        await self.imap.logout()

    async def append(self, raw: bytes, flags: str | None = None) -> None:
        assert self.imap is not None
        assert (await self.imap.append(raw, mailbox="INBOX", flags=flags)).result == "OK"

    async def flags(self) -> dict[str, set[str]]:
        """Message-ID → flags of every message in INBOX."""
        assert self.imap is not None
        await self.imap.noop()
        r = await self.imap.fetch("1:*", "(FLAGS BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
        out: dict[str, set[str]] = {}
        flags: set[str] = set()
        for item in r.lines:
            if isinstance(item, bytearray):
                mid = bytes(item).decode().split(":", 1)[1].strip()
                out[mid] = flags
            elif b"FLAGS (" in bytes(item):
                flags = set(bytes(item).split(b"FLAGS (")[1].split(b")")[0].decode().split()) - {"\\Recent"}
        return out

    async def count(self) -> int:
        assert self.imap is not None
        r = await self.imap.search("ALL", charset=None)
        return len(bytes(r.lines[0]).split())


def mail(n: int, *, subject: str = "Re: Webinar", body: str = "Could you call me on Thursday?") -> bytes:
    return (f"From: Merchant {n} <m{n}@shop.example>\r\nTo: sales@acme.example\r\n"
            f"Subject: {subject}\r\nMessage-ID: <reply-{n}@shop.example>\r\n"
            f"Date: Tue, 24 Nov 2026 09:0{n % 10}:00 +0000\r\nIn-Reply-To: <send-{n}@acme.example>\r\n"
            f"\r\n{body}\r\n").encode()


def recorder() -> tuple[list[tuple[bytes, str | None]], imap.Deliver]:
    got: list[tuple[bytes, str | None]] = []

    async def deliver(raw: bytes, key: str | None) -> None:
        got.append((raw, key))

    return got, deliver


async def test_new_mail_is_handled_once_across_a_restart_and_left_in_place(dovecot):
    got, deliver = recorder()
    async with Client(dovecot) as other:
        await other.append(mail(1))
        await other.append(mail(2), flags="(\\Flagged)")
        reader = ImapReader(settings=dovecot.settings(), deliver=deliver, now=lambda: NOW)
        await reader.connect()
        assert (await reader.round()).handled == 2
        assert (await reader.round()).handled == 0
        await reader.close()

        # A restart: a new reader, nothing is handed on again; a new message is.
        await other.append(mail(3))
        reader = ImapReader(settings=dovecot.settings(), deliver=deliver, now=lambda: NOW)
        await reader.connect()
        assert (await reader.round()).handled == 1
        await reader.close()

        assert [raw for raw, _ in got] == [mail(1), mail(2), mail(3)]  # byte for byte
        assert all(key is None for _, key in got)  # they have a Message-ID: the store dedupes by it
        flags = await other.flags()
        # Marked with the keyword only: still unread for the reps, nothing moved or deleted.
        assert flags == {"<reply-1@shop.example>": {"$NurtureSeen"},
                         "<reply-2@shop.example>": {"$NurtureSeen", "\\Flagged"},
                         "<reply-3@shop.example>": {"$NurtureSeen"}}
        assert await other.count() == 3


async def test_mail_already_read_by_a_person_is_still_handed_on_and_stays_read(dovecot):
    got, deliver = recorder()
    async with Client(dovecot) as other:
        await other.append(mail(1), flags="(\\Seen)")
        reader = ImapReader(settings=dovecot.settings(), deliver=deliver, now=lambda: NOW)
        await reader.connect()
        await reader.round()
        await reader.close()
        assert len(got) == 1
        assert (await other.flags())["<reply-1@shop.example>"] == {"\\Seen", "$NurtureSeen"}


async def test_a_message_without_message_id_gets_a_stable_dedupe_key(dovecot):
    got, deliver = recorder()
    raw = b"From: a@shop.example\r\nSubject: no id\r\n\r\nhello\r\n"
    async with Client(dovecot) as other:
        await other.append(raw)
    reader = ImapReader(settings=dovecot.settings(), deliver=deliver, now=lambda: NOW)
    await reader.connect()
    await reader.round()
    await reader.close()
    [(_, key)] = got
    assert key is not None and key.endswith(";UID=1")
    assert key.startswith(f"imap:{dovecot.user}@127.0.0.1/INBOX;UIDVALIDITY=")


async def test_a_failed_delivery_leaves_the_message_unmarked_for_the_next_round(dovecot):
    calls: list[bytes] = []

    async def deliver(raw: bytes, key: str | None) -> None:
        calls.append(raw)
        if len(calls) == 1:
            raise RuntimeError("database is locked")

    async with Client(dovecot) as other:
        await other.append(mail(1))
        reader = ImapReader(settings=dovecot.settings(), deliver=deliver, now=lambda: NOW)
        await reader.connect()
        with pytest.raises(RuntimeError):
            await reader.round()
        assert (await other.flags())["<reply-1@shop.example>"] == set()
        await reader.close()
        reader = ImapReader(settings=dovecot.settings(), deliver=deliver, now=lambda: NOW)
        await reader.connect()
        assert (await reader.round()).handled == 1
        await reader.close()
        assert calls == [mail(1), mail(1)]
        assert (await other.flags())["<reply-1@shop.example>"] == {"$NurtureSeen"}


@pytest.mark.parametrize("idle", [True, False], ids=["idle", "poll"])
async def test_run_reader_picks_up_new_mail_quickly_and_stops(dovecot, idle):
    got, deliver = recorder()
    arrived = asyncio.Event()

    async def deliver_and_tell(raw: bytes, key: str | None) -> None:
        await deliver(raw, key)
        arrived.set()

    stop = asyncio.Event()
    reader = ImapReader(settings=dovecot.settings(idle=idle, poll_seconds=0.3 if not idle else 30.0),
                        deliver=deliver_and_tell, now=lambda: NOW)
    task = asyncio.create_task(run_reader(reader, stop=stop))
    try:
        await asyncio.sleep(0.5)  # connected and waiting (in IDLE: a 30 s timeout, so only a push wakes it)
        async with Client(dovecot) as other:
            t0 = time.monotonic()
            await other.append(mail(7))
            await asyncio.wait_for(arrived.wait(), 5)
            latency = time.monotonic() - t0
        assert [raw for raw, _ in got] == [mail(7)]
        assert latency < (1.0 if idle else 2.0)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
    assert not reader.connected


async def test_a_wrong_password_is_logged_and_retried_not_raised(dovecot, caplog):
    got, deliver = recorder()
    stop = asyncio.Event()
    reader = ImapReader(settings=dovecot.settings(password="wrong"), deliver=deliver, now=lambda: NOW)
    task = asyncio.create_task(run_reader(reader, stop=stop, retry_seconds=0.1))
    await asyncio.sleep(1.5)
    stop.set()
    await asyncio.wait_for(task, 10)
    assert got == [] and "LOGIN refused" in caplog.text


async def test_the_batch_limit_leaves_a_backlog(dovecot, monkeypatch):
    monkeypatch.setattr(imap, "BATCH", 2)
    got, deliver = recorder()
    async with Client(dovecot) as other:
        for n in range(5):
            await other.append(mail(n))
    reader = ImapReader(settings=dovecot.settings(), deliver=deliver, now=lambda: NOW)
    await reader.connect()
    rounds = [await reader.round() for _ in range(3)]
    await reader.close()
    assert [(r.handled, r.backlog) for r in rounds] == [(2, True), (2, True), (1, False)]
    assert len({raw for raw, _ in got}) == 5


async def test_the_part_records_a_reply_and_leaves_unrelated_mail_alone(dovecot, make_settings):
    from dataclasses import replace

    from support import add_contact, add_send

    from nurture.parts import Context, run_parts
    from nurture.store import open_async_store

    settings = make_settings()
    settings = replace(settings, inbound=replace(settings.inbound, imap=dovecot.settings(idle=True)))
    store = open_async_store(settings.database)

    def seed(s) -> int:
        with s.transaction():
            send_id = add_send(s, add_contact(s, "m1@shop.example"))
            s.conn.execute("UPDATE sends SET message_id = ? WHERE id = ?", ("<send-1@acme.example>", send_id))
            return send_id

    send_id = await store.run(seed)
    unrelated = (b"From: Supplier <billing@supplier.example>\r\nTo: sales@acme.example\r\nSubject: Invoice 42\r\n"
                 b"Message-ID: <invoice-42@supplier.example>\r\n\r\nPlease find the invoice attached.\r\n")
    stop = asyncio.Event()
    job = asyncio.create_task(run_parts(["imap"], Context(settings=settings, store=store, campaigns={}, stop=stop,
                                                          now=lambda: NOW)))
    try:
        async with Client(dovecot) as other:
            await other.append(unrelated)
            await other.append(mail(1))  # In-Reply-To: <send-1@acme.example>
            records: list[dict] = []
            for _ in range(100):
                records = await store.run(lambda s: s.list_inbound(limit=10))
                if len(records) == 2:
                    break
                await asyncio.sleep(0.05)
            by_subject = {r["subject"]: r for r in records}
            assert by_subject["Re: Webinar"]["kind"] == "reply" and by_subject["Re: Webinar"]["send_id"] == send_id
            assert by_subject["Invoice 42"]["send_id"] is None  # recorded as not ours; nothing done
            flags = await other.flags()
            assert flags["<invoice-42@supplier.example>"] == {"$NurtureSeen"}  # still unread, still there
            assert await other.count() == 2
    finally:
        stop.set()
        await asyncio.wait_for(job, 10)
        await store.aclose()
