"""Benchmark: sends per second with 1 and 2 sender processes sharing one database.

    python bench/scaleout.py [--n 3000] [--pool 4] [--backends postgres,sqlite] [--fast-pg]

Starts a throwaway PostgreSQL cluster (fsync on unless --fast-pg), a fast SMTP sink in its own
process, queues ``n`` rows, then starts 1 or 2 sender processes together
(tests/_scaleout_worker.py: the real sender, claims, leases and the shared rate bucket, with
a stub message builder so that rendering does not hide the coordination cost) and times them
from "go" to the last one exiting. The rate is set far above what one machine can do, so the
bucket is consulted on every claim but never the limit. Prints one row per backend and
sender count. Every run also checks that no row was sent twice.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import re
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from _send_worker import seed  # noqa: E402
from pg_fixtures import ThrowawayCluster  # noqa: E402

from nurture.store import open_store  # noqa: E402

WORKER = str(ROOT / "tests" / "_scaleout_worker.py")


def _sink_process(conn) -> None:  # runs in a child process
    from nurture.sink import Sink, start_sink

    class CountingSink(Sink):
        """Counts (enrollment, step) keys instead of keeping messages."""

        async def handle_DATA(self, server, session, envelope):  # type: ignore[override]
            data = envelope.original_content or b""
            m = re.search(rb"X-Nurture-Send: ([^\r\n]+)", data)
            self.keys[m.group(1) if m else b"?"] += 1
            return "250 2.0.0 OK queued"

    async def main() -> None:
        sink = CountingSink()
        sink.keys = Counter()
        running = await start_sink(sink)
        conn.send(running.port)
        while True:
            cmd = await asyncio.get_running_loop().run_in_executor(None, conn.recv)
            if cmd == "stats":
                conn.send((sum(sink.keys.values()), len(sink.keys), max(sink.keys.values(), default=0)))
                sink.keys.clear()
            else:
                break
        await running.aclose()

    asyncio.run(main())


async def run_senders(db: str, port: int, k: int, pool: int) -> float:
    procs = []
    for _ in range(k):
        p = await asyncio.create_subprocess_exec(
            sys.executable, WORKER, db, "127.0.0.1", str(port), "--rate", "1000000/s", "--pool", str(pool),
            "--batch", "64", stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)
        assert (await p.stdout.readline()).strip() == b"ready"
        procs.append(p)
    started = time.perf_counter()
    for p in procs:
        p.stdin.write(b"go\n")
        await p.stdin.drain()
    outs = await asyncio.gather(*(p.communicate() for p in procs))
    elapsed = time.perf_counter() - started
    for p, (_, err) in zip(procs, outs, strict=True):
        if p.returncode != 0:
            raise SystemExit(err.decode()[-2000:])
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=3000)
    ap.add_argument("--pool", type=int, default=4, help="SMTP connections per sender")
    ap.add_argument("--backends", default="postgres,sqlite")
    ap.add_argument("--fast-pg", action="store_true", help="PostgreSQL with fsync off")
    args = ap.parse_args()
    parent, child = multiprocessing.Pipe()
    sink = multiprocessing.Process(target=_sink_process, args=(child,), daemon=True)
    sink.start()
    port = parent.recv()
    cluster = None
    tmp = Path(tempfile.mkdtemp(prefix="nurture-scaleout-"))
    rows = []
    try:
        for backend in args.backends.split(","):
            for k in (1, 2):
                if backend == "postgres":
                    if cluster is None:
                        cluster = ThrowawayCluster().start(durable=not args.fast_pg)
                    db = cluster.create_database()
                else:
                    db = str(tmp / f"scaleout-{k}.db")
                s = open_store(db)
                seed(s, n=args.n, now=datetime.now(UTC) - timedelta(minutes=1))
                s.close()
                elapsed = asyncio.run(run_senders(db, port, k, args.pool))
                parent.send("stats")
                total, distinct, most = parent.recv()
                assert total == distinct == args.n and most == 1, (total, distinct, most)
                rows.append((backend, k, args.n, elapsed, args.n / elapsed))
                print(f"{backend:9} senders={k}  {args.n} mails in {elapsed:6.2f}s  "
                      f"{args.n / elapsed:7.0f} sends/s  (each row once: ok)", flush=True)
    finally:
        parent.send("stop")
        sink.join(timeout=5)
        if cluster is not None:
            cluster.stop()
    print()
    print("| backend | senders | mails | seconds | sends/s |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for backend, k, n, elapsed, rate in rows:
        print(f"| {backend} | {k} | {n} | {elapsed:.2f} | {rate:.0f} |")


if __name__ == "__main__":
    main()
