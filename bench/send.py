"""Benchmark: end-to-end sends per second (scheduler-queued rows → render + MIME + ledger +
SMTP) against a loopback sink, beside a bare aiosmtplib loop sending pre-built bytes to the
same sink in the same run.

    python bench/send.py [--n 4000] [--pool 8] [--delay-n 800] [--dkim] [--engine] [--render-processes N]

Mode 1 (fast sink): ratio = nurture / bare (target >= 0.5).
Mode 2 (sink answers DATA after 50 ms): nurture / (pool / 0.05 s) (target >= 0.8).
With --dkim, mode 1 runs again with a 2048-bit RSA DKIM key: the signing CPU per message
(target < 1 ms) and the ratio to the bare loop sending the signed bytes (target >= 0.4).
The sink runs in its own process so it does not share the sender's CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from nurture.campaigns import load_campaigns  # noqa: E402
from nurture.config import settings_from_dict  # noqa: E402
from nurture.parts import render_processes  # noqa: E402
from nurture.render import Renderer  # noqa: E402
from nurture.render_pool import Made, RenderPool  # noqa: E402
from nurture.scheduler import enroll, tick  # noqa: E402
from nurture.sender import SenderOptions, renderer_build, run_sender  # noqa: E402
from nurture.store import open_async_store, open_store  # noqa: E402
from nurture.store.contacts import ContactRow  # noqa: E402

CAMPAIGN = "industry-news"
#: A Tuesday 10:00 in London: inside the campaign's send window.
QUEUED_AT = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)


def _sink_process(delay: float, conn) -> None:  # runs in a child process
    from nurture.sink import Sink, start_sink

    class CountingSink(Sink):
        """Counts instead of keeping messages, so memory stays flat."""

        async def handle_DATA(self, server, session, envelope):  # type: ignore[override]
            if self.delay:
                await asyncio.sleep(self.delay)
            self.count = getattr(self, "count", 0) + 1
            return "250 2.0.0 OK queued"

    async def main() -> None:
        running = await start_sink(CountingSink(delay=delay))
        conn.send(running.port)
        await asyncio.get_running_loop().run_in_executor(None, conn.recv)  # until told to stop
        await running.aclose()

    asyncio.run(main())


class SinkProcess:
    def __init__(self, delay: float) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.parent, child = ctx.Pipe()
        self.proc = ctx.Process(target=_sink_process, args=(delay, child), daemon=True)
        self.proc.start()
        self.port = self.parent.recv()

    def close(self) -> None:
        self.parent.send("stop")
        self.proc.join(5)


def settings_for(db: str, port: int, pool: int, dkim_key: str | None = None):
    extra = {"dkim": {"selector": "bench", "domain": "acme.example", "private_key_file": dkim_key}} if dkim_key else {}
    return settings_from_dict({
        "database": db, "campaigns_dir": str(ROOT / "campaigns"), "templates_dir": str(ROOT / "templates"),
        "sender": {"from": "Acme Payments <hello@acme.example>", "postal_address": "1-2-3 Marunouchi, Tokyo"},
        "smtp": {"host": "127.0.0.1", "port": port, "max_connections": pool, "rate": "1000000/s"},
        **extra,
    }, env={"NURTURE_SECRET": "bench-secret"})


def queue_sends(db: str, n: int, campaigns: dict) -> None:
    store = open_store(db)
    rows = [ContactRow(email=f"buyer{i}@shop{i % 97}.example",
                       fields={"first_name": f"Kim{i}", "last_name": "Lee", "company": f"Shop {i}"})
            for i in range(n)]
    store.upsert_contacts(rows, now=QUEUED_AT)
    enroll(store, campaigns[CAMPAIGN], now=QUEUED_AT, all_contacts=True)
    result = tick(store, {CAMPAIGN: campaigns[CAMPAIGN]}, now=QUEUED_AT, limit=n + 10)
    assert result.queued == n, result
    store.close()


async def nurture_run(db: str, settings, campaigns: dict, processes: int,
                      prebuilt_bytes: list[bytes] | None = None) -> tuple[float, int, float]:
    """As the sender part runs it: in render processes when ``processes`` > 0 (started before
    the clock runs, as ``nurture run`` starts them with the sender), else on the render thread.
    With ``prebuilt_bytes`` the rendering is taken out: a stub build hands over those bytes."""
    astore = open_async_store(db)
    pool = RenderPool(settings=settings, campaigns=campaigns, processes=processes) if processes else None
    build = pool or renderer_build(Renderer.from_settings(settings), campaigns)
    if prebuilt_bytes is not None:
        pool = None

        def build(send, contact, *, link_ids, now, message_id):  # noqa: ARG001 - the Build signature
            return Made(message_id=f"<bench.{send.id}@acme.example>", to=contact.email,
                        data=prebuilt_bytes[send.id % len(prebuilt_bytes)])
    if pool is not None:
        pool.start()
    t0, c0, w0 = time.perf_counter(), time.process_time(), _workers_cpu(pool)
    summary = await run_sender(store=astore, settings=settings, build=build, stop=asyncio.Event(), once=True,
                               options=SenderOptions(batch=128))
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    cpu += _workers_cpu(pool) - w0
    if pool is not None:
        pool.close()
    await astore.aclose()
    assert summary.sent > 0 and not summary.retried and not summary.failed, summary
    return elapsed, summary.sent, cpu


def _workers_cpu(pool: RenderPool | None) -> float:
    """CPU seconds the render processes have used so far (Linux /proc), so the figure per
    message counts all of nurture's work, not only the sending interpreter's."""
    executor = pool._executor if pool is not None else None
    total = 0.0
    for pid in (executor._processes if executor is not None else {}):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def sign_cpu_ms(settings, messages: list[bytes]) -> float:
    """CPU per message of DKIM signing alone (the messages are signed again, unsigned first)."""
    renderer = Renderer.from_settings(settings)
    bare = [_unsigned(m) for m in messages]
    renderer.sign_dkim(bare[0])
    c0 = time.process_time()
    for m in bare:
        renderer.sign_dkim(m)
    return (time.process_time() - c0) * 1000 / len(bare)


def _unsigned(message: bytes) -> bytes:
    """The message without its leading DKIM-Signature fields."""
    while message.startswith(b"DKIM-Signature:"):
        end = message.index(b"\r\n", 0)
        while message[end + 2:end + 3] in (b" ", b"\t"):
            end = message.index(b"\r\n", end + 2)
        message = message[end + 2:]
    return message


def prebuilt(settings, campaigns: dict, n: int) -> tuple[list[bytes], float]:
    """n rendered messages (and the render-only CPU per message once templates are compiled, in ms)."""
    from nurture.models import Contact
    from nurture.render import memory_link_ids

    renderer = Renderer.from_settings(settings)
    c = campaigns[CAMPAIGN]
    links = memory_link_ids()
    warm = Contact(id=n + 1, email="warm@shop.example", first_name="Warm", last_name="Up", company="Shop")
    renderer.render(campaign=c, step=c.steps[0], contact=warm, send_id=n + 1, link_ids=links, now=QUEUED_AT)
    out = []
    t0 = time.process_time()
    for i in range(n):
        contact = Contact(id=i + 1, email=f"buyer{i}@shop{i % 97}.example", first_name=f"Kim{i}",
                          last_name="Lee", company=f"Shop {i}")
        out.append(renderer.render(campaign=c, step=c.steps[0], contact=contact, send_id=i + 1,
                                   link_ids=links, now=QUEUED_AT).to_bytes())
    return out, (time.process_time() - t0) * 1000 / n


async def bare_run(port: int, pool: int, messages: list[bytes]) -> float:
    import aiosmtplib

    chunks = [messages[i::pool] for i in range(pool)]

    async def one(chunk: list[bytes]) -> None:
        smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False)
        await smtp.connect()
        for i, data in enumerate(chunk):
            await smtp.sendmail("hello@acme.example", [f"buyer{i}@shop.example"], data)
        await smtp.quit()

    t0, c0 = time.perf_counter(), time.process_time()
    await asyncio.gather(*(one(c) for c in chunks))
    return time.perf_counter() - t0, time.process_time() - c0


def mode(n: int, pool: int, delay: float, campaigns: dict, processes: int, dkim: bool = False,
         engine: bool = False) -> dict[str, float]:
    sink = SinkProcess(delay)
    sign_ms = 0.0
    try:
        with tempfile.TemporaryDirectory() as tmp:
            db = str(Path(tmp) / "bench.db")
            key = None
            if dkim:
                key = str(Path(tmp) / "dkim.pem")
                subprocess.run(["openssl", "genrsa", "-out", key, "2048"], check=True, capture_output=True)
            settings = settings_for(db, sink.port, pool, key)
            queue_sends(db, n, campaigns)
            messages, render_ms = prebuilt(settings, campaigns, n)
            if dkim:
                assert messages[0].startswith(b"DKIM-Signature:")
                sign_ms = sign_cpu_ms(settings, messages[: min(n, 1000)])
            bare, bare_cpu = asyncio.run(bare_run(sink.port, pool, messages))
            elapsed, sent, cpu = asyncio.run(nurture_run(db, settings, campaigns, processes,
                                                         messages if engine else None))
            assert sent == n, (sent, n)
    finally:
        sink.close()
    return {"n": n, "pool": pool, "delay_ms": delay * 1000, "bare_per_s": n / bare,
            "nurture_per_s": n / elapsed, "render_ms": render_ms,
            "cpu_ms": cpu * 1000 / n, "bare_cpu_ms": bare_cpu * 1000 / n, "sign_ms": sign_ms}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=4000, help="messages in the fast-sink mode")
    p.add_argument("--pool", type=int, default=8, help="SMTP connections")
    p.add_argument("--delay-n", type=int, default=800, help="messages in the 50 ms mode")
    p.add_argument("--dkim", action="store_true", help="also run the fast-sink mode with DKIM signing")
    p.add_argument("--engine", action="store_true",
                   help="also the fast sink with the rendering taken out (the sending engine alone)")
    p.add_argument("--render-processes", type=int, default=None,
                   help="render processes (default: as the sender part chooses for this machine; 0: render thread)")
    args = p.parse_args()
    campaigns = {c.id: c for c in load_campaigns(ROOT / "campaigns")}
    procs = render_processes(args.render_processes)
    print(f"rendering in {procs} render process(es)" if procs else "rendering on the sender's render thread")

    fast = mode(args.n, args.pool, 0.0, campaigns, procs)
    ratio = fast["nurture_per_s"] / fast["bare_per_s"]
    print(f"fast sink, pool {args.pool}, {args.n} messages:")
    print(f"  bare aiosmtplib, pre-built bytes : {fast['bare_per_s']:8.0f} msg/s")
    print(f"  nurture end to end               : {fast['nurture_per_s']:8.0f} msg/s")
    print(f"  ratio                            : {ratio:8.2f}   (target >= 0.5)")
    print(f"  render + MIME alone              : {fast['render_ms']:8.3f} ms/message")
    print(f"  CPU per message, bare / nurture  : {fast['bare_cpu_ms']:8.3f} / {fast['cpu_ms']:.3f} ms"
          "   (nurture: sender + render processes)")

    if args.dkim:
        signed = mode(args.n, args.pool, 0.0, campaigns, procs, dkim=True)
        print(f"fast sink with DKIM (RSA 2048, relaxed/relaxed), pool {args.pool}, {args.n} messages:")
        print(f"  bare aiosmtplib, signed bytes    : {signed['bare_per_s']:8.0f} msg/s")
        print(f"  nurture end to end               : {signed['nurture_per_s']:8.0f} msg/s")
        print(f"  ratio                            : {signed['nurture_per_s'] / signed['bare_per_s']:8.2f}"
              "   (target >= 0.4)")
        print(f"  DKIM signing CPU                 : {signed['sign_ms']:8.3f} ms/message   (target < 1)")
        print(f"  render + MIME + sign             : {signed['render_ms']:8.3f} ms/message")
        print(f"  CPU per message, bare / nurture  : {signed['bare_cpu_ms']:8.3f} / {signed['cpu_ms']:.3f} ms")

    if args.engine:
        bare_engine = mode(args.n, args.pool, 0.0, campaigns, procs, engine=True)
        print(f"sending engine alone (pre-built bytes through the real sender), pool {args.pool}, {args.n} messages:")
        print(f"  bare aiosmtplib                  : {bare_engine['bare_per_s']:8.0f} msg/s")
        print(f"  nurture's sender, no rendering   : {bare_engine['nurture_per_s']:8.0f} msg/s")
        print(f"  ratio                            : {bare_engine['nurture_per_s'] / bare_engine['bare_per_s']:8.2f}")

    slow = mode(args.delay_n, args.pool, 0.05, campaigns, procs)
    bound = args.pool / 0.05
    print(f"sink answering after 50 ms, pool {args.pool}, {args.delay_n} messages:")
    print(f"  bound pool/latency               : {bound:8.0f} msg/s")
    print(f"  bare aiosmtplib                  : {slow['bare_per_s']:8.0f} msg/s")
    print(f"  nurture end to end               : {slow['nurture_per_s']:8.0f} msg/s")
    print(f"  fraction of the bound            : {slow['nurture_per_s'] / bound:8.2f}   (target >= 0.8)")


if __name__ == "__main__":
    main()
