"""Helpers for the outbox/sender tests: SQL fixtures that queue sends without the scheduler,
a minimal message builder, and (run as a script) a sender process for the crash tests.

    python tests/_send_worker.py DB HOST PORT [--pool N] [--lease S] [--clock-offset S]
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from nurture.models import Contact, Send  # noqa: E402
from nurture.store import Store  # noqa: E402

FROM = "Acme Payments <hello@acme.example>"


def seed(store: Store, *, n: int, now: datetime, campaign: str = "c1", steps: tuple[str, ...] = ("s1",),
         domain: str = "example.com", next_wait: float | None = None) -> list[int]:
    """Insert ``n`` contacts, one active enrollment each, and a queued send per step (due
    ``now``). Returns the send ids in order."""
    t = now.timestamp()
    with store.transaction():
        start = store.conn.execute("SELECT coalesce(max(id), 0) FROM contacts").fetchone()[0]
        store.conn.executemany(
            "INSERT INTO contacts (email, email_key, first_name, company, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            [(f"user{start + i}@{domain}", f"user{start + i}@{domain}", f"User{start + i}", "Shop", t, t)
             for i in range(1, n + 1)])
        cids = [r[0] for r in store.conn.execute("SELECT id FROM contacts WHERE id > ? ORDER BY id", (start,))]
        store.conn.executemany(
            "INSERT INTO enrollments (campaign_id, contact_id, next_step, next_at, next_wait, enrolled_at,"
            " updated_at) VALUES (?, ?, NULL, NULL, ?, ?, ?)",
            [(campaign, cid, next_wait, t, t) for cid in cids])
        eids = [r[0] for r in store.conn.execute(
            "SELECT id FROM enrollments WHERE campaign_id = ? AND contact_id > ? ORDER BY contact_id",
            (campaign, start))]
        rows = [(eid, campaign, step, cid, t, t) for eid, cid in zip(eids, cids, strict=True) for step in steps]
        store.conn.executemany(
            "INSERT INTO sends (enrollment_id, campaign_id, step_id, contact_id, next_attempt_at, queued_at)"
            " VALUES (?, ?, ?, ?, ?, ?)", rows)
        return [r[0] for r in store.conn.execute(
            "SELECT id FROM sends WHERE contact_id > ? ORDER BY id", (start,))]


@dataclass(frozen=True)
class StubMessage:
    message_id: str
    to: str
    data: bytes

    def to_bytes(self) -> bytes:
        return self.data


def stub_build(send: Send, contact: Contact, *, link_ids: Any, now: datetime,
               message_id: str | None) -> StubMessage:
    """A tiny message that names its (enrollment, step) in a header; uses the links table."""
    mid = message_id or f"<{send.id}.{send.campaign_id}.{send.step_id}@nurture.test>"
    link = link_ids("pricing", "https://acme.example/pricing", False)
    data = (
        f"From: {FROM}\r\nTo: {contact.email}\r\nSubject: Hello {contact.first_name}\r\n"
        f"Message-ID: {mid}\r\nX-Nurture-Send: {send.enrollment_id}:{send.step_id}\r\n"
        f"Date: {now:%a, %d %b %Y %H:%M:%S +0000}\r\n\r\nSee https://t.example/c/{send.id}.{link}\r\n"
    ).encode()
    return StubMessage(message_id=mid, to=contact.email, data=data)


def header(data: bytes, name: str) -> str | None:
    for line in data.split(b"\r\n\r\n", 1)[0].split(b"\r\n"):
        if line.lower().startswith(name.lower().encode() + b":"):
            return line.split(b":", 1)[1].strip().decode()
    return None


async def _main(args: argparse.Namespace) -> int:
    from nurture.config import settings_from_dict
    from nurture.sender import Backoff, SenderOptions, run_sender
    from nurture.store import open_async_store

    settings = settings_from_dict({
        "database": args.db, "sender": {"from": FROM},
        "smtp": {"host": args.host, "port": args.port, "max_connections": args.pool, "rate": "100000/s",
                 "timeout": 5},
    })
    store = open_async_store(args.db)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    offset = timedelta(seconds=args.clock_offset)
    print("ready", flush=True)
    summary = await run_sender(
        store=store, settings=settings, build=stub_build, stop=stop, once=True,
        now=lambda: datetime.now(UTC) + offset,
        options=SenderOptions(lease=timedelta(seconds=args.lease), backoff=Backoff(base=timedelta(0)),
                              batch=args.batch),
    )
    await store.aclose()
    print("done", summary.as_dict(), flush=True)
    return 0


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("db")
    p.add_argument("host")
    p.add_argument("port", type=int)
    p.add_argument("--pool", type=int, default=4)
    p.add_argument("--lease", type=float, default=600)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--clock-offset", type=float, default=0)
    sys.exit(asyncio.run(_main(p.parse_args())))
