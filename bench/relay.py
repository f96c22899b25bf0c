"""Benchmark: N messages through a relay that enforces a connection cap and a per-minute
message cap, with nurture's production sender settings (pool 8, 20/s).

    python bench/relay.py [--n 200] [--conn-cap 4] [--per-minute 50] [--aiosmtpd]

The relay is a real Postfix when Debian's postfix is installed and this runs as root: a
throwaway instance (``postfix -c DIR``) on a loopback port with
``smtpd_client_connection_count_limit`` (421 4.7.0 at connect beyond it) and
``smtpd_client_message_rate_limit`` per ``anvil_rate_time_unit = 60s`` (450 4.7.1 at MAIL
FROM), relaying to an aiosmtpd sink. Otherwise (or with ``--aiosmtpd``) nurture.sink's
LimitedRelay does the same in a child process. Targets: every message delivered once, in at
most 1.25x the time the caps allow, no permanent failure, at most 1.1 attempts a message.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import multiprocessing
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from _net import free_port, wait_ready  # noqa: E402

from nurture.campaigns import load_campaigns  # noqa: E402
from nurture.config import Settings, settings_from_dict  # noqa: E402
from nurture.render import Renderer  # noqa: E402
from nurture.scheduler import enroll, tick  # noqa: E402
from nurture.sender import SenderOptions, SendSummary, renderer_build, run_sender  # noqa: E402
from nurture.store import open_async_store, open_store  # noqa: E402
from nurture.store.contacts import ContactRow  # noqa: E402

CAMPAIGN = "industry-news"
QUEUED_AT = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)  # inside the campaign's send window


def _sink_process(port: int, limits: tuple[int, int, float] | None, conn: Connection) -> None:
    """A counting aiosmtpd sink (behind Postfix), or the limited relay itself."""
    from nurture.sink import LimitedRelay, Sink, start_limited_relay, start_sink

    async def main() -> None:
        if limits is None:
            sink: Sink = Sink()
            running = await start_sink(sink, port=port)
        else:
            cap, per_window, window = limits
            sink = LimitedRelay(max_connections=cap, per_window=per_window, window=window)
            running = await start_limited_relay(sink, port=port)
        conn.send("ready")
        loop = asyncio.get_running_loop()
        while True:
            msg = await loop.run_in_executor(None, conn.recv)
            ids = Counter(m.message_id for m in sink.messages)
            stats = {"messages": len(sink.messages), "distinct": len(ids),
                     "doubled": sum(1 for v in ids.values() if v > 1)}
            if isinstance(sink, LimitedRelay):
                stats.update(mail=sink.mail_commands, refused_mail=sink.refused_mail,
                             refused_connections=sink.refused_connections, max_open=sink.max_open)
            conn.send(stats)
            if msg == "stop":
                break
        await running.aclose()

    asyncio.run(main())


class SinkProcess:
    def __init__(self, port: int, limits: tuple[int, int, float] | None) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.parent, child = ctx.Pipe()
        self.proc = ctx.Process(target=_sink_process, args=(port, limits, child), daemon=True)
        self.proc.start()
        assert self.parent.recv() == "ready"

    def stats(self, *, stop: bool = False) -> dict[str, int]:
        self.parent.send("stop" if stop else "stats")
        stats: dict[str, int] = self.parent.recv()
        if stop:
            self.proc.join(5)
        return stats


MAIN_CF = """\
compatibility_level = 3.6
queue_directory = {dir}/queue
data_directory = {dir}/data
mail_owner = postfix
setgid_group = postdrop
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = relay.nurture.test
mydestination =
mynetworks = 127.0.0.0/8
relayhost = [127.0.0.1]:{sink_port}
smtpd_relay_restrictions = permit_mynetworks, reject
smtpd_client_connection_count_limit = {conn_cap}
smtpd_client_message_rate_limit = {per_minute}
anvil_rate_time_unit = 60s
smtpd_client_event_limit_exceptions =
maillog_file_prefixes = {dir}
maillog_file = {dir}/maillog
alias_maps =
alias_database =
smtp_tls_security_level = none
smtpd_tls_security_level = none
biff = no
"""

MASTER_CF = """\
127.0.0.1:{port} inet n - n - - smtpd
pickup    unix  n - n 60 1 pickup
cleanup   unix  n - n - 0 cleanup
qmgr      unix  n - n 300 1 qmgr
rewrite   unix  - - n - - trivial-rewrite
bounce    unix  - - n - 0 bounce
defer     unix  - - n - 0 bounce
trace     unix  - - n - 0 bounce
verify    unix  - - n - 1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n - - proxymap
smtp      unix  - - n - - smtp
relay     unix  - - n - - smtp
showq     unix  n - n - - showq
error     unix  - - n - - error
retry     unix  - - n - - error
discard   unix  - - n - - discard
anvil     unix  - - n - 1 anvil
scache    unix  - - n - 1 scache
postlog   unix-dgram n - n - 1 postlogd
"""


class Postfix:
    """A throwaway Postfix instance in its own config and queue directory."""

    def __init__(self, *, port: int, sink_port: int, conn_cap: int, per_minute: int) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="nurture-postfix-"))
        self.dir.chmod(0o755)  # Postfix's daemons run as the postfix user
        (self.dir / "main.cf").write_text(MAIN_CF.format(dir=self.dir, sink_port=sink_port, conn_cap=conn_cap,
                                                         per_minute=per_minute))
        (self.dir / "master.cf").write_text(MASTER_CF.format(port=port))
        (self.dir / "queue").mkdir()
        (self.dir / "data").mkdir()
        shutil.chown(self.dir / "data", "postfix")
        subprocess.run(["postfix", "-c", str(self.dir), "start"], check=True, capture_output=True)
        wait_ready(port)

    def log(self) -> str:
        path = self.dir / "maillog"
        return path.read_text(errors="replace") if path.exists() else ""

    def counts(self) -> dict[str, int]:
        """From the log: messages queued (accepted MAIL), rate and connection refusals."""
        log = self.log()
        accepted = len(re.findall(r"postfix/smtpd\[\d+\]: [0-9A-F]+: client=", log))
        refused_mail = len(re.findall(r"Message delivery request rate limit exceeded", log))
        refused_conn = len(re.findall(r"Connection concurrency limit exceeded", log))
        return {"mail": accepted + refused_mail, "refused_mail": refused_mail, "refused_connections": refused_conn}

    def stop(self) -> None:
        subprocess.run(["postfix", "-c", str(self.dir), "stop"], capture_output=True)
        shutil.rmtree(self.dir, ignore_errors=True)


def settings_for(db: str, port: int, pool: int, rate: str) -> Settings:
    return settings_from_dict({
        "database": db, "campaigns_dir": str(ROOT / "campaigns"), "templates_dir": str(ROOT / "templates"),
        "sender": {"from": "Acme Payments <hello@acme.example>", "postal_address": "1-2-3 Marunouchi, Tokyo"},
        "smtp": {"host": "127.0.0.1", "port": port, "max_connections": pool, "rate": rate, "timeout": 30},
    }, env={"NURTURE_SECRET": "bench-secret"})


def queue_sends(db: str, n: int, start: int = 0) -> None:
    campaigns = {c.id: c for c in load_campaigns(ROOT / "campaigns")}
    store = open_store(db)
    rows = [ContactRow(email=f"buyer{i}@shop{i % 97}.example",
                       fields={"first_name": f"Kim{i}", "last_name": "Lee", "company": f"Shop {i}"})
            for i in range(start, start + n)]
    store.upsert_contacts(rows, now=QUEUED_AT)
    enroll(store, campaigns[CAMPAIGN], now=QUEUED_AT, all_contacts=True)
    result = tick(store, {CAMPAIGN: campaigns[CAMPAIGN]}, now=QUEUED_AT, limit=n + 10)
    assert result.queued == n, result
    store.close()


async def send_all(db: str, settings: Settings, progress_every: float = 10.0) -> tuple[SendSummary, float, list[str]]:
    campaigns = {c.id: c for c in load_campaigns(ROOT / "campaigns")}
    astore = open_async_store(db)
    build = renderer_build(Renderer.from_settings(settings), campaigns)
    lines: list[str] = []
    last = [0.0]
    t0 = time.monotonic()

    def progress(s: SendSummary) -> None:
        now = time.monotonic()
        if now - last[0] >= progress_every and s.relay is not None:
            last[0] = now
            line = (f"  {now - t0:6.1f}s sent {s.sent:4d} · throttled {s.throttled} · refused {s.refused}"
                    f" · {s.relay.describe()}")
            lines.append(line)
            print(line, flush=True)

    summary = await run_sender(store=astore, settings=settings, build=build, stop=asyncio.Event(), once=True,
                               options=SenderOptions(), progress=progress)
    elapsed = time.monotonic() - t0
    attempts = await astore.run(lambda s: s.query("SELECT status, attempts FROM sends"))
    await astore.aclose()
    bad = [f"{r['status']}:{r['attempts']}" for r in attempts if r["status"] != "sent"]
    return summary, elapsed, bad


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=200)
    p.add_argument("--conn-cap", type=int, default=4)
    p.add_argument("--per-minute", type=int, default=50)
    p.add_argument("--pool", type=int, default=8, help="smtp.max_connections")
    p.add_argument("--rate", default="20/s", help="smtp.rate")
    p.add_argument("--restart", type=int, default=50, help="messages in a second run (0: none)")
    p.add_argument("--aiosmtpd", action="store_true", help="use the aiosmtpd relay even if Postfix is there")
    args = p.parse_args()

    use_postfix = not args.aiosmtpd and shutil.which("postfix") is not None and os.geteuid() == 0
    sink_port, relay_port = free_port(), free_port()
    postfix = None
    if use_postfix:
        sink = SinkProcess(sink_port, None)
        postfix = Postfix(port=relay_port, sink_port=sink_port, conn_cap=args.conn_cap, per_minute=args.per_minute)
        kind = "Postfix " + subprocess.run(["postconf", "-h", "mail_version"], capture_output=True,
                                           text=True).stdout.strip()
    else:
        relay_port = sink_port
        sink = SinkProcess(sink_port, (args.conn_cap, args.per_minute, 60.0))
        kind = "aiosmtpd LimitedRelay"
    try:
        with tempfile.TemporaryDirectory() as tmp:
            db = str(Path(tmp) / "bench.db")
            settings = settings_for(db, relay_port, args.pool, args.rate)
            queue_sends(db, args.n)
            print(f"{kind} on 127.0.0.1:{relay_port}: {args.conn_cap} connections, {args.per_minute} messages"
                  f" a minute; nurture pool {args.pool}, rate {args.rate}; {args.n} messages", flush=True)
            summary, elapsed, bad = asyncio.run(send_all(db, settings))
            deadline = time.monotonic() + 120
            stats = sink.stats()
            while stats["distinct"] < args.n and time.monotonic() < deadline:  # Postfix relays on its own time
                time.sleep(0.5)
                stats = sink.stats()
            relay = postfix.counts() if postfix is not None else stats
            windows = math.ceil(args.n / args.per_minute)
            steady = args.n / args.per_minute * 60
            burst = (windows - 1) * 60
            print(f"all marked sent after      : {elapsed:7.1f} s")
            print(f"caps allow (N / rate)      : {steady:7.1f} s  -> ratio {elapsed / steady:.2f} (target <= 1.25)")
            print(f"caps allow (full windows)  : {burst:7.1f} s  -> ratio {elapsed / max(burst, 1):.2f}")
            print(f"sent / failed / retried    : {summary.sent} / {summary.failed + summary.bounced + summary.blocked}"
                  f" / {summary.retried}; rows not sent: {bad or 'none'}")
            print(f"at the sink                : {stats['distinct']} distinct, {stats['doubled']} doubled")
            print(f"MAIL FROM at the relay     : {relay['mail']} = {relay['mail'] / args.n:.3f} a message"
                  f" (target <= 1.1); refused {relay['refused_mail']}")
            print(f"connections refused        : {relay['refused_connections']} (relay) / {summary.refused}"
                  f" (sender); sessions opened {summary.connections}")
            print(f"belief at the end          : {summary.relay.describe() if summary.relay else '-'}")
            if args.restart:
                store = open_store(db)
                before = store.relay_state(f"127.0.0.1:{relay_port}")
                store.close()
                queue_sends(db, args.restart, start=args.n)
                second, elapsed2, bad2 = asyncio.run(send_all(db, settings, progress_every=1e9))
                print(f"restart: stored rate {before.rate if before else float('nan'):.3g}/s, pool"
                      f" {before.pool if before else '-'}; {args.restart} more sent {second.sent} in {elapsed2:.1f} s,"
                      f" throttled {second.throttled}, refused {second.refused}; not sent: {bad2 or 'none'}")
    finally:
        if postfix is not None:
            postfix.stop()
        sink.stats(stop=True)


if __name__ == "__main__":
    main()
